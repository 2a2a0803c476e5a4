"""Host layers QDense / QConv2D (docs/method.md §1, §1.3): forward equals the plain Keras layer on P_r, shapes, config,
``.keras`` round trip, ``from_float``, training with ``fit`` (callbacks, XLA), argument validation; quantizers as
objects or specs (``kernel_quantizer`` / ``bias_quantizer``), the bias default, and the lqs 0.1 keywords. Runs on
every Keras backend (marker ``backends``); the XLA test is TensorFlow's and JAX's."""

import math

import keras
import numpy as np
import pytest
from conftest import BACKEND, tensor, to_numpy, value_and_grads
from keras import ops

from lqs_core.spec import EPSILON

from lqs_core.layers import LEGACY_QUANTIZER_KEYWORDS, QConv2D, QDense, QuantizedLayer, quantized_params
from lqs_core.losses import Inverse, MaxBin, attach
from lqs_core.quantizers import (
    FixedBitQuantizer,
    LSQQuantizer,
    NestedQuantizer,
    Quantizer,
    registry,
)
from lqs_core.spec import DEFAULT_SCALE

EPS32 = float(np.finfo(np.float32).eps)

pytestmark = pytest.mark.backends


def nested(granularity="scalar", **options):
    """The spec of a nested kernel quantizer: ``{"method": "nested", "granularity": ..., **options}``."""
    return {"method": "nested", "granularity": granularity, **options}


def floor_quantize(p, s):
    p = np.asarray(p, np.float32)
    s = np.asarray(s, np.float32)
    return (np.floor(p / s) * s).astype(np.float32)


def np_scale_grad(p, s, dy, lam):
    """docs/method.md §1.1, vectorised with NumPy broadcasting (slices = the axes where s has size 1)."""
    p_q = np.floor(p / s)
    p_r = p_q * s
    axes = tuple(i for i, d in enumerate(s.shape) if d == 1)
    r = np.abs(dy).astype(np.float64) / np.maximum(EPS32, np.abs(p_r).astype(np.float64))
    g_e = np.where(r < lam, -np.tanh(lam - r), 0.0)
    all_sens = np.all(r >= lam, axis=axes, keepdims=True)
    g = np.where(all_sens, -math.tanh(lam), g_e.mean(axis=axes, keepdims=True))
    return g * np.abs(p_q).max(axis=axes, keepdims=True)


def set_random_params(layer, rng, scale_range=(0.01, 0.1)):
    """Random float parameters and random scales (assigned), returned as {name: (P, s)}."""
    out = {}
    for name, variable, quantizer in layer.quantized_params():
        p = rng.normal(0, 0.3, variable.shape).astype(np.float32)
        s = rng.uniform(*scale_range, quantizer.scale.shape).astype(np.float32)
        variable.assign(p)
        quantizer.scale.assign(s)
        out[name] = (p, s)
    return out


# --------------------------------------------------------------------------------------------------------------
# forward = plain Keras layer with P_r
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("granularity", ["scalar", "rowwise", "columnwise", "outputwise"])
def test_qdense_equals_keras_dense_on_quantized_params(granularity):
    rng = np.random.default_rng(0)
    layer = QDense(4, activation="relu", kernel_quantizer=nested(granularity, threshold=1e-9))
    layer.build((None, 3))
    params = set_random_params(layer, rng)
    (w, sw), (b, sb) = params["kernel"], params["bias"]
    assert tuple(sb.shape) == (1,)  # biases always scalar
    expected_kernel_scale = {"scalar": (1, 1), "rowwise": (3, 1), "columnwise": (1, 4), "outputwise": (1, 4)}
    assert tuple(sw.shape) == expected_kernel_scale[granularity]
    x = rng.normal(0, 1, (5, 3)).astype(np.float32)
    dense = keras.layers.Dense(4, activation="relu")
    dense.build((None, 3))
    dense.set_weights([floor_quantize(w, sw), floor_quantize(b, sb)])
    y = to_numpy(layer(x))
    np.testing.assert_allclose(y, to_numpy(dense(x)), rtol=1e-5, atol=1e-6)
    # the layer uses P_r = kernel_quantizer(kernel), not P
    np.testing.assert_allclose(to_numpy(layer.kernel_quantizer(layer.kernel)), floor_quantize(w, sw), rtol=1e-6)
    np.testing.assert_allclose(
        y, np.maximum(x @ to_numpy(layer.kernel_quantizer(layer.kernel)) + to_numpy(layer.bias_quantizer(layer.bias)), 0),
        rtol=1e-5, atol=1e-6,
    )
    assert not np.allclose(y, np.maximum(x @ w + b, 0), atol=1e-3)  # the quantization is visible


