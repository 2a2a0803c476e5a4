"""The networks of the thesis' experiments (docs/method.md §4), quantized or as their float twins.

Every builder takes one quantizer spec and returns an **uncompiled** ``keras.Model``::

    model = digits_mlp({"method": "nested", "granularity": "rowwise", "threshold": 1e-10}, seed=42)
    model = digits_mlp(granularity="rowwise", threshold=1e-10, seed=42)      # the same: options merge into the spec
    lsq = digits_mlp({"method": "lsq", "bits": 4, "granularity": "outputwise"}, seed=42)
    float_model = digits_mlp(None, seed=42)        # plain keras Dense/Conv2D, same layer names

* ``quantizer`` (a spec of :func:`lqs_core.quantizers.get`; default ``"nested"`` at ``rowwise``) is every quantized
  host's kernel quantizer; biases get the same method and options at ``scalar`` granularity. Keyword options
  (``granularity``, ``threshold``, ``bits``, ...) are merged into it. :class:`~lqs_core.layers.QDense` /
  :class:`~lqs_core.layers.QConv2D` stand where the thesis quantizes; ``channelwise`` is defined only for Conv2D
  kernels, so a network with quantized Dense layers refuses it (``ValueError``).
* ``quantizer=None`` builds the *float twin*: plain ``keras.layers.Dense`` / ``Conv2D`` under the **same layer
  names** and the same ``RandomNormal(0, 0.05)`` initialization for weights and biases, so weights transfer by name
  (:func:`transfer_float_weights`, the thesis' "PTQ" start).
* ``seed``: with an integer, every initializer gets its own fixed seed (``seed + k`` for the k-th one, so two
  layers of the same shape do not start identical) and the quantized model and its float twin start from the
  **same** weights. With ``None`` the initializers draw from Keras' global seed (``keras.utils.set_random_seed``).
  Dropout layers are seeded the same way.

Networks (``MODELS``; :func:`build` looks them up by dataset name):

=============  ==========================================================================  =================
dataset        network                                                                     quantized layers
=============  ==========================================================================  =================
``digits``     Flatten → QDense(64) → ReLU → QDense(10) → softmax  (input 8×8×1)           2 Dense
``mnist``      Flatten → QDense(128) → ReLU → QDense(10) → softmax  (input 28×28)          2 Dense
``cifar10``    3 × ([QConv2D 3×3 same → ReLU → BN] × 2 → MaxPool 2 → Dropout), filters      6 Conv2D
               32/64/128, dropout .2/.3/.4; Flatten → Dense(128, ReLU) → BN → Dropout .5 →
               Dense(10) → softmax (the two Dense layers are *not* quantized)
``imagenette`` ResNet-18-like: stem QConv2D(64, 7×7, /2) → BN → ReLU → MaxPool 3/2 →             20 Conv2D
               Dropout .2; 8 basic blocks (64, 64, 128, 128, 256, 256, 512, 512; stride 2 and
               a quantized 1×1 shortcut conv + BN at the first block of the 128/256/512
               stages; L2(1e-4) on kernels and biases in the blocks); Dropout .3 → GAP →
               Dropout .3 → Dense(10) → softmax
=============  ==========================================================================  =================

Inputs are raw pixel values (no normalization layer), as in the thesis.
"""

from __future__ import annotations

from typing import Callable, Dict, Optional

import keras

from lqs_core.granularity import scale_axis
from lqs_core.layers import QConv2D, QDense, QuantizedLayer
from lqs_core.quantizers import registry
from lqs_core.quantizers.base import Quantizer

#: Standard deviation of the ``RandomNormal`` initializer of every quantized (and twin) layer (method.md §1.3).
INIT_STDDEV = 0.05
#: L2 factor on kernels and biases inside the Imagenette residual blocks (method.md §4).
RESNET_L2 = 1e-4
#: Granularity of the networks' kernels where the spec names none (the thesis' default).
DEFAULT_GRANULARITY = "rowwise"


def network_spec(quantizer, options: dict, kernel_rank: int, network: str) -> Optional[dict]:
    """The kernel quantizer spec of a network: ``quantizer`` with ``options`` merged in, checked (``None``: float)."""
    if quantizer is None:
        if options:
            raise ValueError(f"{network}: quantizer options {sorted(options)} given for the float twin "
                             "(quantizer=None).")
        return None
    if isinstance(quantizer, Quantizer):
        quantizer = registry.serialize_spec(quantizer)
    base = {"method": quantizer} if isinstance(quantizer, str) else dict(quantizer)
    spec = registry.normalize({**base, **options}, granularity=DEFAULT_GRANULARITY)
    try:
        scale_axis(spec["granularity"], kernel_rank, spec.get("axis"))
    except ValueError:
        raise ValueError(
            f"granularity {spec['granularity']!r} is not defined for the {kernel_rank}-D kernels {network} quantizes; "
            "'channelwise' is defined only for Conv2D kernels; use 'scalar', 'rowwise', 'columnwise' or "
            "'outputwise'."
        ) from None
    return spec


