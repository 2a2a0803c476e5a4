"""The interface every quantizer implements, so hosts, metrics and export treat all methods alike.

A quantizer is a Keras layer that, built for a parameter's shape, maps the float parameter ``P`` to the value the
host layer computes with, ``P_r = quantizer(P)``, and exposes the integers behind it::

    q = SomeQuantizer(granularity="outputwise", **options)
    q.build(P.shape)          # creates q.scale (shape: lqs_core.granularity.scale_shape)
    P_r = q(P)                # forward value, with the method's gradient rule
    P_q = q.integers(P)       # integer-valued float tensor with P_r == P_q * s (per scale element)

Attributes read by :mod:`lqs_core.metrics` and :mod:`lqs_core.export`: ``scale`` (a variable), ``granularity``,
``axis``, ``rounding`` (``"floor"`` or ``"round"``), ``slice_axes`` (the axes of ``P`` one scale element spans).
Optional: ``calibrate(P)`` — the host calls it after creating ``P`` and after loading float weights into it
(min-max scales, LSQ's initial step). :meth:`Quantizer.validate_options` checks a method's options (``OPTIONS``:
name -> default) for the registry (:mod:`lqs_core.quantizers.registry`).

Backends: the quantizers are written against ``keras.ops`` with ``keras.ops.custom_gradient`` and run on every
Keras 3 backend lqs supports (TensorFlow, JAX, PyTorch); on TensorFlow they call the same TensorFlow kernels in the
same order as lqs' earlier ``tf.*`` code, so TensorFlow results are bit-identical to it. Two helpers hide what
differs between backends: :func:`upstream_gradient` (how a custom gradient receives ``dL/d output``),
:func:`as_tensor` (a variable's value as a tensor) and :func:`executing_eagerly` (whether a tensor holds concrete
values, for one-time calibration at a first call).
"""

from __future__ import annotations

import inspect
from typing import Optional

import keras

from lqs_core.granularity import reduce_axes, scale_axis, validate_granularity


def upstream_gradient(args, upstream):
    """The upstream gradient ``dy`` handed to the grad function of a ``keras.ops.custom_gradient``.

    TensorFlow and JAX call it as ``grad(dy)``; PyTorch as ``grad(*inputs, upstream=dy)``. A grad function written
    ``def grad(*args, upstream=None)`` takes ``dy = upstream_gradient(args, upstream)`` on all three.
    """
    if upstream is None:
        (upstream,) = args
    return upstream


def as_tensor(x):
    """``x`` (an array, a tensor or a ``keras.Variable``) as a tensor of the backend holding its current value.

    ``keras.ops.convert_to_tensor`` hands a TensorFlow-backed variable back as it is, and a ``tf.custom_gradient``
    whose function reads a variable needs a grad function that takes ``variables``; on TensorFlow this is
    therefore ``tf.convert_to_tensor`` (a variable's read), exactly as lqs' earlier TensorFlow code converted."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return tf.convert_to_tensor(x)
    return keras.ops.convert_to_tensor(x)


def executing_eagerly(x=None) -> bool:
    """Whether ops run on concrete values now: not inside a ``tf.function`` graph (TensorFlow), ``x`` not a JAX
    tracer (``jit``, ``grad``, Keras' symbolic shape inference), ``x`` not a PyTorch ``meta`` tensor (Keras'
    symbolic shape inference) and not under ``torch.compile``."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.executing_eagerly()
    if x is not None and not keras.backend.is_keras_tensor(x):
        x = as_tensor(x)
    if keras.backend.is_keras_tensor(x):
        return False
    if backend == "jax":
        import jax

        return not isinstance(x, jax.core.Tracer)
    if backend == "torch":
        import torch

        if isinstance(x, torch.Tensor) and x.device.type == "meta":
            return False
        compiler = getattr(torch, "compiler", None)
        return not (compiler is not None and compiler.is_compiling())
    return True


