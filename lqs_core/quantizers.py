"""The nested quantization layer with a learned scale and the ratio-threshold gradient (SPEC §1).

Forward, for a parameter ``P`` and its scale ``s`` (shape from :mod:`lqs_core.granularity`)::

    P_q = floor(P / s)        # integer-valued float tensor (``rounding="round"`` uses round instead)
    P_r = P_q * s             # what the host layer uses in place of P

Backward (one ``tf.custom_gradient``), with ``dy = dL/dP_r``:

* ``dL/dP = dy`` (straight-through estimator, no clipping);
* ``dL/ds_k = g_k * m_k`` where, per element, ``r = |dy| / max(eps, |P_r|)`` and
  ``g_e = -tanh(lambda - r)`` if ``r < lambda`` else 0; per slice ``k`` of the scale,
  ``g_k = -tanh(lambda)`` when every element of the slice has ``r >= lambda`` (the all-sensitive fallback),
  else ``mean_slice(g_e)``; and ``m_k = max_slice |P_q|``.

So ``dL/ds <= 0``: gradient descent only grows ``s``. ``lambda = 0`` gives a zero scale gradient (the scale does not
move), which is the mode the loss-term scheme (:mod:`lqs_core.losses`) uses.
"""

from __future__ import annotations

import math
from typing import Optional

import keras
import numpy as np
import tensorflow as tf

from lqs_core.granularity import GRANULARITIES, reduce_axes, scale_axis, scale_shape, validate_granularity

#: float32 machine epsilon; replaces ``P_r`` where ``P_r == 0`` in the ratio ``r``.
EPSILON = float(np.finfo(np.float32).eps)
#: Default scale initial value and lower bound: ``100 * float32 eps ≈ 1.19e-5`` (SPEC §1.3).
DEFAULT_SCALE = 100 * EPSILON
ROUNDINGS = ("floor", "round")


def _round(x, rounding: str):
    return tf.floor(x) if rounding == "floor" else tf.round(x)


def ratio_threshold_scale_gradient(dy, p_r, p_q, threshold: float, axes: list):
    """``dL/ds`` of SPEC §1.1, reduced over ``axes`` (the slice of each scale element), keepdims.

    ``r = |dy| / max(eps, |P_r|)``; ``g_e = -tanh(lambda - r)`` where ``r < lambda`` else 0;
    ``g_k = -tanh(lambda)`` if all ``r >= lambda`` in the slice else ``mean(g_e)``; ``dL/ds_k = g_k * max|P_q|``.
    """
    lam = tf.cast(threshold, dy.dtype)
    # SPEC §1.1: r = |dy| / max(eps, |P_r|): eps where P_r == 0, and also where 0 < |P_r| < eps (possible only with
    # a custom scale_min below eps; substituting eps only at exact zeros would divide by |P_r| there).
    ratio = tf.abs(dy) / tf.maximum(tf.abs(p_r), tf.cast(EPSILON, dy.dtype))
    sensitive = ratio >= lam
    element_grad = tf.where(sensitive, tf.zeros_like(ratio), -tf.tanh(lam - ratio))
    all_sensitive = tf.reduce_all(sensitive, axis=axes, keepdims=True)
    slice_grad = tf.where(all_sensitive, -tf.tanh(lam), tf.reduce_mean(element_grad, axis=axes, keepdims=True))
    max_integer = tf.reduce_max(tf.abs(p_q), axis=axes, keepdims=True)
    return slice_grad * max_integer


def nested_quantize(p, s, threshold: float, axes: list, rounding: str = "floor"):
    """``P_r = floor(P / s) * s`` (``round`` with ``rounding="round"``), ratio-threshold scale gradient, STE for P.

    ``axes`` are the axes of ``P`` each scale element spans (see :func:`lqs_core.granularity.reduce_axes`).
    """

    @tf.custom_gradient
    def _quantize(p, s):
        p_q = _round(p / s, rounding)
        p_r = p_q * s

        def grad(dy):
            ds = ratio_threshold_scale_gradient(dy, p_r, p_q, threshold, axes)
            return dy, tf.reshape(ds, tf.shape(s))

        return p_r, grad

    return _quantize(tf.convert_to_tensor(p), tf.convert_to_tensor(s))


