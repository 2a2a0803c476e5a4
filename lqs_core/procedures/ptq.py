"""PTQ (survey §4.2): min-max symmetric b-bit quantization of a trained float model, no retraining.

:func:`ptq_quantize` builds the quantized twin of a float model — every Dense / Conv2D layer that the network
quantizes (:func:`lqs_core.models.twin_layer_names`, or ``layers=``) becomes a :class:`~lqs_core.layers.QDense` /
:class:`~lqs_core.layers.QConv2D` with :class:`~lqs_core.quantizers.FixedBitQuantizer` s, everything else is
cloned — and copies all float weights into it (:func:`lqs_core.models.transfer_float_weights`). Per parameter::

    s   = max|P| / Q_P                 # per tensor (per_channel=False) or per output channel (per_channel=True)
    P_q = round(clip(P / s, -Q_N, Q_P)),   P_r = P_q * s

with ``Q_N = 2^(b-1)``, ``Q_P = 2^(b-1) - 1``; biases always get one scale. The thesis' comparison sweep uses
``b in {2, 3, 4, 8}``; any ``b`` in 2..8 is accepted. The model is compiled (sparse categorical cross-entropy,
accuracy) so ``model.evaluate`` gives the PTQ accuracy directly, and :func:`lqs_core.metrics.report` its sizes.
Layers that keep float weights (BatchNorm, a float head, DepthwiseConv2D/Embedding, which this procedure does not
convert) are named in a ``UserWarning``; :func:`lqs_core.quantize_model` converts every layer type lqs can.
"""

from __future__ import annotations

import warnings
from typing import Iterable, Optional

import keras

from lqs_core.convert import float_layers
from lqs_core.granularity import validate_granularity
from lqs_core.layers import QConv2D, QDense, quantized_params
from lqs_core.models import transfer_float_weights, twin_layer_names
from lqs_core.spec import check_bits


def ptq_quantize(float_model, bits: int, per_channel: bool = False, *, granularity: Optional[str] = None,
                 layers: Optional[Iterable[str]] = None, compile: bool = True):
    """The fixed-bit quantized twin of ``float_model`` with its trained weights (module docstring).

    Args:
        float_model: a built Keras model (functional or Sequential) with plain Dense / Conv2D layers.
        bits: 2..8.
        per_channel: one scale per output channel (``granularity="outputwise"``) instead of per tensor.
        granularity: overrides ``per_channel`` with any granularity name of :mod:`lqs_core.granularity`.
        layers: names of the layers to quantize (default :func:`lqs_core.models.twin_layer_names`).
        compile: compile with sparse categorical cross-entropy and accuracy (for ``model.evaluate``).
    """
    bits = check_bits(bits)
    granularity = validate_granularity(granularity or ("outputwise" if per_channel else "scalar"))
    if quantized_params(float_model):
        raise ValueError("ptq_quantize needs a float model; this one already has quantized layers.")
    names = set(twin_layer_names(float_model) if layers is None else layers)
    spec = {"method": "fixed", "bits": bits, "granularity": granularity}
    converted = []

    def clone(layer):
        if layer.name in names and isinstance(layer, (keras.layers.Dense, keras.layers.Conv2D)):
            cls = QConv2D if isinstance(layer, keras.layers.Conv2D) else QDense
            config = layer.get_config()
            cls._check_float_config(config)
            kwargs = {k: config[k] for k in cls._FLOAT_CONFIG_KEYS}
            converted.append(layer.name)
            return cls(**kwargs, kernel_quantizer=spec)
        return layer.__class__.from_config(layer.get_config())

    model = keras.models.clone_model(float_model, clone_function=clone)
    missing = sorted(names - set(converted))
    if layers is not None and missing:
        raise ValueError(f"ptq_quantize: no Dense/Conv2D layer named {missing} in {float_model.name!r}.")
    transfer_float_weights(float_model, model)
    model.lqs_twin_layers = tuple(converted)
    left = float_layers(model)
    if left:
        warnings.warn(f"ptq_quantize: {len(left)} layer(s) of {float_model.name!r} keep float weights: "
                      + "; ".join(f"{k!r} ({v})" for k, v in left.items())
                      + ". lqs_core.quantize_model(model, 'fixed', bits=...) quantizes every layer lqs can.",
                      UserWarning, stacklevel=2)
    if compile:
        model.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


__all__ = ["ptq_quantize"]
