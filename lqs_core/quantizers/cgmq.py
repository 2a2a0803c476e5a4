"""CGMQ — Constraint Guided Model Quantization (``papers/cgmq.txt``): gate variables -> bit widths, under a BOP budget.

**Gates and the step function T** (§2.1, eq. 4). Each quantized parameter has a gate variable ``g`` — one per layer
parameter (``gates="layer"``: a scalar for the kernel and one for the bias) or one per weight (``gates="weight"``:
a tensor of ``P``'s shape) — mapped to a bit width by::

    T(g) = 0 if g <= 0,  2 if g in (0,1],  4 if g in (1,2],  8 if g in (2,3],  16 if g in (3,4],  32 if g > 4

    G_b(g) = 1 if T(g) >= b else 0                                       # the binary gate function

``g`` starts at 5.5 (32 bits) and is kept ``>= 0.5`` (no pruning: the paper replaces ``g < 0.5`` by 0.5), so
``T(g) in {2, 4, 8, 16, 32}`` (:data:`BIT_WIDTHS`).

**Residual decomposition** (eqs. 2-3). With ``x_b = Q(x, b)`` the b-bit quantization of ``x`` and the residuals
``eps_b = x_b - x_{b/2}``::

    x_T = G_2(g) [ x_2 + G_4(g) [ eps_4 + G_8(g) [ eps_8 + G_16(g) [ eps_16 + G_32(g) eps_32 ] ] ] ]

which telescopes to ``x_{T(g)}``; :func:`residual_quantize` evaluates it literally (elementwise for per-weight
gates). ``Q`` here is the signed symmetric b-bit grid of the other comparators,
``Q(x, b) = round(clip(x / s_b, -Q_N, Q_P)) * s_b`` with ``s_b = beta / Q_P``, ``Q_P = 2^(b-1) - 1``,
``Q_N = 2^(b-1)``: the paper's eq. (1) with ``alpha = -beta`` spaces ``2^b - 1`` steps over ``[-beta, beta]``,
which gives ``2^b + 1`` levels (b + 1 bits); the grid used here really stores b-bit integers. ``beta = max|P|``
per scale element (``granularity``; the paper calibrates it per layer with min-max) is recomputed every step and
gets no gradient — the paper learns the ranges in a separate phase before CGMQ, which is not reproduced. ``P``
gets the straight-through estimator (``dL/dP = dy``; with ``beta = max|P|`` nothing is clipped).

**Gate updates** (§2.2-2.3). ``T`` has no useful gradient, so the gate moves along a *direction*
``g <- max(g - eta_g * dir, 0.5)`` with plain gradient descent (no momentum; ``eta_g = gate_lr``, the paper's 0.01
for dir_1/dir_2 and 0.001 for dir_3). With ``G = |dL/dw|`` (the mini-batch mean gradient: Keras' loss is the batch
mean, so this is the paper's ``(1/N_b)|Σ_i ∇_w L_i|``; STE, so the gradient w.r.t. ``w_r`` and ``w`` agree) and
``W = |w|``::

    dir_1:  Unsat: 1 / G              Sat: -|g|
    dir_2:  Unsat: 1 / (G + W)        Sat: -(|g| + W)
    dir_3:  Unsat: 1 / (G + W)        Sat: -(G + W)

(``Unsat``: the cost constraint was violated at the last check.) The dir_3 Unsat formula is garbled in the source
text; it is read as the reciprocal of the same ``G + W`` that its Sat case prints. Denominators are clamped at
``1e-12``. For a per-layer gate, ``G`` and ``W`` are the means of ``|dL/dw|`` and ``|w|`` over the parameter (the
direction of the set as if it were one weight). The update is carried out through Keras' optimizer with the gate
variable's ``overwrite_with_gradient`` flag: the custom gradient of the gate *is* its new value, so any optimizer
(Adam for the weights) works and the gates still follow plain SGD.

The BOP cost and the budget that the gates follow are in :mod:`lqs_core.procedures.budget`.
"""

from __future__ import annotations

from typing import Optional

import keras
import numpy as np
from keras import ops

from lqs_core.granularity import scale_shape
from lqs_core.quantizers.base import Quantizer, as_tensor, upstream_gradient
from lqs_core.spec import BIT_WIDTHS, CGMQ_OPTIONS, GATE_INIT, GATE_MIN, check_cgmq_options

_TINY = 1e-12


# ---------------------------------------------------------------------------------------------------------------
# Step function, gates, residual decomposition


def step_bits(g):
    """``T(g)`` of eq. (4) for a number or array (numpy int64; a python int for a scalar)."""
    g = np.asarray(g, dtype=np.float64)
    out = np.select([g <= 0, g <= 1, g <= 2, g <= 3, g <= 4], [0, 2, 4, 8, 16], default=32).astype(np.int64)
    return int(out) if out.ndim == 0 else out


