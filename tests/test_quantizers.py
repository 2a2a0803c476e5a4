"""Numerical tests of the nested quantizer (docs/method.md §1): forward, STE, ratio-threshold scale gradient, granularities.

The scale gradient is checked against :func:`reference_scale_grad`, a NumPy re-implementation written directly from
docs/method.md §1.1 with an explicit loop over the scale elements (independent of the vectorised ``keras.ops`` code). Every
test here runs on every Keras backend (marker ``backends``; gradients through ``conftest.value_and_grads``).
"""

import math

import keras
import numpy as np
import pytest
from conftest import tensor, to_numpy, value_and_grads
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from keras import ops

from lqs_core.granularity import GRANULARITIES, reduce_axes, scale_axis, scale_shape
from lqs_core import spec
from lqs_core.quantizers import (
    QUANTIZERS,
    CGMQQuantizer,
    FixedBitQuantizer,
    LSQQuantizer,
    NestedQuantizer,
    Quantizer,
    ScaleMin,
    get,
    method_of,
    nested,
    normalize,
    registry,
    serialize,
    serialize_spec,
)
from lqs_core.spec import DEFAULT_SCALE, EPSILON

pytestmark = pytest.mark.backends

EPS32 = float(np.finfo(np.float32).eps)

# docs/method.md §1.2: expected scale shapes, Dense (in=3, out=5), Conv2D (kh=2, kw=3, cin=4, cout=5), bias (5,).
DENSE = (3, 5)
CONV = (2, 3, 4, 5)
EXPECTED_SHAPES = {
    ("scalar", DENSE): (1, 1),
    ("rowwise", DENSE): (3, 1),
    ("columnwise", DENSE): (1, 5),
    ("outputwise", DENSE): (1, 5),
    ("scalar", CONV): (1, 1, 1, 1),
    ("rowwise", CONV): (2, 1, 1, 1),
    ("columnwise", CONV): (1, 3, 1, 1),
    ("channelwise", CONV): (1, 1, 4, 1),
    ("outputwise", CONV): (1, 1, 1, 5),
    ("scalar", (5,)): (1,),
}


# --------------------------------------------------------------------------------------------------------------
# NumPy reference (docs/method.md §1.1)
# --------------------------------------------------------------------------------------------------------------


def reference_forward(p, s):
    """``P_q = floor(P / s)``, ``P_r = P_q * s`` in float32, as docs/method.md §1 says."""
    p = np.asarray(p, np.float32)
    s = np.asarray(s, np.float32)
    p_q = np.floor(p / s).astype(np.float32)
    return p_q, (p_q * s).astype(np.float32)


def reference_scale_grad(p, s, dy, lam, return_info=False):
    """``dL/ds`` of docs/method.md §1.1, one scale element at a time.

    For every scale index k, its slice is every element of P whose index agrees with k on the axes where the scale
    has size > 1 (broadcasting). Per element r = |dy| / max(eps, |P_r|); g_e = -tanh(lam - r) if r < lam else 0;
    g_k = -tanh(lam) if every r >= lam in the slice, else mean(g_e); dL/ds_k = g_k * max|P_q|.
    """
    p = np.asarray(p, np.float32)
    s = np.asarray(s, np.float32)
    dy = np.asarray(dy, np.float32)
    p_q, p_r = reference_forward(p, s)
    s_full = np.broadcast_to(s, p.shape)
    grad = np.zeros(s.shape, np.float64)
    info = {"all_sensitive_slices": 0, "mixed_slices": 0, "below": 0, "above": 0, "zero_pr": int(np.sum(p_r == 0))}
    for k in np.ndindex(*s.shape):
        mask = np.ones(p.shape, bool)
        for ax, (kk, size) in enumerate(zip(k, s.shape)):
            if size > 1:
                sel = np.zeros(p.shape[ax], bool)
                sel[kk] = True
                shape = [1] * p.ndim
                shape[ax] = p.shape[ax]
                mask &= sel.reshape(shape)
        assert np.all(s_full[mask] == s[k])
        d = np.abs(dy[mask].astype(np.float64))
        denom = np.maximum(EPS32, np.abs(p_r[mask].astype(np.float64)))
        r = d / denom
        g_e = [(-math.tanh(lam - ri) if ri < lam else 0.0) for ri in r]
        n_below = sum(ri < lam for ri in r)
        info["below"] += n_below
        info["above"] += len(r) - n_below
        if n_below == 0:
            g_k = -math.tanh(lam)
            info["all_sensitive_slices"] += 1
        else:
            g_k = sum(g_e) / len(g_e)
            if n_below < len(r):
                info["mixed_slices"] += 1
        m_k = float(np.max(np.abs(p_q[mask])))
        grad[k] = g_k * m_k
    return (grad, info) if return_info else grad


