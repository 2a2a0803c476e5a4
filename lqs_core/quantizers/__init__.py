"""Quantizers: how a host layer turns a float parameter into the integers times scale it computes with.

==================  ===========================================================  =====================
method              what                                                         class
==================  ===========================================================  =====================
``nested``          learned scale, ``floor(P/s)·s``, ratio-threshold gradient     :class:`NestedQuantizer`
                    (the thesis; loss terms as objects for the loss-term scheme)
``fixed``           uniform symmetric b-bit, min-max scale, STE (fixed-bit QAT)   :class:`FixedBitQuantizer`
``lsq``             learned step size (Esser et al. 2020)                          :class:`LSQQuantizer`
``cgmq``            gate variables -> bit widths (CGMQ)                            :class:`CGMQQuantizer`
==================  ===========================================================  =====================

All implement :class:`~lqs_core.quantizers.base.Quantizer`; :func:`get` / :func:`serialize` (the registry) make
them from specs such as ``{"method": "lsq", "bits": 4, "granularity": "outputwise"}``. Whole-model procedures
(PTQ, layer-importance bit selection, the CGMQ budget and BOP cost) are in :mod:`lqs_core.procedures`.
"""

from lqs_core.quantizers.base import Quantizer
from lqs_core.quantizers.cgmq import CGMQQuantizer, step_bits
from lqs_core.quantizers.fixed import FixedBitQuantizer, fixed_quantize, minmax_scale
from lqs_core.quantizers.lsq import LSQQuantizer, lsq_quantize
from lqs_core.quantizers.nested import NestedQuantizer, ScaleMin, nested_quantize, ratio_threshold_scale_gradient
from lqs_core.quantizers.registry import QUANTIZERS, get, method_of, normalize, serialize, serialize_spec

__all__ = [
    "CGMQQuantizer",
    "FixedBitQuantizer",
    "LSQQuantizer",
    "NestedQuantizer",
    "QUANTIZERS",
    "Quantizer",
    "ScaleMin",
    "fixed_quantize",
    "get",
    "lsq_quantize",
    "method_of",
    "minmax_scale",
    "nested_quantize",
    "normalize",
    "ratio_threshold_scale_gradient",
    "serialize",
    "serialize_spec",
    "step_bits",
]
