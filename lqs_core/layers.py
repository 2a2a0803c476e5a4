"""Host layers that quantize their own parameters with nested quantizers (SPEC §1, §1.3).

A host layer owns its float parameters ``P`` and one :class:`~lqs_core.quantizers.NestedQuantizer` per parameter;
in ``call`` it uses ``P_r = quantizer(P)`` where a plain layer would use ``P``. :class:`QuantizedLayer` holds the
bookkeeping, so a new host type needs only ``build`` and ``call``. For example a quantized depthwise
convolution would be::

    class QDepthwiseConv2D(QuantizedLayer):
        def build(self, input_shape):
            self.kernel = self.add_quantized_weight(
                "kernel", (3, 3, input_shape[-1], 1), self.make_quantizer(self.granularity))
        def call(self, x):
            return keras.ops.depthwise_conv(x, self.quantized("kernel"), 1, "same")

``quantizer`` selects the quantizer of every parameter of a host: ``"nested"`` (default, the thesis' layer) or a
comparator of :mod:`lqs_core.comparators` — a method name (``"fixed"``, ``"lsq"``, ``"cgmq"``) or a dict such as
``{"method": "lsq", "bits": 4}`` (validated by :func:`lqs_core.comparators.normalize_spec`, stored in
``get_config``). A comparator quantizer uses the layer's ``granularity`` for its scale (biases: ``scalar``) and
ignores ``threshold`` / ``scale_init`` / ``scale_min`` / ``rounding``; quantizers with a ``calibrate(P)`` method
(min-max scales, LSQ's initial step) are calibrated when the parameter is created and when float weights are
loaded into it.

Quantized layers are initialized with ``RandomNormal(0, 0.05)`` for weights *and* biases (the thesis' setting);
:meth:`QuantizedLayer.from_float` builds one from a trained float layer's weights (the thesis' "PTQ" mode:
quantization switched on for a pretrained model, which then keeps training).
"""

from __future__ import annotations

from typing import Optional

import keras
from keras import ops

from lqs_core.quantizers import DEFAULT_SCALE, NestedQuantizer


def default_initializer():
    """``RandomNormal(mean=0, stddev=0.05)``; seeded through ``keras.utils.set_random_seed``."""
    return keras.initializers.RandomNormal(mean=0.0, stddev=0.05)


