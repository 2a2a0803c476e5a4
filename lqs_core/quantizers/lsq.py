"""LSQ — learned step size quantization (Esser et al. 2020), signed b-bit weights.

With ``Q_N = 2^(b-1)``, ``Q_P = 2^(b-1) - 1`` and a learned step ``s > 0`` (one per scale element)::

    v_hat = round(clip(v / s, -Q_N, Q_P)) * s                 # forward; integers round(clip(v / s, -Q_N, Q_P))

    d v_hat / d v = 1                 if -Q_N < v/s < Q_P     # STE inside the range
                    0                 otherwise                # (per the paper: no gradient where v is clipped)

    d v_hat / d s = -v/s + round(v/s) if -Q_N < v/s < Q_P
                    -Q_N              if v/s <= -Q_N
                    Q_P               if v/s >= Q_P

    dL/ds_k = g * Σ_{i in slice k} dy_i * (d v_hat_i / d s)   # gradient scale g = 1 / sqrt(N * Q_P)

``N`` is the number of elements that share the step: per tensor (``granularity="scalar"``) ``N = numel(P)``; per
output channel (``"outputwise"``) ``N = numel(P) / out_channels`` (e.g. ``kh*kw*cin`` for a Conv2D kernel, ``in``
for a Dense kernel); in general ``N = numel(P) / numel(s)`` (:attr:`LSQQuantizer.slice_size`).

Initialization (the paper's): ``s0 = 2 * mean(|v|) / sqrt(Q_P)`` over each scale element's slice, computed from the
weights by :meth:`LSQQuantizer.calibrate`. The host layer calls it right after creating the weights and again after
loading float weights into them (:meth:`lqs_core.layers.QuantizedLayer.load_float_weights`, the "PTQ" start); a
quantizer used on its own initializes at its first eager call. ``s`` is kept ``>= scale_min`` (a constraint).
``round`` is round-half-to-even (``keras.ops.round``, as TensorFlow's and NumPy's).
"""

from __future__ import annotations

import math

import keras
from keras import ops

from lqs_core.granularity import scale_shape
from lqs_core.quantizers.base import Quantizer, as_tensor, executing_eagerly, upstream_gradient
from lqs_core.quantizers.nested import ScaleMin
from lqs_core.spec import EPSILON, check_bits, qrange


def lsq_grad_scale(n: int, bits: int) -> float:
    """``g = 1 / sqrt(N * Q_P)``."""
    _, q_p = qrange(bits)
    return 1.0 / math.sqrt(int(n) * q_p)


def lsq_init_scale(v, bits: int, axes, scale_min: float = EPSILON):
    """``s0 = 2 * mean(|v|) / sqrt(Q_P)`` over ``axes`` (keepdims), at least ``scale_min``."""
    v = as_tensor(v)
    _, q_p = qrange(bits)
    s0 = 2.0 * ops.mean(ops.abs(v), axis=tuple(axes), keepdims=True) / math.sqrt(q_p)
    return ops.maximum(s0, ops.cast(scale_min, v.dtype))


def lsq_quantize(v, s, bits: int, axes, grad_scale: float):
    """``v_hat = round(clip(v/s, -Q_N, Q_P)) * s`` with LSQ's gradients (module docstring); ``axes`` are the axes
    of ``v`` one element of ``s`` spans, ``grad_scale`` is ``g``."""
    q_n, q_p = qrange(bits)
    axes = tuple(axes)

    @ops.custom_gradient
    def _quantize(v, s):
        x = v / s
        q = ops.round(ops.clip(x, -float(q_n), float(q_p)))

        def grad(*args, upstream=None):
            dy = upstream_gradient(args, upstream)
            below = x <= -q_n
            above = x >= q_p
            inside = ops.logical_not(ops.logical_or(below, above))
            dv = ops.where(inside, dy, ops.zeros_like(dy))
            dvds = ops.where(below, -float(q_n) * ops.ones_like(x), ops.where(above, float(q_p) * ops.ones_like(x),
                                                                             ops.round(x) - x))
            ds = ops.cast(grad_scale, dy.dtype) * ops.sum(dy * dvds, axis=axes, keepdims=True)
            return dv, ops.reshape(ds, ops.shape(s))

        return q * s, grad

    return _quantize(as_tensor(v), as_tensor(s))


@keras.saving.register_keras_serializable(package="lqs")
class LSQQuantizer(Quantizer):
    """Learned-step-size quantizer (module docstring): one trainable variable, the step ``scale``.

    Args:
        bits: 2..8.
        granularity: which axis keeps its own step (``scalar`` = per tensor, ``outputwise`` = per output channel,
            any name of :mod:`lqs_core.granularity`).
        axis: explicit axis; overrides ``granularity``.
        scale_min: lower bound of the step (default float32 eps).
    """

    OPTIONS = {"bits": 8, "scale_min": EPSILON}

    def __init__(self, bits: int = 8, granularity: str = "scalar", axis=None, scale_min: float = EPSILON, **kwargs):
        super().__init__(granularity=granularity, axis=axis, **kwargs)
        options = self._check_options({"bits": bits, "scale_min": scale_min})
        self.bits = options["bits"]
        self.scale_min = options["scale_min"]
        self._initialized = False

    @classmethod
    def _check_options(cls, options):
        scale_min = options["scale_min"]
        if isinstance(scale_min, bool) or not isinstance(scale_min, (int, float)) or not math.isfinite(scale_min) \
                or scale_min <= 0:
            raise ValueError(f"scale_min must be a finite number > 0, got {scale_min!r}.")
        return {"bits": check_bits(options["bits"]), "scale_min": float(scale_min)}

    def build(self, input_shape):
        shape = self._build_axes(input_shape)
        self.scale = self.add_weight(
            name="scale",
            shape=scale_shape(shape, self.granularity, self.axis),
            initializer="ones",
            constraint=ScaleMin(self.scale_min),
            trainable=True,
        )

    @property
    def grad_scale(self) -> float:
        """``g = 1 / sqrt(N * Q_P)`` with ``N`` = :attr:`slice_size`."""
        return lsq_grad_scale(self.slice_size, self.bits)

    def calibrate(self, inputs):
        """``scale <- 2 * mean(|v|) / sqrt(Q_P)`` per slice (the paper's initialization)."""
        self.scale.assign(lsq_init_scale(inputs, self.bits, self.slice_axes, self.scale_min))
        self._initialized = True

    def call(self, inputs):
        if not self._initialized and executing_eagerly(inputs):
            self.calibrate(inputs)
        return lsq_quantize(inputs, self.scale, self.bits, self.slice_axes, self.grad_scale)

    def integers(self, inputs):
        """``round(clip(v / s, -Q_N, Q_P))`` (as floats) with the learned step."""
        q_n, q_p = qrange(self.bits)
        x = as_tensor(inputs) / as_tensor(self.scale)
        return ops.round(ops.clip(x, -float(q_n), float(q_p)))

    def get_config(self):
        config = super().get_config()
        config.update(bits=self.bits, scale_min=self.scale_min)
        return config


__all__ = ["LSQQuantizer", "lsq_grad_scale", "lsq_init_scale", "lsq_quantize"]