def test_qdense_higher_rank_input_and_no_bias():
    rng = np.random.default_rng(1)
    layer = QDense(2, use_bias=False, kernel_quantizer=nested("rowwise"))
    x = rng.normal(0, 1, (2, 3, 4)).astype(np.float32)
    y = layer(x)
    assert [n for n, _, _ in layer.quantized_params()] == ["kernel"] and layer.bias_quantizer is None
    assert tuple(y.shape) == (2, 3, 2) == layer.compute_output_shape((2, 3, 4))
    w = layer.kernel.numpy()
    np.testing.assert_allclose(to_numpy(y), x @ floor_quantize(w, layer.kernel_quantizer.scale.numpy()), rtol=1e-5,
                               atol=1e-6)


CONV_CASES = [
    dict(kernel_size=3, strides=1, padding="valid", granularity="scalar"),
    dict(kernel_size=3, strides=1, padding="same", granularity="rowwise"),
    dict(kernel_size=(2, 3), strides=2, padding="same", granularity="columnwise"),
    dict(kernel_size=(3, 2), strides=(2, 1), padding="valid", granularity="channelwise"),
    dict(kernel_size=1, strides=2, padding="valid", granularity="outputwise"),
]


@pytest.mark.parametrize("case", CONV_CASES)
def test_qconv2d_equals_keras_conv2d_on_quantized_params(case):
    rng = np.random.default_rng(2)
    granularity = case["granularity"]
    kwargs = {k: v for k, v in case.items() if k != "granularity"}
    layer = QConv2D(3, activation="relu", kernel_quantizer=nested(granularity, threshold=1e-9), **kwargs)
    x = rng.normal(0, 1, (2, 7, 6, 2)).astype(np.float32)
    layer.build(x.shape)
    params = set_random_params(layer, rng)
    (k, sk), (b, sb) = params["kernel"], params["bias"]
    kh, kw = layer.kernel_size
    expected = {
        "scalar": (1, 1, 1, 1), "rowwise": (kh, 1, 1, 1), "columnwise": (1, kw, 1, 1),
        "channelwise": (1, 1, 2, 1), "outputwise": (1, 1, 1, 3),
    }[granularity]
    assert tuple(sk.shape) == expected and tuple(sb.shape) == (1,)
    conv = keras.layers.Conv2D(3, activation="relu", **kwargs)
    conv.build(x.shape)
    conv.set_weights([floor_quantize(k, sk), floor_quantize(b, sb)])
    y = to_numpy(layer(x))
    np.testing.assert_allclose(y, to_numpy(conv(x)), rtol=1e-5, atol=1e-5)
    assert tuple(y.shape) == tuple(layer.compute_output_shape(x.shape)) == tuple(conv.compute_output_shape(x.shape))


@pytest.mark.parametrize("case", CONV_CASES)
def test_qconv2d_compute_output_shape(case):
    kwargs = {k: v for k, v in case.items() if k != "granularity"}
    layer = QConv2D(4, **kwargs)
    conv = keras.layers.Conv2D(4, **kwargs)
    for shape in [(None, 9, 8, 3), (2, 5, 5, 1), (None, None, 6, 2), (1, 3, 3, 3)]:
        assert tuple(layer.compute_output_shape(shape)) == tuple(conv.compute_output_shape(shape))
    # symbolic: inside a functional model
    inp = keras.Input((9, 8, 3))
    assert tuple(QConv2D(4, **kwargs)(inp).shape) == tuple(conv.compute_output_shape((None, 9, 8, 3)))


def test_default_initialization_random_normal_for_weights_and_biases():
    # docs/method.md §1.3: RandomNormal(0, 0.05) for weights *and* biases, seeded through keras.utils.set_random_seed
    def build(seed):
        keras.utils.set_random_seed(seed)
        layer = QConv2D(40, 3)
        layer.build((None, 8, 8, 10))
        return layer

    layer = build(1)
    k, b = layer.kernel.numpy(), layer.bias.numpy()
    assert abs(k.mean()) < 0.005 and 0.045 < k.std() < 0.055  # 3600 samples
    assert 0.03 < b.std() < 0.07 and np.all(b != 0)  # not zeros
    np.testing.assert_array_equal(build(1).kernel.numpy(), k)  # reproducible
    assert not np.array_equal(build(2).kernel.numpy(), k)
    np.testing.assert_allclose(layer.kernel_quantizer.scale.numpy(), np.float32(DEFAULT_SCALE))
    # the default kernel quantizer: nested at scalar granularity, lambda = 0; the bias: the same at scalar
    for q in (layer.kernel_quantizer, layer.bias_quantizer):
        assert type(q) is NestedQuantizer
        assert registry.serialize_spec(q) == registry.normalize({"method": "nested", "granularity": "scalar"})


