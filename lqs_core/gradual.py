"""Gradual quantization: the nested scheme's scales start learning mid-training (the thesis' open TODO, issue #12).

With the ratio threshold λ of docs/method.md §1 switched on at (0-based) epoch ``k``::

    λ_e = 0   for e < k      (the scales stay at scale_init = 100·eps: P_r = floor(P / s)·s ≈ P, float-like training)
    λ_e = λ   for e >= k     (the scale gradient of §1.1 grows the scales: quantization sets in)

``k = 0`` is the thesis' QAT run; ``k`` near the end approaches its PTQ mode (a trained float network, then
quantized while training on) inside one run with one optimizer state. λ is a constant of the traced train step,
so the callback sets it on every :class:`~lqs_core.quantizers.NestedQuantizer` and has Keras trace the step again
(once, at epoch ``k``).
"""

from __future__ import annotations

import keras

from lqs_core.quantizers.nested import NestedQuantizer
from lqs_core.spec import check_number


def nested_quantizers(model) -> list:
    """Every :class:`~lqs_core.quantizers.NestedQuantizer` inside ``model`` (nested models included)."""
    return [layer for layer in model._flatten_layers(include_self=False, recursive=True)
            if isinstance(layer, NestedQuantizer)]


def set_threshold(model, threshold: float) -> int:
    """Set λ of every nested quantizer of ``model``; returns how many there are."""
    quantizers = nested_quantizers(model)
    for q in quantizers:
        q.threshold = float(threshold)
    return len(quantizers)


class GradualQuantization(keras.callbacks.Callback):
    """Hold λ at 0 for the first ``start_epoch`` epochs of ``fit``, then use ``threshold`` (module docstring).

    ``model.fit(..., callbacks=[GradualQuantization(start_epoch=10, threshold=1e-10)])``; the epoch logs get
    ``threshold`` (the λ in force during that epoch).
    """

    def __init__(self, start_epoch: int, threshold: float):
        super().__init__()
        if isinstance(start_epoch, bool) or not isinstance(start_epoch, int) or start_epoch < 0:
            raise ValueError(f"start_epoch must be an integer >= 0, got {start_epoch!r}.")
        self.start_epoch = start_epoch
        self.threshold = check_number("threshold (lambda)", threshold)
        self._current = None

    def _use(self, threshold: float) -> None:
        if threshold == self._current:
            return
        if not set_threshold(self.model, threshold):
            raise ValueError("GradualQuantization: the model has no nested quantizer (lqs_core.quantizers.NestedQuantizer).")
        self._current = threshold
        if self.model.train_function is not None:  # traced with the old λ: trace again
            self.model.make_train_function(force=True)

    def on_train_begin(self, logs=None):
        self._current = None

    def on_epoch_begin(self, epoch, logs=None):
        self._use(self.threshold if epoch >= self.start_epoch else 0.0)

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["threshold"] = float(self._current)

    def on_train_end(self, logs=None):
        set_threshold(self.model, self.threshold)  # the model keeps its configured λ (get_config, .keras)


__all__ = ["GradualQuantization", "nested_quantizers", "set_threshold"]