def step_bits_tf(g):
    """``T(g)`` as a float tensor of the current Keras backend (same rule as :func:`step_bits`; the name is from
    lqs' TensorFlow-only days)."""
    g = as_tensor(g)
    one = ops.ones_like(g)
    return ops.where(g <= 0, 0.0 * one, ops.where(g <= 1, 2.0 * one, ops.where(g <= 2, 4.0 * one, ops.where(
        g <= 3, 8.0 * one, ops.where(g <= 4, 16.0 * one, 32.0 * one)))))


def gate(g, b: int):
    """``G_b(g) = 1 if T(g) >= b else 0`` (float tensor)."""
    return ops.cast(step_bits_tf(g) >= b, as_tensor(g).dtype)


def _beta(p, axes):
    m = ops.max(ops.abs(p), axis=tuple(axes), keepdims=True)
    return ops.where(m > 0, m, ops.ones_like(m))


def uniform_quantize(x, bits: int, beta):
    """``Q(x, b) = round(clip(x / s_b, -Q_N, Q_P)) * s_b`` with ``s_b = beta / Q_P`` (signed b-bit grid)."""
    q_p = 2.0 ** (bits - 1) - 1.0
    s = beta / q_p
    return ops.round(ops.clip(x / s, -(q_p + 1.0), q_p)) * s


