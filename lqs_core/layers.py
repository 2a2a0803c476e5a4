"""Host layers: Keras layers that compute with quantized parameters (docs/method.md §1, §1.3).

A host owns its float parameters ``P`` and one quantizer per parameter (:mod:`lqs_core.quantizers`), and in
``call`` uses ``P_r = quantizer(P)`` where a plain layer uses ``P``. Like Larq's ``QuantDense(kernel_quantizer=)``
and HGQ2's ``QDense(kq_conf=)``, a host takes its quantizers as objects or specs::

    QDense(64, kernel_quantizer={"method": "nested", "granularity": "rowwise", "threshold": 1e-10})
    QDense(64, kernel_quantizer={"method": "lsq", "bits": 4, "granularity": "outputwise"})
    QConv2D(32, 3, kernel_quantizer=NestedQuantizer("channelwise", threshold=1e-10), bias_quantizer="nested")

``bias_quantizer`` defaults to the kernel's method and options at ``scalar`` granularity (the thesis quantizes
biases with one scale). The keywords of lqs 0.1 — ``granularity``, ``threshold``, ``scale_init``, ``scale_min``,
``rounding``, ``quantizer``, ``loss_terms`` — still build the same quantizers, so every ``.keras`` file written
before loads. :class:`QuantizedLayer` holds the bookkeeping, so a new host type needs only ``build`` and ``call``;
a quantized depthwise convolution would be::

    class QDepthwiseConv2D(QuantizedLayer):
        KERNEL_RANK = 4
        def build(self, input_shape):
            self.kernel = self.add_quantized_weight("kernel", (3, 3, input_shape[-1], 1), self.kernel_quantizer)
        def call(self, x):
            return keras.ops.depthwise_conv(x, self.quantized("kernel"), 1, "same")

Quantizers with a ``calibrate(P)`` method (min-max scales, LSQ's initial step) are calibrated when the parameter is
created and when float weights are loaded into it. Weights *and* biases are initialized with
``RandomNormal(0, 0.05)`` (the thesis' setting); :meth:`QuantizedLayer.from_float` builds a host from a trained
float layer's weights (the thesis' "PTQ" mode: quantization switched on for a pretrained model).
"""

from __future__ import annotations

import contextlib
from typing import Optional

import keras
from keras import ops
from keras.src.backend.common import stateless_scope as _stateless

from lqs_core import loss_terms
from lqs_core.granularity import scale_axis
from lqs_core.quantizers import registry
from lqs_core.quantizers.base import Quantizer
from lqs_core.quantizers.nested import NestedQuantizer

#: Keywords of lqs 0.1 hosts that describe their quantizers (still accepted; see the module docstring).
LEGACY_QUANTIZER_KEYWORDS = ("granularity", "threshold", "scale_init", "scale_min", "rounding", "quantizer",
                             "loss_terms")


def default_initializer():
    """``RandomNormal(mean=0, stddev=0.05)``; seeded through ``keras.utils.set_random_seed``."""
    return keras.initializers.RandomNormal(mean=0.0, stddev=0.05)


def _legacy_specs(legacy: dict):
    """Kernel and bias specs from lqs 0.1 keywords (``quantizer`` = "nested" or a comparator dict)."""
    base = legacy.get("quantizer")
    base = dict(registry.normalize(base)) if base not in (None, "nested") else {"method": "nested"}
    if base["method"] == "nested":
        for key in ("threshold", "scale_init", "scale_min", "rounding"):
            if legacy.get(key) is not None:
                base[key] = legacy[key]
    base.pop("granularity", None)
    kernel = {**base, "granularity": legacy.get("granularity") or "scalar"}
    bias = {**base, "granularity": "scalar"}
    terms = legacy.get("loss_terms") or {}
    if terms:
        kernel["loss_terms"], bias["loss_terms"] = terms.get("kernel", []), terms.get("bias", [])
    return kernel, bias


def _bias_spec(kernel_quantizer) -> dict:
    """The default bias spec: the kernel quantizer's method and options at ``scalar`` granularity."""
    spec = {**registry.normalize(kernel_quantizer), "granularity": "scalar"}
    spec.pop("axis", None)
    return spec