# --------------------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------------------


def make_quantizer(shape, s, threshold, granularity="scalar", axis=None, **kwargs):
    q = NestedQuantizer(granularity=granularity, threshold=threshold, axis=axis, **kwargs)
    q.build(tuple(shape))
    q.scale.assign(np.broadcast_to(np.asarray(s, np.float32), q.scale.shape))
    return q


def tape_grads(q, p, c):
    """``P_r`` and the gradients of ``loss = sum(c * P_r)`` (so ``dy = c``) w.r.t. P and the scale."""
    p = np.asarray(p, np.float32)
    c = np.asarray(c, np.float32)
    _, (dp, ds) = value_and_grads(lambda p, s: ops.sum(tensor(c) * q(p)), [p, q.scale])
    return to_numpy(q(tensor(p))), dp, ds


def branch_case(shape, granularity, axis=None, lam=1.0, seed=0):
    """P, s, c where, with threshold ``lam``: some elements have r < lam, some r >= lam, some P_r == 0, at least one
    slice is all-sensitive and at least one slice is mixed."""
    rng = np.random.default_rng(seed)
    kept = scale_axis(granularity, len(shape), axis)
    s_shape = scale_shape(shape, granularity, axis)
    s = rng.uniform(0.05, 0.2, size=s_shape).astype(np.float32)
    p = rng.normal(0.0, 1.0, size=shape).astype(np.float32)
    # elements with |P| < s quantize to 0 (P_r == 0) when P >= 0
    flat = p.reshape(-1)
    flat[:: max(1, flat.size // 4)] = 0.01
    p_r = reference_forward(p, s)[1]
    # dy = |P_r| * u with u log-uniform around 1: about half the elements below, half above the threshold
    u = np.exp(rng.uniform(np.log(0.05), np.log(20.0), size=shape)) * lam
    c = (np.maximum(np.abs(p_r), EPS32) * u * rng.choice([-1.0, 1.0], size=shape)).astype(np.float32)
    # make the first slice all-sensitive (or the whole tensor mixed for a single scale)
    if kept is not None and s_shape[kept] > 1:
        idx = [slice(None)] * len(shape)
        idx[kept] = 0
        c[tuple(idx)] = (np.maximum(np.abs(p_r[tuple(idx)]), EPS32) * 50.0 * lam).astype(np.float32)
    return p, s, c


def float32_slack(p, s, lam):
    """How far a float32 implementation may lie from the float64 reference, per scale element: ``r`` is rounded to
    float32 (a backend may divide with one rounding more, e.g. XLA), ``-tanh(lam - r)`` moves by as much as ``r``
    does, and near ``r = lam`` that is a large part of it. So ``|Δds_k| <= max|P_q| * lam * 4 eps``."""
    p_q, _ = reference_forward(p, s)
    axes = tuple(i for i, d in enumerate(np.shape(s)) if d == 1)
    return np.max(np.abs(p_q), axis=axes, keepdims=True) * lam * 4 * EPS32


def assert_grad_matches(ds, ref, slack=0.0):
    """``ds`` equals the reference to ``rtol=2e-5``, give or take ``slack`` (:func:`float32_slack`)."""
    ok = np.abs(ds - ref) <= 1e-30 + 2e-5 * np.abs(ref) + slack
    if not np.all(ok):
        np.testing.assert_allclose(ds, ref, rtol=2e-5, atol=1e-30)


# --------------------------------------------------------------------------------------------------------------
# forward
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("granularity", ["scalar", "rowwise", "columnwise", "channelwise", "outputwise"])
def test_forward_floor_and_integers_conv(granularity):
    rng = np.random.default_rng(1)
    p = rng.normal(0, 0.5, CONV).astype(np.float32)
    s = rng.uniform(0.01, 0.3, scale_shape(CONV, granularity)).astype(np.float32)
    q = make_quantizer(CONV, s, 1e-3, granularity)
    p_r = to_numpy(q(tensor(p)))
    p_q_ref, p_r_ref = reference_forward(p, s)
    np.testing.assert_array_equal(to_numpy(q.integers(tensor(p))), p_q_ref)
    np.testing.assert_allclose(p_r, p_r_ref, rtol=1e-6)
    # floor, not round: the integers are never above P/s and negative values go down
    assert np.all(p_q_ref <= p / s + 1e-6)
    assert np.any(np.floor(p / s) != np.round(p / s))


def test_forward_hand_example_floor_not_round():
    # P = [-0.3, -0.1, 0.0, 0.1, 0.29], s = 0.2:
    # P/s = [-1.5, -0.5, 0, 0.5, 1.45] -> floor = [-2, -1, 0, 0, 1] -> P_r = [-0.4, -0.2, 0, 0, 0.2]
    q = make_quantizer((5,), 0.2, 0.0)
    p = tensor([-0.3, -0.1, 0.0, 0.1, 0.29])
    np.testing.assert_array_equal(to_numpy(q.integers(p)), [-2, -1, 0, 0, 1])
    np.testing.assert_allclose(to_numpy(q(p)), [-0.4, -0.2, 0.0, 0.0, 0.2], rtol=1e-6)
    # rounding="round" is the option, not the default (half to even, as NumPy and TensorFlow, on every backend)
    qr = make_quantizer((5,), 0.2, 0.0, rounding="round")
    np.testing.assert_array_equal(to_numpy(qr.integers(p)), [-2, -0, 0, 0, 1])
    np.testing.assert_allclose(to_numpy(qr(p)), np.round(to_numpy(p) / np.float32(0.2)) * np.float32(0.2), rtol=1e-6)
    half = make_quantizer((4,), 0.5, 0.0, rounding="round")  # P/s = 0.5, 1.5, 2.5, -0.5: exact halves
    np.testing.assert_array_equal(to_numpy(half.integers(tensor([0.25, 0.75, 1.25, -0.25]))), [0, 2, 2, -0])


def test_defaults_match_spec():
    q = NestedQuantizer()
    assert q.granularity == "scalar" and q.threshold == 0.0 and q.rounding == "floor"
    assert q.scale_init == pytest.approx(100 * EPS32) and q.scale_min == pytest.approx(100 * EPS32)
    assert DEFAULT_SCALE == pytest.approx(1.1920929e-5) and EPSILON == EPS32
    q.build((3, 4))
    np.testing.assert_allclose(q.scale.numpy(), np.full((1, 1), 100 * EPS32, np.float32))
    assert [v.name for v in q.trainable_weights] == ["scale"] and len(q.weights) == 1
    # one definition of the constants, in lqs_core.spec; the quantizer module uses it
    assert nested.EPSILON is spec.EPSILON and nested.DEFAULT_SCALE is spec.DEFAULT_SCALE
    assert NestedQuantizer.OPTIONS == {"threshold": 0.0, "scale_init": spec.DEFAULT_SCALE,
                                       "scale_min": spec.DEFAULT_SCALE, "rounding": "floor"}
    assert isinstance(q, Quantizer) and q.slice_size == 12


@pytest.mark.parametrize("key", list(EXPECTED_SHAPES))
def test_scale_shape_table(key):
    granularity, shape = key
    q = NestedQuantizer(granularity=granularity)
    q.build(shape)
    assert tuple(q.scale.shape) == EXPECTED_SHAPES[key]
    assert scale_shape(shape, granularity) == EXPECTED_SHAPES[key]


def test_explicit_axis_overrides_granularity():
    for axis, expected in [(0, (2, 1, 1, 1)), (2, (1, 1, 4, 1)), (-1, (1, 1, 1, 5)), (3, (1, 1, 1, 5))]:
        q = NestedQuantizer(granularity="scalar", axis=axis)
        q.build(CONV)
        assert tuple(q.scale.shape) == expected
        assert q.slice_axes == reduce_axes(4, axis % 4)
    assert set(GRANULARITIES) == {"scalar", "rowwise", "columnwise", "channelwise", "outputwise"}


# --------------------------------------------------------------------------------------------------------------
# backward: hand-checked cases
# --------------------------------------------------------------------------------------------------------------


def test_hand_checked_2x2_rowwise_and_scalar():
    # P = [[0.75, -0.375], [0, 0.875]], rowwise s = [[0.25], [0.5]], lambda = 1, dy = c = [[1.5, 1.25], [1e-8, 0.75]]
    # P/s   = [[3, -1.5], [0, 1.75]]  -> P_q = [[3, -2], [0, 1]],  P_r = [[0.75, -0.5], [0, 0.5]]
    # r     = [[1.5/0.75, 1.25/0.5], [1e-8/eps, 0.75/0.5]] = [[2, 2.5], [0.0838861, 1.5]]
    # row 0: every r >= 1 -> all-sensitive fallback g = -tanh(1) = -0.761594; m = 3      -> ds_0 = -2.284782
    # row 1: mixed, P_r == 0 uses eps: g = (-tanh(1 - 0.0838861) + 0) / 2 = -0.362027; m = 1 -> ds_1 = -0.362027
    p = np.array([[0.75, -0.375], [0.0, 0.875]], np.float32)
    c = np.array([[1.5, 1.25], [1e-8, 0.75]], np.float32)
    q = make_quantizer((2, 2), [[0.25], [0.5]], 1.0, "rowwise")
    p_r, dp, ds = tape_grads(q, p, c)
    np.testing.assert_array_equal(p_r, [[0.75, -0.5], [0.0, 0.5]])
    np.testing.assert_allclose(ds, [[-2.2847824678672946], [-0.3620269121252013]], rtol=1e-6)
    np.testing.assert_array_equal(dp, c)
    # scalar s = 0.25 on the same P: P_q = [[3, -2], [0, 3]], P_r = [[0.75, -0.5], [0, 0.75]]
    # r = [[2, 2.5], [0.0838861, 1]] -> only the P_r == 0 element is below lambda (r = 1 is *not* below):
    # g = -tanh(0.9161139) / 4 = -0.181013; m = 3 -> ds = -0.543040
    q = make_quantizer((2, 2), 0.25, 1.0, "scalar")
    p_r, dp, ds = tape_grads(q, p, c)
    np.testing.assert_array_equal(p_r, [[0.75, -0.5], [0.0, 0.75]])
    np.testing.assert_allclose(ds, [[-0.5430403681878019]], rtol=1e-6)
    np.testing.assert_allclose(ds, reference_scale_grad(p, 0.25, c, 1.0), rtol=1e-6)


def test_ratio_equal_to_lambda_counts_as_sensitive():
    # P = [0.5, 0.75], s = 0.25 -> P_q = [2, 3], P_r = [0.5, 0.75]; dy = [0.5, 3.0] -> r = [1, 4], lambda = 1.
    # r >= lambda everywhere (r == lambda included) -> fallback: ds = -tanh(1) * 3 = -2.284782 (a strict '>' would
    # give mean(-tanh(0), 0) * 3 = 0 instead).
    q = make_quantizer((2,), 0.25, 1.0)
    _, _, ds = tape_grads(q, [0.5, 0.75], [0.5, 3.0])
    np.testing.assert_allclose(ds, [-2.2847824678672946], rtol=1e-6)


def test_epsilon_substitution_uses_max():
    # docs/method.md §1.1: r = |dy| / max(eps, |P_r|). With a scale below eps (custom scale_min), 0 < |P_r| < eps and the
    # denominator is eps, not |P_r|: P = 1.5e-9, s = 1e-9 -> P_q = 1, P_r = 1e-9.
    # dy = 1e-8: r = 1e-8 / eps = 0.0839 < lambda = 0.5 -> g = -tanh(0.5 - 0.0839), m = 1.
    # (Dividing by |P_r| = 1e-9 would give r = 10 >= lambda and the fallback -tanh(0.5) instead.)
    q = make_quantizer((1,), 1e-9, 0.5, scale_init=1e-9, scale_min=1e-9)
    _, _, ds = tape_grads(q, [1.5e-9], [1e-8])
    r = np.float32(1e-8) / EPS32
    np.testing.assert_allclose(ds, [-math.tanh(0.5 - r)], rtol=1e-5)


def test_all_elements_zero_use_epsilon():
    # every P_r == 0 (|P| < s): r = |dy| / eps; dy = 0 -> r = 0 < lambda -> g = -tanh(lambda); but m = max|P_q| = 0
    q = make_quantizer((2, 3), 1.0, 0.3, "rowwise")
    p = np.array([[0.1, 0.2, 0.3], [0.0, 0.5, 0.9]], np.float32)
    _, _, ds = tape_grads(q, p, np.zeros((2, 3)))
    np.testing.assert_array_equal(ds, np.zeros((2, 1)))
    # P_r == 0 everywhere except one element per row; dy tiny: r = 1e-9/eps < lambda for the zeros
    p = np.array([[0.1, 0.2, 2.5], [-0.5, 0.5, 0.9]], np.float32)  # P_q = [[0,0,2],[-1,0,0]]
    c = np.full((2, 3), 1e-9, np.float32)
    _, _, ds = tape_grads(q, p, c)
    r0 = np.float32(1e-9) / EPS32
    expected_row0 = -(2 * math.tanh(0.3 - r0) + math.tanh(0.3 - 1e-9 / 2.0)) / 3 * 2
    expected_row1 = -(2 * math.tanh(0.3 - r0) + math.tanh(0.3 - 1e-9 / 1.0)) / 3 * 1
    np.testing.assert_allclose(ds, [[expected_row0], [expected_row1]], rtol=1e-5)


@pytest.mark.parametrize("granularity,shape", [("scalar", DENSE), ("rowwise", CONV), ("channelwise", CONV)])
def test_all_sensitive_fallback(granularity, shape):
    # dy huge everywhere -> every r >= lambda -> each slice gets -tanh(lambda) * max|P_q| (not 0)
    rng = np.random.default_rng(3)
    p = rng.normal(0, 1, shape).astype(np.float32)
    s = np.full(scale_shape(shape, granularity), 0.1, np.float32)
    lam = 0.7
    q = make_quantizer(shape, s, lam, granularity)
    _, _, ds = tape_grads(q, p, np.full(shape, 1e9, np.float32))
    p_q = np.floor(p / s)
    m = np.max(np.abs(p_q), axis=tuple(reduce_axes(len(shape), scale_axis(granularity, len(shape)))), keepdims=True)
    np.testing.assert_allclose(ds, -math.tanh(lam) * m, rtol=1e-6)
    assert np.all(ds < 0)
    ref, info = reference_scale_grad(p, s, np.full(shape, 1e9), lam, return_info=True)
    assert info["below"] == 0 and info["all_sensitive_slices"] == s.size
    assert_grad_matches(ds, ref)


def test_realistic_magnitudes_small_lambda():
    # thesis regime: lambda ~ 1e-10, dy ~ 1e-10..1e-6, P ~ 0.05, s ~ 1e-5: gradients ~ -1e-10 * max|P_q|
    rng = np.random.default_rng(4)
    p = rng.normal(0, 0.05, DENSE).astype(np.float32)
    s = np.full((3, 1), DEFAULT_SCALE, np.float32)
    c = (10.0 ** rng.uniform(-16, -12, DENSE)).astype(np.float32)
    lam = 1e-10
    q = make_quantizer(DENSE, s, lam, "rowwise")
    _, _, ds = tape_grads(q, p, c)
    ref, info = reference_scale_grad(p, s, c, lam, return_info=True)
    assert info["below"] > 0 and info["above"] > 0
    assert_grad_matches(ds, ref, float32_slack(p, s, lam))
    assert np.all(ds < 0) and np.all(np.abs(ds) < 1e-5)


# --------------------------------------------------------------------------------------------------------------
# backward: every granularity, Dense / Conv / bias shapes, against the reference
# --------------------------------------------------------------------------------------------------------------

CASES = [
    ("scalar", None, DENSE),
    ("rowwise", None, DENSE),
    ("columnwise", None, DENSE),
    ("outputwise", None, DENSE),
    ("scalar", None, CONV),
    ("rowwise", None, CONV),
    ("columnwise", None, CONV),
    ("channelwise", None, CONV),
    ("outputwise", None, CONV),
    ("scalar", 2, CONV),  # explicit axis
    ("scalar", -1, DENSE),  # explicit negative axis
    ("scalar", None, (5,)),  # bias
    ("rowwise", None, (6,)),  # 1-D parameter with one scale per element
]


@pytest.mark.parametrize("granularity,axis,shape", CASES)
@pytest.mark.parametrize("lam", [1.0, 1e-3])
def test_scale_gradient_matches_reference(granularity, axis, shape, lam):
    p, s, c = branch_case(shape, granularity, axis, lam=lam, seed=len(shape) + (axis or 0))
    q = make_quantizer(shape, s, lam, granularity, axis=axis)
    p_r, dp, ds = tape_grads(q, p, c)
    ref, info = reference_scale_grad(p, s, c, lam, return_info=True)
    # the cases are really exercised
    assert info["below"] > 0 and info["above"] > 0, info
    assert info["zero_pr"] > 0, info
    if s.size > 1 and shape != (6,):
        assert info["all_sensitive_slices"] > 0 and info["mixed_slices"] > 0, info
    # forward, STE, scale gradient
    np.testing.assert_allclose(p_r, reference_forward(p, s)[1], rtol=1e-6)
    np.testing.assert_array_equal(dp, c)
    assert ds.shape == s.shape
    assert_grad_matches(ds, ref, float32_slack(p, s, lam))
    assert np.all(ds <= 0)


@pytest.mark.parametrize("granularity,axis,shape", CASES)
def test_lambda_zero_gives_exactly_zero_scale_gradient(granularity, axis, shape):
    p, s, c = branch_case(shape, granularity, axis, lam=1.0, seed=7)
    q = make_quantizer(shape, s, 0.0, granularity, axis=axis)
    _, dp, ds = tape_grads(q, p, c)
    assert ds.shape == s.shape
    assert np.all(ds == 0.0)
    np.testing.assert_array_equal(dp, c)
    # and so an optimizer step leaves the scale where it is
    before = q.scale.numpy().copy()
    keras.optimizers.SGD(learning_rate=1e6).apply_gradients([(tensor(ds), q.scale)])
    np.testing.assert_array_equal(q.scale.numpy(), before)


def test_gradient_through_traced_step_and_variable_input():
    # the host layers pass a variable (not a tensor) and train inside a traced step (tf.function, jax.jit)
    p, s, c = branch_case(CONV, "channelwise", lam=1.0, seed=11)
    q = make_quantizer(CONV, s, 1.0, "channelwise")
    var = keras.Variable(p)
    _, (dp, ds) = value_and_grads(lambda v, s: ops.sum(tensor(c) * q(v)), [var, q.scale], jit=True)
    np.testing.assert_array_equal(dp, c)
    assert_grad_matches(ds, reference_scale_grad(p, s, c, 1.0), float32_slack(p, s, 1.0))


# --------------------------------------------------------------------------------------------------------------
# property tests
# --------------------------------------------------------------------------------------------------------------


@st.composite
def param_and_granularity(draw):
    kind = draw(st.sampled_from(["dense", "conv", "bias"]))
    dim = st.integers(1, 4)
    if kind == "dense":
        shape = (draw(dim), draw(dim))
        options = ["scalar", "rowwise", "columnwise", "outputwise", "axis"]
    elif kind == "conv":
        shape = (draw(dim), draw(dim), draw(dim), draw(dim))
        options = ["scalar", "rowwise", "columnwise", "channelwise", "outputwise", "axis"]
    else:
        shape = (draw(dim),)
        options = ["scalar", "rowwise", "outputwise", "axis"]
    granularity = draw(st.sampled_from(options))
    axis = None
    if granularity == "axis":
        granularity, axis = "scalar", draw(st.integers(-len(shape), len(shape) - 1))
    return shape, granularity, axis


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    case=param_and_granularity(),
    seed=st.integers(0, 2**31 - 1),
    lam=st.sampled_from([0.0, 1e-10, 1e-3, 0.5, 1.0, 3.0]),
    dy_scale=st.sampled_from([1e-9, 1e-3, 1.0, 1e3]),
)
def test_property_shapes_and_gradient(case, seed, lam, dy_scale):
    shape, granularity, axis = case
    rng = np.random.default_rng(seed)
    # docs/method.md §1.2, written out independently of lqs_core.granularity
    kept = {"scalar": None, "rowwise": 0, "columnwise": 1, "channelwise": 2, "outputwise": len(shape) - 1}[granularity]
    if axis is not None:
        kept = axis % len(shape)
    expected_shape = tuple(d if i == kept else 1 for i, d in enumerate(shape))
    s = rng.uniform(1e-3, 0.5, expected_shape).astype(np.float32)
    p = rng.normal(0, 1, shape).astype(np.float32)
    p[rng.random(shape) < 0.2] = 0.0
    c = (rng.normal(0, 1, shape) * dy_scale).astype(np.float32)
    q = make_quantizer(shape, s, lam, granularity, axis=axis)
    assert tuple(q.scale.shape) == expected_shape
    p_r, dp, ds = tape_grads(q, p, c)
    assert p_r.shape == shape
    assert ds.shape == expected_shape
    assert np.all(ds <= 0.0)
    if lam == 0.0:
        assert np.all(ds == 0.0)
    np.testing.assert_array_equal(dp, c)
    assert_grad_matches(ds, reference_scale_grad(p, s, c, lam), float32_slack(p, s, lam))


# --------------------------------------------------------------------------------------------------------------
# scale constraint
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_scale_clamped_to_scale_min(optimizer):
    scale_min = 1e-3
    q = NestedQuantizer(granularity="rowwise", threshold=1e-3, scale_init=2e-3, scale_min=scale_min)
    q.build((4, 3))
    opt = keras.optimizers.SGD(learning_rate=10.0) if optimizer == "sgd" else keras.optimizers.Adam(learning_rate=1.0)
    for _ in range(3):
        # a positive gradient pushes the scale down, far below scale_min
        opt.apply_gradients([(tensor(np.ones(q.scale.shape)), q.scale)])
        np.testing.assert_array_equal(q.scale.numpy(), np.full((4, 1), np.float32(scale_min)))
    # negative gradients still grow it (several steps: Adam's momentum first has to turn around)
    for _ in range(10):
        opt.apply_gradients([(tensor(-np.ones(q.scale.shape)), q.scale)])
    assert np.all(q.scale.numpy() > scale_min)


def test_scale_constraint_in_training_step_default_min():
    # a gradient that pushes the scale down, with the default scale_min (100 * eps)
    q = NestedQuantizer(granularity="scalar", threshold=1e-3, scale_init=0.5)
    q.build((3,))
    opt = keras.optimizers.SGD(learning_rate=100.0)
    p = tensor([0.3, -0.7, 1.1])
    for _ in range(3):
        # d/ds of the second term is +1e3
        _, (ds,) = value_and_grads(lambda s: ops.sum(q(p)) + 1e3 * ops.sum(s), [q.scale])
        opt.apply_gradients([(tensor(ds), q.scale)])
        assert float(q.scale.numpy()[0]) == np.float32(100 * EPS32)
    assert isinstance(q.scale.constraint, ScaleMin)
    assert to_numpy(ScaleMin(0.25)(tensor([0.1, 0.3]))).tolist() == [0.25, np.float32(0.3)]


# --------------------------------------------------------------------------------------------------------------
# configuration and validation
# --------------------------------------------------------------------------------------------------------------


def test_get_config_round_trip():
    q = NestedQuantizer(granularity="scalar", threshold=1e-9, scale_init=1e-3, scale_min=1e-4, rounding="round",
                        axis=1, name="qq")
    config = q.get_config()
    q2 = NestedQuantizer.from_config(config)
    assert q2.get_config() == config
    assert (q2.threshold, q2.scale_init, q2.scale_min, q2.rounding, q2.axis) == (1e-9, 1e-3, 1e-4, "round", 1)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"granularity": "diagonal"}, "Unknown granularity 'diagonal'"),
        ({"granularity": "Rowwise"}, "Unknown granularity"),
        ({"threshold": -1e-9}, "threshold"),
        ({"threshold": float("nan")}, "threshold"),
        ({"threshold": float("inf")}, "threshold"),
        ({"threshold": "big"}, "threshold"),
        ({"scale_init": 0.0}, "scale_init"),
        ({"scale_init": -1.0}, "scale_init"),
        ({"scale_init": float("inf")}, "scale_init"),
        ({"scale_min": 0.0}, "scale_min"),
        ({"scale_min": -1e-5}, "scale_min"),
        ({"scale_init": 1e-6, "scale_min": 1e-5}, "below scale_min"),
        ({"rounding": "ceil"}, "Unknown rounding 'ceil'"),
    ],
)
def test_bad_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        NestedQuantizer(**kwargs)


