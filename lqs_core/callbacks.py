"""A Keras callback that puts what the quantizers learned into each epoch's ``logs``.

:class:`QuantizationLogger` adds, at the end of every epoch, :func:`lqs_core.metrics.epoch_stats` of the model to
the ``logs`` dict that Keras hands every callback (``unique_integers`` = ``|∪ distinct(P_q)|``, ``int_range`` =
``max |P_q|``, ``int_min``, ``int_max``, ``scale_mean/<tensor>`` = ``mean(s)``) and, with ``sizes=True``,
``bits_unique = ceil(log2 unique_integers)``, ``packed_bytes`` and ``entropy_bytes``
(:func:`lqs_core.metrics.entropy_bytes`). Keras runs user callbacks before its own ``History`` and progress bar,
so ``History.history``, ``CSVLogger``, ``TensorBoard`` and the progress bar of ``model.fit`` show them::

    model.fit(x, y, epochs=5, callbacks=[QuantizationLogger(), keras.callbacks.CSVLogger("log.csv")])
"""

from __future__ import annotations

import keras

from lqs_core import metrics


class QuantizationLogger(keras.callbacks.Callback):
    """Add the model's integer statistics to ``logs`` at the end of each epoch (module docstring).

    Args:
        scales: include ``scale_mean/<tensor>`` for every quantized tensor (many keys on a large model).
        sizes: include ``bits_unique``, ``packed_bytes`` and ``entropy_bytes`` (they code every tensor once:
            milliseconds for the thesis' networks).
        prefix: prepended to every key (e.g. ``"q/"``).
        stats: the function ``model -> dict`` that computes the numbers (default
            :func:`lqs_core.metrics.epoch_stats`; :func:`lqs_core.external.hgq2.epoch_stats` for an HGQ2 model).

    ``QuantizationLogger(scales=True, sizes=False)`` adds exactly :func:`lqs_core.metrics.epoch_stats`; the
    workflow's per-epoch history (:class:`lqs_core.training.EpochRecorder`) reads them from the logs it adds.
    After each epoch, :attr:`last_keys` holds the keys it added (with ``prefix``), in order.
    """

    def __init__(self, scales: bool = False, sizes: bool = True, prefix: str = "", stats=None):
        super().__init__()
        if stats is not None and not callable(stats):
            raise ValueError(f"QuantizationLogger: stats must be a function model -> dict or None, got {stats!r}.")
        for name, value in (("scales", scales), ("sizes", sizes)):
            if not isinstance(value, bool):
                raise ValueError(f"QuantizationLogger: {name} must be True or False, got {value!r}.")
        if not isinstance(prefix, str):
            raise ValueError(f"QuantizationLogger: prefix must be a string, got {prefix!r}.")
        self.scales, self.sizes, self.prefix = bool(scales), bool(sizes), prefix
        self.stats_fn = stats or metrics.epoch_stats
        self.last_keys: list = []

    def stats(self) -> dict:
        """The numbers one epoch end adds (without ``prefix``): python ints and floats."""
        stats = self.stats_fn(self.model)
        if not self.scales:
            stats = {k: v for k, v in stats.items() if not k.startswith("scale_mean/")}
        if self.sizes:
            size = metrics.sizes(self.model)
            stats["bits_unique"] = metrics.bits_unique(stats["unique_integers"])
            stats["packed_bytes"] = size["packed_bytes"]
            stats["entropy_bytes"] = size["entropy_bytes"]
        return stats

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        added = {f"{self.prefix}{k}": v for k, v in self.stats().items()}
        self.last_keys = list(added)
        logs.update(added)


__all__ = ["QuantizationLogger"]
