"""One call from a float Keras model to a quantized one: :func:`quantize_model` (the thesis' "PTQ" mode for any model).

Every layer lqs can quantize (:data:`lqs_core.layers.QUANTIZABLE`: Dense, EinsumDense, Conv1D/2D/3D,
DepthwiseConv1D/2D, SeparableConv1D/2D, Embedding) becomes a :class:`~lqs_core.layers.QuantizedWrapper` around a
copy of itself with its trained float weights, so that it computes with ``P_r = quantizer(P)`` for each kernel
and bias; a ``MultiHeadAttention`` becomes a :class:`QuantizedMultiHeadAttention` (its query, key, value, gate and
output projections wrapped); every other layer is copied as it is. Layers that keep float weights (BatchNorm,
LayerNorm, excluded or unsupported layers, custom layers with a Dense inside) are named, with the reason, in a
``UserWarning`` and in :func:`lqs_core.summary`. Layers that lqs quantizes already (QDense, QConv2D, wrappers) are
copied with their scales, so converting twice gives the same model. Sequential and functional models, nested ones
included, are rebuilt with ``keras.models.clone_model``.

Per-layer quantizers: ``quantizer`` may map layer-name patterns to specs, e.g.
``{"conv_pw_.*": {"method": "lsq", "bits": 4}, "head": None, "*": "nested"}``. A pattern is a regular expression
that must match the whole layer name or the whole path (``outer/inner`` in a nested model; ``re.fullmatch``);
``"*"`` alone matches every layer. Each layer takes the spec of the first pattern it matches, in the dict's order;
``None`` or ``False`` keeps it float, and so does matching no pattern. A pattern that is no layer's first match is an
error (a typo would otherwise leave layers float without a word).
"""

from __future__ import annotations

import re
import warnings
from typing import Callable, Iterable, List, Optional, Tuple, Union

import keras
from keras.src.models.functional import Functional

from lqs_core.layers import QuantizedLayer, QuantizedWrapper, quantizable
from lqs_core.loss_terms import LossTerm
from lqs_core.losses import attach
from lqs_core.quantizers import registry
from lqs_core.quantizers.base import Quantizer

Selection = Union[None, Iterable[str], Callable[[keras.layers.Layer], bool]]

#: The pattern that matches every layer (not a regular expression: ``*`` alone is none).
EVERY_LAYER = "*"
#: Keys a single spec dict may hold; a dict with none of them maps layer-name patterns to specs.
SPEC_KEYS = frozenset({"method", "granularity", "axis", "loss_terms", "class_name", "config", "module",
                       "registered_name"}.union(*(cls.OPTIONS for cls in registry.QUANTIZERS.values())))
#: ``MultiHeadAttention`` attributes holding the EinsumDense projections :class:`QuantizedMultiHeadAttention` wraps.
ATTENTION_PROJECTIONS = ("_query_dense", "_key_dense", "_value_dense", "_gate_dense", "_output_dense")
_SPEC_FORMS = (f"a method name ({', '.join(map(repr, registry.QUANTIZERS))}), a spec dict such as "
               "{'method': 'lsq', 'bits': 4} or a Quantizer")