def test_qdense_compute_output_shape():
    layer = QDense(7)
    assert tuple(layer.compute_output_shape((None, 3))) == (None, 7)
    assert tuple(layer.compute_output_shape((4, 2, 3))) == (4, 2, 7)
    assert tuple(QDense(7)(keras.Input((5, 3))).shape) == (None, 5, 7)


def test_host_layer_scale_gradients_match_reference():
    # loss = sum(c * y) with y = x @ W_r + b_r: dL/dW_r = x^T c, dL/db_r = sum_batch c; the scale gradients follow
    # docs/method.md §1.1 from these upstream gradients, the float parameters get them unchanged (STE)
    rng = np.random.default_rng(3)
    lam = 0.05
    layer = QDense(3, kernel_quantizer=nested("rowwise", threshold=lam))
    layer.build((None, 4))
    params = set_random_params(layer, rng, (0.05, 0.2))
    x = rng.normal(0, 0.2, (6, 4)).astype(np.float32)
    c = rng.normal(0, 0.1, (6, 3)).astype(np.float32)
    variables = [layer.kernel, layer.bias, layer.kernel_quantizer.scale, layer.bias_quantizer.scale]
    _, (dw, db, dsw, dsb) = value_and_grads(lambda *_: ops.sum(tensor(c) * layer(x)), variables)
    dy_w, dy_b = x.T @ c, c.sum(0)
    np.testing.assert_allclose(dw, dy_w, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(db, dy_b, rtol=1e-5, atol=1e-7)
    (w, sw), (b, sb) = params["kernel"], params["bias"]
    ref_w = np_scale_grad(w, sw, dy_w, lam)
    np.testing.assert_allclose(dsw, ref_w, rtol=1e-4)
    np.testing.assert_allclose(dsb, np_scale_grad(b, sb, dy_b, lam), rtol=1e-4)
    assert np.all(dsw < 0) and np.all(dsb <= 0)


# --------------------------------------------------------------------------------------------------------------
# config, from_config, .keras
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda: QDense(5, activation="relu", name="qd", kernel_quantizer=nested(
            "columnwise", threshold=1e-10, scale_init=1e-4, scale_min=1e-5, rounding="round")),
        lambda: QConv2D(4, (3, 2), strides=2, padding="same", activation="tanh", use_bias=False, name="qc",
                        kernel_quantizer=nested("channelwise", threshold=1e-11)),
        lambda: QDense(3, name="lsq", kernel_quantizer={"method": "lsq", "bits": 4, "granularity": "outputwise"},
                       bias_quantizer={"method": "fixed", "bits": 6}),
        lambda: QConv2D(2, 3, name="cg", kernel_quantizer={"method": "cgmq", "gates": "weight", "direction": 2}),
    ],
)
def test_get_config_from_config_round_trip(make):
    layer = make()
    config = layer.get_config()
    # the config stores the quantizers' Keras serializations, not the lqs 0.1 keywords
    assert not set(LEGACY_QUANTIZER_KEYWORDS) & set(config)
    assert config["kernel_quantizer"] == registry.serialize(layer.kernel_quantizer)
    assert config["bias_quantizer"] == (registry.serialize(layer.bias_quantizer) if layer.use_bias else None)
    clone = type(layer).from_config(config)
    assert clone.get_config() == config
    assert clone.use_bias == layer.use_bias
    for attr in ("kernel_quantizer", "bias_quantizer"):
        a, b = getattr(clone, attr), getattr(layer, attr)
        if b is None:
            assert a is None
            continue
        assert type(a) is type(b) and a is not b
        assert registry.serialize_spec(a) == registry.serialize_spec(b)
        assert a.get_config() == b.get_config()
    # same weights -> same output
    x = np.random.default_rng(4).normal(0, 1, (2, 5, 5, 3) if isinstance(layer, QConv2D) else (2, 3))
    x = x.astype(np.float32)
    y = layer(x)
    clone.build(x.shape)
    clone.set_weights(layer.get_weights())
    np.testing.assert_array_equal(to_numpy(clone(x)), to_numpy(y))


def _small_model(threshold=1e-9):
    return keras.Sequential(
        [
            keras.Input((6, 6, 2)),
            QConv2D(3, 3, padding="same", activation="relu",
                    kernel_quantizer=nested("channelwise", threshold=threshold), name="qc"),
            keras.layers.Flatten(),
            QDense(4, activation="relu", kernel_quantizer=nested("rowwise", threshold=threshold), name="qd1"),
            QDense(2, kernel_quantizer=nested("outputwise", threshold=threshold), name="qd2"),
        ]
    )


