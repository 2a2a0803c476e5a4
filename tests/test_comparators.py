"""Comparators (docs/method.md §5): fixed-bit QAT, LSQ, PTQ, CGMQ, layer-importance bit selection — formulas against NumPy,
the CGMQ budget guarantee, the metrics on every method, .keras round trips, bad input, one short run per method.

The quantizers are in :mod:`lqs_core.quantizers` (``fixed``, ``lsq``, ``cgmq``), the whole-model procedures in
:mod:`lqs_core.procedures` (``ptq``, ``layer_importance``, ``budget``), the vocabulary in :mod:`lqs_core.spec`.
The quantizer tests run on every Keras backend (marker ``backends``)."""

import math

import keras
import numpy as np
import pandas as pd
import pytest
from conftest import tensor, to_numpy, value_and_grads
from keras import ops

from lqs_core import metrics, models, procedures, spec
from lqs_core.layers import QConv2D, QDense, quantized_params
from lqs_core.procedures import budget
from lqs_core.procedures import layer_importance as li
from lqs_core.quantizers import CGMQQuantizer, FixedBitQuantizer, LSQQuantizer, cgmq
from lqs_core.results import load_result
from lqs_core.spec import RunConfig, run_id
from lqs_core.training import train


def _qrange(bits):
    return 2 ** (bits - 1), 2 ** (bits - 1) - 1


def test_one_definition_of_the_vocabulary():
    # lqs_core.spec holds the bit ranges and the CGMQ constants; the quantizers and procedures use them
    for bits in range(spec.BITS_MIN, spec.BITS_MAX + 1):
        assert spec.qrange(bits) == _qrange(bits)
    assert (spec.BITS_MIN, spec.BITS_MAX) == (2, 8) and spec.BIT_WIDTHS == (2, 4, 8, 16, 32)
    assert spec.MIN_RELATIVE_BUDGET == 1 / 16 and (spec.GATE_INIT, spec.GATE_MIN) == (5.5, 0.5)
    assert cgmq.BIT_WIDTHS is spec.BIT_WIDTHS and cgmq.GATE_MIN is spec.GATE_MIN
    assert budget.check_budget is spec.check_budget and li.check_bits is spec.check_bits
    assert procedures.ptq_quantize is procedures.ptq.ptq_quantize
    assert procedures.select_bits is li.select_bits and procedures.bop_cost is budget.bop_cost
    assert budget.cgmq_cost is budget.bop_cost and budget.ACTIVATION_BITS == 32


def _digits_arrays(n=None):
    from lqs_core import data

    _, (x, y) = data.load_arrays("digits")
    return (x, y) if n is None else (x[:n], y[:n])


# ---------------------------------------------------------------------------------------------------------------
# LSQ


def _lsq_numpy(v, s, bits):
    q_n, q_p = _qrange(bits)
    x = v / s
    below, above = x <= -q_n, x >= q_p
    inside = ~below & ~above
    dvds = np.where(below, -q_n, np.where(above, q_p, np.round(x) - x))
    return np.round(np.clip(x, -q_n, q_p)) * s, inside, dvds