@keras.saving.register_keras_serializable(package="lqs")
class QuantizedMultiHeadAttention(keras.layers.MultiHeadAttention):
    """``keras.layers.MultiHeadAttention`` whose EinsumDense projections (query, key, value, gate, output) are
    :class:`~lqs_core.layers.QuantizedWrapper` layers: each computes with ``P_r = quantizer(P)``; the attention
    itself (softmax, dropout) is Keras' own.

    Args:
        kernel_quantizer, bias_quantizer: the specs of every projection (as for ``QuantizedWrapper``).
        projection_quantizers: ``{"query": {"kernel_quantizer": config, "bias_quantizer": config}, ...}``: each
            projection's own quantizers, overriding the two specs; ``get_config`` writes them once built, so that
            what a quantizer holds beyond its spec (the weights of attached loss terms) survives ``.keras`` files.
        **kwargs: ``MultiHeadAttention``'s own arguments.

    The wrappers replace the projections at the end of ``build`` (they are named ``<layer>_<projection>``), so a
    layer rebuilt from its config, as ``keras.saving.load_model`` does, has them again.
    """

    def __init__(self, *args, kernel_quantizer=None, bias_quantizer=None, projection_quantizers=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.kernel_quantizer = None if kernel_quantizer is None else registry.normalize(kernel_quantizer)
        self.bias_quantizer = None if bias_quantizer is None else registry.normalize(bias_quantizer)
        self.projection_quantizers = dict(projection_quantizers or {})

    def build(self, query_shape, value_shape, key_shape=None):
        super().build(query_shape, value_shape, key_shape)
        for attr, projection in self._projections():
            own = self.projection_quantizers.get(projection.name, {})
            wrapper = QuantizedWrapper(projection, kernel_quantizer=own.get("kernel_quantizer", self.kernel_quantizer),
                                       bias_quantizer=own.get("bias_quantizer", self.bias_quantizer),
                                       name=f"{self.name}_{projection.name}")
            wrapper.build(None)  # the projection is built: this only puts a quantizer on each of its weights
            delattr(self, attr)
            self._tracker.untrack(projection)  # tracked again, once, as the wrapper's `layer`
            setattr(self, attr, wrapper)

    def _projections(self) -> List[Tuple[str, keras.layers.Layer]]:
        """``[(attribute, layer), ...]`` of the projections this layer has (the gate only with ``use_gate``)."""
        return [(a, getattr(self, a)) for a in ATTENTION_PROJECTIONS if getattr(self, a, None) is not None]

    def load_float_projections(self, float_layer: keras.layers.MultiHeadAttention):
        """Copy the projections' weights of the float ``float_layer`` into this layer's wrappers."""
        for attr, wrapper in self._projections():
            wrapper.load_float_weights(getattr(float_layer, attr).get_weights())

    def get_config(self):
        config = super().get_config()
        own = {w.layer.name: {"kernel_quantizer": registry.serialize(w.kernel_quantizer),
                              "bias_quantizer": None if w.bias_quantizer is None
                              else registry.serialize(w.bias_quantizer)}
               for _, w in self._projections() if isinstance(w, QuantizedWrapper)}
        return {**config, "kernel_quantizer": self.kernel_quantizer, "bias_quantizer": self.bias_quantizer,
                "projection_quantizers": own or self.projection_quantizers}


def is_attention(layer) -> bool:
    """Whether ``layer`` is a float ``keras.layers.MultiHeadAttention`` (exactly: a subclass may compute otherwise)."""
    return type(layer) is keras.layers.MultiHeadAttention


def convertible(layer) -> bool:
    """Whether :func:`quantize_model` can quantize ``layer``: a :data:`~lqs_core.layers.QUANTIZABLE` type or MHA."""
    return quantizable(layer) or is_attention(layer)


def _spec(quantizer, options: dict, what: str) -> dict:
    """The checked spec dict of ``quantizer`` with ``options`` merged in (``ValueError`` naming ``what``)."""
    if isinstance(quantizer, Quantizer):
        quantizer = registry.serialize_spec(quantizer)
    if isinstance(quantizer, str):
        quantizer = {"method": quantizer}
    if quantizer is None:
        quantizer = {"method": "nested"}
    if not isinstance(quantizer, dict):
        raise ValueError(f"quantize_model: {what} must be {_SPEC_FORMS}, got {quantizer!r}.")
    try:
        return registry.normalize({**quantizer, **options})
    except ValueError as e:
        raise ValueError(f"quantize_model: {what}: {e}") from None


def is_pattern_map(quantizer) -> bool:
    """Whether ``quantizer`` is a ``{pattern: spec}`` dict (no key of :data:`SPEC_KEYS`) rather than one spec dict."""
    if not isinstance(quantizer, dict) or not quantizer:
        return False
    spec_keys = sorted(set(quantizer) & SPEC_KEYS, key=str)
    if spec_keys and len(spec_keys) < len(quantizer):
        raise ValueError(f"quantize_model: quantizer mixes spec keys {spec_keys} with other keys "
                         f"{sorted(set(quantizer) - SPEC_KEYS, key=str)}; give one spec dict or a dict "
                         "{layer-name pattern: spec}, not both.")
    return not spec_keys


def _pattern(pattern) -> Optional[re.Pattern]:
    """The compiled regular expression of ``pattern`` (``None`` for :data:`EVERY_LAYER`)."""
    if not isinstance(pattern, str):
        raise ValueError(f"quantize_model: a layer-name pattern must be a string, got {pattern!r}.")
    if pattern == EVERY_LAYER:
        return None
    try:
        return re.compile(pattern)
    except re.error as e:
        raise ValueError(f"quantize_model: pattern {pattern!r} is not a regular expression ({e}); use '.*' for any "
                         f"characters, or {EVERY_LAYER!r} alone for every layer.") from None


Rule = Tuple[str, Optional[re.Pattern], Optional[dict]]


def rules(quantizer, options: dict) -> List[Rule]:
    """``[(pattern, regex, spec or None), ...]`` in the order given (module docstring); one spec gives
    ``[("*", None, spec)]``. Every spec is checked here, before anything is built."""
    if not is_pattern_map(quantizer):
        return [(EVERY_LAYER, None, _spec(quantizer, options, "quantizer"))]
    out = []
    for pattern, value in quantizer.items():
        regex = _pattern(pattern)
        if value is None or value is False:
            out.append((pattern, regex, None))
            continue
        if value is True or not isinstance(value, (str, dict, Quantizer)):
            raise ValueError(f"quantize_model: pattern {pattern!r} maps to {value!r}; allowed: {_SPEC_FORMS}, or "
                             "None / False to keep the layers it matches float.")
        merged = f" merged with the options {sorted(options)} (given to every pattern)" if options else ""
        out.append((pattern, regex, _spec(value, options, f"the spec of pattern {pattern!r}{merged}")))
    return out


def first_rule(rule_list: List[Rule], name: str, path: str) -> Optional[Rule]:
    """The first rule whose pattern matches the whole ``name`` or the whole ``path`` of a layer (``None``: none)."""
    for rule in rule_list:
        regex = rule[1]
        if regex is None or regex.fullmatch(name) or regex.fullmatch(path):
            return rule
    return None


def leaf_layers(model, prefix=""):
    """``[(path, layer), ...]``: every layer of ``model`` below its (nested) models, in order."""
    out = []
    for layer in model.layers:
        if isinstance(layer, keras.Model) and not isinstance(layer, QuantizedLayer):
            out += leaf_layers(layer, f"{prefix}{layer.name}/")
        else:
            out.append((f"{prefix}{layer.name}", layer))
    return out


def _listed(names, limit: int = 30) -> str:
    """``names`` for an error message: all of them, or the first ``limit`` and how many there are."""
    names = list(names)
    return str(names) if len(names) <= limit else f"{names[:limit]} … ({len(names)} in all)"


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


def chosen_specs(model, rule_list: List[Rule], selected: Callable) -> dict:
    """``{id(layer): spec}`` of every layer to quantize; ``ValueError`` naming the patterns that are no layer's
    first match."""
    specs, used = {}, set()
    layers = leaf_layers(model)
    for path, layer in layers:
        rule = first_rule(rule_list, layer.name, path)
        if rule is None:
            continue
        used.add(rule[0])
        if rule[2] is not None and convertible(layer) and selected(layer):
            specs[id(layer)] = rule[2]
    unused = [pattern for pattern, _, _ in rule_list if pattern not in used]
    if unused:
        raise ValueError(f"quantize_model: pattern(s) {unused} match no layer of {model.name!r}, or only layers an "
                         "earlier pattern matched (a pattern must match the whole name or path, re.fullmatch); "
                         f"layers with weights: {_listed(p for p, layer in layers if layer.weights)}.")
    return specs


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
        elif isinstance(d_layer, QuantizedMultiHeadAttention) and is_attention(s_layer):
            d_layer.load_float_projections(s_layer)
        else:
            d_layer.set_weights(s_layer.get_weights())


def quantized_sublayers(layer) -> list:
    """The :class:`~lqs_core.layers.QuantizedLayer` s inside ``layer`` (its wrapped projections; none for a host)."""
    if isinstance(layer, QuantizedLayer):
        return []
    return [sub for sub in layer._flatten_layers(include_self=False, recursive=True)
            if isinstance(sub, QuantizedLayer)]


def _unreached_reason(layer) -> str:
    """Why the float sublayers lqs could quantize inside ``layer`` (a custom layer) stay float."""
    inner = [f"{type(sub).__name__} {sub.name!r}" for sub in layer._flatten_layers(include_self=False, recursive=True)
             if quantizable(sub)]
    return (f"{type(layer).__name__}, holds {', '.join(inner)}, which quantize_model cannot replace: a layer other "
            "than MultiHeadAttention rebuilds its sublayers from its own code when a .keras file is loaded, so a "
            "wrapper put in their place would be lost; build it from lqs host layers (QDense) instead")


def float_layers(model) -> dict:
    """``{path: reason}`` for every layer of ``model`` with weights that are not quantized (nested models walked)."""
    out = {}
    for path, layer in leaf_layers(model):
        if isinstance(layer, QuantizedLayer) or not layer.weights or quantized_sublayers(layer):
            continue
        if convertible(layer):
            out[path] = f"{type(layer).__name__}, not quantized (excluded)"
        elif any(quantizable(sub) for sub in layer._flatten_layers(include_self=False, recursive=True)):
            out[path] = _unreached_reason(layer)
        else:
            out[path] = f"{type(layer).__name__}, a layer type lqs does not quantize"
    return out


def by_reason(left: dict) -> str:
    """``{path: reason}`` as ``"reason: 'a', 'b'; other reason: 'c'"``: each reason once, in order of appearance."""
    paths: dict = {}
    for path, reason in left.items():
        paths.setdefault(reason, []).append(repr(path))
    return "; ".join(f"{reason}: {', '.join(p)}" for reason, p in paths.items())


def _quantized_clone(layer, spec: dict, bias_spec: Optional[dict]):
    """The quantized twin of the float ``layer`` (unbuilt; its weights are copied in after cloning)."""
    config = layer.get_config()
    bias = None if bias_spec is None else dict(bias_spec)
    if is_attention(layer):
        return QuantizedMultiHeadAttention.from_config({**config, "kernel_quantizer": dict(spec),
                                                        "bias_quantizer": bias})
    return QuantizedWrapper(layer.__class__.from_config(config), kernel_quantizer=dict(spec), bias_quantizer=bias,
                            name=layer.name)


def quantize_model(model, quantizer="nested", *, bias_quantizer=None, layers: Selection = None,
                   exclude: Iterable[str] = (), loss_terms: Iterable[LossTerm] = (), warn: bool = True, **options):
    """A new model in which every layer lqs can quantize computes with quantized kernel and bias (module docstring).

    Args:
        model: a built Sequential or functional Keras model (nested models included), e.g. from
            ``keras.applications`` or trained in float; it is not changed.
        quantizer: the kernels' quantizer spec: ``"nested"`` (default), ``{"method": "nested", "granularity":
            "rowwise", "threshold": 1e-10}``, ``{"method": "lsq", "bits": 4}``, ``"fixed"``, ``"cgmq"``, or a
            Quantizer object (its spec is used: each kernel gets its own quantizer); or per layer, a dict
            ``{pattern: spec or None}`` (module docstring: ``re.fullmatch`` on name or path, ``"*"`` = every layer,
            first match wins, ``None`` / ``False`` = keep float).
        **options: merged into every spec (``granularity="outputwise"``, ``threshold=1e-10``, ``bits=4``).
        bias_quantizer: the biases' spec (default: each kernel's method and options at ``scalar``).
        layers: names of the layers to quantize, or a function ``layer -> bool`` (default: every one it can).
        exclude: names of layers to keep in float (e.g. the classifier head).
        loss_terms: ``MaxBin(gamma)`` etc.: the loss-term scheme (:func:`lqs_core.losses.attach`; use it with
            ``threshold=0``, the nested default).
        warn: emit a ``UserWarning`` naming the layers that keep float weights, and why.

    Returns an uncompiled model of the same structure and names. Raises ``ValueError`` for a bad spec or pattern, a
    pattern that is no layer's first match, unknown layer names, a subclassed model, a model that is not built, or a
    granularity a kernel has no axis for.
    """
    rule_list = rules(quantizer, options)
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
    specs = chosen_specs(model, rule_list, _selector(layers, exclude, model))

    def clone(layer):
        if id(layer) in specs:
            return _quantized_clone(layer, specs[id(layer)], bias_spec)
        return layer.__class__.from_config(layer.get_config())

    new = keras.models.clone_model(model, clone_function=clone, recursive=True)
    _copy_weights(model, new)
    if terms:
        attach(new, *terms)
    left = float_layers(new)
    if warn and left:
        warnings.warn(f"quantize_model: {len(left)} layer(s) of {model.name!r} keep float weights: {by_reason(left)}",
                      UserWarning, stacklevel=2)
    return new


__all__ = ["EVERY_LAYER", "QuantizedMultiHeadAttention", "by_reason", "convertible", "float_layers", "is_pattern_map",
           "leaf_layers", "quantize_model", "quantized_sublayers", "rules"]