def _make(spec, granularity: str, name: str) -> Quantizer:
    """The quantizer of ``spec``; a spec dict may carry ``loss_terms`` for a nested quantizer (lqs 0.1 files)."""
    terms = None
    if isinstance(spec, dict) and "class_name" not in spec:
        spec = dict(spec)
        terms = spec.pop("loss_terms", None)
    quantizer = registry.get(spec, granularity=granularity, name=name)
    if terms:
        if not isinstance(quantizer, NestedQuantizer):
            raise ValueError(f"loss_terms apply to the nested quantizer only, got {type(quantizer).__name__}.")
        quantizer.loss_terms = [loss_terms.get(t) for t in terms]
    return quantizer


class QuantizedLayer(keras.layers.Layer):
    """Base of host layers: parameters registered with :meth:`add_quantized_weight` are quantized in ``call``.

    Args:
        kernel_quantizer: quantizer object or spec of the main weight (:func:`lqs_core.quantizers.get`);
            default: the nested quantizer at ``scalar`` granularity.
        bias_quantizer: of the bias; default: the kernel quantizer's method and options at ``scalar``.
        granularity, threshold, scale_init, scale_min, rounding, quantizer, loss_terms: lqs 0.1 keywords
            (module docstring); not together with ``kernel_quantizer`` / ``bias_quantizer``.
    """

    #: Rank of the kernel (checks a kernel quantizer's granularity at construction).
    KERNEL_RANK: Optional[int] = None

    def __init__(self, kernel_quantizer=None, bias_quantizer=None, use_bias: bool = True, **kwargs):
        legacy = {k: kwargs.pop(k) for k in LEGACY_QUANTIZER_KEYWORDS if k in kwargs}
        super().__init__(**kwargs)
        if legacy and (kernel_quantizer is not None or bias_quantizer is not None):
            raise ValueError(f"{type(self).__name__}: pass kernel_quantizer/bias_quantizer or the lqs 0.1 keywords "
                             f"{sorted(legacy)}, not both.")
        if use_bias not in (True, False):
            raise ValueError(f"use_bias must be True or False, got {use_bias!r}.")
        self.use_bias = bool(use_bias)
        legacy_kernel, legacy_bias = _legacy_specs(legacy)
        kernel_spec = legacy_kernel if kernel_quantizer is None else kernel_quantizer
        if bias_quantizer is None:
            bias_quantizer = legacy_bias if kernel_quantizer is None else _bias_spec(kernel_quantizer)
        self.kernel_quantizer = _make(kernel_spec, "scalar", "kernel_quantizer")
        self.bias_quantizer = _make(bias_quantizer, "scalar", "bias_quantizer") if self.use_bias else None
        if self.KERNEL_RANK is not None:  # e.g. 'channelwise' on a Dense kernel: refuse now, not at build
            try:
                scale_axis(self.kernel_quantizer.granularity, self.KERNEL_RANK, self.kernel_quantizer.axis)
            except ValueError as e:
                raise ValueError(f"{type(self).__name__}: kernel_quantizer granularity "
                                 f"{self.kernel_quantizer.granularity!r} does not fit a {self.KERNEL_RANK}-D kernel: "
                                 f"{e}") from None
        self._quantized = {}  # name -> (variable, quantizer)

    def add_quantized_weight(self, name, shape, quantizer: Quantizer, initializer=None, regularizer=None):
        """Create a float parameter ``name`` and build ``quantizer`` for it; return the variable."""
        variable = self.add_weight(
            name=name,
            shape=shape,
            initializer=initializer if initializer is not None else default_initializer(),
            regularizer=regularizer,
            trainable=True,
        )
        return self.quantize_variable(name, variable, quantizer)

    def quantize_variable(self, name, variable, quantizer: Quantizer):
        """Register an existing float parameter ``variable`` under ``name`` and build ``quantizer`` for it."""
        shape = tuple(variable.shape)
        if not quantizer.built:
            quantizer.build(shape)
        elif tuple(getattr(quantizer, "param_shape", shape)) != shape:
            raise ValueError(f"{self.name}/{name}: its quantizer is already built for shape "
                             f"{quantizer.param_shape}, not {shape}; give each parameter its own quantizer.")
        if hasattr(quantizer, "calibrate"):
            quantizer.calibrate(variable)
        # Keras' model.quantize("int8") would otherwise skip lqs' layers without a word (it quantizes leaf layers).
        quantizer.quantize = _refuse_keras_quantize(f"{self.name}/{name}")
        self._quantized[name] = (variable, quantizer)
        return variable

    def quantized(self, name):
        """``P_r`` of the parameter ``name``: the value ``call`` uses (or the tensor :func:`computing_with` gives)."""
        override = _OVERRIDES.get((id(self), name))
        if override is not None:
            return override
        variable, quantizer = self._quantized[name]
        return quantizer(variable)

    def quantized_params(self):
        """``[(name, variable, quantizer), ...]`` for every quantized parameter, in creation order."""
        return [(name, v, q) for name, (v, q) in self._quantized.items()]

    def get_config(self):
        config = super().get_config()
        config.update(
            use_bias=self.use_bias,
            kernel_quantizer=registry.serialize(self.kernel_quantizer),
            bias_quantizer=registry.serialize(self.bias_quantizer) if self.bias_quantizer is not None else None,
        )
        return config

    @classmethod
    def from_float(cls, float_layer, **kwargs):
        """Build a quantized twin of ``float_layer`` (same configuration, its trained weights copied in).

        ``kwargs`` set the quantization arguments (``granularity``, ``threshold``, ...) and may override others.
        """
        float_weights = float_layer.get_weights()
        if not float_weights:
            raise ValueError(
                f"from_float: {float_layer.name!r} has no weights yet; build it (call it on data) first."
            )
        float_config = float_layer.get_config()
        cls._check_float_config(float_config)
        config = {k: v for k, v in float_config.items() if k in cls._FLOAT_CONFIG_KEYS}
        config.update(kwargs)
        layer = cls(**config)
        layer.build(cls._input_shape_from_kernel(float_weights[0].shape))
        layer.load_float_weights(float_weights)
        return layer

    @classmethod
    def _check_float_config(cls, float_config):
        """Raise ``ValueError`` where the float layer uses an option the quantized twin does not implement."""
        missing = [k for k in cls._FLOAT_CONFIG_KEYS if k != "name" and k not in float_config]
        if missing:
            raise ValueError(f"from_float: {cls.__name__} needs a float layer with {', '.join(missing)} in its config.")

    def load_float_weights(self, float_weights):
        """Copy ``[kernel, bias]`` of a float layer into this layer's float parameters (nested scales are
        untouched; comparator quantizers with ``calibrate`` are re-calibrated on the new weights)."""
        params = self.quantized_params()
        if len(float_weights) != len(params):
            raise ValueError(
                f"{self.name}: got {len(float_weights)} float weights, expected {len(params)} "
                f"({', '.join(n for n, _, _ in params)})."
            )
        for (name, variable, _), value in zip(params, float_weights):
            if tuple(variable.shape) != tuple(value.shape):
                raise ValueError(f"{self.name}/{name}: shape {tuple(value.shape)} does not match {tuple(variable.shape)}.")
            variable.assign(value)
        for _, variable, quantizer in params:
            if hasattr(quantizer, "calibrate"):
                quantizer.calibrate(variable)


