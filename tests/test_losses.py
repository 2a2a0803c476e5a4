"""The loss-term scheme (docs/method.md §2): MaxBin, Inverse, Difference, ReconstructionError; the parameter-count weighting
over every quantized parameter of a model; combination via ``attach`` (terms as objects of the quantizers);
gradients to the scales; training; the terms' Keras serialization. Runs on every Keras backend (marker
``backends``)."""

import keras
import numpy as np
import pytest
from conftest import tensor, to_numpy, value_and_grads
from keras import ops

from lqs_core import loss_terms, losses, spec
from lqs_core.layers import QConv2D, QDense, quantized_params
from lqs_core.losses import (
    TERM_CLASSES,
    Difference,
    Inverse,
    LossTerm,
    MaxBin,
    ReconstructionError,
    attach,
    evaluate,
    make_term,
    term_value,
)
from lqs_core.spec import DEFAULT_SCALE

ALL_TERMS = (MaxBin, Inverse, Difference, ReconstructionError)

pytestmark = pytest.mark.backends


def nested(granularity="scalar", **options):
    return {"method": "nested", "granularity": granularity, **options}


# --------------------------------------------------------------------------------------------------------------
# NumPy reference (docs/method.md §2)
# --------------------------------------------------------------------------------------------------------------


def np_term(name, p, s):
    """t(P, s) as docs/method.md §2 defines it; the slice of s_k is every axis where s has size 1."""
    p = np.asarray(p, np.float32)
    s = np.asarray(s, np.float32)
    axes = tuple(i for i, d in enumerate(s.shape) if d == 1)
    p64, s64 = p.astype(np.float64), s.astype(np.float64)
    if name == "maxbin":
        return np.mean(np.max(np.abs(p64), axis=axes, keepdims=True) / s64)
    if name == "inverse":
        return np.mean(1.0 / s64)
    if name == "difference":
        return np.mean(np.abs(p64 - p64 / s64))
    if name == "reconstruction":
        p_r = np.floor(p / s).astype(np.float32) * s  # float32, as the layer computes it
        return np.mean(np.abs(p - p_r).astype(np.float64))
    raise AssertionError(name)


def np_term_grad_s(name, p, s):
    """d t(P, s) / d s, by hand from the definitions (floor(P/s) a constant for the reconstruction error)."""
    p = np.asarray(p, np.float32)
    s = np.asarray(s, np.float32)
    axes = tuple(i for i, d in enumerate(s.shape) if d == 1)
    p64, s64 = p.astype(np.float64), s.astype(np.float64)
    if name == "maxbin":  # mean_k(M_k / s_k) -> -M_k / s_k^2 / K
        return -np.max(np.abs(p64), axis=axes, keepdims=True) / s64**2 / s.size
    if name == "inverse":  # mean_k(1 / s_k) -> -1 / s_k^2 / K
        return -1.0 / s64**2 / s.size
    if name == "difference":  # mean(|P - P/s|) -> sum_slice sign(P - P/s) * P / s^2 / N
        g = np.sign(p64 - p64 / s64) * p64 / s64**2
        return np.sum(g, axis=axes, keepdims=True) / p.size
    if name == "reconstruction":  # mean(|P - c s|), c = floor(P/s) constant -> sum_slice -c * sign(P - c s) / N
        c = np.floor(p / s).astype(np.float32)
        resid = p - c * s
        return np.sum(-c.astype(np.float64) * np.sign(resid), axis=axes, keepdims=True) / p.size
    raise AssertionError(name)


def np_l_custom(name, model):
    """docs/method.md §2: sum_P #(P) t(P, s_P) / sum_P #(P) over every quantized parameter of the model."""
    num = den = 0.0
    for *_, variable, quantizer in quantized_params(model):
        p = variable.numpy()
        num += p.size * np_term(name, p, quantizer.scale.numpy())
        den += p.size
    return num / den


# --------------------------------------------------------------------------------------------------------------
# models
# --------------------------------------------------------------------------------------------------------------


def tiny_dense():
    """QDense(2) on 2 inputs with binary-exact weights and scales (see test_hand_computed_values)."""
    layer = QDense(2, kernel_quantizer=nested("rowwise"), name="tiny")
    model = keras.Sequential([keras.Input((2,)), layer])
    layer.kernel.assign([[0.75, -1.0], [0.375, 2.0]])
    layer.bias.assign([0.625, -0.75])
    layer.kernel_quantizer.scale.assign([[0.5], [0.25]])
    layer.bias_quantizer.scale.assign([0.5])
    return model