class _Factory:
    """Creates the layers of one network: quantized hosts or their float twins, with per-layer seeds."""

    def __init__(self, spec: Optional[dict], seed):
        self.spec = spec
        self.quantized = spec is not None
        self.seed = None if seed is None else int(seed)
        self._counter = 0
        self.twins = []  # names of the layers that are quantized (in the quantized model) / their float twins

    def next_seed(self) -> Optional[int]:
        if self.seed is None:
            return None
        self._counter += 1
        return self.seed + self._counter

    def init(self):
        return keras.initializers.RandomNormal(mean=0.0, stddev=INIT_STDDEV, seed=self.next_seed())

    def dense(self, units, name, quantize=True, activation=None):
        """``QDense`` (or its float twin ``Dense``); ``quantize=False``: a plain Dense in both models."""
        if quantize:
            self.twins.append(name)
        if self.quantized and quantize:
            return QDense(
                units,
                activation=activation,
                kernel_quantizer=self.spec,
                kernel_initializer=self.init(),
                bias_initializer=self.init(),
                name=name,
            )
        if quantize:  # float twin of a quantized layer: same initializers for weights *and* biases
            return keras.layers.Dense(
                units, activation=activation, kernel_initializer=self.init(), bias_initializer=self.init(), name=name
            )
        # Never-quantized Dense (CIFAR-10 head): RandomNormal kernel, zero bias, as in the thesis code.
        return keras.layers.Dense(units, activation=activation, kernel_initializer=self.init(), name=name)

    def conv(self, filters, kernel_size, name, strides=1, padding="same", l2=None):
        regularizer = (lambda: keras.regularizers.L2(l2)) if l2 else (lambda: None)
        common = dict(
            kernel_initializer=self.init(),
            bias_initializer=self.init(),
            kernel_regularizer=regularizer(),
            bias_regularizer=regularizer(),
            name=name,
        )
        self.twins.append(name)
        if self.quantized:
            return QConv2D(filters, kernel_size, strides=strides, padding=padding, kernel_quantizer=self.spec, **common)
        return keras.layers.Conv2D(filters, kernel_size, strides=strides, padding=padding, **common)

    def dropout(self, rate, name):
        return keras.layers.Dropout(rate, seed=self.next_seed(), name=name)

    def model(self, inputs, outputs, name):
        model = keras.Model(inputs, outputs, name=name if self.quantized else f"{name}_float")
        model.lqs_twin_layers = tuple(self.twins)
        return model


def _mlp(name, hidden, input_shape, num_classes, quantizer, seed, options):
    f = _Factory(network_spec(quantizer, options, 2, name), seed)
    inputs = keras.Input(shape=tuple(input_shape), name="input")
    x = keras.layers.Flatten(name="flatten")(inputs)
    x = f.dense(hidden, name="dense_1")(x)
    x = keras.layers.ReLU(name="relu_1")(x)
    x = f.dense(num_classes, name="dense_2")(x)
    outputs = keras.layers.Activation("softmax", name="softmax")(x)
    return f.model(inputs, outputs, name)


def digits_mlp(quantizer="nested", seed: Optional[int] = None, input_shape=(8, 8, 1), num_classes: int = 10,
               hidden: int = 64, **options) -> keras.Model:
    """The embedded-dataset network: Flatten → QDense(``hidden``=64) → ReLU → QDense(10) → softmax.

    For scikit-learn's 8×8 digits (raw values 0–16); learns to > 90 % validation accuracy in a few seconds.
    """
    return _mlp("digits_mlp", hidden, input_shape, num_classes, quantizer, seed, options)


def mnist_mlp(quantizer="nested", seed: Optional[int] = None, input_shape=(28, 28), num_classes: int = 10,
              hidden: int = 128, **options) -> keras.Model:
    """MNIST (method.md §4): Flatten → QDense(128) → ReLU → QDense(10) → softmax."""
    return _mlp("mnist_mlp", hidden, input_shape, num_classes, quantizer, seed, options)