@keras.saving.register_keras_serializable(package="lqs")
class QDense(QuantizedLayer):
    """Dense layer with a quantized kernel and bias: ``y = activation(x @ W_r + b_r)``.

    ``kernel_quantizer`` / ``bias_quantizer``: see :class:`QuantizedLayer` (a Dense kernel takes the granularities
    ``scalar``, ``rowwise``, ``columnwise``, ``outputwise``).
    """

    _FLOAT_CONFIG_KEYS = ("units", "activation", "use_bias", "name")
    KERNEL_RANK = 2

    def __init__(
        self,
        units: int,
        activation=None,
        kernel_quantizer=None,
        bias_quantizer=None,
        use_bias: bool = True,
        kernel_initializer=None,
        bias_initializer=None,
        kernel_regularizer=None,
        bias_regularizer=None,
        **kwargs,
    ):
        super().__init__(kernel_quantizer=kernel_quantizer, bias_quantizer=bias_quantizer, use_bias=use_bias,
                         **kwargs)
        self.units = _positive_int("units", units)
        self.activation = keras.activations.get(activation)
        self.kernel_initializer = keras.initializers.get(kernel_initializer) if kernel_initializer else None
        self.bias_initializer = keras.initializers.get(bias_initializer) if bias_initializer else None
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.bias_regularizer = keras.regularizers.get(bias_regularizer)

    @staticmethod
    def _input_shape_from_kernel(kernel_shape):
        return (None, kernel_shape[0])

    def build(self, input_shape):
        in_dim = int(input_shape[-1])
        self.kernel = self.add_quantized_weight(
            "kernel", (in_dim, self.units), self.kernel_quantizer, self.kernel_initializer, self.kernel_regularizer
        )
        if self.use_bias:
            self.bias = self.add_quantized_weight(
                "bias", (self.units,), self.bias_quantizer, self.bias_initializer, self.bias_regularizer
            )

    def call(self, inputs):
        outputs = ops.matmul(inputs, self.quantized("kernel"))
        if self.use_bias:
            outputs = outputs + self.quantized("bias")
        return self.activation(outputs)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)

    def get_config(self):
        config = super().get_config()
        config.update(
            units=self.units,
            activation=keras.activations.serialize(self.activation),
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer) if self.kernel_initializer else None,
            bias_initializer=keras.initializers.serialize(self.bias_initializer) if self.bias_initializer else None,
            kernel_regularizer=keras.regularizers.serialize(self.kernel_regularizer),
            bias_regularizer=keras.regularizers.serialize(self.bias_regularizer),
        )
        return config