def mixed_model(seed=0):
    """QConv2D channelwise (K 2x2x3x2 = 24, b 2) -> QDense rowwise (W 18x3 = 54, b 3) -> QDense columnwise, no bias
    (W 3x2 = 6): 89 quantized numbers in 5 tensors, random weights and scales."""
    rng = np.random.default_rng(seed)
    model = keras.Sequential(
        [
            keras.Input((4, 4, 3)),
            QConv2D(2, 2, kernel_quantizer=nested("channelwise"), name="c"),
            keras.layers.Flatten(),
            QDense(3, kernel_quantizer=nested("rowwise"), name="d1"),
            QDense(2, kernel_quantizer=nested("columnwise"), use_bias=False, name="d2"),
        ]
    )
    for *_, variable, quantizer in quantized_params(model):
        variable.assign(rng.normal(0, 0.5, variable.shape).astype(np.float32))
        quantizer.scale.assign(rng.uniform(0.01, 0.3, quantizer.scale.shape).astype(np.float32))
    return model


X_TINY = np.ones((1, 2), np.float32)
X_MIXED = np.random.default_rng(9).normal(0, 1, (2, 4, 4, 3)).astype(np.float32)


def total_added_loss(model, x):
    model(x)
    return float(sum(float(to_numpy(v)) for v in model.losses))


# --------------------------------------------------------------------------------------------------------------
# values
# --------------------------------------------------------------------------------------------------------------

# Tiny model by hand: W = [[0.75, -1], [0.375, 2]], rowwise s_W = [[0.5], [0.25]], b = [0.625, -0.75], s_b = 0.5;
# #W = 4, #b = 2, so L = (4 t_W + 2 t_b) / 6.
#   MaxBin:      t_W = mean(1/0.5, 2/0.25) = mean(2, 8) = 5;  t_b = 0.75/0.5 = 1.5          -> L = 23/6
#   Inverse:     t_W = mean(2, 4) = 3;                          t_b = 2                      -> L = 16/6
#   Difference:  P/s_W = [[1.5, -2], [1.5, 8]] -> |P - P/s| = [[0.75, 1], [1.125, 6]], t_W = 8.875/4 = 2.21875;
#                P/s_b = [1.25, -1.5] -> [0.625, 0.75], t_b = 0.6875                          -> L = 10.25/6
#   Reconstr.:   floor(P/s_W) = [[1, -2], [1, 8]] -> P_r = [[0.5, -1], [0.25, 2]] -> |P - P_r| = [[.25, 0], [.125, 0]],
#                t_W = 0.09375; floor(P/s_b) = [1, -2] -> P_r = [0.5, -1] -> [0.125, 0.25], t_b = 0.1875 -> L = 0.125
HAND = {"maxbin": 23 / 6, "inverse": 16 / 6, "difference": 10.25 / 6, "reconstruction": 0.125}


@pytest.mark.parametrize("cls", ALL_TERMS)
def test_hand_computed_values(cls):
    model = tiny_dense()
    gamma = 0.01
    term = cls(gamma)
    np.testing.assert_allclose(float(to_numpy(evaluate(term, model))), gamma * HAND[cls.term], rtol=1e-6)
    np.testing.assert_allclose(np_l_custom(cls.term, model), HAND[cls.term], rtol=1e-6)  # the reference agrees
    attach(model, term)
    np.testing.assert_allclose(total_added_loss(model, X_TINY), gamma * HAND[cls.term], rtol=1e-6)
    assert len(model.losses) == 2  # one share per quantized parameter