@keras.saving.register_keras_serializable(package="lqs")
class ScaleMin(keras.constraints.Constraint):
    """Clamp a scale after every update: ``s <- max(s, min_value)`` (SPEC §1.3)."""

    def __init__(self, min_value: float = DEFAULT_SCALE):
        self.min_value = float(min_value)

    def __call__(self, w):
        return keras.ops.maximum(w, keras.ops.cast(self.min_value, w.dtype))

    def get_config(self):
        return {"min_value": self.min_value}


def _check_non_negative(name: str, value) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a non-negative number, got {value!r}.") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}.")
    return value


def _check_positive(name: str, value) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a positive number, got {value!r}.") from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}.")
    return value


@keras.saving.register_keras_serializable(package="lqs")
class NestedQuantizer(keras.layers.Layer):
    """Quantize a host layer's parameter with a learned scale: ``P_r = floor(P / s) * s`` (SPEC §1).

    After ``build(P.shape)``, ``q(P)`` returns ``P_r`` and ``q.scale`` is the layer's only trainable variable.

    Args:
        granularity: which axis keeps its own scale, one of ``scalar``, ``rowwise``, ``columnwise``,
            ``channelwise`` (Conv2D only) or ``outputwise`` (see :mod:`lqs_core.granularity`).
        threshold: the ratio threshold ``lambda >= 0``. ``0`` freezes the scale (zero scale gradient).
        scale_init: initial value of every scale element (``> 0``; default ``100 * float32 eps``).
        scale_min: lower bound the scale is clamped to after each update (``> 0``; default ``100 * float32 eps``).
        rounding: ``"floor"`` (the thesis) or ``"round"``.
        axis: an explicit axis that keeps its own scale; overrides ``granularity``.
    """

    def __init__(
        self,
        granularity: str = "scalar",
        threshold: float = 0.0,
        scale_init: float = DEFAULT_SCALE,
        scale_min: float = DEFAULT_SCALE,
        rounding: str = "floor",
        axis: Optional[int] = None,
        loss_terms: Optional[list] = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.granularity = validate_granularity(granularity)
        self.threshold = _check_non_negative("threshold (lambda)", threshold)
        self.scale_init = _check_positive("scale_init", scale_init)
        self.scale_min = _check_positive("scale_min", scale_min)
        if self.scale_init < self.scale_min:
            raise ValueError(f"scale_init={scale_init!r} is below scale_min={scale_min!r}; it must be >= scale_min.")
        if rounding not in ROUNDINGS:
            raise ValueError(f"Unknown rounding {rounding!r}; allowed: {', '.join(ROUNDINGS)}.")
        self.rounding = rounding
        self.axis = None if axis is None else int(axis)
        # Loss-term scheme (lqs_core.losses): [{"term": name, "gamma": γ, "weight": #P / Σ#P}, ...]
        self.loss_terms = [dict(t) for t in (loss_terms or [])]

    def build(self, input_shape):
        shape = tuple(input_shape)
        self.kept_axis = scale_axis(self.granularity, len(shape), self.axis)
        self.slice_axes = reduce_axes(len(shape), self.kept_axis)
        self.scale = self.add_weight(
            name="scale",
            shape=scale_shape(shape, self.granularity, self.axis),
            initializer=keras.initializers.Constant(self.scale_init),
            constraint=ScaleMin(self.scale_min),
            trainable=True,
        )

    def call(self, inputs):
        if self.loss_terms:
            from lqs_core.losses import term_value  # local import: losses imports this module

            for t in self.loss_terms:
                self.add_loss(t["gamma"] * t["weight"] * term_value(t["term"], inputs, self.scale, self.slice_axes))
        return nested_quantize(inputs, self.scale, self.threshold, self.slice_axes, self.rounding)

    def integers(self, inputs):
        """The integer tensor ``P_q = floor(P / s)`` (as floats), without any gradient rule."""
        return _round(inputs / self.scale, self.rounding)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            granularity=self.granularity,
            threshold=self.threshold,
            scale_init=self.scale_init,
            scale_min=self.scale_min,
            rounding=self.rounding,
            axis=self.axis,
            loss_terms=self.loss_terms,
        )
        return config


__all__ = [
    "DEFAULT_SCALE",
    "EPSILON",
    "GRANULARITIES",
    "NestedQuantizer",
    "ScaleMin",
    "nested_quantize",
    "ratio_threshold_scale_gradient",
]