class QuantizedLayer(keras.layers.Layer):
    """Base of host layers: parameters registered with :meth:`add_quantized_weight` are quantized in ``call``.

    Common arguments: ``granularity`` (of the main weight; biases always use ``scalar``), ``threshold`` (λ),
    ``scale_init``, ``scale_min``, ``rounding`` — passed to every nested quantizer of the layer; ``quantizer``:
    ``"nested"`` (default) or a comparator spec (module docstring).
    """

    def __init__(
        self,
        granularity: str = "scalar",
        threshold: float = 0.0,
        scale_init: float = DEFAULT_SCALE,
        scale_min: float = DEFAULT_SCALE,
        rounding: str = "floor",
        loss_terms: Optional[dict] = None,
        quantizer="nested",
        **kwargs,
    ):
        super().__init__(**kwargs)
        from lqs_core.comparators import normalize_spec

        self.quantizer = normalize_spec(quantizer)
        self.granularity = granularity
        self.threshold = threshold
        self.scale_init = scale_init
        self.scale_min = scale_min
        self.rounding = rounding
        self._quantized = {}  # name -> (variable, quantizer)
        # Loss-term scheme: {param_name: [{"term", "gamma", "weight"}, ...]}, set by lqs_core.losses.attach.
        self.loss_terms = {k: [dict(t) for t in v] for k, v in (loss_terms or {}).items()}
        # Validate eagerly so a bad argument fails at construction, not at build.
        self.make_quantizer(granularity, name="_probe")

    def make_quantizer(self, granularity: str, name: Optional[str] = None) -> keras.layers.Layer:
        """A nested quantizer with this layer's threshold, scale and rounding settings, or the comparator
        quantizer of ``self.quantizer`` with ``granularity``."""
        if self.quantizer != "nested":
            from lqs_core.comparators import make_quantizer

            return make_quantizer(self.quantizer, granularity, name=name)
        return NestedQuantizer(
            granularity=granularity,
            threshold=self.threshold,
            scale_init=self.scale_init,
            scale_min=self.scale_min,
            rounding=self.rounding,
            name=name,
        )

    def add_quantized_weight(self, name, shape, quantizer: NestedQuantizer, initializer=None, regularizer=None):
        """Create a float parameter ``name`` and build ``quantizer`` for it; return the variable."""
        variable = self.add_weight(
            name=name,
            shape=shape,
            initializer=initializer if initializer is not None else default_initializer(),
            regularizer=regularizer,
            trainable=True,
        )
        quantizer.build(tuple(shape))
        quantizer.loss_terms = self.loss_terms.get(name, [])
        if hasattr(quantizer, "calibrate"):
            quantizer.calibrate(variable)
        self._quantized[name] = (variable, quantizer)
        return variable

    def quantized(self, name):
        """``P_r`` of the parameter ``name``: the value ``call`` uses."""
        variable, quantizer = self._quantized[name]
        return quantizer(variable)

    def quantized_params(self):
        """``[(name, variable, quantizer), ...]`` for every quantized parameter, in creation order."""
        return [(name, v, q) for name, (v, q) in self._quantized.items()]

    def get_config(self):
        config = super().get_config()
        config.update(
            granularity=self.granularity,
            threshold=self.threshold,
            scale_init=self.scale_init,
            scale_min=self.scale_min,
            rounding=self.rounding,
            loss_terms=self.loss_terms,
            quantizer=self.quantizer if isinstance(self.quantizer, str) else dict(self.quantizer),
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

    ``W_r`` uses ``granularity`` (``scalar``, ``rowwise``, ``columnwise`` or ``outputwise``); ``b_r`` a scalar scale.
    """

    _FLOAT_CONFIG_KEYS = ("units", "activation", "use_bias", "name")

    def __init__(
        self,
        units: int,
        activation=None,
        granularity: str = "scalar",
        threshold: float = 0.0,
        use_bias: bool = True,
        kernel_initializer=None,
        bias_initializer=None,
        kernel_regularizer=None,
        bias_regularizer=None,
        **kwargs,
    ):
        super().__init__(granularity=granularity, threshold=threshold, **kwargs)
        if granularity == "channelwise":
            raise ValueError(
                "granularity 'channelwise' is defined only for Conv2D kernels; for QDense use "
                "'scalar', 'rowwise', 'columnwise' or 'outputwise'."
            )
        if int(units) <= 0:
            raise ValueError(f"units must be a positive integer, got {units!r}.")
        self.units = int(units)
        self.activation = keras.activations.get(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = keras.initializers.get(kernel_initializer) if kernel_initializer else None
        self.bias_initializer = keras.initializers.get(bias_initializer) if bias_initializer else None
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.bias_regularizer = keras.regularizers.get(bias_regularizer)
        self.kernel_quantizer = self.make_quantizer(granularity, name="kernel_quantizer")
        self.bias_quantizer = self.make_quantizer("scalar", name="bias_quantizer") if self.use_bias else None

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
            use_bias=self.use_bias,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer) if self.kernel_initializer else None,
            bias_initializer=keras.initializers.serialize(self.bias_initializer) if self.bias_initializer else None,
            kernel_regularizer=keras.regularizers.serialize(self.kernel_regularizer),
            bias_regularizer=keras.regularizers.serialize(self.bias_regularizer),
        )
        return config


@keras.saving.register_keras_serializable(package="lqs")
class QConv2D(QuantizedLayer):
    """2-D convolution (channels last) with a quantized kernel and bias.

    ``K_r`` uses ``granularity`` (``scalar``, ``rowwise``, ``columnwise``, ``channelwise`` or ``outputwise``);
    ``b_r`` a scalar scale.
    """

    _FLOAT_CONFIG_KEYS = ("filters", "kernel_size", "strides", "padding", "activation", "use_bias", "name")

    def __init__(
        self,
        filters: int,
        kernel_size,
        strides=1,
        padding: str = "valid",
        activation=None,
        granularity: str = "scalar",
        threshold: float = 0.0,
        use_bias: bool = True,
        kernel_initializer=None,
        bias_initializer=None,
        kernel_regularizer=None,
        bias_regularizer=None,
        **kwargs,
    ):
        super().__init__(granularity=granularity, threshold=threshold, **kwargs)
        if int(filters) <= 0:
            raise ValueError(f"filters must be a positive integer, got {filters!r}.")
        padding = str(padding).lower()
        if padding not in ("valid", "same"):
            raise ValueError(f"Unknown padding {padding!r}; allowed: 'valid', 'same'.")
        self.filters = int(filters)
        self.kernel_size = _pair(kernel_size, "kernel_size")
        self.strides = _pair(strides, "strides")
        self.padding = padding
        self.activation = keras.activations.get(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = keras.initializers.get(kernel_initializer) if kernel_initializer else None
        self.bias_initializer = keras.initializers.get(bias_initializer) if bias_initializer else None
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.bias_regularizer = keras.regularizers.get(bias_regularizer)
        self.kernel_quantizer = self.make_quantizer(granularity, name="kernel_quantizer")
        self.bias_quantizer = self.make_quantizer("scalar", name="bias_quantizer") if self.use_bias else None

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
            use_bias=self.use_bias,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer) if self.kernel_initializer else None,
            bias_initializer=keras.initializers.serialize(self.bias_initializer) if self.bias_initializer else None,
            kernel_regularizer=keras.regularizers.serialize(self.kernel_regularizer),
            bias_regularizer=keras.regularizers.serialize(self.bias_regularizer),
        )
        return config


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


__all__ = ["QConv2D", "QDense", "QuantizedLayer", "default_initializer", "quantized_params"]