def test_term_value_per_parameter_by_hand():
    w = tensor([[0.75, -1.0], [0.375, 2.0]])
    s = tensor([[0.5], [0.25]])
    axes = [1]
    assert float(term_value("maxbin", w, s, axes)) == pytest.approx(5.0)
    assert float(term_value("inverse", w, s, axes)) == pytest.approx(3.0)
    assert float(term_value("difference", w, s, axes)) == pytest.approx(2.21875)
    assert float(term_value("reconstruction", w, s, axes)) == pytest.approx(0.09375)
    # columnwise scale on the same W: slices are the columns, max |P| = [0.75, 2] / s = [0.5, 0.25] -> mean(1.5, 8)
    assert float(term_value("maxbin", w, tensor([[0.5, 0.25]]), [0])) == pytest.approx(4.75)
    # MaxBin uses |P| / s without floor: 0.3 / 0.25 = 1.2 (floor would give 1)
    assert float(term_value("maxbin", tensor([0.3, -0.1]), tensor([0.25]), [0])) == pytest.approx(1.2)
    # Difference is literally |P - P/s|, not the reconstruction error: P = 0.5, s = 0.25 -> |0.5 - 2| = 1.5
    assert float(term_value("difference", tensor([0.5]), tensor([0.25]), [0])) == pytest.approx(1.5)
    assert float(term_value("reconstruction", tensor([0.5]), tensor([0.25]), [0])) == pytest.approx(0.0)


@pytest.mark.parametrize("cls", ALL_TERMS)
def test_parameter_count_weighting_over_the_model(cls):
    model = mixed_model()
    params = quantized_params(model)
    sizes = [int(np.prod(v.shape)) for *_, v, _ in params]
    assert sizes == [24, 2, 54, 3, 6]
    gamma = 1e-3
    expected = gamma * np_l_custom(cls.term, model)
    np.testing.assert_allclose(float(to_numpy(evaluate(cls(gamma), model))), expected, rtol=1e-5)
    attach(model, cls(gamma))
    for (_, layer, _, variable, quantizer), size in zip(params, sizes):
        # each quantizer holds the term object with its parameter's weight #P / sum #P (the host holds none)
        assert quantizer.loss_terms == [cls(gamma, weight=size / 89)]
        (term,) = quantizer.loss_terms
        assert type(term) is cls and term.gamma == gamma and term.weight == size / 89
        assert "loss_terms" not in layer.get_config()
        # its share: gamma * weight * t(P, s)
        share = term.penalty(variable, quantizer.scale, quantizer.slice_axes)
        np.testing.assert_allclose(float(to_numpy(share)), gamma * size / 89 * np_term(cls.term, variable.numpy(),
                                                                            quantizer.scale.numpy()), rtol=1e-5)
    assert sum(q.loss_terms[0].weight for *_, q in params) == pytest.approx(1.0)
    np.testing.assert_allclose(total_added_loss(model, X_MIXED), expected, rtol=1e-5)
    # an unweighted mean over the five tensors would be something else
    unweighted = gamma * np.mean([np_term(cls.term, v.numpy(), q.scale.numpy()) for *_, v, q in params])
    assert not np.isclose(unweighted, expected, rtol=1e-3)


def test_terms_combine_in_model_losses():
    model = mixed_model(1)
    g1, g2, g3 = 1e-2, 3e-4, 0.5
    attach(model, MaxBin(g1), Inverse(g2))
    model(X_MIXED)
    assert len(model.losses) == 2 * 5
    expected = g1 * np_l_custom("maxbin", model) + g2 * np_l_custom("inverse", model)
    np.testing.assert_allclose(total_added_loss(model, X_MIXED), expected, rtol=1e-5)
    both = evaluate(MaxBin(g1), model) + evaluate(Inverse(g2), model)
    np.testing.assert_allclose(float(to_numpy(both)), expected, rtol=1e-5)
    # attaching again replaces the earlier terms
    attach(model, Difference(g3), ReconstructionError(g1), Inverse(g2))
    model(X_MIXED)
    assert len(model.losses) == 3 * 5
    expected = (
        g3 * np_l_custom("difference", model) + g1 * np_l_custom("reconstruction", model)
        + g2 * np_l_custom("inverse", model)
    )
    np.testing.assert_allclose(total_added_loss(model, X_MIXED), expected, rtol=1e-5)
    attach(model)  # no terms: nothing added
    model(X_MIXED)
    assert len(model.losses) == 0


def test_gamma_zero_adds_zero():
    model = mixed_model(2)
    attach(model, MaxBin(0.0), Difference(0.0))
    assert total_added_loss(model, X_MIXED) == 0.0


