"""A Keras callback that puts what the quantizers learned into each epoch's ``logs``.

:class:`QuantizationLogger` adds, at the end of every epoch, :func:`lqs_core.metrics.epoch_stats` of the model to
the ``logs`` dict that Keras hands every callback (``unique_integers`` = ``|∪ distinct(P_q)|``, ``int_range`` =
``max |P_q|``, ``int_min``, ``int_max``, ``scale_mean/<tensor>`` = ``mean(s)``) and, with ``sizes=True``, three
sizes computed from the integers' histograms (no tensor is coded)::

    bits_unique   = ceil(log2 unique_integers)
    packed_bytes  = Σ_t packed_size_bytes(P_q, s)              # fixed-width integers + scales (exact)
    shannon_bytes = Σ_t ceil(n_t · H_t / 8) + 4 · #s_t         # H_t = -Σ_v p_v log2 p_v of tensor t

``shannon_bytes`` is what the integers take at their order-0 entropy, the least a code of single values spends;
the integer file (``entropy_bytes``, :func:`lqs_core.metrics.entropy_bytes`: Huffman, DEFLATE or packing per
tensor, code tables and header) codes every tensor and is logged only with ``file_size=True``. Keras runs user
callbacks before its own ``History`` and progress bar, so ``History.history``, ``CSVLogger``, ``TensorBoard`` and
the progress bar of ``model.fit`` show them::

    model.fit(x, y, epochs=5, callbacks=[QuantizationLogger(), keras.callbacks.CSVLogger("log.csv")])

Cost of one epoch end, CPU time measured on ``keras.applications.ResNet50(weights=None)`` quantized (25.6 M weights,
108 tensors, ~24 000 distinct integers; ``benchmarks/logger_sizes.py``, 2 CPU cores): the epoch statistics 0.3 s,
``sizes`` 0.3 s more, ``file_size`` 8.4 s more. Before issue #23, ``sizes=True`` coded every tensor for
``entropy_bytes``: 9.4 s in all (8.8 s wall time on an idle machine).
"""

from __future__ import annotations

import math

import keras

from lqs_core import metrics


def histogram_sizes(model) -> dict:
    """``packed_bytes`` and ``shannon_bytes`` of ``model``'s quantized tensors (module docstring), from the value
    counts of each tensor: O(n) numpy, nothing coded."""
    ints, scales = metrics.integer_tensors(model), metrics.scales(model)
    packed = sum(metrics.packed_size_bytes(q, scales[name]) for name, q in ints.items())
    shannon = sum(math.ceil(q.size * metrics.entropy_bits(q) / 8) + 4 * scales[name].size
                  for name, q in ints.items())
    return {"packed_bytes": int(packed), "shannon_bytes": int(shannon)}


class QuantizationLogger(keras.callbacks.Callback):
    """Add the model's integer statistics to ``logs`` at the end of each epoch (module docstring).

    Args:
        scales: include ``scale_mean/<tensor>`` for every quantized tensor (many keys on a large model).
        sizes: include ``bits_unique``, ``packed_bytes`` and ``shannon_bytes`` (from histograms): 0.3 s per epoch
            end on quantized ResNet50, as much as the epoch statistics themselves (module docstring).
        file_size: include ``entropy_bytes``, the size of the model's integer file, by coding every tensor
            (:func:`lqs_core.metrics.entropy_bytes`): 8.4 s per epoch end on the same ResNet50 — for small models;
            else call :func:`lqs_core.metrics.entropy_bytes` once after training.
        prefix: prepended to every key (e.g. ``"q/"``).
        stats: the function ``model -> dict`` that computes the numbers (default
            :func:`lqs_core.metrics.epoch_stats`; :func:`lqs_core.external.hgq2.epoch_stats` for an HGQ2 model).

    ``QuantizationLogger(scales=True, sizes=False)`` adds exactly :func:`lqs_core.metrics.epoch_stats`; the
    workflow's per-epoch history (:class:`lqs_core.training.EpochRecorder`) reads them from the logs it adds.
    After each epoch, :attr:`last_keys` holds the keys it added (with ``prefix``), in order.
    """

    def __init__(self, scales: bool = False, sizes: bool = True, prefix: str = "", stats=None,
                 file_size: bool = False):
        super().__init__()
        if stats is not None and not callable(stats):
            raise ValueError(f"QuantizationLogger: stats must be a function model -> dict or None, got {stats!r}.")
        for name, value in (("scales", scales), ("sizes", sizes), ("file_size", file_size)):
            if not isinstance(value, bool):
                raise ValueError(f"QuantizationLogger: {name} must be True or False, got {value!r}.")
        if not isinstance(prefix, str):
            raise ValueError(f"QuantizationLogger: prefix must be a string, got {prefix!r}.")
        self.scales, self.sizes, self.file_size, self.prefix = scales, sizes, file_size, prefix
        self.stats_fn = stats or metrics.epoch_stats
        self.last_keys: list = []

    def stats(self) -> dict:
        """The numbers one epoch end adds (without ``prefix``): python ints and floats."""
        stats = self.stats_fn(self.model)
        if not self.scales:
            stats = {k: v for k, v in stats.items() if not k.startswith("scale_mean/")}
        if self.sizes:
            stats["bits_unique"] = metrics.bits_unique(stats["unique_integers"])
            stats.update(histogram_sizes(self.model))
        if self.file_size:
            stats["entropy_bytes"] = metrics.entropy_bytes(self.model)
        return stats

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        added = {f"{self.prefix}{k}": v for k, v in self.stats().items()}
        self.last_keys = list(added)
        logs.update(added)


__all__ = ["QuantizationLogger", "histogram_sizes"]