def residual_quantize(x, g, beta):
    """Eq. (3): ``G_2[x_2 + G_4[eps_4 + G_8[eps_8 + G_16[eps_16 + G_32 eps_32]]]]``, ``eps_b = x_b - x_{b/2}``.

    ``g`` is a scalar (one gate) or has ``x``'s shape (one gate per element)."""
    x = as_tensor(x)
    g = ops.cast(as_tensor(g), x.dtype)
    xs = {b: uniform_quantize(x, b, beta) for b in BIT_WIDTHS}
    inner = gate(g, 32) * (xs[32] - xs[16])
    for b in (16, 8, 4):
        inner = gate(g, b) * ((xs[b] - xs[b // 2]) + inner)
    return gate(g, 2) * (xs[2] + inner)


# ---------------------------------------------------------------------------------------------------------------
# Directions


def direction(kind: int, satisfied, grad_abs, w_abs, g):
    """The gate direction ``dir_kind`` (module docstring) for the Sat (``satisfied`` true) / Unsat state."""
    g_abs = ops.abs(g)
    if kind == 1:
        unsat = 1.0 / ops.maximum(grad_abs, _TINY)
        sat = -g_abs
    elif kind == 2:
        unsat = 1.0 / ops.maximum(grad_abs + w_abs, _TINY)
        sat = -(g_abs + w_abs)
    elif kind == 3:
        unsat = 1.0 / ops.maximum(grad_abs + w_abs, _TINY)
        sat = -(grad_abs + w_abs)
    else:
        raise ValueError(f"direction must be 1, 2 or 3, got {kind!r}.")
    return ops.where(ops.cast(satisfied, "bool"), sat * ops.ones_like(unsat), unsat * ops.ones_like(sat))


def cgmq_quantize(p, g, satisfied, axes, kind: int = 1, gate_lr: float = 0.01, gate_min: float = GATE_MIN):
    """Forward: :func:`residual_quantize` of ``p`` with ``beta = max|p|`` over ``axes`` (no gradient).
    Backward: ``dL/dp = dy`` (STE); the "gradient" of ``g`` is its new value ``max(g - gate_lr * dir, gate_min)``
    (to be written with ``overwrite_with_gradient``); ``satisfied`` gets none."""

    @ops.custom_gradient
    def _quantize(p, g, satisfied):
        beta = ops.stop_gradient(_beta(p, axes))
        out = residual_quantize(p, g, beta)

        def grad(*args, upstream=None):
            dy = upstream_gradient(args, upstream)
            if len(g.shape) == 0:
                grad_abs, w_abs = ops.mean(ops.abs(dy)), ops.mean(ops.abs(p))
            else:
                grad_abs, w_abs = ops.abs(dy), ops.abs(p)
            d = direction(kind, satisfied > 0.5, grad_abs, w_abs, g)
            new_g = ops.maximum(g - ops.cast(gate_lr, g.dtype) * d, ops.cast(gate_min, g.dtype))
            return dy, ops.reshape(new_g, ops.shape(g)), ops.zeros_like(satisfied)

        return out, grad

    return _quantize(as_tensor(p), as_tensor(g), as_tensor(satisfied))


# ---------------------------------------------------------------------------------------------------------------
# The quantizer


@keras.saving.register_keras_serializable(package="lqs")
class CGMQQuantizer(Quantizer):
    """Mixed-precision quantizer whose bit width is set by gate variables (module docstring).

    Variables: ``gate`` (trainable, written by the optimizer with ``overwrite_with_gradient``), ``satisfied``
    (0/1, the constraint state set by :class:`CGMQConstraint`), ``scale`` (non-trainable, for the metrics: the step
    ``beta / Q_P(T(g))`` of the last :meth:`calibrate`; with per-weight gates one step per bit width,
    shape ``(5,) + range shape``, as a mixed tensor stores them).

    Args:
        gates: ``"layer"`` (one gate for the parameter) or ``"weight"`` (one per element).
        direction: 1, 2 or 3 (dir_1..dir_3).
        gate_lr: ``eta_g`` (default: 0.01 for dir_1/dir_2, 0.001 for dir_3).
        gate_init: initial gate value (default 5.5 = 32 bits).
        granularity / axis: which axis keeps its own range ``beta`` (``scalar``: one per tensor, the paper's).
    """

    OPTIONS = CGMQ_OPTIONS

    def __init__(self, gates: str = "layer", direction: int = 1, gate_lr: Optional[float] = None,
                 gate_init: float = GATE_INIT, granularity: str = "scalar", axis=None, **kwargs):
        super().__init__(granularity=granularity, axis=axis, **kwargs)
        checked = self._check_options(dict(gates=gates, direction=direction, gate_lr=gate_lr, gate_init=gate_init))
        self.gates = checked["gates"]
        self.direction = checked["direction"]
        self.gate_lr = checked["gate_lr"]
        self.gate_init = checked["gate_init"]
        self.gate_min = GATE_MIN

    @classmethod
    def _check_options(cls, options):
        return check_cgmq_options(options)

    def build(self, input_shape):
        shape = self._build_axes(input_shape)
        self.range_shape = scale_shape(shape, self.granularity, self.axis)
        self.gate = self.add_weight(
            name="gate",
            shape=() if self.gates == "layer" else shape,
            initializer=keras.initializers.Constant(self.gate_init),
            trainable=True,
            overwrite_with_gradient=True,
        )
        self.satisfied = self.add_weight(name="satisfied", shape=(), initializer="zeros", trainable=False)
        self.scale = self.add_weight(
            name="scale",
            shape=self.range_shape if self.gates == "layer" else (len(BIT_WIDTHS),) + self.range_shape,
            initializer="ones",
            trainable=False,
        )

    def call(self, inputs):
        return cgmq_quantize(inputs, self.gate, self.satisfied, self.slice_axes, self.direction, self.gate_lr,
                             self.gate_min)

    # -- bit widths, integers, scales --------------------------------------------------------------------------

    def bits(self):
        """``T(g)``: a python int (layer gate) or an int64 array of ``P``'s shape (per-weight gates)."""
        return step_bits(keras.ops.convert_to_numpy(self.gate))

    def bit_widths(self) -> np.ndarray:
        """The bit width of every element of ``P`` (int64 array of ``P``'s shape)."""
        return np.broadcast_to(np.asarray(self.bits(), dtype=np.int64), self.param_shape)

    def _steps(self, inputs):
        p = as_tensor(inputs)
        beta = _beta(p, self.slice_axes)
        b = step_bits_tf(ops.cast(as_tensor(self.gate), p.dtype)) * ops.ones_like(p)
        q_p = ops.power(ops.cast(2.0, p.dtype), b - 1.0) - 1.0
        return p, beta, q_p

    def calibrate(self, inputs):
        """``scale <- beta / Q_P(T(g))`` (per-weight gates: ``[beta / Q_P(b) for b in BIT_WIDTHS]``)."""
        p = as_tensor(inputs)
        beta = _beta(p, self.slice_axes)
        if self.gates == "layer":
            b = float(self.bits())
            self.scale.assign(beta / (2.0 ** (b - 1) - 1.0))
        else:
            self.scale.assign(ops.stack([beta / (2.0 ** (b - 1) - 1.0) for b in BIT_WIDTHS]))

    def integers(self, inputs):
        """``round(clip(P / s_b, -Q_N(b), Q_P(b)))`` with ``b = T(g)`` per element and ``s_b = beta / Q_P(b)``;
        a NumPy float64 array (32-bit integers do not fit float32's 24-bit mantissa exactly after the clip, and JAX
        has no float64 unless ``jax_enable_x64`` is set, so the float64 clip is done in NumPy: exact, as before)."""
        self.calibrate(inputs)
        p, beta, q_p = self._steps(inputs)
        q = ops.round(ops.clip(p / (beta / q_p), -(q_p + 1.0), q_p))  # same float32 ops as the forward pass
        q = np.asarray(ops.convert_to_numpy(q), dtype=np.float64)
        bits = np.asarray(step_bits(ops.convert_to_numpy(self.gate)), dtype=np.float64)
        q_p64 = np.broadcast_to(2.0 ** (bits - 1.0) - 1.0, q.shape)  # 2^31 - 1 is not a float32
        return np.clip(q, -(q_p64 + 1.0), q_p64)

    def get_config(self):
        config = super().get_config()
        config.update(gates=self.gates, direction=self.direction, gate_lr=self.gate_lr, gate_init=self.gate_init)
        return config


__all__ = [
    "CGMQQuantizer",
    "cgmq_quantize",
    "direction",
    "gate",
    "residual_quantize",
    "step_bits",
    "step_bits_tf",
    "uniform_quantize",
]