def test_keras_save_load_round_trip(tmp_path):
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(5)
    model = _small_model()
    attach(model, MaxBin(1e-3), Inverse(1e-6))
    x = rng.normal(0, 1, (8, 6, 6, 2)).astype(np.float32)
    # scales away from their initial value, as after training
    for *_, q in quantized_params(model):
        q.scale.assign(rng.uniform(1e-3, 0.2, q.scale.shape).astype(np.float32))
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert [type(layer).__name__ for layer in loaded.layers] == ["QConv2D", "Flatten", "QDense", "QDense"]
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    for a, b in zip(model.weights, loaded.weights):
        assert a.path.endswith(b.path) or b.path.endswith(a.path)
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    # quantization settings and loss terms preserved
    for la, lb in zip(model.layers, loaded.layers):
        assert la.get_config() == lb.get_config()
    kq = loaded.layers[0].kernel_quantizer
    assert kq.granularity == "channelwise" and kq.threshold == 1e-9
    assert loaded.layers[0].bias_quantizer.granularity == "scalar" and loaded.layers[0].bias_quantizer.threshold == 1e-9
    # the loss terms are objects of the quantizers, with the parameter-count weights attach() gave them
    n_params = sum(int(np.prod(v.shape)) for *_, v, _ in quantized_params(model))
    share = 3 * 3 * 2 * 3 / n_params  # #K / sum #P
    assert kq.loss_terms == [MaxBin(1e-3, weight=share), Inverse(1e-6, weight=share)]
    for (*_, qa), (*_, qb) in zip(quantized_params(model), quantized_params(loaded)):
        assert qb.loss_terms == qa.loss_terms and len(qb.loss_terms) == 2
    model(x)
    loaded(x)
    assert len(loaded.losses) == len(model.losses) == 12  # 6 parameters x 2 terms
    np.testing.assert_allclose(sum(float(to_numpy(v)) for v in loaded.losses),
                               sum(float(to_numpy(v)) for v in model.losses), rtol=1e-6)
    # the loaded model's scales still learn through the ratio-threshold gradient
    _, grads = value_and_grads(lambda *_: ops.sum(loaded(x)), [q.scale for *_, q in quantized_params(loaded)])
    assert all(np.all(g <= 0) for g in grads) and np.any(grads[0] < 0)


# --------------------------------------------------------------------------------------------------------------
# from_float
# --------------------------------------------------------------------------------------------------------------


def test_from_float_dense():
    rng = np.random.default_rng(6)
    dense = keras.layers.Dense(5, activation="tanh", name="fd")
    dense.build((None, 3))
    w, b = rng.normal(0, 0.3, (3, 5)).astype(np.float32), rng.normal(0, 0.3, (5,)).astype(np.float32)
    dense.set_weights([w, b])
    q = QDense.from_float(dense, kernel_quantizer=nested("rowwise", threshold=1e-10))
    assert isinstance(q, QDense) and q.built
    kq = q.kernel_quantizer
    assert (q.units, kq.granularity, kq.threshold, q.name) == (5, "rowwise", 1e-10, "fd")
    assert q.bias_quantizer.granularity == "scalar"
    assert q.activation is keras.activations.tanh
    np.testing.assert_array_equal(q.kernel.numpy(), w)
    np.testing.assert_array_equal(q.bias.numpy(), b)
    assert tuple(q.kernel_quantizer.scale.shape) == (3, 1)
    np.testing.assert_allclose(q.kernel_quantizer.scale.numpy(), DEFAULT_SCALE)
    assert q.kernel_quantizer.threshold == 1e-10 and q.bias_quantizer.threshold == 1e-10
    x = rng.normal(0, 1, (4, 3)).astype(np.float32)
    # with the tiny initial scale the quantized layer is close to the float one ...
    np.testing.assert_allclose(to_numpy(q(x)), to_numpy(dense(x)), atol=1e-4)
    # ... and exactly the float layer on P_r
    sw = rng.uniform(0.05, 0.1, (3, 1)).astype(np.float32)
    q.kernel_quantizer.scale.assign(sw)
    expected = np.tanh(x @ floor_quantize(w, sw) + floor_quantize(b, DEFAULT_SCALE))
    np.testing.assert_allclose(to_numpy(q(x)), expected, rtol=1e-5, atol=1e-6)
    # without bias
    nb = keras.layers.Dense(2, use_bias=False)
    nb.build((None, 3))
    qn = QDense.from_float(nb, kernel_quantizer=nested("columnwise"))
    assert qn.kernel_quantizer.granularity == "columnwise" and qn.bias_quantizer is None
    assert [n for n, _, _ in qn.quantized_params()] == ["kernel"]
    np.testing.assert_array_equal(qn.kernel.numpy(), nb.kernel.numpy())


