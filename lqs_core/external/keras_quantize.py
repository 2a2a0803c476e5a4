"""Keras' own post-training quantization, ``model.quantize(mode)``, of a trained float network, as a comparator.

``mode`` ``"int8"`` (``bits = 8``) or ``"int4"`` (``bits = 4``), with Keras' defaults (what its users get): per
output channel absmax scales for the kernels, ``q = round(W · 127 / max|W|)`` (int4: 7), biases kept in float32,
and the inputs of each quantized layer quantized on the fly (Keras' default activation quantizer). Applied to the
float twin of lqs' network, evaluated, not trained (like min-max ``ptq``).

Sizes for lqs' metrics: each quantized kernel's integers (int4 unpacked) with fixed width ``bits``; the packed
size counts Keras' float32 scales (and zero points where a mode has them) and the float32 biases it keeps.
"""

from __future__ import annotations

from typing import Dict, Tuple

import keras
import numpy as np

from lqs_core.external.sizes import integer_report

#: ``bits`` -> Keras' quantization mode.
MODES = {8: "int8", 4: "int4"}


def mode_of(bits: int) -> str:
    if bits not in MODES:
        raise ValueError(f"method 'keras_quantize': bits must be one of {sorted(MODES)} (Keras' int4 / int8), got {bits!r}.")
    return MODES[bits]


def quantize(model, bits: int):
    """``model.quantize(mode)`` in place (``mode`` from ``bits``); returns the names of the layers Keras quantized."""
    mode = mode_of(bits)
    model.quantize(mode)
    names = [l.name for l in model._flatten_layers(include_self=False, recursive=True)
             if getattr(l, "quantization_mode", None) == mode]
    if not names:
        raise ValueError(f"model.quantize({mode!r}) quantized no layer of {model.name!r}.")
    return names


def _np(x) -> np.ndarray:
    return np.asarray(keras.ops.convert_to_numpy(x))


def integer_tensors(model, float_model) -> Tuple[Dict[str, np.ndarray], Dict[str, np.ndarray], Dict[str, int], int]:
    """``(ints, floats, n_scales, float_bytes)``: each quantized kernel's integers, the float kernel it replaces,
    its number of stored float32 scales (and zero points), and the float32 bytes of the biases kept in float."""
    from keras import quantizers

    floats_by_layer = {l.name: l for l in float_model._flatten_layers(include_self=False, recursive=True)}
    ints, floats, n_scales, float_bytes = {}, {}, {}, 0
    for layer in model._flatten_layers(include_self=False, recursive=True):
        mode = getattr(layer, "quantization_mode", None)
        if mode not in ("int8", "int4"):
            continue
        kernel = layer._kernel
        if mode == "int4":
            kernel = quantizers.unpack_int4(kernel, layer._orig_output_dim, axis=-1)
        name = f"{layer.name}/kernel"
        ints[name] = _np(kernel).astype(np.int64)
        floats[name] = _np(floats_by_layer[layer.name].kernel).astype(np.float32)
        n_scales[name] = int(np.size(_np(layer.kernel_scale))) + (
            int(np.size(_np(layer.kernel_zero))) if getattr(layer, "kernel_zero", None) is not None else 0)
        if getattr(layer, "bias", None) is not None:
            float_bytes += 4 * int(np.size(_np(layer.bias)))
    return ints, floats, n_scales, float_bytes


def report(model, float_model, bits: int) -> dict:
    """lqs' size numbers of a Keras-quantized model (:func:`lqs_core.external.integer_report`, fixed ``bits``)."""
    ints, floats, n_scales, float_bytes = integer_tensors(model, float_model)
    widths = {k: np.full(v.shape, float(bits)) for k, v in ints.items()}
    out = integer_report(ints, floats, bits=widths, n_scales=n_scales)
    out["packed_bytes"] += float_bytes
    out["entropy_bytes"] += float_bytes
    out["float_bias_bytes"] = float_bytes
    return out


__all__ = ["MODES", "integer_tensors", "mode_of", "quantize", "report"]
