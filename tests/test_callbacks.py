"""QuantizationLogger: the integer statistics in the logs of an ordinary model.fit (History, CSVLogger, progbar)."""

import csv

import keras
import numpy as np
import pytest

from lqs_core import metrics
from lqs_core.callbacks import QuantizationLogger
from lqs_core.layers import QDense

X = np.random.default_rng(0).normal(size=(64, 6)).astype("float32")
Y = np.random.default_rng(1).normal(size=(64, 3)).astype("float32")


def model():
    keras.utils.set_random_seed(0)
    m = keras.Sequential([keras.Input((6,)), QDense(8, kernel_quantizer={"method": "nested", "granularity": "rowwise",
                                                                          "threshold": 1e-6}, name="a"),
                          QDense(3, name="b")])
    m.compile(keras.optimizers.Adam(1e-2), "mse")
    return m


class Snapshot(keras.callbacks.Callback):
    """After QuantizationLogger: records the logs and what metrics gives for the model at that moment."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def on_epoch_end(self, epoch, logs=None):
        self.seen.append((dict(logs), metrics.epoch_stats(self.model), metrics.sizes(self.model)))


def shannon_bytes(model):
    """Σ_t ceil(n_t · H_t / 8) + 4 · #s_t with H_t from the value counts (independent of lqs_core.callbacks)."""
    total = 0
    for name, q in metrics.integer_tensors(model).items():
        _, counts = np.unique(q, return_counts=True)
        p = counts / q.size
        total += int(np.ceil(q.size * float(-(p * np.log2(p)).sum()) / 8)) + 4 * metrics.scales(model)[name].size
    return total


@pytest.mark.backends
def test_logs_hold_epoch_stats_and_sizes(tmp_path):
    m, snap = model(), Snapshot()
    history = m.fit(X, Y, epochs=3, batch_size=16, verbose=0,
                    callbacks=[QuantizationLogger(scales=True, file_size=True), snap,
                               keras.callbacks.CSVLogger(tmp_path / "log.csv")])
    assert len(snap.seen) == 3
    for logs, stats, size in snap.seen:
        for key, value in stats.items():  # exactly metrics.epoch_stats, as ints/floats
            assert logs[key] == value and type(logs[key]) is type(value), key
        assert logs["entropy_bytes"] == size["entropy_bytes"] and logs["packed_bytes"] == size["packed_bytes"]
        assert logs["bits_unique"] == metrics.bits_unique(stats["unique_integers"])
    assert history.history["unique_integers"] == [s["unique_integers"] for _, s, _ in snap.seen]
    assert history.history["entropy_bytes"] == [z["entropy_bytes"] for _, _, z in snap.seen]
    assert history.history["shannon_bytes"][-1] == shannon_bytes(m)
    with open(tmp_path / "log.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(float(r["int_range"])) for r in rows] == [s["int_range"] for _, s, _ in snap.seen]
    assert "scale_mean/a/kernel" in rows[0]


def test_default_sizes_code_no_tensor():
    """sizes=True (the default) logs packed_bytes and shannon_bytes from histograms; the file only on request."""
    m = model()
    history = m.fit(X, Y, epochs=1, verbose=0, callbacks=[QuantizationLogger()])
    assert {"bits_unique", "packed_bytes", "shannon_bytes"} <= set(history.history)
    assert "entropy_bytes" not in history.history
    assert history.history["packed_bytes"] == [metrics.sizes(m)["packed_bytes"]]
    assert history.history["shannon_bytes"] == [shannon_bytes(m)]
    # the order-0 entropy: below the Huffman-coded integers (their code lengths are whole bits) plus the scales
    scale_bytes = sum(4 * s.size for s in metrics.scales(m).values())
    assert history.history["shannon_bytes"][0] <= metrics.sizes(m)["huffman_bytes"] + scale_bytes


def test_options_and_progress_bar(capsys):
    m = model()
    history = m.fit(X, Y, epochs=1, verbose=2, callbacks=[QuantizationLogger(sizes=False, prefix="q/")])
    assert set(history.history) == {"loss", "q/unique_integers", "q/int_range", "q/int_min", "q/int_max"}
    assert "q/unique_integers" in capsys.readouterr().out  # the progress bar prints it
    for bad in (dict(scales=1), dict(sizes="yes"), dict(prefix=3), dict(file_size=None)):
        with pytest.raises(ValueError, match="QuantizationLogger"):
            QuantizationLogger(**bad)


def test_float_model_is_refused():
    m = keras.Sequential([keras.Input((6,)), keras.layers.Dense(3)])
    m.compile("adam", "mse")
    with pytest.raises(ValueError, match="no quantized parameters"):
        m.fit(X, Y, epochs=1, verbose=0, callbacks=[QuantizationLogger()])
