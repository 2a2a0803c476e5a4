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

**Cost constraint** (§2.5). The layers here quantize weights only (activations stay float32), so the cost is the
**weights-only BOP count** with every activation at ``b_a = 32`` bits: per host layer,
``BOP(l) = positions(l) * 32 * Σ_{w in kernel, bias} b_w``, where ``positions`` is the number of output positions
each weight is used at (1 for Dense, ``H_out * W_out`` for Conv2D), i.e. the paper's "sum over activations of the
bit width of the activation times the sum of the bit widths of the weights that determine it", with the bias
counted as one of those weights (the paper calls every learnable parameter a weight). The **budget** is relative:
``cost / cost(all weights 32 bits)`` (the paper's relative GBOPs), in ``[1/16, ...]`` — ``1/16`` (every weight at 2
bits) is the smallest reachable cost. :func:`bop_cost` reports it (for a model of any method).

**Check and guarantee.** :class:`CGMQConstraint` (a Keras callback) checks the constraint at the start of training
and at every epoch end and sets the gates' Sat/Unsat state for the next epoch. Training can end in a Sat-state
epoch that raised the cost again, so at the end of training it applies the Unsat update with a constant direction,
``g <- max(g - 1, 0.5)`` after snapping each gate to the middle of its level (one bit level down for every gate,
i.e. ``eta_g * dir = 1``, a valid positive direction) until the constraint holds (:func:`enforce_budget`; at most 4 rounds reach all-2-bit) and then asserts it
(:func:`assert_budget` raises ``RuntimeError`` otherwise), so the final model always meets the budget.
"""

from __future__ import annotations

from typing import Dict, Optional

import keras
import numpy as np
import tensorflow as tf

from lqs_core.comparators.base import ComparatorQuantizer
from lqs_core.granularity import scale_shape

#: Bit widths a gate can select (eq. 4), smallest first.
BIT_WIDTHS = (2, 4, 8, 16, 32)
#: Initial gate value (32 bits) and the lower bound it is clamped to (2 bits, no pruning).
GATE_INIT = 5.5
GATE_MIN = 0.5
#: The paper's gate learning rate per direction.
DEFAULT_GATE_LR = {1: 0.01, 2: 0.01, 3: 0.001}
#: Bits of every activation in the BOP count (activations are not quantized here).
ACTIVATION_BITS = 32
#: Smallest relative BOP cost any model reaches (every weight at 2 bits).
MIN_RELATIVE_BUDGET = BIT_WIDTHS[0] / 32
_TINY = 1e-12


# ---------------------------------------------------------------------------------------------------------------
# Step function, gates, residual decomposition


def step_bits(g):
    """``T(g)`` of eq. (4) for a number or array (numpy int64; a python int for a scalar)."""
    g = np.asarray(g, dtype=np.float64)
    out = np.select([g <= 0, g <= 1, g <= 2, g <= 3, g <= 4], [0, 2, 4, 8, 16], default=32).astype(np.int64)
    return int(out) if out.ndim == 0 else out


def step_bits_tf(g):
    """``T(g)`` as a float tensor (same rule as :func:`step_bits`)."""
    g = tf.convert_to_tensor(g)
    one = tf.ones_like(g)
    return tf.where(g <= 0, 0.0 * one, tf.where(g <= 1, 2.0 * one, tf.where(g <= 2, 4.0 * one, tf.where(
        g <= 3, 8.0 * one, tf.where(g <= 4, 16.0 * one, 32.0 * one)))))


def gate(g, b: int):
    """``G_b(g) = 1 if T(g) >= b else 0`` (float tensor)."""
    return tf.cast(step_bits_tf(g) >= b, tf.convert_to_tensor(g).dtype)


def _beta(p, axes):
    m = tf.reduce_max(tf.abs(p), axis=axes, keepdims=True)
    return tf.where(m > 0, m, tf.ones_like(m))


def uniform_quantize(x, bits: int, beta):
    """``Q(x, b) = round(clip(x / s_b, -Q_N, Q_P)) * s_b`` with ``s_b = beta / Q_P`` (signed b-bit grid)."""
    q_p = 2.0 ** (bits - 1) - 1.0
    s = beta / q_p
    return tf.round(tf.clip_by_value(x / s, -(q_p + 1.0), q_p)) * s


def residual_quantize(x, g, beta):
    """Eq. (3): ``G_2[x_2 + G_4[eps_4 + G_8[eps_8 + G_16[eps_16 + G_32 eps_32]]]]``, ``eps_b = x_b - x_{b/2}``.

    ``g`` is a scalar (one gate) or has ``x``'s shape (one gate per element)."""
    x = tf.convert_to_tensor(x)
    g = tf.cast(tf.convert_to_tensor(g), x.dtype)
    xs = {b: uniform_quantize(x, b, beta) for b in BIT_WIDTHS}
    inner = gate(g, 32) * (xs[32] - xs[16])
    for b in (16, 8, 4):
        inner = gate(g, b) * ((xs[b] - xs[b // 2]) + inner)
    return gate(g, 2) * (xs[2] + inner)


# ---------------------------------------------------------------------------------------------------------------
# Directions


def direction(kind: int, satisfied, grad_abs, w_abs, g):
    """The gate direction ``dir_kind`` (module docstring) for the Sat (``satisfied`` true) / Unsat state."""
    g_abs = tf.abs(g)
    if kind == 1:
        unsat = 1.0 / tf.maximum(grad_abs, _TINY)
        sat = -g_abs
    elif kind == 2:
        unsat = 1.0 / tf.maximum(grad_abs + w_abs, _TINY)
        sat = -(g_abs + w_abs)
    elif kind == 3:
        unsat = 1.0 / tf.maximum(grad_abs + w_abs, _TINY)
        sat = -(grad_abs + w_abs)
    else:
        raise ValueError(f"direction must be 1, 2 or 3, got {kind!r}.")
    return tf.where(tf.cast(satisfied, tf.bool), sat * tf.ones_like(unsat), unsat * tf.ones_like(sat))


def cgmq_quantize(p, g, satisfied, axes, kind: int = 1, gate_lr: float = 0.01, gate_min: float = GATE_MIN):
    """Forward: :func:`residual_quantize` of ``p`` with ``beta = max|p|`` over ``axes`` (no gradient).
    Backward: ``dL/dp = dy`` (STE); the "gradient" of ``g`` is its new value ``max(g - gate_lr * dir, gate_min)``
    (to be written with ``overwrite_with_gradient``); ``satisfied`` gets none."""

    @tf.custom_gradient
    def _quantize(p, g, satisfied):
        beta = tf.stop_gradient(_beta(p, axes))
        out = residual_quantize(p, g, beta)

        def grad(dy):
            if g.shape.rank == 0:
                grad_abs, w_abs = tf.reduce_mean(tf.abs(dy)), tf.reduce_mean(tf.abs(p))
            else:
                grad_abs, w_abs = tf.abs(dy), tf.abs(p)
            d = direction(kind, satisfied > 0.5, grad_abs, w_abs, g)
            new_g = tf.maximum(g - tf.cast(gate_lr, g.dtype) * d, tf.cast(gate_min, g.dtype))
            return dy, tf.reshape(new_g, tf.shape(g)), tf.zeros_like(satisfied)

        return out, grad

    return _quantize(tf.convert_to_tensor(p), tf.convert_to_tensor(g), tf.convert_to_tensor(satisfied))


# ---------------------------------------------------------------------------------------------------------------
# The quantizer


@keras.saving.register_keras_serializable(package="lqs")
class CGMQQuantizer(ComparatorQuantizer):
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

    OPTIONS = {"gates": "layer", "direction": 1, "gate_lr": None, "gate_init": GATE_INIT}

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
        gates = options["gates"]
        if gates not in ("layer", "weight"):
            raise ValueError(f"gates must be 'layer' or 'weight', got {gates!r}.")
        kind = options["direction"]
        if isinstance(kind, bool) or kind not in (1, 2, 3):
            raise ValueError(f"direction must be 1, 2 or 3 (dir_1..dir_3), got {kind!r}.")
        kind = int(kind)
        lr = options["gate_lr"]
        lr = DEFAULT_GATE_LR[kind] if lr is None else lr
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not np.isfinite(lr) or lr <= 0:
            raise ValueError(f"gate_lr must be a number > 0, got {lr!r}.")
        init = options["gate_init"]
        if isinstance(init, bool) or not isinstance(init, (int, float)) or not np.isfinite(init) or init < GATE_MIN:
            raise ValueError(f"gate_init must be a number >= {GATE_MIN}, got {init!r}.")
        return {"gates": gates, "direction": kind, "gate_lr": float(lr), "gate_init": float(init)}

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
        p = tf.convert_to_tensor(inputs)
        beta = _beta(p, self.slice_axes)
        b = step_bits_tf(tf.cast(tf.convert_to_tensor(self.gate), p.dtype)) * tf.ones_like(p)
        q_p = tf.pow(tf.cast(2.0, p.dtype), b - 1.0) - 1.0
        return p, beta, q_p

    def calibrate(self, inputs):
        """``scale <- beta / Q_P(T(g))`` (per-weight gates: ``[beta / Q_P(b) for b in BIT_WIDTHS]``)."""
        p = tf.convert_to_tensor(inputs)
        beta = _beta(p, self.slice_axes)
        if self.gates == "layer":
            b = float(self.bits())
            self.scale.assign(beta / (2.0 ** (b - 1) - 1.0))
        else:
            self.scale.assign(tf.stack([beta / (2.0 ** (b - 1) - 1.0) for b in BIT_WIDTHS]))

    def integers(self, inputs):
        """``round(clip(P / s_b, -Q_N(b), Q_P(b)))`` with ``b = T(g)`` per element and ``s_b = beta / Q_P(b)``;
        float64 (32-bit integers do not fit float32's 24-bit mantissa exactly after the clip)."""
        self.calibrate(inputs)
        p, beta, q_p = self._steps(inputs)
        q = tf.round(tf.clip_by_value(p / (beta / q_p), -(q_p + 1.0), q_p))  # same float32 ops as the forward pass
        bits64 = tf.cast(step_bits_tf(tf.convert_to_tensor(self.gate)), tf.float64) * tf.ones_like(q, tf.float64)
        q_p64 = tf.pow(tf.constant(2.0, tf.float64), bits64 - 1.0) - 1.0  # 2^31 - 1 is not a float32
        return tf.clip_by_value(tf.cast(q, tf.float64), -(q_p64 + 1.0), q_p64)

    def get_config(self):
        config = super().get_config()
        config.update(gates=self.gates, direction=self.direction, gate_lr=self.gate_lr, gate_init=self.gate_init)
        return config


# ---------------------------------------------------------------------------------------------------------------
# Cost, budget, callback


def check_budget(budget) -> float:
    """A relative BOP budget as a float ``>= 1/16``; ``ValueError`` otherwise (negative, NaN, unreachable)."""
    if isinstance(budget, bool):
        raise ValueError(f"budget must be a number, got {budget!r}.")
    try:
        value = float(budget)
    except (TypeError, ValueError):
        raise ValueError(f"budget must be a number, got {budget!r}.") from None
    if not np.isfinite(value) or value < 0:
        raise ValueError(f"budget must be a finite number >= 0, got {budget!r}.")
    if value < MIN_RELATIVE_BUDGET:
        raise ValueError(
            f"budget {value!r} is below {MIN_RELATIVE_BUDGET} (= 2/32, every weight at 2 bits), the smallest relative "
            "BOP cost any model reaches; no model meets it."
        )
    return value


def _positions(layer) -> int:
    """How many output positions each weight of ``layer`` is used at: ``prod(output_shape[1:-1])``."""
    from lqs_core.layers import QDense

    try:
        shape = tuple(layer.output.shape)
    except (AttributeError, ValueError, RuntimeError):
        shape = None
    if shape is None or any(d is None for d in shape[1:-1]):
        if isinstance(layer, QDense):
            return 1
        raise ValueError(
            f"bop_cost: cannot tell the output size of {layer.name!r}; build the model functionally with a fixed "
            "input size."
        )
    return int(np.prod(shape[1:-1], dtype=np.int64))


def bit_widths(quantizer, variable) -> np.ndarray:
    """Bits of every element of a quantized parameter: ``T(g)`` (CGMQ), ``bits`` (fixed / LSQ), or the fixed width
    ``ceil(log2(max - min + 1))`` of its integers (the nested quantizer and anything else)."""
    shape = tuple(int(d) for d in variable.shape)
    if isinstance(quantizer, CGMQQuantizer):
        return np.broadcast_to(np.asarray(quantizer.bits(), dtype=np.int64), shape)
    bits = getattr(quantizer, "bits", None)
    if isinstance(bits, int):
        return np.full(shape, bits, dtype=np.int64)
    from lqs_core import metrics

    q = np.asarray(keras.ops.convert_to_numpy(quantizer.integers(variable)))
    return np.full(shape, metrics.bits_fixed(q.astype(np.int64)), dtype=np.int64)


def bop_cost(model) -> Dict[str, object]:
    """Weights-only BOP cost of ``model`` (module docstring), for any quantized model.

    Returns ``{"bops": Σ_l positions_l · 32 · Σ b_w, "bops_32": the same with every b_w = 32, "relative_bops":
    bops / bops_32, "weight_bits": Σ b_w (memory of the weights in bits), "mean_bits": weight_bits / #weights,
    "tensors": {name: {"bits": int or {bits: count}, "positions": n, "params": n}}}``.
    """
    from lqs_core.layers import quantized_params

    params = quantized_params(model)
    if not params:
        raise ValueError(f"Model {getattr(model, 'name', model)!r} has no quantized parameters; no BOP cost.")
    bops = bops_32 = weight_bits = n_weights = 0
    tensors = {}
    for name, layer, _, variable, quantizer in params:
        pos = _positions(layer)
        b = bit_widths(quantizer, variable)
        total = int(b.sum())
        bops += pos * ACTIVATION_BITS * total
        bops_32 += pos * ACTIVATION_BITS * 32 * b.size
        weight_bits += total
        n_weights += b.size
        values, counts = np.unique(b, return_counts=True)
        bits_info = int(values[0]) if values.size == 1 else {int(v): int(c) for v, c in zip(values, counts)}
        tensors[name] = {"bits": bits_info, "positions": pos, "params": int(b.size)}
    return {
        "bops": int(bops),
        "bops_32": int(bops_32),
        "relative_bops": float(bops / bops_32),
        "weight_bits": int(weight_bits),
        "mean_bits": float(weight_bits / n_weights),
        "tensors": tensors,
    }


#: The cost CGMQ constrains (an alias of :func:`bop_cost`).
cgmq_cost = bop_cost


def cgmq_quantizers(model):
    """Every :class:`CGMQQuantizer` of ``model`` (in :func:`lqs_core.layers.quantized_params` order)."""
    from lqs_core.layers import quantized_params

    return [q for *_, q in quantized_params(model) if isinstance(q, CGMQQuantizer)]


def set_satisfied(model, satisfied: bool):
    """Set the Sat (True) / Unsat (False) state every gate direction uses until the next check."""
    for q in cgmq_quantizers(model):
        q.satisfied.assign(1.0 if satisfied else 0.0)


def snap_gates(g):
    """Every gate moved to the middle of its level without changing ``T(g)``: ``ceil(g) - 0.5`` for
    ``0 < g <= 4``, ``4.5`` above 4 (so that ``g - 1`` is exactly one bit level lower)."""
    g = np.asarray(g, dtype=np.float64)
    return np.where(g > 4, 4.5, np.where(g > 0, np.ceil(g) - 0.5, g))


def enforce_budget(model, budget: float, max_rounds: int = len(BIT_WIDTHS) - 1) -> int:
    """While ``relative_bops > budget``: every gate snapped to the middle of its level (:func:`snap_gates`) and
    lowered by one level, ``g <- max(g - 1, 0.5)`` (the Unsat update with ``eta_g * dir = 1``). Returns the
    number of rounds applied (0 if the model already met it; at most 4 reach all-2-bit). Raises ``ValueError`` if
    the budget is unreachable (e.g. non-CGMQ tensors above 2 bits)."""
    budget = check_budget(budget)
    quantizers = cgmq_quantizers(model)
    rounds = 0
    while bop_cost(model)["relative_bops"] > budget:
        if rounds >= max_rounds or all(np.all(q.bit_widths() <= BIT_WIDTHS[0]) for q in quantizers):
            raise ValueError(
                f"budget {budget} cannot be met: relative BOPs {bop_cost(model)['relative_bops']:.6g} with every gate "
                "at its lowest bit width."
            )
        for q in quantizers:
            lowered = np.maximum(snap_gates(keras.ops.convert_to_numpy(q.gate)) - 1.0, q.gate_min)
            q.gate.assign(lowered.astype(np.float32))
        rounds += 1
    return rounds


def assert_budget(model, budget: float) -> Dict[str, object]:
    """:func:`bop_cost` of ``model``; raises ``RuntimeError`` if its relative BOPs exceed ``budget``."""
    budget = check_budget(budget)
    cost = bop_cost(model)
    if cost["relative_bops"] > budget:
        raise RuntimeError(
            f"CGMQ budget violated: relative BOPs {cost['relative_bops']:.6g} > budget {budget:.6g}."
        )
    return cost


class CGMQConstraint(keras.callbacks.Callback):
    """Checks the BOP constraint at the start of training and at every epoch end (§2.5) and sets the gates'
    Sat/Unsat state for the next epoch; adds ``relative_bops`` and ``budget_satisfied`` to the epoch logs. At the
    end of training (``enforce=True``) applies :func:`enforce_budget` and :func:`assert_budget`, so the final model
    meets the budget. ``history``: one ``(epoch, relative_bops, satisfied)`` per check (epoch 0 = start);
    ``enforced_rounds`` / ``final_cost`` after training.

    Place it before callbacks that read the epoch logs (e.g. :class:`lqs_core.training.EpochRecorder`).
    """

    def __init__(self, budget: float, enforce: bool = True):
        super().__init__()
        self.budget = check_budget(budget)
        self.enforce = bool(enforce)
        self.history = []
        self.enforced_rounds = 0
        self.final_cost = None

    def _check(self, epoch: int):
        cost = bop_cost(self.model)["relative_bops"]
        satisfied = cost <= self.budget
        set_satisfied(self.model, satisfied)
        self.history.append((epoch, cost, satisfied))
        return cost, satisfied

    def on_train_begin(self, logs=None):
        if not cgmq_quantizers(self.model):
            raise ValueError("CGMQConstraint: the model has no CGMQ quantizers (build it with quantizer='cgmq').")
        self._check(0)

    def on_epoch_end(self, epoch, logs=None):
        cost, satisfied = self._check(epoch + 1)
        if logs is not None:
            logs["relative_bops"] = float(cost)
            logs["budget_satisfied"] = float(satisfied)

    def on_train_end(self, logs=None):
        if self.enforce:
            self.enforced_rounds = enforce_budget(self.model, self.budget)
            self.final_cost = assert_budget(self.model, self.budget)
            set_satisfied(self.model, True)


__all__ = [
    "ACTIVATION_BITS",
    "BIT_WIDTHS",
    "CGMQConstraint",
    "CGMQQuantizer",
    "DEFAULT_GATE_LR",
    "GATE_INIT",
    "GATE_MIN",
    "MIN_RELATIVE_BUDGET",
    "assert_budget",
    "bit_widths",
    "bop_cost",
    "cgmq_cost",
    "cgmq_quantize",
    "cgmq_quantizers",
    "check_budget",
    "direction",
    "enforce_budget",
    "gate",
    "residual_quantize",
    "set_satisfied",
    "snap_gates",
    "step_bits",
    "step_bits_tf",
    "uniform_quantize",
]