@pytest.mark.backends
@pytest.mark.parametrize("granularity", ["scalar", "outputwise"])
@pytest.mark.parametrize("bits", [2, 3, 8])
def test_lsq_step_gradient_matches_closed_form(granularity, bits):
    rng = np.random.default_rng(bits)
    v = rng.normal(0.0, 1.0, (6, 5)).astype(np.float32)
    q = LSQQuantizer(bits=bits, granularity=granularity)
    q.build(v.shape)
    _, q_p = _qrange(bits)
    q.calibrate(v)  # s0 = 2 mean|v| / sqrt(Q_P) (a standalone quantizer would do this at its first call)
    axes = (0, 1) if granularity == "scalar" else (0,)
    np.testing.assert_allclose(q.scale.numpy(), 2 * np.abs(v).mean(axis=axes, keepdims=True) / math.sqrt(q_p),
                               rtol=1e-6)
    s = (rng.uniform(0.5, 1.5, q.scale.shape) / q_p).astype(np.float32)  # range ±(0.5..1.5): some v clipped
    q.scale.assign(s)
    dy = rng.normal(size=v.shape).astype(np.float32)
    out = to_numpy(q(tensor(v)))
    _, (gv, gs) = value_and_grads(lambda v, s: ops.sum(q(v) * tensor(dy)), [v, q.scale])

    expected, inside, dvds = _lsq_numpy(v, s, bits)
    assert inside.any() and (~inside).any()  # both branches of the gradient are exercised
    n = v.size // s.size  # N: per tensor numel, per output channel numel / out_channels
    assert q.slice_size == n == (30 if granularity == "scalar" else 6)
    g = 1.0 / math.sqrt(n * q_p)
    assert q.grad_scale == pytest.approx(g)
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(gv, dy * inside)  # STE inside the range, 0 where clipped
    np.testing.assert_allclose(gs, g * (dy * dvds).sum(axis=axes, keepdims=True), rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(to_numpy(q.integers(v)), np.round(np.clip(v / s, -_qrange(bits)[0], q_p)))


@pytest.mark.backends
def test_lsq_standalone_initializes_at_its_first_eager_call_only():
    v = np.random.default_rng(0).normal(size=(6, 5)).astype(np.float32)
    q = LSQQuantizer(bits=4)
    q.build(v.shape)
    q(v)  # eager: s0 = 2 mean|v| / sqrt(Q_P)
    np.testing.assert_allclose(q.scale.numpy(), 2 * np.abs(v).mean() / math.sqrt(7), rtol=1e-5)
    symbolic = LSQQuantizer(bits=4)
    symbolic.build((6, 5))
    symbolic(keras.Input((5,), batch_size=6))  # Keras' shape inference (graph, tracer or meta tensor): no init
    assert not symbolic._initialized and float(symbolic.scale.numpy().ravel()[0]) == 1.0


@pytest.mark.backends
def test_lsq_init_from_weights_and_on_float_transfer():
    layer = QConv2D(4, 3, kernel_quantizer={"method": "lsq", "bits": 4, "granularity": "outputwise"})
    layer.build((None, 6, 6, 2))
    kernel = layer.kernel.numpy()
    q = layer.kernel_quantizer
    assert q.slice_size == 3 * 3 * 2  # per output channel: kh * kw * cin
    np.testing.assert_allclose(q.scale.numpy(), 2 * np.abs(kernel).mean(axis=(0, 1, 2), keepdims=True) / math.sqrt(7),
                               rtol=1e-6)
    new = [np.full_like(kernel, 0.3), np.full((4,), -0.2, np.float32)]
    layer.load_float_weights(new)  # the "PTQ" start re-initializes from the loaded weights
    np.testing.assert_allclose(q.scale.numpy(), 2 * 0.3 / math.sqrt(7), rtol=1e-6)
    np.testing.assert_allclose(layer.bias_quantizer.scale.numpy(), 2 * 0.2 / math.sqrt(7), rtol=1e-6)


# ---------------------------------------------------------------------------------------------------------------
# Fixed-bit QAT and PTQ


@pytest.mark.backends
@pytest.mark.parametrize("granularity, axes", [("scalar", (0, 1, 2, 3)), ("outputwise", (0, 1, 2))])
@pytest.mark.parametrize("bits", [2, 4, 8])
def test_fixed_bit_quantizer_matches_numpy(granularity, axes, bits):
    rng = np.random.default_rng(bits)
    p = rng.normal(0.0, 0.05, (3, 3, 2, 4)).astype(np.float32)
    p[..., 1] = 0.0  # an all-zero output channel: s = 1, integers 0, no NaN
    q = FixedBitQuantizer(bits=bits, granularity=granularity)
    q.build(p.shape)
    q_n, q_p = _qrange(bits)
    m = np.abs(p).max(axis=axes, keepdims=True)
    s = np.where(m > 0, m / np.float32(q_p), 1.0).astype(np.float32)
    ints = np.round(np.clip(p / s, -q_n, q_p))
    np.testing.assert_array_equal(to_numpy(q.integers(p)), ints)
    np.testing.assert_allclose(q.scale.numpy(), s, rtol=1e-7)
    assert np.abs(ints).max() == q_p
    out = to_numpy(q(tensor(p)))
    _, (gp,) = value_and_grads(lambda p: ops.sum(q(p) * 3.0), [p])
    np.testing.assert_allclose(out, ints * s, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(gp, np.full_like(p, 3.0))  # STE, no gradient to s
    assert not q.trainable_weights


def _dense_forward(x, weights):
    h = np.maximum(x.reshape(len(x), -1) @ weights[0] + weights[1], 0.0)
    z = h @ weights[2] + weights[3]
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.mark.backends
@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("bits", [2, 3, 4, 8])
def test_ptq_quantize_matches_numpy(bits, per_channel):
    float_model = models.build("digits", None, seed=3)
    q_model = procedures.ptq_quantize(float_model, bits, per_channel=per_channel)
    assert [p[0] for p in quantized_params(q_model)] == ["dense_1/kernel", "dense_1/bias", "dense_2/kernel",
                                                         "dense_2/bias"]
    q_n, q_p = _qrange(bits)
    dequantized = []
    for (name, _, param, variable, quantizer), w in zip(quantized_params(q_model), float_model.get_weights()):
        np.testing.assert_array_equal(variable.numpy(), w)  # float weights copied, no retraining
        axes = (0,) if per_channel and param == "kernel" else tuple(range(w.ndim))
        s = np.abs(w).max(axis=axes, keepdims=True) / np.float32(q_p)
        ints = np.round(np.clip(w / s, -q_n, q_p))
        np.testing.assert_array_equal(metrics.integer_tensors(q_model)[name], ints.astype(np.int64))
        assert quantizer.granularity == ("outputwise" if per_channel and param == "kernel" else "scalar")
        dequantized.append(ints * s)
    x, y = _digits_arrays(64)
    np.testing.assert_allclose(to_numpy(q_model(x)), _dense_forward(x, dequantized), rtol=1e-4, atol=1e-6)
    if bits == 4:  # compiled for evaluate
        loss, acc = q_model.evaluate(x, y, verbose=0)
        assert 0.0 <= acc <= 1.0 and np.isfinite(loss)


# ---------------------------------------------------------------------------------------------------------------
# CGMQ


@pytest.mark.backends
def test_step_function_T_and_gates():
    g = np.array([-1.0, 0.0, 1e-6, 0.5, 1.0, 1.0001, 2.0, 2.5, 3.0, 3.5, 4.0, 4.0001, 5.5, 100.0])
    expected = [0, 0, 2, 2, 2, 4, 4, 8, 8, 16, 16, 32, 32, 32]
    np.testing.assert_array_equal(cgmq.step_bits(g), expected)
    np.testing.assert_array_equal(to_numpy(cgmq.step_bits_tf(tensor(g))), expected)
    assert cgmq.step_bits(1.5) == 4 and isinstance(cgmq.step_bits(1.5), int)
    for b in spec.BIT_WIDTHS:
        np.testing.assert_array_equal(to_numpy(cgmq.gate(tensor(g), b)), (np.array(expected) >= b).astype(float))


@pytest.mark.backends
def test_residual_decomposition_equals_direct_quantization():
    rng = np.random.default_rng(0)
    x = rng.normal(0.0, 1.0, (200,)).astype(np.float32)
    beta = np.float32(np.abs(x).max())
    for g in (0.5, 1.5, 2.5, 3.5, 5.5):  # one gate: 2, 4, 8, 16, 32 bits
        b = cgmq.step_bits(g)
        direct = to_numpy(cgmq.uniform_quantize(tensor(x), b, beta))
        np.testing.assert_allclose(to_numpy(cgmq.residual_quantize(x, g, beta)), direct, atol=1e-6 * beta)
        s = beta / (2 ** (b - 1) - 1)
        np.testing.assert_allclose(direct, np.round(np.clip(x / s, -(2 ** (b - 1)), 2 ** (b - 1) - 1)) * s, rtol=1e-6)
    assert len(np.unique(to_numpy(cgmq.residual_quantize(x, 1.5, beta)))) <= 15  # 4 bits: at most 15 of 16 levels
    gates = rng.choice([0.5, 1.5, 2.5, 3.5, 5.5], size=x.shape).astype(np.float32)  # one gate per element
    mixed = to_numpy(cgmq.residual_quantize(x, gates, beta))
    for g in (0.5, 1.5, 2.5, 3.5, 5.5):
        sel = gates == g
        direct = to_numpy(cgmq.uniform_quantize(tensor(x[sel]), cgmq.step_bits(g), beta))
        np.testing.assert_allclose(mixed[sel], direct, atol=1e-6 * beta)
    np.testing.assert_array_equal(to_numpy(cgmq.residual_quantize(x, -1.0, beta)), 0.0)  # T(g) = 0 would prune


def _expected_gate(kind, satisfied, g, grad_abs, w_abs, lr):
    if kind == 1:
        d = -abs(g) if satisfied else 1.0 / grad_abs
    elif kind == 2:
        d = -(abs(g) + w_abs) if satisfied else 1.0 / (grad_abs + w_abs)
    else:
        d = -(grad_abs + w_abs) if satisfied else 1.0 / (grad_abs + w_abs)
    return np.maximum(g - lr * d, 0.5)


@pytest.mark.backends
@pytest.mark.parametrize("gates", ["layer", "weight"])
@pytest.mark.parametrize("kind", [1, 2, 3])
@pytest.mark.parametrize("satisfied", [False, True])
def test_cgmq_gate_directions(gates, kind, satisfied):
    rng = np.random.default_rng(kind)
    p = rng.normal(0.0, 1.0, (4, 3)).astype(np.float32)
    dy = rng.normal(0.0, 1.0, p.shape).astype(np.float32)
    q = CGMQQuantizer(gates=gates, direction=kind, gate_lr=0.01, gate_init=2.5)
    q.build(p.shape)
    g0 = rng.uniform(1.2, 5.0, q.gate.shape).astype(np.float32)
    q.gate.assign(g0)
    q.satisfied.assign(float(satisfied))
    assert q.gate.overwrite_with_gradient and q.gate.trainable
    _, (gp, new_gate) = value_and_grads(lambda p, g: ops.sum(q(p) * tensor(dy)), [p, q.gate])
    np.testing.assert_allclose(gp, dy)  # STE
    if gates == "layer":
        expected = _expected_gate(kind, satisfied, g0, np.abs(dy).mean(), np.abs(p).mean(), 0.01)
    else:
        expected = _expected_gate(kind, satisfied, g0, np.abs(dy), np.abs(p), 0.01)
    np.testing.assert_allclose(new_gate, expected, rtol=1e-5)
    assert (np.asarray(new_gate) >= g0).all() if satisfied else (np.asarray(new_gate) <= g0).all()


@pytest.mark.backends
def test_cgmq_gate_written_through_any_optimizer():
    x, y = _digits_arrays(32)
    model = models.build("digits", quantizer={"method": "cgmq", "gate_init": 2.5}, granularity="scalar", seed=1)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy", run_eagerly=True)
    budget.set_satisfied(model, True)
    model.train_on_batch(x, y)
    for q in budget.cgmq_quantizers(model):  # Sat, dir_1: g <- g + 0.01 |g|, plain SGD despite Adam
        assert float(q.gate.numpy()) == pytest.approx(2.5 * 1.01, rel=1e-6)
    budget.set_satisfied(model, False)
    model.train_on_batch(x, y)
    for q in budget.cgmq_quantizers(model):  # Unsat, dir_1: 1 / mean|grad| is large -> down to the 0.5 floor
        assert 0.5 <= float(q.gate.numpy()) < 2.5 * 1.01


@pytest.mark.backends
def test_bop_cost_and_enforced_budget():
    inputs = keras.Input((8, 8, 1))
    h = QConv2D(4, 3, padding="valid", kernel_quantizer="cgmq", name="conv")(inputs)  # 6x6 output positions
    h = keras.layers.Flatten()(h)
    outputs = QDense(3, kernel_quantizer="cgmq", name="dense")(h)
    model = keras.Model(inputs, outputs)
    cost = procedures.cgmq_cost(model)
    n_conv, n_dense = 3 * 3 * 4 + 4, 144 * 3 + 3
    assert cost["tensors"]["conv/kernel"] == {"bits": 32, "positions": 36, "params": 36}
    assert cost["bops"] == 32 * 32 * (36 * n_conv + n_dense) and cost["relative_bops"] == 1.0
    assert procedures.enforce_budget(model, 0.1) == 4  # 32 -> 16 -> 8 -> 4 -> 2 bits
    assert budget.bop_cost(model)["relative_bops"] == pytest.approx(1 / 16)
    assert budget.bop_cost(model)["mean_bits"] == 2
    for q in budget.cgmq_quantizers(model):
        q.gate.assign(np.float32(1e3))  # a gate far above 4 still takes one level per round
    assert procedures.enforce_budget(model, 0.3) == 2  # 32 -> 16 -> 8 bits = 0.25
    assert procedures.assert_budget(model, 0.25)["relative_bops"] == pytest.approx(0.25)
    with pytest.raises(RuntimeError, match="budget"):
        procedures.assert_budget(model, 0.2)
    fixed = models.build("digits", quantizer={"method": "fixed", "bits": 4}, seed=0)
    assert procedures.cgmq_cost(fixed)["relative_bops"] == pytest.approx(4 / 32)
    with pytest.raises(ValueError, match="cannot be met"):
        procedures.enforce_budget(fixed, 0.1)  # no gates to lower


# ---------------------------------------------------------------------------------------------------------------
# Layer importance


def test_imprinting_accuracy_and_embedding():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(4), 25)
    centers = rng.normal(0.0, 1.0, (4, 16)) * 10
    e = centers[y] + rng.normal(0.0, 0.1, (100, 16))
    assert li.imprint_accuracy(e, y) == 1.0
    assert li.imprint_accuracy(rng.normal(size=(400, 16)), rng.integers(0, 4, 400)) < 0.5
    f = rng.normal(size=(5, 8, 8, 16))
    emb = li.embed(f, embedding_length=64)  # d = round(sqrt(64 / 16)) = 2: 2x2 average pooling
    expected = f.reshape(5, 2, 4, 2, 4, 16).mean(axis=(2, 4)).reshape(5, -1)
    np.testing.assert_allclose(emb, expected)
    assert li.embed(np.ones((3, 7)), 64).shape == (3, 7)


def test_select_bits_runs_algorithm_2():
    x, y = _digits_arrays(200)
    model = models.build("digits", quantizer={"method": "fixed", "bits": 4}, seed=0)
    start = [metrics.integer_tensors(model)[k].copy() for k in ("dense_1/kernel", "dense_2/kernel")]
    sel = procedures.select_bits(model, x, y, min_bits=2, apply=False)
    h = sel.history
    assert len(h) == 4 + 4 - 2 - 2 + 1  # N_max iterations; the last one has every layer at min_bits
    assert list(h["mean_bits"]) == [4.0, 3.5, 3.0, 2.5, 2.0] and pd.isna(h["lowered"].iloc[-1])
    assert set(sel.bits) == {"dense_1", "dense_2"} and all(2 <= b <= 4 for b in sel.bits.values())
    assert sel.accuracy == h["accuracy"].max()
    assert li.layer_bits(model) == {"dense_1": 4, "dense_2": 4}  # apply=False restores
    np.testing.assert_array_equal(metrics.integer_tensors(model)["dense_1/kernel"], start[0])
    sel = procedures.select_bits(model, x, y, target_mean_bits=2.5)
    assert sel.mean_bits <= 2.5 and li.layer_bits(model) == sel.bits
    for layer in ("dense_1", "dense_2"):
        assert int(np.abs(metrics.integer_tensors(model)[f"{layer}/kernel"]).max()) == 2 ** (sel.bits[layer] - 1) - 1
        config = model.get_layer(layer).get_config()  # the chosen bits are saved with the model
        assert config["kernel_quantizer"]["config"]["bits"] == config["bias_quantizer"]["config"]["bits"] == (
            sel.bits[layer])

    # three quantized layers: the paper never lowers the first and the last
    inputs = keras.Input((8, 8, 1))
    h = keras.layers.Flatten()(inputs)
    for i, units in enumerate((16, 16, 10)):
        h = QDense(units, activation="relu" if i < 2 else None, kernel_quantizer={"method": "fixed", "bits": 3},
                   name=f"q{i}")(h)
    three = keras.Model(inputs, h)
    sel = procedures.select_bits(three, x, y)
    assert sel.bits["q0"] == 3 and sel.bits["q2"] == 3 and 2 <= sel.bits["q1"] <= 3


# ---------------------------------------------------------------------------------------------------------------
# Serialization


@pytest.mark.backends
def test_keras_round_trip_with_comparator_quantizers(tmp_path):
    x, _ = _digits_arrays(16)
    specs = [{"method": "fixed", "bits": 5}, {"method": "lsq", "bits": 3},
             {"method": "cgmq", "gates": "weight", "direction": 3}]
    for i, spec in enumerate(specs):
        model = models.build("digits", quantizer=spec, granularity="outputwise", seed=i)
        if spec["method"] == "fixed":
            procedures.set_layer_bits(model.get_layer("dense_2"), 3)
        if spec["method"] == "lsq":
            q = model.get_layer("dense_1").kernel_quantizer
            q.scale.assign(q.scale.numpy() * 1.7)
        if spec["method"] == "cgmq":
            q = model.get_layer("dense_1").kernel_quantizer
            q.gate.assign(np.random.default_rng(0).uniform(0.5, 5.5, q.gate.shape).astype(np.float32))
        path = tmp_path / f"{spec['method']}.keras"
        model.save(path)
        loaded = keras.saving.load_model(path)
        np.testing.assert_allclose(to_numpy(loaded(x)), to_numpy(model(x)), rtol=1e-6, atol=1e-7)
        for name, ints in metrics.integer_tensors(model).items():
            np.testing.assert_array_equal(metrics.integer_tensors(loaded)[name], ints)
        for layer in ("dense_1", "dense_2"):
            for key in ("kernel_quantizer", "bias_quantizer"):
                assert loaded.get_layer(layer).get_config()[key] == model.get_layer(layer).get_config()[key]
        assert type(loaded.get_layer("dense_1").kernel_quantizer) is type(model.get_layer("dense_1").kernel_quantizer)
        if spec["method"] == "fixed":
            assert loaded.get_layer("dense_2").kernel_quantizer.bits == 3
        if spec["method"] == "cgmq":
            assert loaded.get_layer("dense_1").kernel_quantizer.gate.overwrite_with_gradient


# ---------------------------------------------------------------------------------------------------------------
# Bad input


@pytest.mark.parametrize(
    "make",
    [
        lambda: spec.check_bits(1),
        lambda: spec.check_bits(9),
        lambda: spec.check_bits(4.5),
        lambda: spec.check_bits(True),
        lambda: FixedBitQuantizer(bits=9),
        lambda: LSQQuantizer(bits=1),
        lambda: QDense(4, kernel_quantizer={"method": "fixed", "bits": 16}),
        lambda: QDense(4, kernel_quantizer="magic"),
        lambda: QDense(4, kernel_quantizer={"method": "lsq", "bitz": 4}),
        lambda: CGMQQuantizer(direction=4),
        lambda: CGMQQuantizer(gates="channel"),
        lambda: CGMQQuantizer(gate_lr=-0.01),
        lambda: procedures.ptq_quantize(models.build("digits", None), 9),
        lambda: procedures.ptq_quantize(models.build("digits"), 4),  # already quantized
        lambda: spec.check_budget(-0.1),
        lambda: spec.check_budget(0.01),  # below 1/16: no model meets it
        lambda: spec.check_budget(1.5),  # above 1: more than the float model costs
        lambda: spec.check_budget(float("nan")),
        lambda: spec.check_budget(True),
        lambda: procedures.CGMQConstraint(-1.0),
        lambda: procedures.CGMQConstraint(2.0),
        lambda: procedures.enforce_budget(models.build("digits", quantizer="cgmq"), -0.5),
        lambda: procedures.select_bits(models.build("digits", quantizer="lsq"), *_digits_arrays(8)),
        lambda: procedures.set_layer_bits(models.build("digits", quantizer="fixed").get_layer("dense_1"), 1),
    ],
)
def test_bad_comparator_input_raises(make):
    with pytest.raises(ValueError):
        make()


def test_check_budget_bounds_and_messages():
    assert spec.check_budget(1 / 16) == 1 / 16 and spec.check_budget(1) == 1.0 and spec.check_budget(0.5) == 0.5
    with pytest.raises(ValueError, match=r"budget 1.5 is above 1"):
        spec.check_budget(1.5)
    with pytest.raises(ValueError, match=r"budget 0.01 is below 0.0625"):
        spec.check_budget(0.01)
    assert spec.check_bits(4.0) == 4 and spec.check_bits(np.int64(3)) == 3


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"method": "magic"}, "method"),
        ({"method": "fixed"}, "bits"),
        ({"method": "lsq", "bits": 9}, "bits"),
        ({"method": "lsq", "bits": 1}, "bits"),
        ({"bits": 4}, "bits"),  # bits with the nested method
        ({"method": "cgmq"}, "budget"),
        ({"method": "cgmq", "budget": -0.1}, "budget"),
        ({"method": "cgmq", "budget": 0.01}, "budget"),
        ({"method": "cgmq", "budget": 1.5}, "budget"),
        ({"method": "fixed", "bits": 4, "budget": 0.5}, "budget"),
        ({"method": "layer_importance", "bits": 4, "budget": 5}, "budget"),
        ({"method": "lsq", "bits": 4, "threshold": 1e-10}, "threshold"),
        ({"method": "lsq", "bits": 4, "scheme": "float"}, "method"),
        ({"method": "cgmq", "budget": 0.2, "method_options": {"gates": "channel"}}, "method_options"),
        ({"method": "cgmq", "budget": 0.2, "method_options": {"colour": 1}}, "method_options"),
        ({"method": "fixed", "bits": 4, "method_options": {"min_bits": 2}}, "method_options"),
        ({"method": "layer_importance", "bits": 3, "method_options": {"min_bits": 4}}, "min_bits"),
        ({"scheme": "ptq_eval", "bits": 4}, "float_weights"),
        ({"scheme": "ptq_eval", "bits": 4, "float_weights": "x", "method": "lsq"}, "method"),
        ({"scheme": "ptq_eval", "float_weights": "x"}, "bits"),
    ],
)
def test_bad_run_config_raises(changes, field):
    with pytest.raises(ValueError, match=field):
        RunConfig(**{"dataset": "digits", **changes})