def test_granularity_not_defined_for_rank():
    with pytest.raises(ValueError, match="channelwise.*only for Conv2D"):
        NestedQuantizer(granularity="channelwise").build((3, 4))
    with pytest.raises(ValueError, match="columnwise.*at least 2 dimensions"):
        NestedQuantizer(granularity="columnwise").build((4,))
    with pytest.raises(ValueError, match="axis=4 is out of range"):
        NestedQuantizer(axis=4).build(CONV)
    with pytest.raises(ValueError, match="axis=-3 is out of range"):
        NestedQuantizer(axis=-3).build(DENSE)


@pytest.mark.parametrize("kwargs", [{"threshold": True}, {"scale_init": True}, {"scale_min": False}])
def test_bool_options_are_refused_naming_the_value(kwargs):
    (key, value), = kwargs.items()
    with pytest.raises(ValueError, match=key) as e:
        NestedQuantizer(**kwargs)
    assert repr(value) in str(e.value)
    with pytest.raises(ValueError, match=key):
        nested.check_options(**kwargs)


# --------------------------------------------------------------------------------------------------------------
# the registry: normalize / get / serialize / serialize_spec, for every method
# --------------------------------------------------------------------------------------------------------------

# method -> (a spec with non-default options, the class, the defaults normalize fills in)
REGISTRY_CASES = {
    "nested": ({"method": "nested", "granularity": "rowwise", "threshold": 1e-10, "rounding": "round"},
               NestedQuantizer,
               {"threshold": 0.0, "scale_init": DEFAULT_SCALE, "scale_min": DEFAULT_SCALE, "rounding": "floor"}),
    "fixed": ({"method": "fixed", "granularity": "outputwise", "bits": 3}, FixedBitQuantizer, {"bits": 8}),
    "lsq": ({"method": "lsq", "granularity": "columnwise", "bits": 4}, LSQQuantizer, {"bits": 8, "scale_min": spec.EPSILON}),
    "cgmq": ({"method": "cgmq", "granularity": "outputwise", "gates": "weight", "direction": 3, "gate_init": 3.5},
             CGMQQuantizer, {"gates": "layer", "direction": 1, "gate_lr": 0.01, "gate_init": spec.GATE_INIT}),
}