def cifar10_cnn(quantizer="nested", seed: Optional[int] = None, input_shape=(32, 32, 3), num_classes: int = 10,
                **options) -> keras.Model:
    """CIFAR-10 (method.md §4): six quantized 3×3 convolutions in three blocks, a float Dense head.

    Block ``i`` (filters 32/64/128, dropout 0.2/0.3/0.4): ``conv_i_1 → ReLU → bn_i_1 → conv_i_2 → ReLU → bn_i_2 →
    MaxPool 2 → Dropout``; then Flatten → ``dense_1`` (128, ReLU, not quantized) → BN → Dropout 0.5 → ``dense_2``
    (10, softmax, not quantized).
    """
    f = _Factory(network_spec(quantizer, options, 4, "cifar10_cnn"), seed)
    inputs = keras.Input(shape=tuple(input_shape), name="input")
    x = inputs
    for block, (filters, rate) in enumerate(((32, 0.2), (64, 0.3), (128, 0.4)), start=1):
        for j in (1, 2):
            x = f.conv(filters, 3, name=f"conv_{block}_{j}")(x)
            x = keras.layers.ReLU(name=f"relu_{block}_{j}")(x)
            x = keras.layers.BatchNormalization(name=f"bn_{block}_{j}")(x)
        x = keras.layers.MaxPooling2D(2, name=f"pool_{block}")(x)
        x = f.dropout(rate, name=f"dropout_{block}")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = f.dense(128, name="dense_1", quantize=False, activation="relu")(x)
    x = keras.layers.BatchNormalization(name="bn_dense")(x)
    x = f.dropout(0.5, name="dropout_dense")(x)
    outputs = f.dense(num_classes, name="dense_2", quantize=False, activation="softmax")(x)
    return f.model(inputs, outputs, "cifar10_cnn")


def imagenette_resnet(quantizer="nested", seed: Optional[int] = None, input_shape=(224, 224, 3),
                      num_classes: int = 10, **options) -> keras.Model:
    """Imagenette (method.md §4): a ResNet-18-like network with twenty quantized convolutions.

    ``stem_conv`` (64, 7×7, stride 2) → ``stem_bn`` → ReLU → MaxPool 3/2 → Dropout 0.2; blocks ``block1`` …
    ``block8`` with filters 64, 64, 128, 128, 256, 256, 512, 512: ``blockN_conv1`` (3×3, stride 2 at the first
    block of the 128/256/512 stages) → ``blockN_bn1`` → ReLU → ``blockN_conv2`` → ``blockN_bn2``, plus the shortcut
    (identity, or ``blockN_shortcut_conv`` 1×1 stride 2 → ``blockN_shortcut_bn`` where the shape changes) → add →
    ReLU. Block convolutions carry L2(1e-4) on kernel and bias. Head: Dropout 0.3 → GAP → Dropout 0.3 →
    ``dense`` (10, softmax, not quantized). Any ``input_shape`` works (tests build it at 32×32).
    """
    f = _Factory(network_spec(quantizer, options, 4, "imagenette_resnet"), seed)
    inputs = keras.Input(shape=tuple(input_shape), name="input")
    x = f.conv(64, 7, strides=2, name="stem_conv")(inputs)
    x = keras.layers.BatchNormalization(name="stem_bn")(x)
    x = keras.layers.ReLU(name="stem_relu")(x)
    x = keras.layers.MaxPooling2D(3, strides=2, padding="same", name="stem_pool")(x)
    x = f.dropout(0.2, name="stem_dropout")(x)
    previous = 64
    for n, filters in enumerate((64, 64, 128, 128, 256, 256, 512, 512), start=1):
        downsample = filters != previous
        stride = 2 if downsample else 1
        p = f"block{n}"
        shortcut = x
        y = f.conv(filters, 3, strides=stride, l2=RESNET_L2, name=f"{p}_conv1")(x)
        y = keras.layers.BatchNormalization(name=f"{p}_bn1")(y)
        y = keras.layers.ReLU(name=f"{p}_relu1")(y)
        y = f.conv(filters, 3, l2=RESNET_L2, name=f"{p}_conv2")(y)
        y = keras.layers.BatchNormalization(name=f"{p}_bn2")(y)
        if downsample:
            shortcut = f.conv(filters, 1, strides=2, l2=RESNET_L2, name=f"{p}_shortcut_conv")(shortcut)
            shortcut = keras.layers.BatchNormalization(name=f"{p}_shortcut_bn")(shortcut)
        x = keras.layers.Add(name=f"{p}_add")([y, shortcut])
        x = keras.layers.ReLU(name=f"{p}_relu2")(x)
        previous = filters
    x = f.dropout(0.3, name="head_dropout_1")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    x = f.dropout(0.3, name="head_dropout_2")(x)
    outputs = f.dense(num_classes, name="dense", quantize=False, activation="softmax")(x)
    return f.model(inputs, outputs, "imagenette_resnet")