# --------------------------------------------------------------------------------------------------------------
# gradients
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", ALL_TERMS)
def test_term_gradients_reach_the_scales(cls):
    model = mixed_model(3)
    gamma = 0.1
    attach(model, cls(gamma))
    params = quantized_params(model)
    scales = [q.scale for *_, q in params]
    _, grads = value_and_grads(lambda *_: (model(X_MIXED), sum(model.losses))[1], scales)
    for (*_, variable, quantizer), g in zip(params, grads):
        assert g.shape == tuple(quantizer.scale.shape)
        p, s = variable.numpy(), quantizer.scale.numpy()
        expected = gamma * p.size / 89 * np_term_grad_s(cls.term, p, s)
        np.testing.assert_allclose(g, expected, rtol=1e-4, atol=1e-9)
        assert np.any(g != 0)
        if cls in (MaxBin, Inverse):
            assert np.all(g < 0)  # both only push the scales up


def test_reconstruction_gradient_floor_is_constant_by_hand():
    # tiny model: t_W = mean(|P - floor(P/s) s|), floor(P/s_W) = [[1, -2], [1, 8]], residuals [[.25, 0], [.125, 0]]
    # d t_W / d s_row0 = (-1 * sign(.25) - (-2) * sign(0)) / 4 = -0.25;  d t_W / d s_row1 = (-1 - 8 * 0) / 4 = -0.25
    # with the weight #W / 6 = 4/6: d L / d s_W = [[-1/6], [-1/6]]
    # b: floor(P/s_b) = [1, -2], residuals [0.125, 0.25] -> d t_b / d s_b = (-1 + 2) / 2 = 0.5; weight 2/6 -> 1/6
    model = tiny_dense()
    layer = model.layers[0]
    attach(model, ReconstructionError(1.0))
    _, (gw, gb) = value_and_grads(lambda *_: (model(X_TINY), sum(model.losses))[1],
                                  [layer.kernel_quantizer.scale, layer.bias_quantizer.scale])
    np.testing.assert_allclose(gw, [[-1 / 6], [-1 / 6]], rtol=1e-6)
    np.testing.assert_allclose(gb, [1 / 6], rtol=1e-6)


def test_task_loss_gives_the_scales_no_gradient_at_threshold_zero():
    # the loss-term scheme: nested layers at lambda = 0 -> the scales learn only from the terms
    model = mixed_model(4)
    attach(model, Inverse(1e-3))
    scales = [q.scale for *_, q in quantized_params(model)]
    def loss(part):
        def f(*_):
            task = ops.sum(model(X_MIXED) ** 2)
            terms = sum(model.losses)
            return {"task": task, "terms": terms, "total": task + terms}[part]

        return value_and_grads(f, scales)[1]

    for g in loss("task"):
        assert np.all(g == 0)
    for g_total, g_terms in zip(loss("total"), loss("terms")):
        np.testing.assert_array_equal(g_total, g_terms)
        assert np.all(g_total < 0)


def test_fit_with_only_a_loss_term_grows_the_scales():
    # threshold 0 everywhere: without terms the scales stay put; attach() after a first fit retraces the train step
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, (32, 5)).astype(np.float32)
    y = rng.integers(0, 3, 32)
    model = keras.Sequential(
        [keras.Input((5,)), QDense(6, activation="relu", kernel_quantizer=nested("rowwise")),
         QDense(3, activation="softmax", kernel_quantizer=nested("columnwise"))]
    )
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
    scales = [q.scale for *_, q in quantized_params(model)]
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    for s in scales:
        np.testing.assert_array_equal(s.numpy(), np.full(s.shape, np.float32(DEFAULT_SCALE)))
    attach(model, MaxBin(1e-9), Inverse(1e-9))
    history = model.fit(x, y, epochs=2, batch_size=8, verbose=0)
    for s in scales:
        assert np.all(s.numpy() > 10 * DEFAULT_SCALE)  # 8 Adam steps of about lr = 1e-3 each
    assert np.all(np.isfinite(history.history["loss"]))


# --------------------------------------------------------------------------------------------------------------
# construction and validation
# --------------------------------------------------------------------------------------------------------------


