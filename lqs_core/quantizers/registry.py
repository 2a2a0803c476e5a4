"""One registry of quantizers: ``get(spec)`` makes a quantizer, ``serialize(q)`` gives back its spec.

A *spec* is what a host layer's ``kernel_quantizer=`` / ``bias_quantizer=`` and the model builders take:

* a :class:`~lqs_core.quantizers.base.Quantizer` object (used as it is);
* a method name: ``"nested"``, ``"fixed"``, ``"lsq"``, ``"cgmq"`` (the method's defaults);
* a dict ``{"method": name, "granularity": g, **options}``, e.g. ``{"method": "nested", "granularity": "rowwise",
  "threshold": 1e-10}`` or ``{"method": "lsq", "bits": 4, "granularity": "outputwise"}``;
* a Keras serialization (``{"class_name": ..., "config": ...}``, what :func:`serialize` returns).

:func:`normalize` checks a spec (``ValueError`` for an unknown method, an unknown option, an invalid value such as
bits outside 2..8) and fills in every default, so two specs that mean the same quantizer compare equal.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Union

import keras

from lqs_core.granularity import validate_granularity
from lqs_core.quantizers.base import Quantizer
from lqs_core.quantizers.cgmq import CGMQQuantizer
from lqs_core.quantizers.fixed import FixedBitQuantizer
from lqs_core.quantizers.lsq import LSQQuantizer
from lqs_core.quantizers.nested import NestedQuantizer

#: Method name -> quantizer class.
QUANTIZERS = {"nested": NestedQuantizer, "fixed": FixedBitQuantizer, "lsq": LSQQuantizer, "cgmq": CGMQQuantizer}
_METHOD_OF = {cls: name for name, cls in QUANTIZERS.items()}

Spec = Union[None, str, Dict[str, Any], Quantizer]


def normalize(spec: Spec, granularity: Optional[str] = None) -> Dict[str, Any]:
    """The canonical dict ``{"method", "granularity", **options}`` of ``spec`` (defaults filled in).

    ``granularity`` applies where the spec names none (default ``"scalar"``). ``None`` means ``"nested"``.
    """
    if isinstance(spec, Quantizer):
        return serialize_spec(spec)
    if spec is None:
        spec = "nested"
    if isinstance(spec, str):
        spec = {"method": spec}
    if not isinstance(spec, dict):
        raise ValueError(f"A quantizer spec must be a method name ({', '.join(map(repr, QUANTIZERS))}), a dict "
                         f"{{'method': ..., ...}} or a Quantizer, got {spec!r}.")
    if "class_name" in spec:
        return serialize_spec(keras.saving.deserialize_keras_object(spec))
    spec = dict(spec)
    method = spec.pop("method", "nested")
    if method not in QUANTIZERS:
        raise ValueError(f"Unknown quantizer method {method!r}; allowed: {', '.join(map(repr, QUANTIZERS))}.")
    gran = validate_granularity(spec.pop("granularity", None) or granularity or "scalar")
    axis = spec.pop("axis", None)
    if axis is not None and (isinstance(axis, bool) or not isinstance(axis, int)):
        raise ValueError(f"axis must be an integer (the axis that keeps its own scale) or None, got {axis!r}.")
    out = {"method": method, "granularity": gran, **QUANTIZERS[method].validate_options(spec)}
    return out if axis is None else {**out, "axis": axis}


def get(spec: Spec, granularity: Optional[str] = None, name: Optional[str] = None) -> Quantizer:
    """A quantizer for ``spec`` (module docstring); a :class:`Quantizer` object is returned as it is."""
    if isinstance(spec, Quantizer):
        return spec
    if isinstance(spec, dict) and "class_name" in spec:
        return keras.saving.deserialize_keras_object(spec)
    options = normalize(spec, granularity)
    method = options.pop("method")
    return QUANTIZERS[method](name=name, **options)


def method_of(quantizer: Quantizer) -> str:
    """The registry name of ``quantizer``'s class (``"nested"``, ``"fixed"``, ``"lsq"``, ``"cgmq"``)."""
    for cls, method in _METHOD_OF.items():
        if type(quantizer) is cls:
            return method
    raise ValueError(f"{type(quantizer).__name__} is not a registered quantizer; allowed: "
                     f"{', '.join(c.__name__ for c in _METHOD_OF)}.")


def serialize_spec(quantizer: Quantizer) -> Dict[str, Any]:
    """The spec dict of a quantizer object: ``{"method", "granularity", **options}``."""
    config = quantizer.get_config()
    cls = type(quantizer)
    spec = {"method": method_of(quantizer), "granularity": quantizer.granularity,
            **{k: config[k] for k in cls.OPTIONS}}
    return spec if quantizer.axis is None else {**spec, "axis": quantizer.axis}


def serialize(quantizer: Quantizer) -> Dict[str, Any]:
    """The Keras serialization of ``quantizer`` (what a host's ``get_config`` stores; ``get`` reads it back).

    Without Keras' ``build_config``: the host builds its quantizers for its parameters' shapes."""
    config = keras.saving.serialize_keras_object(quantizer)
    config.pop("build_config", None)
    return config


__all__ = ["QUANTIZERS", "Spec", "get", "method_of", "normalize", "serialize", "serialize_spec"]