MODELS: Dict[str, Callable[..., keras.Model]] = {
    "digits": digits_mlp,
    "mnist": mnist_mlp,
    "cifar10": cifar10_cnn,
    "imagenette": imagenette_resnet,
}


def build(dataset: str, quantizer="nested", **kwargs) -> keras.Model:
    """The network for ``dataset`` (a key of :data:`MODELS`); ``quantizer=None`` is the float twin; ``kwargs`` go
    to its builder (``seed``, network sizes, quantizer options)."""
    if dataset not in MODELS:
        raise ValueError(f"Unknown dataset {dataset!r}; allowed: {', '.join(MODELS)}.")
    return MODELS[dataset](quantizer, **kwargs)


def _layers_by_name(model) -> dict:
    layers = model._flatten_layers(include_self=False, recursive=True)
    return {layer.name: layer for layer in layers}


def transfer_float_weights(float_model, quantized_model, strict: bool = True) -> list:
    """Copy every weighted layer of ``float_model`` into the layer of the same name in ``quantized_model``.

    Quantized hosts get the float ``[kernel, bias]`` through :meth:`QuantizedLayer.load_float_weights` (their
    scales keep their current values); any other layer (BatchNorm, unquantized Dense, ...) through
    ``set_weights``. This is the thesis' "PTQ" start: quantization switched on for a trained float model.

    With ``strict`` (default), a float layer with weights and no counterpart, or a quantized host left without
    float weights, raises ``ValueError``. Returns the names of the layers copied.
    """
    targets = _layers_by_name(quantized_model)
    copied = []
    for layer in _layers_by_name(float_model).values():
        weights = layer.get_weights()
        if not weights:
            continue
        target = targets.get(layer.name)
        if target is None:
            if strict:
                raise ValueError(
                    f"Float layer {layer.name!r} has weights but {quantized_model.name!r} has no layer of that name."
                )
            continue
        if isinstance(target, QuantizedLayer):
            target.load_float_weights(weights)
        else:
            current = target.get_weights()
            if len(current) != len(weights) or any(tuple(a.shape) != tuple(b.shape) for a, b in zip(current, weights)):
                raise ValueError(
                    f"Layer {layer.name!r}: float weights {[tuple(w.shape) for w in weights]} do not match "
                    f"{[tuple(w.shape) for w in current]}."
                )
            target.set_weights(weights)
        copied.append(layer.name)
    if strict:
        missing = [n for n, t in targets.items() if isinstance(t, QuantizedLayer) and n not in copied]
        if missing:
            raise ValueError(f"No float weights for the quantized layers {missing} of {quantized_model.name!r}.")
    return copied


def twin_layer_names(model) -> tuple:
    """Names of the layers a network quantizes: its quantized hosts, or in a float twin the plain layers that
    stand in for them (``model.lqs_twin_layers``, set by the builders). For a model without that attribute (e.g.
    loaded from disk): its quantized hosts if it has any, else every Dense/Conv2D layer."""
    names = getattr(model, "lqs_twin_layers", None)
    if names:
        return tuple(names)
    layers = list(_layers_by_name(model).values())
    quantized = tuple(layer.name for layer in layers if isinstance(layer, QuantizedLayer))
    if quantized:
        return quantized
    return tuple(layer.name for layer in layers if isinstance(layer, (keras.layers.Dense, keras.layers.Conv2D)))


def count_layers(model) -> dict:
    """``{"qdense": n, "qconv2d": n, "dense": n, "conv2d": n}`` — quantized and float Dense/Conv2D layers."""
    counts = {"qdense": 0, "qconv2d": 0, "dense": 0, "conv2d": 0}
    for layer in _layers_by_name(model).values():
        if isinstance(layer, QDense):
            counts["qdense"] += 1
        elif isinstance(layer, QConv2D):
            counts["qconv2d"] += 1
        elif isinstance(layer, keras.layers.Dense):
            counts["dense"] += 1
        elif isinstance(layer, keras.layers.Conv2D):
            counts["conv2d"] += 1
    return counts


__all__ = [
    "MODELS",
    "build",
    "cifar10_cnn",
    "count_layers",
    "digits_mlp",
    "imagenette_resnet",
    "mnist_mlp",
    "transfer_float_weights",
    "twin_layer_names",
]