def test_from_float_conv2d():
    rng = np.random.default_rng(7)
    conv = keras.layers.Conv2D(4, (3, 2), strides=2, padding="same", activation="relu")
    x = rng.normal(0, 1, (2, 7, 7, 3)).astype(np.float32)
    conv(x)
    q = QConv2D.from_float(conv, kernel_quantizer=nested("channelwise", threshold=1e-11, scale_init=1e-3,
                                                         scale_min=1e-4))
    assert (q.filters, q.kernel_size, q.strides, q.padding) == (4, (3, 2), (2, 2), "same")
    kq = q.kernel_quantizer
    assert (kq.granularity, kq.threshold, kq.scale_init, kq.scale_min) == ("channelwise", 1e-11, 1e-3, 1e-4)
    bq = q.bias_quantizer
    assert (bq.granularity, bq.threshold, bq.scale_init, bq.scale_min) == ("scalar", 1e-11, 1e-3, 1e-4)
    for a, b in zip(q.get_weights()[:2], conv.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert tuple(q.kernel_quantizer.scale.shape) == (1, 1, 3, 1)
    np.testing.assert_allclose(q.kernel_quantizer.scale.numpy(), 1e-3)
    k, b = conv.get_weights()
    ref = keras.layers.Conv2D(4, (3, 2), strides=2, padding="same", activation="relu")
    ref.build(x.shape)
    ref.set_weights([floor_quantize(k, 1e-3), floor_quantize(b, 1e-3)])
    np.testing.assert_allclose(to_numpy(q(x)), to_numpy(ref(x)), rtol=1e-5, atol=1e-5)


def test_from_float_rejects_what_it_cannot_copy():
    with pytest.raises(ValueError, match="no weights yet"):
        QDense.from_float(keras.layers.Dense(3))
    dil = keras.layers.Conv2D(2, 3, dilation_rate=2)
    dil.build((None, 8, 8, 1))
    with pytest.raises(ValueError, match="dilation_rate"):
        QConv2D.from_float(dil)
    grp = keras.layers.Conv2D(4, 3, groups=2)
    grp.build((None, 8, 8, 2))
    with pytest.raises(ValueError, match="groups"):
        QConv2D.from_float(grp)
    conv = keras.layers.Conv2D(2, 3)
    conv.build((None, 8, 8, 1))
    with pytest.raises(ValueError, match="units"):
        QDense.from_float(conv)
    dense = keras.layers.Dense(2)
    dense.build((None, 3))
    with pytest.raises(ValueError, match="channelwise"):
        QDense.from_float(dense, kernel_quantizer=nested("channelwise"))
    with pytest.raises(ValueError, match="channelwise"):
        QDense.from_float(dense, granularity="channelwise")  # lqs 0.1 keyword


def test_load_float_weights_checks_shapes():
    q = QDense(3)
    q.build((None, 2))
    with pytest.raises(ValueError, match="expected 2"):
        q.load_float_weights([np.zeros((2, 3))])
    with pytest.raises(ValueError, match="does not match"):
        q.load_float_weights([np.zeros((3, 3)), np.zeros((3,))])


# --------------------------------------------------------------------------------------------------------------
# training
# --------------------------------------------------------------------------------------------------------------


class ScaleRecorder(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.records = []

    def on_epoch_end(self, epoch, logs=None):
        self.records.append([q.scale.numpy().copy() for *_, q in quantized_params(self.model)])


def _data(seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(0, 1, (32, 4)).astype(np.float32), rng.integers(0, 3, 32)


def test_fit_with_callbacks_grows_scales_and_lambda_zero_freezes_them():
    keras.utils.set_random_seed(0)
    x, y = _data()
    model = keras.Sequential(
        [keras.Input((4,)),
         QDense(8, activation="relu", kernel_quantizer=nested("rowwise", threshold=1e-3), name="learn"),
         QDense(3, activation="softmax", kernel_quantizer=nested("columnwise", threshold=0.0), name="frozen")]
    )
    float_before = model.layers[1].kernel.numpy().copy()
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    rec = ScaleRecorder()
    history = model.fit(x, y, epochs=2, batch_size=8, verbose=0, callbacks=[rec, keras.callbacks.TerminateOnNaN()])
    assert len(rec.records) == 2 and len(history.history["loss"]) == 2
    assert all(np.isfinite(history.history["loss"]))
    # lambda > 0: the scales only grow, every epoch
    for epoch in range(2):
        for s in rec.records[epoch][:2]:
            assert np.all(s > DEFAULT_SCALE)
    for s0, s1 in zip(rec.records[0][:2], rec.records[1][:2]):
        assert np.all(s1 > s0)
    # lambda = 0: frozen at the initial value
    for s in rec.records[-1][2:]:
        np.testing.assert_array_equal(s, np.full(s.shape, np.float32(DEFAULT_SCALE)))
    # ... while its float parameters did train
    assert not np.allclose(model.layers[1].kernel.numpy(), float_before)


@pytest.fixture
def xla_allowed():
    """Keras turns jit_compile off while TF op determinism is on (conftest sets TF_DETERMINISTIC_OPS=1); JAX always
    compiles with XLA; on PyTorch jit_compile means torch.compile, not tested here."""
    if BACKEND == "torch":
        pytest.skip("jit_compile on PyTorch is torch.compile")
    if BACKEND != "tensorflow":
        yield
        return
    import tensorflow as tf
    from tensorflow.python.framework import config as tf_config

    was = tf_config.is_op_determinism_enabled()
    tf_config.disable_op_determinism()
    yield
    if was:
        tf.config.experimental.enable_op_determinism()


def test_fit_with_jit_compile(xla_allowed):
    keras.utils.set_random_seed(3)
    x, y = _data(1)
    model = keras.Sequential(
        [keras.Input((4,)), QDense(8, activation="relu", kernel_quantizer=nested("rowwise", threshold=1e-3)),
         QDense(3, activation="softmax", kernel_quantizer=nested("outputwise", threshold=1e-3))]
    )
    twin = keras.models.clone_model(model)
    twin.set_weights(model.get_weights())
    model.compile(keras.optimizers.SGD(1e-2), "sparse_categorical_crossentropy", jit_compile=True)
    assert model.jit_compile is True
    model.fit(x, y, epochs=1, batch_size=16, shuffle=False, verbose=0)
    # the same two SGD steps, eagerly, without XLA
    opt = keras.optimizers.SGD(1e-2)
    loss_fn = keras.losses.SparseCategoricalCrossentropy()
    for i in (0, 16):
        _, grads = value_and_grads(lambda *_: loss_fn(y[i : i + 16], twin(x[i : i + 16])), twin.trainable_weights)
        opt.apply_gradients(zip([tensor(g) for g in grads], twin.trainable_weights))
    for a, b in zip(model.weights, twin.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-8)
    for *_, q in quantized_params(model):
        assert np.all(q.scale.numpy() > DEFAULT_SCALE)
    np.testing.assert_allclose(model.predict(x, verbose=0), to_numpy(model(x)), rtol=1e-5, atol=1e-6)


def test_quantized_params_lists_every_parameter_in_order():
    inner = keras.Sequential([keras.Input((6,)), QDense(3, name="inner_q")], name="inner")
    model = keras.Sequential([keras.Input((4,)), QDense(6, name="a", use_bias=False), inner, QDense(2, name="b")])
    found = quantized_params(model)
    assert [t[0] for t in found] == ["a/kernel", "inner_q/kernel", "inner_q/bias", "b/kernel", "b/bias"]
    for tensor_name, host, name, variable, quantizer in found:
        assert isinstance(host, QuantizedLayer) and isinstance(quantizer, NestedQuantizer)
        assert getattr(host, name) is variable
        assert quantizer.built and len(quantizer.scale.shape) == len(variable.shape)
    # every scale is a trainable variable of the model, exactly once
    paths = [v.path for v in model.trainable_weights]
    assert len(paths) == len(set(paths)) == 10


# --------------------------------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda: QDense(3, kernel_quantizer=nested("channelwise")), "channelwise.*only for Conv2D"),
        (lambda: QDense(3, kernel_quantizer={"method": "lsq", "granularity": "channelwise"}), "channelwise"),
        (lambda: QDense(3, kernel_quantizer=NestedQuantizer("channelwise")), "does not fit a 2-D kernel"),
        (lambda: QDense(3, kernel_quantizer=nested("diagonal")), "Unknown granularity 'diagonal'"),
        (lambda: QConv2D(3, 3, kernel_quantizer=nested("perfilter")), "Unknown granularity 'perfilter'"),
        (lambda: QDense(3, kernel_quantizer=nested(threshold=-1e-10)), "threshold"),
        (lambda: QConv2D(3, 3, kernel_quantizer=nested(threshold=float("nan"))), "threshold"),
        (lambda: QDense(3, kernel_quantizer=nested(threshold=float("inf"))), "threshold"),
        (lambda: QDense(3, kernel_quantizer=nested(scale_init=0.0)), "scale_init"),
        (lambda: QConv2D(3, 3, kernel_quantizer=nested(scale_min=-1.0)), "scale_min"),
        (lambda: QDense(3, kernel_quantizer=nested(rounding="stochastic")), "Unknown rounding 'stochastic'"),
        (lambda: QDense(3, kernel_quantizer="magic"), "Unknown quantizer method 'magic'"),
        (lambda: QDense(3, kernel_quantizer={"method": "lsq", "bitz": 4}), r"Unknown option\(s\) \['bitz'\]"),
        (lambda: QDense(3, kernel_quantizer={"method": "fixed", "bits": 16}), "bits must be in 2..8, got 16"),
        (lambda: QDense(3, bias_quantizer={"method": "nested", "threshold": -1.0}), "threshold"),
        (lambda: QDense(3, kernel_quantizer=3), "A quantizer spec must be"),
        (lambda: QDense(3, use_bias="no"), "use_bias"),
        # the lqs 0.1 keywords are checked the same way
        (lambda: QDense(3, granularity="channelwise"), "channelwise.*only for Conv2D"),
        (lambda: QDense(3, granularity="diagonal"), "Unknown granularity 'diagonal'"),
        (lambda: QConv2D(3, 3, granularity="perfilter"), "Unknown granularity 'perfilter'"),
        (lambda: QDense(3, threshold=-1e-10), "threshold"),
        (lambda: QConv2D(3, 3, threshold=float("nan")), "threshold"),
        (lambda: QDense(3, threshold=float("inf")), "threshold"),
        (lambda: QDense(3, scale_init=0.0), "scale_init"),
        (lambda: QConv2D(3, 3, scale_min=-1.0), "scale_min"),
        (lambda: QDense(3, rounding="stochastic"), "Unknown rounding 'stochastic'"),
        (lambda: QDense(4, quantizer={"method": "fixed", "bits": 16}), "bits"),
        (lambda: QDense(4, quantizer="magic"), "magic"),
        (lambda: QDense(4, threshold=1e-10, kernel_quantizer="nested"), "not both"),
        (lambda: QConv2D(4, 3, granularity="rowwise", bias_quantizer="nested"), "not both"),
        (lambda: QDense(0), "units"),
        (lambda: QConv2D(0, 3), "filters"),
        (lambda: QConv2D(2, 0), "kernel_size"),
        (lambda: QConv2D(2, 3, padding="full"), "Unknown padding 'full'"),
        (lambda: QConv2D(2, (1, 2, 3)), "kernel_size"),
    ],
)
def test_bad_layer_arguments_raise(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_threshold_true_is_refused_naming_the_value():
    # a bool is not a threshold (float(True) would be 1.0): refused with the value in the message
    for make in (lambda: QDense(4, threshold=True), lambda: QDense(4, kernel_quantizer=nested(threshold=True))):
        with pytest.raises(ValueError, match="threshold") as e:
            make()
        assert "True" in str(e.value)


# --------------------------------------------------------------------------------------------------------------
# quantizers as objects or specs; the bias default; the lqs 0.1 keywords
# --------------------------------------------------------------------------------------------------------------

KERNEL_SPECS = [
    nested("rowwise", threshold=1e-10, scale_init=1e-4, scale_min=1e-5, rounding="round"),
    {"method": "fixed", "bits": 3, "granularity": "outputwise"},
    {"method": "lsq", "bits": 4, "granularity": "columnwise"},
    {"method": "cgmq", "gates": "weight", "direction": 2, "gate_init": 3.5, "granularity": "outputwise"},
    "lsq",  # a method name: its defaults, at scalar
]


@pytest.mark.parametrize("cls", [QDense, QConv2D])
@pytest.mark.parametrize("spec", KERNEL_SPECS, ids=lambda s: s if isinstance(s, str) else s["method"])
def test_bias_default_is_the_kernel_spec_at_scalar(cls, spec):
    layer = QDense(4, kernel_quantizer=spec) if cls is QDense else QConv2D(4, 3, kernel_quantizer=spec)
    kernel_spec = registry.normalize(spec)
    assert registry.serialize_spec(layer.kernel_quantizer) == kernel_spec
    assert type(layer.bias_quantizer) is type(layer.kernel_quantizer) is registry.QUANTIZERS[kernel_spec["method"]]
    assert layer.bias_quantizer is not layer.kernel_quantizer
    assert registry.serialize_spec(layer.bias_quantizer) == {**kernel_spec, "granularity": "scalar"}
    layer.build((None, 5) if cls is QDense else (None, 6, 6, 2))
    assert {name for name, _, _ in layer.quantized_params()} == {"kernel", "bias"}
    assert layer.bias_quantizer.kept_axis is None and layer.bias_quantizer.slice_axes == [0]  # one scale for b
    assert layer.kernel_quantizer.param_shape == tuple(layer.kernel.shape)


def test_spec_forms_build_the_same_quantizer():
    """An object, a dict and a Keras serialization give the same kernel quantizer; a method name its defaults."""
    obj = LSQQuantizer(bits=4, granularity="outputwise")
    as_dict = {"method": "lsq", "bits": 4, "granularity": "outputwise"}
    layers = [QDense(3, kernel_quantizer=obj), QDense(3, kernel_quantizer=as_dict),
              QDense(3, kernel_quantizer=registry.serialize(LSQQuantizer(bits=4, granularity="outputwise")))]
    assert layers[0].kernel_quantizer is obj  # an object is used as it is
    for layer in layers:
        assert type(layer.kernel_quantizer) is LSQQuantizer
        assert registry.serialize_spec(layer.kernel_quantizer) == {"method": "lsq", "granularity": "outputwise",
                                                                    "bits": 4, "scale_min": EPSILON}
        assert registry.serialize_spec(layer.bias_quantizer) == {"method": "lsq", "granularity": "scalar", "bits": 4,
                                                                  "scale_min": EPSILON}
    # a method name alone: the method's defaults at scalar
    assert registry.serialize_spec(QDense(3, kernel_quantizer="fixed").kernel_quantizer) == {
        "method": "fixed", "granularity": "scalar", "bits": 8}
    # an explicit bias quantizer of another method
    layer = QConv2D(2, 3, kernel_quantizer=NestedQuantizer("channelwise", threshold=1e-10),
                    bias_quantizer={"method": "fixed", "bits": 8})
    assert type(layer.kernel_quantizer) is NestedQuantizer and type(layer.bias_quantizer) is FixedBitQuantizer
    assert layer.bias_quantizer.granularity == "scalar"
    layer = QConv2D(2, 3, kernel_quantizer=NestedQuantizer("channelwise", threshold=1e-10), bias_quantizer="nested")
    assert layer.bias_quantizer.threshold == 0.0  # "nested": the method's defaults, not the kernel's options
    for q in (layer.kernel_quantizer, layer.bias_quantizer):
        assert isinstance(q, Quantizer)


def test_one_quantizer_object_for_two_shapes_is_refused():
    q = NestedQuantizer()
    layer = QDense(3, kernel_quantizer=q, bias_quantizer=q)
    with pytest.raises(ValueError, match="already built"):
        layer.build((None, 2))


@pytest.mark.parametrize(
    "legacy, new",
    [
        (dict(granularity="columnwise", threshold=1e-10, scale_init=1e-4, scale_min=1e-5, rounding="round"),
         dict(kernel_quantizer=nested("columnwise", threshold=1e-10, scale_init=1e-4, scale_min=1e-5,
                                      rounding="round"))),
        (dict(), dict(kernel_quantizer=nested("scalar"))),
        (dict(granularity="outputwise", quantizer={"method": "lsq", "bits": 4}),
         dict(kernel_quantizer={"method": "lsq", "bits": 4, "granularity": "outputwise"})),
        (dict(quantizer="cgmq"), dict(kernel_quantizer="cgmq")),
    ],
)
def test_legacy_keywords_build_the_same_quantizers(legacy, new):
    old, cur = QDense(5, name="a", **legacy), QDense(5, name="a", **new)
    assert old.get_config() == cur.get_config()
    for attr in ("kernel_quantizer", "bias_quantizer"):
        a, b = getattr(old, attr), getattr(cur, attr)
        assert type(a) is type(b) and registry.serialize_spec(a) == registry.serialize_spec(b)
    assert old.bias_quantizer.granularity == "scalar"


def test_legacy_loss_terms_keyword():
    terms = {"kernel": [{"term": "maxbin", "gamma": 1e-3, "weight": 0.75}], "bias": [{"term": "inverse", "gamma": 2.0}]}
    layer = QDense(2, granularity="rowwise", loss_terms=terms)
    assert layer.kernel_quantizer.loss_terms == [MaxBin(1e-3, weight=0.75)]
    assert layer.bias_quantizer.loss_terms == [Inverse(2.0)]
    with pytest.raises(ValueError, match="nested quantizer only"):
        QDense(2, quantizer="lsq", loss_terms=terms)