@keras.saving.register_keras_serializable(package="lqs")
class QConv2D(QuantizedLayer):
    """2-D convolution (channels last) with a quantized kernel and bias.

    ``kernel_quantizer`` / ``bias_quantizer``: see :class:`QuantizedLayer` (a Conv2D kernel takes every
    granularity: ``scalar``, ``rowwise``, ``columnwise``, ``channelwise``, ``outputwise``).
    """

    _FLOAT_CONFIG_KEYS = ("filters", "kernel_size", "strides", "padding", "activation", "use_bias", "name")
    KERNEL_RANK = 4

    def __init__(
        self,
        filters: int,
        kernel_size,
        strides=1,
        padding: str = "valid",
        activation=None,
        kernel_quantizer=None,
        bias_quantizer=None,
        use_bias: bool = True,
        kernel_initializer=None,
        bias_initializer=None,
        kernel_regularizer=None,
        bias_regularizer=None,
        **kwargs,
    ):
        super().__init__(kernel_quantizer=kernel_quantizer, bias_quantizer=bias_quantizer, use_bias=use_bias,
                         **kwargs)
        filters = _positive_int("filters", filters)
        padding = str(padding).lower()
        if padding not in ("valid", "same"):
            raise ValueError(f"Unknown padding {padding!r}; allowed: 'valid', 'same'.")
        self.filters = int(filters)
        self.kernel_size = _pair(kernel_size, "kernel_size")
        self.strides = _pair(strides, "strides")
        self.padding = padding
        self.activation = keras.activations.get(activation)
        self.kernel_initializer = keras.initializers.get(kernel_initializer) if kernel_initializer else None
        self.bias_initializer = keras.initializers.get(bias_initializer) if bias_initializer else None
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.bias_regularizer = keras.regularizers.get(bias_regularizer)

    @staticmethod
    def _input_shape_from_kernel(kernel_shape):
        return (None, None, None, kernel_shape[2])

    @classmethod
    def _check_float_config(cls, float_config):
        super()._check_float_config(float_config)
        # Options of keras.layers.Conv2D that QConv2D does not implement: copying the weights alone would give a
        # layer that computes something else, so refuse instead of silently dropping them.
        unsupported = []
        if _pair(float_config.get("dilation_rate", 1), "dilation_rate") != (1, 1):
            unsupported.append(f"dilation_rate={float_config['dilation_rate']!r}")
        if int(float_config.get("groups", 1)) != 1:
            unsupported.append(f"groups={float_config['groups']!r}")
        if float_config.get("data_format") not in (None, "channels_last"):
            unsupported.append(f"data_format={float_config['data_format']!r}")
        if unsupported:
            raise ValueError(
                f"from_float: QConv2D does not implement {', '.join(unsupported)}; only Conv2D layers with "
                "dilation_rate 1, groups 1 and data_format 'channels_last' can be converted."
            )

    def build(self, input_shape):
        shape = (*self.kernel_size, int(input_shape[-1]), self.filters)
        self.kernel = self.add_quantized_weight(
            "kernel", shape, self.kernel_quantizer, self.kernel_initializer, self.kernel_regularizer
        )
        if self.use_bias:
            self.bias = self.add_quantized_weight(
                "bias", (self.filters,), self.bias_quantizer, self.bias_initializer, self.bias_regularizer
            )

    def call(self, inputs):
        outputs = ops.conv(inputs, self.quantized("kernel"), strides=self.strides, padding=self.padding)
        if self.use_bias:
            outputs = outputs + self.quantized("bias")
        return self.activation(outputs)

    def compute_output_shape(self, input_shape):
        batch, h, w, _ = input_shape
        size = []
        for dim, k, s in zip((h, w), self.kernel_size, self.strides):
            if dim is None:
                size.append(None)
            elif self.padding == "same":
                size.append(-(-dim // s))
            else:
                size.append((dim - k) // s + 1)
        return (batch, *size, self.filters)

    def get_config(self):
        config = super().get_config()
        config.update(
            filters=self.filters,
            kernel_size=self.kernel_size,
            strides=self.strides,
            padding=self.padding,
            activation=keras.activations.serialize(self.activation),
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer) if self.kernel_initializer else None,
            bias_initializer=keras.initializers.serialize(self.bias_initializer) if self.bias_initializer else None,
            kernel_regularizer=keras.regularizers.serialize(self.kernel_regularizer),
            bias_regularizer=keras.regularizers.serialize(self.bias_regularizer),
        )
        return config


#: ``(id(host), param) -> tensor`` while :func:`computing_with` is active (empty otherwise).
_OVERRIDES: dict = {}


@contextlib.contextmanager
def computing_with(values):
    """Within the block, host layers compute with the given tensors instead of ``quantizer(P)``:
    ``values = {(host_layer, param_name): P_r}`` (the LiteRT exporter feeds the stored integers' values this way)."""
    added = {(id(layer), name): tensor for (layer, name), tensor in values.items()}
    clash = set(added) & set(_OVERRIDES)
    if clash:
        raise ValueError("computing_with: nested blocks give the same parameter twice.")
    _OVERRIDES.update(added)
    try:
        yield
    finally:
        for key in added:
            _OVERRIDES.pop(key, None)


def _refuse_keras_quantize(where: str):
    """A ``quantize`` method for lqs' layers that refuses Keras' ``model.quantize(mode)`` with a clear message."""

    def quantize(mode=None, *args, **kwargs):
        raise ValueError(
            f"model.quantize({mode!r}): {where} is quantized by lqs already (learned integers times a scale); Keras' "
            "quantization would replace them. Export the learned integers instead: lqs_core.export.save_integers "
            "(the integer file) or lqs_core.litert.export_litert (int8 LiteRT). To quantize only other layers with "
            "Keras, pass model.quantize(mode, filters=...) that excludes lqs' layers."
        )

    return quantize


@contextlib.contextmanager
def substituted(pairs):
    """Within the block, reading each variable of ``pairs`` (``[(variable, tensor), ...]``) gives its tensor.

    A ``keras.StatelessScope`` that keeps the enclosing scope's mapping (JAX's training step runs in one), so a
    float Keras layer computes with ``P_r`` in place of ``P`` (:class:`QuantizedWrapper`) on every backend."""
    parent = _stateless.get_stateless_scope()
    scope = keras.StatelessScope(state_mapping=pairs, initialize_variables=False)
    if parent is not None:
        scope.state_mapping = {**parent.state_mapping, **scope.state_mapping}
        scope.collect_losses, scope.losses = parent.collect_losses, parent.losses
    with scope:
        yield


#: Float Keras layers :class:`QuantizedWrapper` quantizes (exact types: a subclass may compute otherwise): layer
#: class name -> (its quantized weights besides the bias, the axis ``outputwise`` keeps in each).
QUANTIZABLE = {
    "Dense": (("kernel", -1),),
    "EinsumDense": (("kernel", -1),),
    "Conv1D": (("kernel", -1),),
    "Conv2D": (("kernel", -1),),
    "Conv3D": (("kernel", -1),),
    "DepthwiseConv1D": (("kernel", -2),),  # (k, cin, multiplier): per channel = per input channel
    "DepthwiseConv2D": (("kernel", -2),),
    "SeparableConv1D": (("depthwise_kernel", -2), ("pointwise_kernel", -1)),
    "SeparableConv2D": (("depthwise_kernel", -2), ("pointwise_kernel", -1)),
    "Embedding": (("embeddings", -1),),
}


def quantizable(layer) -> bool:
    """Whether :class:`QuantizedWrapper` can quantize ``layer`` (one of :data:`QUANTIZABLE`, exactly)."""
    return type(layer).__name__ in QUANTIZABLE and type(layer) is getattr(keras.layers, type(layer).__name__, None)


@keras.saving.register_keras_serializable(package="lqs")
class QuantizedWrapper(QuantizedLayer):
    """Any float Keras layer of :data:`QUANTIZABLE`, computing with quantized weights: ``layer`` with ``P_r`` in
    place of each of its kernels ``P`` and of its bias (docs/method.md §1).

    The float layer keeps its own configuration, variables and ``call``; while it runs, reading a kernel gives
    ``P_r = kernel_quantizer(P)`` (:func:`substituted`). Every kernel gets its own copy of ``kernel_quantizer``,
    the bias ``bias_quantizer`` (default: the kernel's method and options at ``scalar``). ``outputwise`` keeps the
    layer's channel axis: the last axis, but the input channels (axis -2) of a depthwise kernel.
    :func:`lqs_core.quantize_model` wraps every such layer of a model.
    """

    def __init__(self, layer, kernel_quantizer=None, bias_quantizer=None, **kwargs):
        if isinstance(layer, dict):
            layer = keras.saving.deserialize_keras_object(layer)
        if not quantizable(layer):
            raise ValueError(f"QuantizedWrapper cannot quantize {type(layer).__name__} layer {layer.name!r}; "
                             f"allowed: {', '.join(QUANTIZABLE)} (Keras' own classes).")
        kwargs.setdefault("name", layer.name)
        kwargs.pop("use_bias", None)
        use_bias = bool(layer.use_bias) if hasattr(layer, "use_bias") else getattr(layer, "bias_axes", None) is not None
        kernels = QUANTIZABLE[type(layer).__name__]
        kernel_quantizer = self._outputwise_axis(kernel_quantizer, kernels[0][1], layer)
        super().__init__(kernel_quantizer=kernel_quantizer, bias_quantizer=bias_quantizer, use_bias=use_bias,
                         **kwargs)
        self.layer = layer
        self.supports_masking = getattr(layer, "supports_masking", False)
        layer.quantize = _refuse_keras_quantize(f"{self.name} (wrapped {type(layer).__name__})")

    @staticmethod
    def _outputwise_axis(spec, axis, layer):
        if spec is None or isinstance(spec, Quantizer) or (isinstance(spec, dict) and "class_name" in spec):
            return spec
        spec = registry.normalize(spec)
        if spec["granularity"] == "outputwise" and "axis" not in spec and axis != -1:
            rank = len(getattr(layer, "kernel_size", ())) + 2 if hasattr(layer, "kernel_size") else None
            spec["axis"] = axis % rank if rank else axis
        return spec

    def build(self, input_shape):
        if not self.layer.built:
            self.layer.build(input_shape)
        kernels = QUANTIZABLE[type(self.layer).__name__]
        self.extra_quantizers = []
        for i, (name, _) in enumerate(kernels):
            variable = getattr(self.layer, name)
            quantizer = self.kernel_quantizer
            if i:
                config = registry.serialize(self.kernel_quantizer)
                spec = self._outputwise_axis({**registry.normalize(config), "axis": None}
                                             if config is not None else None, kernels[i][1], self.layer)
                spec = {k: v for k, v in spec.items() if not (k == "axis" and v is None)}
                quantizer = _make(spec, "scalar", f"{name}_quantizer")
                self.extra_quantizers.append(quantizer)
            try:
                scale_axis(quantizer.granularity, len(variable.shape), quantizer.axis)
            except ValueError as e:
                raise ValueError(f"QuantizedWrapper {self.name!r}: kernel_quantizer granularity "
                                 f"{quantizer.granularity!r} does not fit its {len(variable.shape)}-D {name} "
                                 f"{tuple(variable.shape)}: {e}") from None
            self.quantize_variable(name, variable, quantizer)
        if self.use_bias:
            self.quantize_variable("bias", self.layer.bias, self.bias_quantizer)

    def call(self, inputs, training=None):
        pairs = [(variable, self.quantized(name)) for name, (variable, _) in self._quantized.items()]
        with substituted(pairs):
            return self.layer(inputs, training=training)

    def compute_output_shape(self, input_shape):
        return self.layer.compute_output_shape(input_shape)

    def compute_mask(self, inputs, mask=None):
        return self.layer.compute_mask(inputs, mask) if hasattr(self.layer, "compute_mask") else mask

    def get_config(self):
        config = super().get_config()
        config.pop("use_bias", None)
        config["layer"] = keras.saving.serialize_keras_object(self.layer)
        return config

    def _own_saved_variables(self):
        """The wrapper's tracked variables minus the wrapped layer's (which ``layer/`` saves): none in practice."""
        inner = {id(v) for v in self.layer.variables}
        return [v for v in self._trainable_variables + self._non_trainable_variables if id(v) not in inner]

    def save_own_variables(self, store):
        """Saves :meth:`_own_saved_variables` only, so a ``.keras`` file holds each wrapped weight once.

        The wrapper tracks the wrapped layer's kernels and bias too (they stay in ``weights`` and
        ``trainable_variables`` in the same order, so training is unchanged); the layer saves them itself."""
        for i, variable in enumerate(self._own_saved_variables()):
            store[f"{i}"] = variable

    def load_own_variables(self, store):
        """Loads :meth:`save_own_variables`' entries, or the layout of files written before it (commit 9862763),
        which repeated every tracked variable here: the wrapped layer's copies are skipped (it loads its own)."""
        own = self._own_saved_variables()
        tracked = self._trainable_variables + self._non_trainable_variables
        if len(store.keys()) == len(own):
            for i, variable in enumerate(own):
                variable.assign(store[f"{i}"])
        elif len(store.keys()) == len(tracked):
            own_ids = {id(v) for v in own}
            for i, variable in enumerate(tracked):
                if id(variable) in own_ids:
                    variable.assign(store[f"{i}"])
        else:
            super().load_own_variables(store)  # Keras' message: expected / received variables


def _positive_int(name, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    return int(value)


def _pair(value, name):
    if isinstance(value, int):
        value = (value, value)
    value = tuple(int(v) for v in value)
    if len(value) != 2 or min(value) <= 0:
        raise ValueError(f"{name} must be a positive int or a pair of positive ints, got {value!r}.")
    return value


def quantized_params(model):
    """Every quantized parameter of ``model`` (nested models included), in layer order.

    Returns ``[(tensor_name, host_layer, param_name, variable, quantizer), ...]`` with ``tensor_name`` like
    ``"dense_1/kernel"``.
    """
    found = []
    layers = model._flatten_layers(include_self=True, recursive=True) if hasattr(model, "_flatten_layers") else [model]
    for layer in layers:
        if isinstance(layer, QuantizedLayer):
            for name, variable, quantizer in layer.quantized_params():
                found.append((f"{layer.name}/{name}", layer, name, variable, quantizer))
    return found


__all__ = ["QUANTIZABLE", "QConv2D", "QDense", "QuantizedLayer", "QuantizedWrapper", "computing_with",
           "default_initializer", "quantizable", "quantized_params", "substituted"]
