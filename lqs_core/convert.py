"""One call from a float Keras model to a quantized one: :func:`quantize_model` (the thesis' "PTQ" mode for any model).

Every layer lqs can quantize (:data:`lqs_core.layers.QUANTIZABLE`: Dense, EinsumDense, Conv1D/2D/3D,
DepthwiseConv1D/2D, SeparableConv1D/2D, Embedding) becomes a :class:`~lqs_core.layers.QuantizedWrapper` around a
copy of itself with its trained float weights, so that it computes with ``P_r = quantizer(P)`` for each kernel
and bias; every other layer is copied as it is. Layers that keep float weights (BatchNorm, LayerNorm, excluded or
unsupported layers) are named in a ``UserWarning`` and in :func:`lqs_core.summary`. Layers that lqs quantizes
already (QDense, QConv2D, wrappers) are copied with their scales, so converting twice gives the same model.
Sequential and functional models, nested ones included, are rebuilt with ``keras.models.clone_model``.
"""

from __future__ import annotations

import warnings
from typing import Callable, Iterable, Optional, Union

import keras
from keras.src.models.functional import Functional

from lqs_core.layers import QuantizedLayer, QuantizedWrapper, quantizable
from lqs_core.loss_terms import LossTerm
from lqs_core.losses import attach
from lqs_core.quantizers import registry
from lqs_core.quantizers.base import Quantizer

Selection = Union[None, Iterable[str], Callable[[keras.layers.Layer], bool]]


def _spec(quantizer, options: dict, what: str) -> dict:
    """The checked spec dict of ``quantizer`` with ``options`` merged in (``ValueError`` for a bad one)."""
    if isinstance(quantizer, Quantizer):
        quantizer = registry.serialize_spec(quantizer)
    if isinstance(quantizer, str):
        quantizer = {"method": quantizer}
    if quantizer is None:
        quantizer = {"method": "nested"}
    if not isinstance(quantizer, dict):
        raise ValueError(f"quantize_model: {what} must be a method name ({', '.join(map(repr, registry.QUANTIZERS))}),"
                         f" a spec dict or a Quantizer, got {quantizer!r}.")
    return registry.normalize({**quantizer, **options})


def leaf_layers(model, prefix=""):
    """``[(path, layer), ...]``: every layer of ``model`` below its (nested) models, in order."""
    out = []
    for layer in model.layers:
        if isinstance(layer, keras.Model) and not isinstance(layer, QuantizedLayer):
            out += leaf_layers(layer, f"{prefix}{layer.name}/")
        else:
            out.append((f"{prefix}{layer.name}", layer))
    return out


def _selector(select: Selection, exclude: Iterable[str], model) -> Callable:
    """``layer -> bool``: whether to quantize ``layer`` (``ValueError`` for names the model does not have)."""
    names = {path.split("/")[-1] for path, _ in leaf_layers(model)}
    if isinstance(select, str) or isinstance(exclude, str):
        raise ValueError(f"quantize_model: layers / exclude take a list of layer names (layers also a function), "
                         f"got {select!r} / {exclude!r}.")
    exclude = set(exclude or ())
    wanted = None if select is None or callable(select) else set(select)
    missing = sorted(((wanted or set()) | exclude) - names)
    if missing:
        raise ValueError(f"quantize_model: no layer named {missing} in {model.name!r}; its layers: {sorted(names)}.")
    if callable(select):
        return lambda layer: layer.name not in exclude and bool(select(layer))
    return lambda layer: layer.name not in exclude and (wanted is None or layer.name in wanted)


def _copy_weights(src, dst):
    """Copy the weights of ``src`` into its clone ``dst`` layer by layer (float layers into their wrappers)."""
    for s_layer in src.layers:
        if not s_layer.weights:
            continue  # nothing to copy (input layers get new names when cloned)
        d_layer = dst.get_layer(s_layer.name)
        if isinstance(s_layer, keras.Model) and isinstance(d_layer, keras.Model) \
                and not isinstance(s_layer, QuantizedLayer):
            _copy_weights(s_layer, d_layer)
        elif isinstance(d_layer, QuantizedWrapper) and not isinstance(s_layer, QuantizedLayer):
            d_layer.load_float_weights(s_layer.get_weights())
        elif s_layer.weights:
            d_layer.set_weights(s_layer.get_weights())


