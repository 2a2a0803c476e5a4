"""The nested quantization layer with a learned scale and the ratio-threshold gradient (docs/method.md §1).

Forward, for a parameter ``P`` and its scale ``s`` (shape from :mod:`lqs_core.granularity`)::

    P_q = floor(P / s)        # integer-valued float tensor (``rounding="round"`` uses round instead)
    P_r = P_q * s             # what the host layer uses in place of P

Backward (one ``keras.ops.custom_gradient``), with ``dy = dL/dP_r``:

* ``dL/dP = dy`` (straight-through estimator, no clipping);
* ``dL/ds_k = g_k * m_k`` where, per element, ``r = |dy| / max(eps, |P_r|)`` and
  ``g_e = -tanh(lambda - r)`` if ``r < lambda`` else 0; per slice ``k`` of the scale,
  ``g_k = -tanh(lambda)`` when every element of the slice has ``r >= lambda`` (the all-sensitive fallback),
  else ``mean_slice(g_e)``; and ``m_k = max_slice |P_q|``.

So ``dL/ds <= 0``: gradient descent only grows ``s``. ``lambda = 0`` gives a zero scale gradient (the scale does not
move), which is the mode the loss-term scheme (:mod:`lqs_core.losses`) uses: there the quantizer holds
:class:`~lqs_core.loss_terms.LossTerm` objects and adds ``Σ γ · weight · t(P, s)`` to the model's losses.
"""

from __future__ import annotations

from typing import Optional

import keras
from keras import ops

from lqs_core import loss_terms as terms_lib
from lqs_core.granularity import scale_shape
from lqs_core.quantizers.base import Quantizer, as_tensor, upstream_gradient
from lqs_core.spec import DEFAULT_SCALE, EPSILON, check_number

ROUNDINGS = ("floor", "round")


def _round(x, rounding: str):
    return ops.floor(x) if rounding == "floor" else ops.round(x)  # ops.round: half to even, as tf.round


def ratio_threshold_scale_gradient(dy, p_r, p_q, threshold: float, axes):
    """``dL/ds`` of docs/method.md §1.1, reduced over ``axes`` (the slice of each scale element), keepdims.

    ``r = |dy| / max(eps, |P_r|)``; ``g_e = -tanh(lambda - r)`` where ``r < lambda`` else 0;
    ``g_k = -tanh(lambda)`` if all ``r >= lambda`` in the slice else ``mean(g_e)``; ``dL/ds_k = g_k * max|P_q|``.
    (``keras.ops``; on TensorFlow the same kernels in the same order as lqs' earlier ``tf.*`` code.)
    """
    axes = tuple(axes)
    lam = ops.cast(threshold, dy.dtype)
    # docs/method.md §1.1: r = |dy| / max(eps, |P_r|): eps where P_r == 0, and also where 0 < |P_r| < eps (possible only with
    # a custom scale_min below eps; substituting eps only at exact zeros would divide by |P_r| there).
    ratio = ops.abs(dy) / ops.maximum(ops.abs(p_r), ops.cast(EPSILON, dy.dtype))
    sensitive = ratio >= lam
    element_grad = ops.where(sensitive, ops.zeros_like(ratio), -ops.tanh(lam - ratio))
    all_sensitive = ops.all(sensitive, axis=axes, keepdims=True)
    slice_grad = ops.where(all_sensitive, -ops.tanh(lam), ops.mean(element_grad, axis=axes, keepdims=True))
    max_integer = ops.max(ops.abs(p_q), axis=axes, keepdims=True)
    return slice_grad * max_integer


def nested_quantize(p, s, threshold: float, axes, rounding: str = "floor"):
    """``P_r = floor(P / s) * s`` (``round`` with ``rounding="round"``), ratio-threshold scale gradient, STE for P.

    ``axes`` are the axes of ``P`` each scale element spans (see :func:`lqs_core.granularity.reduce_axes`).
    """

    @ops.custom_gradient
    def _quantize(p, s):
        p_q = _round(p / s, rounding)
        p_r = p_q * s

        def grad(*args, upstream=None):
            dy = upstream_gradient(args, upstream)
            ds = ratio_threshold_scale_gradient(dy, p_r, p_q, threshold, axes)
            return dy, ops.reshape(ds, ops.shape(s))

        return p_r, grad

    return _quantize(as_tensor(p), as_tensor(s))


