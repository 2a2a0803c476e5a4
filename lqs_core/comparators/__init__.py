"""Comparators from the other papers and the field (SPEC §5), on the same footing as the nested layer.

Every comparator is either a *quantizer* that the host layers (:class:`~lqs_core.layers.QDense`,
:class:`~lqs_core.layers.QConv2D`) use in place of the nested quantizer, or a small function on top of them, so a
model of any method reports the same numbers through :func:`lqs_core.metrics.summary` / :func:`~lqs_core.metrics.report`
(accuracy, fixed-width and entropy bits per weight, packed size, unique integers):

========================  ==========================================================  ==============================
method                    what                                                        module
========================  ==========================================================  ==============================
``fixed``                 uniform symmetric b-bit quantizer, min-max scale, STE       :mod:`.fixed`
``lsq``                   learned step size (Esser et al. 2020)                       :mod:`.lsq`
``ptq``                   min-max b-bit quantization of a trained float model         :mod:`.ptq`
``cgmq``                  gate variables -> bit widths under a BOP budget             :mod:`.cgmq`
``layer_importance``      imprinting-based per-layer bit selection (Algorithm 2)      :mod:`.layer_importance`
========================  ==========================================================  ==============================

Host layers take ``quantizer="nested"`` (default, the thesis' layer, unchanged) or a *spec*: a method name
(``"fixed"``, ``"lsq"``, ``"cgmq"``) or a dict ``{"method": name, "bits": b, **options}``; :func:`normalize_spec`
validates it (``ValueError`` for an unknown method, bits outside 2..8, unknown options) and returns the canonical
dict stored in the host's ``get_config`` (so ``.keras`` files round-trip). Every comparator quantizer has the
interface :mod:`lqs_core.metrics` and :mod:`lqs_core.export` read: ``scale`` (a variable), ``integers(P)``,
``granularity``, ``axis``, ``rounding`` (``"round"``), ``slice_axes``, plus ``calibrate(P)``, which the host calls
after creating ``P`` and after loading float weights into it.

Signed b-bit integers throughout: ``Q_N = 2^(b-1)``, ``Q_P = 2^(b-1) - 1`` (:func:`qrange`).
"""

from __future__ import annotations

from typing import Any, Dict, Tuple, Union

import numpy as np

#: Bit widths allowed for the fixed-bit, LSQ and PTQ quantizers (and as the start of the layer-importance search).
BITS_MIN, BITS_MAX = 2, 8
#: Quantizer methods a host layer can use besides ``"nested"``.
QUANTIZER_METHODS = ("fixed", "lsq", "cgmq")


def check_bits(bits, name: str = "bits", low: int = BITS_MIN, high: int = BITS_MAX) -> int:
    """``bits`` as an int in ``[low, high]`` (default 2..8), else ``ValueError`` naming ``name``."""
    if isinstance(bits, bool):
        raise ValueError(f"{name} must be an integer in {low}..{high}, got {bits!r}.")
    if isinstance(bits, (float, np.floating)) and float(bits).is_integer():
        bits = int(bits)
    if isinstance(bits, np.integer):
        bits = int(bits)
    if not isinstance(bits, int):
        raise ValueError(f"{name} must be an integer in {low}..{high}, got {bits!r}.")
    if not low <= bits <= high:
        raise ValueError(f"{name} must be in {low}..{high}, got {bits}.")
    return bits


def qrange(bits: int) -> Tuple[int, int]:
    """``(Q_N, Q_P) = (2^(b-1), 2^(b-1) - 1)``: the signed b-bit integer range is ``[-Q_N, Q_P]``."""
    bits = int(bits)
    return 2 ** (bits - 1), 2 ** (bits - 1) - 1


def _classes():
    from lqs_core.comparators.cgmq import CGMQQuantizer
    from lqs_core.comparators.fixed import FixedBitQuantizer
    from lqs_core.comparators.lsq import LSQQuantizer

    return {"fixed": FixedBitQuantizer, "lsq": LSQQuantizer, "cgmq": CGMQQuantizer}


def normalize_spec(spec: Union[None, str, Dict[str, Any]]) -> Union[str, Dict[str, Any]]:
    """The canonical form of a host layer's ``quantizer`` argument: ``"nested"`` or a validated dict.

    ``None`` / ``"nested"`` -> ``"nested"``; ``"fixed"`` -> ``{"method": "fixed", "bits": 8}`` (each class' defaults
    filled in); ``{"method": "lsq", "bits": 4}`` -> the same with defaults. Raises ``ValueError`` for an unknown
    method, an unknown option or an invalid value (e.g. bits outside 2..8).
    """
    if spec is None or spec == "nested":
        return "nested"
    if isinstance(spec, str):
        spec = {"method": spec}
    if not isinstance(spec, dict):
        raise ValueError(f"quantizer must be 'nested', a method name or a dict {{'method': ..., ...}}, got {spec!r}.")
    spec = dict(spec)
    method = spec.pop("method", None)
    if method == "nested":
        if spec:
            raise ValueError(f"quantizer 'nested' takes its options from the host layer, got {sorted(spec)}.")
        return "nested"
    classes = _classes()
    if method not in classes:
        raise ValueError(
            f"Unknown quantizer method {method!r}; allowed: 'nested', {', '.join(repr(m) for m in classes)}."
        )
    return {"method": method, **classes[method].validate_options(spec)}


def make_quantizer(spec, granularity: str = "scalar", name=None, axis=None):
    """A comparator quantizer layer for ``spec`` (see :func:`normalize_spec`) with the given scale granularity."""
    spec = normalize_spec(spec)
    if spec == "nested":
        raise ValueError("make_quantizer: 'nested' quantizers are made by the host layer itself.")
    options = {k: v for k, v in spec.items() if k != "method"}
    return _classes()[spec["method"]](granularity=granularity, axis=axis, name=name, **options)


def is_comparator(quantizer) -> bool:
    """Whether ``quantizer`` is one of the comparator quantizers (not the nested one)."""
    return isinstance(quantizer, tuple(_classes().values()))


from lqs_core.comparators.cgmq import (  # noqa: E402  (after the helpers they import)
    BIT_WIDTHS,
    CGMQConstraint,
    CGMQQuantizer,
    assert_budget,
    cgmq_cost,
    enforce_budget,
    step_bits,
)
from lqs_core.comparators.fixed import FixedBitQuantizer, fixed_quantize, minmax_scale  # noqa: E402
from lqs_core.comparators.layer_importance import (  # noqa: E402
    imprint_accuracy,
    layer_accuracies,
    select_bits,
    set_layer_bits,
)
from lqs_core.comparators.lsq import LSQQuantizer, lsq_quantize  # noqa: E402
from lqs_core.comparators.ptq import ptq_quantize  # noqa: E402

__all__ = [
    "BITS_MAX",
    "BITS_MIN",
    "BIT_WIDTHS",
    "CGMQConstraint",
    "CGMQQuantizer",
    "FixedBitQuantizer",
    "LSQQuantizer",
    "QUANTIZER_METHODS",
    "assert_budget",
    "cgmq_cost",
    "check_bits",
    "enforce_budget",
    "fixed_quantize",
    "imprint_accuracy",
    "is_comparator",
    "layer_accuracies",
    "lsq_quantize",
    "make_quantizer",
    "minmax_scale",
    "normalize_spec",
    "ptq_quantize",
    "qrange",
    "select_bits",
    "set_layer_bits",
    "step_bits",
]