def test_run_config_round_trip_and_ids():
    configs = {
        "digits-fixed-outputwise-b4-qat-s42": RunConfig(dataset="digits", method="fixed", bits=4,
                                                        granularity="outputwise"),
        "mnist-lsq-scalar-b3-ptq-s1": RunConfig(dataset="mnist", method="lsq", bits=3, granularity="scalar",
                                                mode="ptq", float_weights="/f", seed=1),
        "digits-cgmq-scalar-bud0.1-gweight-dir3-qat-s42": RunConfig(
            dataset="digits", method="cgmq", budget=0.1, granularity="scalar",
            method_options={"gates": "weight", "direction": 3}),
        "digits-layer_importance-rowwise-b4-avg3-ft1-qat-s42": RunConfig(
            dataset="digits", method="layer_importance", bits=4, budget=3, method_options={"finetune_epochs": 1}),
        "cifar10-ptq_eval-outputwise-b8-s42": RunConfig(dataset="cifar10", scheme="ptq_eval", bits=8,
                                                        granularity="outputwise", float_weights="/f"),
    }
    for rid, c in configs.items():
        assert run_id(c) == rid
        assert RunConfig.from_dict(c.to_dict()) == c
    ptq = configs["cifar10-ptq_eval-outputwise-b8-s42"]
    assert ptq.method == "fixed" and ptq.mode == "ptq"
    assert ptq.quantizer_spec == {"method": "fixed", "bits": 8, "granularity": "outputwise"}
    cg = configs["digits-cgmq-scalar-bud0.1-gweight-dir3-qat-s42"]
    assert cg.method_options["gate_lr"] == 0.001
    assert cg.quantizer_spec == {"method": "cgmq", "granularity": "scalar", "gates": "weight", "direction": 3,
                                 "gate_lr": 0.001, "gate_init": spec.GATE_INIT}
    assert configs["mnist-lsq-scalar-b3-ptq-s1"].quantizer_spec == {"method": "lsq", "bits": 3,
                                                                     "granularity": "scalar"}
    li_config = configs["digits-layer_importance-rowwise-b4-avg3-ft1-qat-s42"]
    assert li_config.quantizer_spec == {"method": "fixed", "bits": 4, "granularity": "rowwise"}
    assert RunConfig(dataset="digits").quantizer_spec == {
        "method": "nested", "granularity": "rowwise", "threshold": 0.0, "scale_init": spec.DEFAULT_SCALE,
        "scale_min": spec.DEFAULT_SCALE}
    assert RunConfig(dataset="digits", scheme="float").quantizer_spec is None