def test_registry_lists_every_method():
    assert set(QUANTIZERS) == set(REGISTRY_CASES) == set(spec.METHODS) - {"layer_importance"} - set(spec.EXTERNAL_METHODS)
    assert registry.QUANTIZERS is QUANTIZERS and registry.get is get and registry.normalize is normalize
    for method, cls in QUANTIZERS.items():
        assert issubclass(cls, Quantizer) and method_of(cls()) == method


@pytest.mark.parametrize("method", list(REGISTRY_CASES))
def test_registry_round_trip(method):
    spec_dict, cls, defaults = REGISTRY_CASES[method]
    # a method name: every default filled in, at the granularity given (else scalar)
    assert normalize(method) == {"method": method, "granularity": "scalar", **defaults}
    assert normalize(method, granularity="rowwise") == {"method": method, "granularity": "rowwise", **defaults}
    assert normalize({"method": method}) == normalize(method)
    # a full dict: canonical, idempotent; the spec's granularity wins over the argument
    canonical = normalize(spec_dict, granularity="scalar")
    assert canonical["method"] == method and canonical["granularity"] == spec_dict["granularity"]
    assert set(canonical) == {"method", "granularity", *defaults}
    assert {k: canonical[k] for k in spec_dict} == spec_dict
    assert normalize(canonical) == canonical
    # get -> a quantizer of the class, with the options; serialize_spec gives the canonical dict back
    q = get(spec_dict, name="kq")
    assert type(q) is cls and q.name == "kq" and q.granularity == spec_dict["granularity"]
    assert serialize_spec(q) == canonical == normalize(q)
    assert get(q) is q  # an object is used as it is
    # the Keras serialization: get / normalize read it back (without build_config: the host builds)
    ser = serialize(q)
    assert ser["class_name"] == cls.__name__ and "build_config" not in ser
    q2 = get(ser)
    assert type(q2) is cls and q2 is not q and q2.get_config() == q.get_config()
    assert normalize(ser) == canonical
    assert serialize(get(canonical, name="kq")) == ser
    # built quantizers serialize the same way
    q.build((4, 3))
    assert serialize(q) == ser and serialize_spec(q) == canonical


