"""CGMQ's cost constraint and the weights-only BOP cost of any quantized model (``papers/cgmq.txt`` §2.5).

**Cost constraint** (§2.5). The layers here quantize weights only (activations stay float32), so the cost is the
**weights-only BOP count** with every activation at ``b_a = 32`` bits: per host layer,
``BOP(l) = positions(l) * 32 * Σ_{w in kernel, bias} b_w``, where ``positions`` is the number of output positions
each weight is used at (1 for Dense, ``H_out * W_out`` for Conv2D), i.e. the paper's "sum over activations of the
bit width of the activation times the sum of the bit widths of the weights that determine it", with the bias
counted as one of those weights (the paper calls every learnable parameter a weight). The **budget** is relative:
``cost / cost(all weights 32 bits)`` (the paper's relative GBOPs), in ``[1/16, 1]`` — ``1/16`` (every weight at 2
bits) is the smallest reachable cost. :func:`bop_cost` reports it (for a model of any method).

**Check and guarantee.** :class:`CGMQConstraint` (a Keras callback) checks the constraint at the start of training
and at every epoch end and sets the gates' Sat/Unsat state for the next epoch. Training can end in a Sat-state
epoch that raised the cost again, so at the end of training it applies the Unsat update with a constant direction,
``g <- max(g - 1, 0.5)`` after snapping each gate to the middle of its level (one bit level down for every gate,
i.e. ``eta_g * dir = 1``, a valid positive direction) until the constraint holds (:func:`enforce_budget`; at most 4 rounds reach all-2-bit) and then asserts it
(:func:`assert_budget` raises ``RuntimeError`` otherwise), so the final model always meets the budget.
"""

from __future__ import annotations

from typing import Dict

import keras
import numpy as np

from lqs_core.layers import QDense, quantized_params
from lqs_core.metrics import bits_fixed
from lqs_core.quantizers.cgmq import CGMQQuantizer
from lqs_core.spec import BIT_WIDTHS, check_budget

#: Bits of every activation in the BOP count (activations are not quantized here).
ACTIVATION_BITS = 32



def _positions(layer) -> int:
    """How many output positions each weight of ``layer`` is used at: ``prod(output_shape[1:-1])``."""
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
    q = np.asarray(keras.ops.convert_to_numpy(quantizer.integers(variable)))
    return np.full(shape, bits_fixed(q.astype(np.int64)), dtype=np.int64)


def bop_cost(model) -> Dict[str, object]:
    """Weights-only BOP cost of ``model`` (module docstring), for any quantized model.

    Returns ``{"bops": Σ_l positions_l · 32 · Σ b_w, "bops_32": the same with every b_w = 32, "relative_bops":
    bops / bops_32, "weight_bits": Σ b_w (memory of the weights in bits), "mean_bits": weight_bits / #weights,
    "tensors": {name: {"bits": int or {bits: count}, "positions": n, "params": n}}}``.
    """
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

    def get_state(self) -> dict:
        """The checks so far (JSON-ready), for :class:`lqs_core.checkpoint.EpochCheckpoint`."""
        return {"history": [[int(e), float(c), bool(s)] for e, c, s in self.history]}

    def set_state(self, state: dict) -> None:
        """Restore :meth:`get_state`'s checks (a resumed run: the check at its first epoch is not repeated)."""
        self.history = [tuple(h) for h in state["history"]]
        self._resumed = True

    def on_train_begin(self, logs=None):
        if getattr(self, "_resumed", False):
            self._resumed = False
            _, _, satisfied = self.history[-1]
            set_satisfied(self.model, satisfied)
            return
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
    "CGMQConstraint",
    "assert_budget",
    "bit_widths",
    "bop_cost",
    "cgmq_cost",
    "cgmq_quantizers",
    "enforce_budget",
    "set_satisfied",
    "snap_gates",
]