# ---------------------------------------------------------------------------------------------------------------
# One short training run per method (digits, seconds each), the metrics on each


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    short = dict(dataset="digits", max_train=640, verbose=0)
    out = tmp_path_factory.mktemp("runs")
    done = {}

    def run(key, out_dir=None, **fields):
        verbose = fields.pop("verbose", 0)
        if key not in done:
            done[key] = train(RunConfig(**fields), out_dir=out_dir, verbose=verbose)
            done[key].out_dir = out_dir
        return done[key]

    def get(key):
        if key == "fixed":
            return run(key, **short, method="fixed", bits=4, granularity="outputwise", epochs=1)
        if key == "lsq":
            return run(key, **short, method="lsq", bits=3, granularity="scalar", epochs=1)
        if key == "cgmq":  # tight budget; the second epoch's Sat updates (x1.05 per step) overshoot it again
            return run(key, out_dir=out / "cgmq", **short, method="cgmq", budget=0.1, epochs=2,
                       method_options={"gate_lr": 0.05})
        if key == "layer_importance":
            return run(key, **short, method="layer_importance", bits=4, epochs=1,
                       method_options={"finetune_epochs": 1, "imprint_samples": 256})
        if key == "float":
            return run(key, out_dir=out / "float", **short, scheme="float", epochs=1)
        if key == "ptq_eval":
            get("float")
            return run(key, **short, scheme="ptq_eval", bits=4, granularity="outputwise",
                       float_weights=str(out / "float"))
        raise KeyError(key)

    return get