@keras.saving.register_keras_serializable(package="lqs")
class ScaleMin(keras.constraints.Constraint):
    """Clamp a scale after every update: ``s <- max(s, min_value)`` (docs/method.md §1.3)."""

    def __init__(self, min_value: float = DEFAULT_SCALE):
        self.min_value = float(min_value)

    def __call__(self, w):
        return keras.ops.maximum(w, keras.ops.cast(self.min_value, w.dtype))

    def get_config(self):
        return {"min_value": self.min_value}


def check_options(threshold=0.0, scale_init=DEFAULT_SCALE, scale_min=DEFAULT_SCALE, rounding="floor") -> dict:
    """The nested quantizer's options, checked (``ValueError`` naming the value and what is allowed)."""
    out = {
        "threshold": check_number("threshold (lambda)", threshold),
        "scale_init": check_number("scale_init", scale_init, positive=True),
        "scale_min": check_number("scale_min", scale_min, positive=True),
        "rounding": rounding,
    }
    if out["scale_init"] < out["scale_min"]:
        raise ValueError(f"scale_init={scale_init!r} is below scale_min={scale_min!r}; it must be >= scale_min.")
    if rounding not in ROUNDINGS:
        raise ValueError(f"Unknown rounding {rounding!r}; allowed: {', '.join(ROUNDINGS)}.")
    return out


@keras.saving.register_keras_serializable(package="lqs")
class NestedQuantizer(Quantizer):
    """Quantize a host layer's parameter with a learned scale: ``P_r = floor(P / s) * s`` (docs/method.md §1).

    After ``build(P.shape)``, ``q(P)`` returns ``P_r`` and ``q.scale`` is the layer's only trainable variable.

    Args:
        granularity: which axis keeps its own scale, one of ``scalar``, ``rowwise``, ``columnwise``,
            ``channelwise`` (Conv2D only) or ``outputwise`` (see :mod:`lqs_core.granularity`).
        threshold: the ratio threshold ``lambda >= 0``. ``0`` freezes the scale (zero scale gradient).
        scale_init: initial value of every scale element (``> 0``; default ``100 * float32 eps``).
        scale_min: lower bound the scale is clamped to after each update (``> 0``; default ``100 * float32 eps``).
        rounding: ``"floor"`` (the thesis) or ``"round"``.
        axis: an explicit axis that keeps its own scale; overrides ``granularity``.
        loss_terms: :class:`~lqs_core.loss_terms.LossTerm` objects (or their configs) whose penalties this
            quantizer adds to the model's losses (the loss-term scheme; set by :func:`lqs_core.losses.attach`).
    """

    OPTIONS = {"threshold": 0.0, "scale_init": DEFAULT_SCALE, "scale_min": DEFAULT_SCALE, "rounding": "floor"}
    CONFIG_KEYS = (*Quantizer.CONFIG_KEYS, "loss_terms")

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
        super().__init__(granularity=granularity, axis=axis, **kwargs)
        options = check_options(threshold, scale_init, scale_min, rounding)
        self.threshold = options["threshold"]
        self.scale_init = options["scale_init"]
        self.scale_min = options["scale_min"]
        self.rounding = options["rounding"]
        self.loss_terms = [terms_lib.get(t) for t in (loss_terms or [])]

    @classmethod
    def _check_options(cls, options: dict) -> dict:
        return check_options(**options)

    def build(self, input_shape):
        shape = self._build_axes(input_shape)
        self.scale = self.add_weight(
            name="scale",
            shape=scale_shape(shape, self.granularity, self.axis),
            initializer=keras.initializers.Constant(self.scale_init),
            constraint=ScaleMin(self.scale_min),
            trainable=True,
        )

    def call(self, inputs):
        for term in self.loss_terms:
            self.add_loss(term.penalty(inputs, self.scale, self.slice_axes))
        return nested_quantize(inputs, self.scale, self.threshold, self.slice_axes, self.rounding)

    def integers(self, inputs):
        """The integer tensor ``P_q = floor(P / s)`` (as floats), without any gradient rule."""
        return _round(inputs / self.scale, self.rounding)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            threshold=self.threshold,
            scale_init=self.scale_init,
            scale_min=self.scale_min,
            rounding=self.rounding,
            loss_terms=[keras.saving.serialize_keras_object(t) for t in self.loss_terms],
        )
        return config


__all__ = [
    "NestedQuantizer",
    "ScaleMin",
    "nested_quantize",
    "ratio_threshold_scale_gradient",
]