def float_layers(model) -> dict:
    """``{path: reason}`` for every layer of ``model`` with weights that are not quantized (nested models walked)."""
    out = {}
    for path, layer in leaf_layers(model):
        if isinstance(layer, QuantizedLayer) or not layer.weights:
            continue
        out[path] = (f"{type(layer).__name__}, not quantized (excluded)" if quantizable(layer)
                     else f"{type(layer).__name__}, a layer type lqs does not quantize")
    return out


def quantize_model(model, quantizer="nested", *, bias_quantizer=None, layers: Selection = None,
                   exclude: Iterable[str] = (), loss_terms: Iterable[LossTerm] = (), warn: bool = True, **options):
    """A new model in which every layer lqs can quantize computes with quantized kernel and bias (module docstring).

    Args:
        model: a built Sequential or functional Keras model (nested models included), e.g. from
            ``keras.applications`` or trained in float; it is not changed.
        quantizer: the kernels' quantizer spec: ``"nested"`` (default), ``{"method": "nested", "granularity":
            "rowwise", "threshold": 1e-10}``, ``{"method": "lsq", "bits": 4}``, ``"fixed"``, ``"cgmq"``, or a
            Quantizer object (its spec is used: each kernel gets its own quantizer).
        **options: merged into ``quantizer``'s spec (``granularity="outputwise"``, ``threshold=1e-10``, ``bits=4``).
        bias_quantizer: the biases' spec (default: the kernel's method and options at ``scalar``).
        layers: names of the layers to quantize, or a function ``layer -> bool`` (default: every one it can).
        exclude: names of layers to keep in float (e.g. the classifier head).
        loss_terms: ``MaxBin(gamma)`` etc.: the loss-term scheme (:func:`lqs_core.losses.attach`; use it with
            ``threshold=0``, the nested default).
        warn: emit a ``UserWarning`` naming the layers that keep float weights.

    Returns an uncompiled model of the same structure and names. Raises ``ValueError`` for a bad spec, unknown
    layer names, a subclassed model, a model that is not built, or a granularity a kernel has no axis for.
    """
    spec = _spec(quantizer, options, "quantizer")
    bias_spec = None if bias_quantizer is None else _spec(bias_quantizer, {}, "bias_quantizer")
    terms = list(loss_terms)
    for t in terms:
        if not isinstance(t, LossTerm):
            raise ValueError(f"quantize_model: loss_terms takes LossTerm objects (MaxBin, Inverse, ...), got {t!r}.")
    if not isinstance(model, keras.Model):
        raise ValueError(f"quantize_model needs a Keras model, got {type(model).__name__}.")
    if not isinstance(model, (keras.Sequential, Functional)):
        raise ValueError(f"quantize_model: {type(model).__name__} {model.name!r} is a subclassed model; only "
                         "Sequential and functional models can be rebuilt layer by layer.")
    if not model.built:
        raise ValueError(f"quantize_model: model {model.name!r} is not built; build it (keras.Input or "
                         "model.build(input_shape)) first.")
    selected = _selector(layers, exclude, model)

    def clone(layer):
        config = layer.get_config()
        if isinstance(layer, QuantizedLayer):
            return layer.__class__.from_config(config)
        if quantizable(layer) and selected(layer):
            return QuantizedWrapper(layer.__class__.from_config(config), kernel_quantizer=dict(spec),
                                    bias_quantizer=None if bias_spec is None else dict(bias_spec), name=layer.name)
        return layer.__class__.from_config(config)

    new = keras.models.clone_model(model, clone_function=clone, recursive=True)
    _copy_weights(model, new)
    if terms:
        attach(new, *terms)
    left = float_layers(new)
    if warn and left:
        warnings.warn(f"quantize_model: {len(left)} layer(s) of {model.name!r} keep float weights: "
                      + "; ".join(f"{k!r} ({v})" for k, v in left.items()), UserWarning, stacklevel=2)
    return new


__all__ = ["float_layers", "leaf_layers", "quantize_model"]
