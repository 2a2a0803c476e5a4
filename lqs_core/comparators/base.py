"""Common base of the comparator quantizers: granularity bookkeeping and the interface the metrics read.

A comparator quantizer is a Keras layer created inside a host layer for one parameter ``P`` (like
:class:`~lqs_core.quantizers.NestedQuantizer`). After ``build(P.shape)`` it knows ``kept_axis`` (the axis that keeps
its own scale, from :mod:`lqs_core.granularity`) and ``slice_axes`` (the axes one scale element spans); its
``scale`` variable has the shape :func:`lqs_core.granularity.scale_shape` gives. ``integers(P)`` returns the
integer tensor that is stored (as floats), ``calibrate(P)`` refreshes whatever the quantizer derives from ``P``
(min-max scales, the LSQ initial step), and ``rounding`` is ``"round"`` (round half to even, TensorFlow's and
NumPy's rule).
"""

from __future__ import annotations

from typing import Optional

import keras

from lqs_core.granularity import reduce_axes, scale_axis, validate_granularity


class ComparatorQuantizer(keras.layers.Layer):
    """Base class: ``granularity`` / ``axis`` of the scale, ``rounding = "round"``; subclasses add ``call``,
    ``integers``, ``calibrate`` and their options (:meth:`validate_options`)."""

    #: Option name -> default, for :meth:`validate_options` (``None`` = required without default).
    OPTIONS: dict = {}
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
        merged = {**cls.OPTIONS, **options}
        return cls._check_options(merged)

    @classmethod
    def _check_options(cls, options: dict) -> dict:
        return options

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
