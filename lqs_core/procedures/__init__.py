"""Whole-model procedures on top of the quantized hosts (docs/method.md §5).

==========================  ==================================================================  ==========================
procedure                   what                                                                module
==========================  ==================================================================  ==========================
``ptq_quantize``            min-max b-bit quantization of a trained float model (no retraining)  :mod:`.ptq`
``select_bits``             imprinting-based per-layer bit selection (Algorithm 2)              :mod:`.layer_importance`
``CGMQConstraint``          CGMQ's BOP budget: check every epoch, enforce at the end            :mod:`.budget`
``bop_cost``                weights-only BOP cost of any quantized model                        :mod:`.budget`
==========================  ==================================================================  ==========================
"""

from lqs_core.procedures.budget import (
    ACTIVATION_BITS,
    CGMQConstraint,
    assert_budget,
    bit_widths,
    bop_cost,
    cgmq_cost,
    cgmq_quantizers,
    enforce_budget,
    set_satisfied,
    snap_gates,
)
from lqs_core.procedures.layer_importance import imprint_accuracy, layer_accuracies, select_bits, set_layer_bits
from lqs_core.procedures.ptq import ptq_quantize

__all__ = [
    "ACTIVATION_BITS",
    "CGMQConstraint",
    "assert_budget",
    "bit_widths",
    "bop_cost",
    "cgmq_cost",
    "cgmq_quantizers",
    "enforce_budget",
    "imprint_accuracy",
    "layer_accuracies",
    "ptq_quantize",
    "select_bits",
    "set_layer_bits",
    "set_satisfied",
    "snap_gates",
]