def _check_numbers(result):
    summary = metrics.summary(result.model)
    assert summary["tensor"].iloc[-1] == "total"
    report = metrics.report(result.model)
    for key in ("unique_integers", "bits_fixed", "entropy_bits_per_weight", "packed_bytes", "zip_bytes"):
        assert key in report and key in result.report
        assert report[key] == pytest.approx(result.report[key])
    assert 0.0 <= result.report["val_accuracy"] <= 1.0
    assert 0 < result.report["relative_bops"] <= 1 and result.report["mean_weight_bits"] >= 2
    return summary, report


@pytest.mark.parametrize("method, bits", [("fixed", 4), ("lsq", 3)])
def test_fixed_and_lsq_runs(runs, method, bits):
    r = runs(method)
    summary, report = _check_numbers(r)
    assert report["bits_fixed"] <= bits and report["unique_integers"] <= 2 ** bits
    assert r.report["relative_bops"] == pytest.approx(bits / 32) and r.report["mean_weight_bits"] == bits
    assert set(summary["rounding"].iloc[:-1]) == {"round"}
    assert r.report["val_accuracy"] > 0.5
    assert r.report["val_accuracy"] == pytest.approx(r.model.evaluate(*_digits_arrays(), verbose=0)[1], abs=1e-6)


def test_cgmq_run_meets_budget(runs):
    r = runs("cgmq")
    _check_numbers(r)
    assert r.report["relative_bops"] <= 0.1 and r.report["budget"] == 0.1
    assert procedures.assert_budget(r.model, 0.1)["relative_bops"] == r.report["relative_bops"]
    assert list(r.history["budget_satisfied"]) == [1.0, 0.0]  # epoch 2 ended over budget ...
    assert r.report["enforced_rounds"] >= 1  # ... so the end of training enforced it
    assert r.report["val_accuracy"] == pytest.approx(r.model.evaluate(*_digits_arrays(), verbose=0)[1], abs=1e-6)
    again = load_result(r.out_dir)  # model.keras with the gates, the optimizer and metrics.json
    assert again.report["relative_bops"] == r.report["relative_bops"]
    assert procedures.cgmq_cost(again.model)["relative_bops"] == r.report["relative_bops"]


def test_layer_importance_run_returns_valid_bits(runs):
    r = runs("layer_importance")
    _check_numbers(r)
    bits = r.report["layer_bits"]
    assert set(bits) == {"dense_1", "dense_2"} and all(2 <= b <= 4 for b in bits.values())
    assert li.layer_bits(r.model) == bits and r.report["mean_layer_bits"] == np.mean(list(bits.values()))
    assert list(r.history["epoch"]) == [1, 2]  # QAT epoch + fine-tuning epoch at the chosen bits
    assert 0 <= r.report["qat_val_accuracy"] <= 1


def test_ptq_eval_run(runs):
    base, r = runs("float"), runs("ptq_eval")
    _check_numbers(r)
    assert r.report["epochs"] == 0 and len(r.history) == 1 and r.config.mode == "ptq"
    assert r.report["bits_fixed"] <= 4 and r.report["relative_bops"] == pytest.approx(4 / 32)
    assert abs(r.report["val_accuracy"] - base.report["val_accuracy"]) < 0.1  # 4-bit PTQ keeps most accuracy