def test_make_term_names():
    for name, cls in [("maxbin", MaxBin), ("MaxBin", MaxBin), ("inverse", Inverse), ("difference", Difference),
                      ("reconstruction", ReconstructionError), ("ReconstructionError", ReconstructionError),
                      ("reconstruction_error", ReconstructionError)]:
        t = make_term(name, 1e-8)
        assert type(t) is cls and t.gamma == 1e-8 and t.weight == 1.0
        assert t.get_config() == {"gamma": 1e-8, "weight": 1.0}
        assert make_term(name, 1e-8, 0.25) == cls(1e-8, weight=0.25)
    assert set(TERM_CLASSES) == {"maxbin", "inverse", "difference", "reconstruction"}
    assert repr(MaxBin(1e-8)) == "MaxBin(gamma=1e-08)"
    assert repr(MaxBin(1e-8, weight=0.5)) == "MaxBin(gamma=1e-08, weight=0.5)"


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda: MaxBin(-1e-9), "gamma"),
        (lambda: Inverse(float("nan")), "gamma"),
        (lambda: Difference(float("inf")), "gamma"),
        (lambda: ReconstructionError("a lot"), "gamma"),
        (lambda: make_term("huber", 1.0), "Unknown loss term 'huber'"),
        (lambda: make_term("maxbin", -2.0), "gamma"),
        (lambda: term_value("bogus", np.ones(2), np.ones(1), [0]), "Unknown loss term 'bogus'"),
        (lambda: attach(tiny_dense(), "maxbin"), "LossTerm"),
        (lambda: attach(keras.Sequential([keras.Input((2,)), keras.layers.Dense(2)]), MaxBin(1.0)),
         "no built quantized layers"),
        (lambda: evaluate(MaxBin(1.0), keras.Sequential([keras.Input((2,)), keras.layers.Dense(2)])),
         "no built quantized layers"),
        (lambda: MaxBin(True), "gamma"),
        (lambda: MaxBin(1.0, weight=-0.5), "weight"),
        (lambda: Inverse(1.0, weight=float("nan")), "weight"),
        (lambda: make_term("inverse", 1.0, weight=True), "weight"),
        (lambda: attach(keras.Sequential([keras.Input((2,)), QDense(2, kernel_quantizer="lsq")]), MaxBin(1.0)),
         "takes no loss terms"),
        (lambda: loss_terms.get("maxbin"), "must be a LossTerm"),
        (lambda: loss_terms.get({"class_name": "Dense", "config": {"units": 2}, "module": "keras.layers"}),
         "must be a LossTerm"),
    ],
)
def test_bad_loss_arguments_raise(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_term_classes_registered():
    # one definition: lqs_core.loss_terms; lqs_core.losses re-exports it; the names are lqs_core.spec.TERMS
    assert tuple(TERM_CLASSES) == spec.TERMS == tuple(loss_terms.TERM_FUNCTIONS)
    assert losses.TERM_CLASSES is loss_terms.TERM_CLASSES
    for cls in ALL_TERMS:
        assert issubclass(cls, LossTerm) and cls.term in TERM_CLASSES and TERM_CLASSES[cls.term] is cls
        assert getattr(losses, cls.__name__) is getattr(loss_terms, cls.__name__) is cls
    assert losses.make_term is loss_terms.make_term and losses.term_value is loss_terms.term_value


@pytest.mark.parametrize("cls", ALL_TERMS)
def test_term_objects_value_penalty_and_serialization(cls):
    p = tensor([[0.75, -1.0], [0.375, 2.0]])
    s = tensor([[0.5], [0.25]])
    term = cls(0.01, weight=0.25)
    expected_t = {"maxbin": 5.0, "inverse": 3.0, "difference": 2.21875, "reconstruction": 0.09375}[cls.term]
    assert float(term.value(p, s, [1])) == pytest.approx(expected_t)
    assert float(term.penalty(p, s, [1])) == pytest.approx(0.01 * 0.25 * expected_t)
    moved = term.with_weight(0.5)
    assert type(moved) is cls and (moved.gamma, moved.weight) == (0.01, 0.5) and term.weight == 0.25
    assert term != moved and term == cls(0.01, 0.25) and term != MaxBin(0.02, 0.25)
    # Keras serialization, and the plain dicts of lqs 0.1 files
    config = keras.saving.serialize_keras_object(term)
    back = keras.saving.deserialize_keras_object(config)
    assert type(back) is cls and back == term
    assert loss_terms.get(config) == term and loss_terms.get(term) is term
    assert cls.from_config(term.get_config()) == term
    assert loss_terms.get({"term": cls.term, "gamma": 0.01, "weight": 0.25}) == term
    assert loss_terms.get({"term": cls.term, "gamma": 0.01}) == cls(0.01)
