"""Fixed-bit QAT (survey §4.1): a uniform symmetric b-bit weight quantizer with a min-max scale and the STE.

For a parameter ``P`` and ``b`` bits, with ``Q_N = 2^(b-1)``, ``Q_P = 2^(b-1) - 1``::

    s   = max|P| / Q_P                        # per scale element, over its slice (per tensor: one s; per output
                                              # channel: one s per channel); s = 1 where the slice is all zero
    P_q = round(clip(P / s, -Q_N, Q_P))       # the stored integers (|P/s| <= Q_P, so the clip never bites)
    P_r = P_q * s                             # what the host layer uses

``s`` is recomputed from ``P`` at every forward pass and gets no gradient (``stop_gradient``); ``dL/dP = dy``
(straight-through estimator; the survey's STE passes 1 inside the clip range and every element is inside).

The bit width lives in a non-trainable variable as well as in the config, so :func:`set_bits` (used by the
layer-importance search) changes it without retracing compiled functions. ``scale`` holds the min-max scale of the
last :meth:`FixedBitQuantizer.calibrate`, which the host calls after creating or loading ``P`` and
:meth:`FixedBitQuantizer.integers` calls every time (so the metrics always see the scale of the current ``P``).
"""

from __future__ import annotations

import keras
from keras import ops

from lqs_core.granularity import scale_shape
from lqs_core.quantizers.base import Quantizer, as_tensor
from lqs_core.spec import check_bits


def _qrange_t(bits):
    bits = ops.cast(bits, "float32")
    q_p = ops.power(2.0, bits - 1.0) - 1.0
    return q_p + 1.0, q_p  # (Q_N, Q_P)


def minmax_scale(p, bits, axes):
    """``s = max|P| / Q_P`` reduced over ``axes`` (keepdims); ``1`` where the slice is all zero."""
    p = as_tensor(p)
    _, q_p = _qrange_t(bits)
    m = ops.max(ops.abs(p), axis=tuple(axes), keepdims=True)
    return ops.where(m > 0, m / ops.cast(q_p, p.dtype), ops.ones_like(m))


def fixed_quantize(p, bits, axes):
    """``P_r = round(clip(P/s, -Q_N, Q_P)) * s`` with the min-max ``s`` (no gradient) and the STE for ``P``."""
    p = as_tensor(p)
    q_n, q_p = _qrange_t(bits)
    s = ops.stop_gradient(minmax_scale(p, bits, axes))
    p_r = ops.round(ops.clip(p / s, -ops.cast(q_n, p.dtype), ops.cast(q_p, p.dtype))) * s
    return p + ops.stop_gradient(p_r - p)  # forward: P_r; backward: dL/dP = dy


@keras.saving.register_keras_serializable(package="lqs")
class FixedBitQuantizer(Quantizer):
    """Uniform symmetric ``bits``-bit quantizer with a min-max scale recomputed at every step (module docstring).

    Args:
        bits: 2..8.
        granularity: which axis keeps its own scale (``scalar`` = per tensor, ``outputwise`` = per output channel;
            every name of :mod:`lqs_core.granularity` works).
        axis: an explicit axis that keeps its own scale; overrides ``granularity``.
    """

    OPTIONS = {"bits": 8}

    def __init__(self, bits: int = 8, granularity: str = "scalar", axis=None, **kwargs):
        super().__init__(granularity=granularity, axis=axis, **kwargs)
        self.bits = check_bits(bits)

    @classmethod
    def _check_options(cls, options):
        return {"bits": check_bits(options["bits"])}

    def build(self, input_shape):
        shape = self._build_axes(input_shape)
        self.scale = self.add_weight(
            name="scale",
            shape=scale_shape(shape, self.granularity, self.axis),
            initializer="ones",
            trainable=False,
        )
        self.bits_variable = self.add_weight(
            name="bits", shape=(), initializer=keras.initializers.Constant(self.bits), trainable=False
        )

    def set_bits(self, bits: int):
        """Change the bit width (2..8) in place: config and variable."""
        self.bits = check_bits(bits)
        if self.built:
            self.bits_variable.assign(float(self.bits))

    def call(self, inputs):
        return fixed_quantize(inputs, self.bits_variable, self.slice_axes)

    def calibrate(self, inputs):
        """``scale <- max|P| / Q_P`` for the current ``P``."""
        self.scale.assign(minmax_scale(inputs, self.bits_variable, self.slice_axes))

    def integers(self, inputs):
        """``P_q = round(clip(P / s, -Q_N, Q_P))`` (as floats) with ``s`` recomputed from ``P`` (and stored)."""
        inputs = as_tensor(inputs)
        self.calibrate(inputs)
        q_n, q_p = _qrange_t(self.bits_variable)
        return ops.round(ops.clip(inputs / as_tensor(self.scale), -q_n, q_p))

    def get_config(self):
        config = super().get_config()
        config.update(bits=self.bits)
        return config


__all__ = ["FixedBitQuantizer", "fixed_quantize", "minmax_scale"]