#: The keywords ``keras.layers.Layer.__init__`` takes (``input_dim`` / ``input_shape`` through its ``**kwargs``).
_LAYER_KEYS = tuple(p for p in inspect.signature(keras.layers.Layer.__init__).parameters if p not in ("self", "kwargs")
                    ) + ("input_dim", "input_shape")


class Quantizer(keras.layers.Layer):
    """Base class: ``granularity`` / ``axis`` of the scale and ``rounding = "round"``; subclasses add ``build``,
    ``call``, ``integers`` (and ``calibrate``) and their options."""

    #: Option name -> default, for :meth:`validate_options`.
    OPTIONS: dict = {}
    #: Keys of a serialized quantizer besides :attr:`OPTIONS`: the scale's placement and what
    #: ``keras.layers.Layer.__init__`` takes (:data:`_LAYER_KEYS`).
    CONFIG_KEYS = ("granularity", "axis", *_LAYER_KEYS)
    rounding = "round"

    def __init__(self, granularity: str = "scalar", axis: Optional[int] = None, **kwargs):
        super().__init__(**kwargs)
        self.granularity = validate_granularity(granularity)
        self.axis = None if axis is None else int(axis)

    @classmethod
    def validate_options(cls, options: dict) -> dict:
        """``options`` with defaults filled in and every value checked; ``ValueError`` for unknown keys."""
        unknown = sorted(set(options) - set(cls.OPTIONS))
        if unknown:
            raise ValueError(
                f"Unknown option(s) {unknown} for quantizer {cls.__name__}; allowed: {', '.join(cls.OPTIONS) or 'none'}."
            )
        return cls._check_options({**cls.OPTIONS, **options})

    @classmethod
    def _check_options(cls, options: dict) -> dict:
        return options

    @classmethod
    def check_config(cls, config) -> None:
        """``ValueError`` with lqs' reason where a serialized ``config`` (:meth:`get_config`, e.g. from a ``.keras``
        file) cannot make this quantizer: a key that is neither an option nor in :attr:`CONFIG_KEYS`, a bad
        granularity or axis, an option out of range. Nothing is built."""
        if not isinstance(config, dict):
            raise ValueError(f"the config of quantizer {cls.__name__} is a {type(config).__name__}, expected a dict.")
        unknown = sorted(map(str, set(config) - set(cls.OPTIONS) - set(cls.CONFIG_KEYS)))
        if unknown:
            raise ValueError(f"Unknown option(s) {unknown} for quantizer {cls.__name__}; allowed: "
                             f"{', '.join([*cls.OPTIONS, *cls.CONFIG_KEYS])}.")
        validate_granularity(config.get("granularity", "scalar"))
        axis = config.get("axis")
        if axis is not None and (isinstance(axis, bool) or not isinstance(axis, int)):
            raise ValueError(f"axis must be an integer (the axis that keeps its own scale) or None, got {axis!r}.")
        cls.validate_options({k: config[k] for k in cls.OPTIONS if k in config})

    @classmethod
    def from_config(cls, config):
        """Keras' ``from_config`` after :meth:`check_config`, so that a bad config fails with lqs' reason (not
        Keras' "Unrecognized keyword arguments")."""
        cls.check_config(config)
        return super().from_config(config)

    def _build_axes(self, input_shape):
        shape = tuple(int(d) for d in input_shape)
        self.param_shape = shape
        self.kept_axis = scale_axis(self.granularity, len(shape), self.axis)
        self.slice_axes = reduce_axes(len(shape), self.kept_axis)
        return shape

    @property
    def slice_size(self) -> int:
        """``N``: the number of elements of ``P`` that share one scale element (``numel`` for ``scalar``,
        ``numel / out_channels`` for ``outputwise``)."""
        n = 1
        for i in self.slice_axes:
            n *= self.param_shape[i]
        return n

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(granularity=self.granularity, axis=self.axis)
        return config


__all__ = ["Quantizer", "as_tensor", "executing_eagerly", "upstream_gradient"]