def test_registry_cgmq_fills_the_gate_lr_of_its_direction():
    assert normalize({"method": "cgmq", "direction": 3})["gate_lr"] == spec.DEFAULT_GATE_LR[3] == 0.001
    assert normalize({"method": "cgmq", "direction": 2, "gate_lr": 0.5})["gate_lr"] == 0.5


def test_registry_none_is_nested():
    assert normalize(None) == normalize("nested")
    assert type(get(None)) is NestedQuantizer


@pytest.mark.parametrize(
    "bad, match",
    [
        ("magic", "Unknown quantizer method 'magic'"),
        ({"method": "lsq", "bitz": 4}, r"Unknown option\(s\) \['bitz'\] for quantizer LSQQuantizer"),
        ({"method": "nested", "bits": 4}, r"Unknown option\(s\) \['bits'\]"),
        ({"method": "fixed", "bits": 16}, "bits must be in 2..8, got 16"),
        ({"method": "lsq", "bits": 1}, "bits must be in 2..8, got 1"),
        ({"method": "cgmq", "direction": 4}, "direction"),
        ({"method": "nested", "threshold": -1.0}, "threshold"),
        ({"method": "nested", "granularity": "diagonal"}, "Unknown granularity 'diagonal'"),
        (3, "A quantizer spec must be"),
    ],
)
def test_registry_rejects_bad_specs(bad, match):
    with pytest.raises(ValueError, match=match):
        normalize(bad)
    with pytest.raises(ValueError, match=match):
        get(bad)


def test_method_of_an_unregistered_quantizer():
    class Custom(NestedQuantizer):
        pass

    with pytest.raises(ValueError, match="not a registered quantizer"):
        method_of(Custom())
