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


@pytest.mark.backends
def test_logs_hold_epoch_stats_and_sizes(tmp_path):
    m, snap = model(), Snapshot()
    history = m.fit(X, Y, epochs=3, batch_size=16, verbose=0,
                    callbacks=[QuantizationLogger(scales=True), snap, keras.callbacks.CSVLogger(tmp_path / "log.csv")])
    assert len(snap.seen) == 3
    for logs, stats, size in snap.seen:
        for key, value in stats.items():  # exactly metrics.epoch_stats, as ints/floats
            assert logs[key] == value and type(logs[key]) is type(value), key
        assert logs["entropy_bytes"] == size["entropy_bytes"] and logs["packed_bytes"] == size["packed_bytes"]
        assert logs["bits_unique"] == metrics.bits_unique(stats["unique_integers"])
    assert history.history["unique_integers"] == [s["unique_integers"] for _, s, _ in snap.seen]
    assert history.history["entropy_bytes"] == [z["entropy_bytes"] for _, _, z in snap.seen]
    with open(tmp_path / "log.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(float(r["int_range"])) for r in rows] == [s["int_range"] for _, s, _ in snap.seen]
    assert "scale_mean/a/kernel" in rows[0]


def test_options_and_progress_bar(capsys):
    m = model()
    history = m.fit(X, Y, epochs=1, verbose=2, callbacks=[QuantizationLogger(sizes=False, prefix="q/")])
    assert set(history.history) == {"loss", "q/unique_integers", "q/int_range", "q/int_min", "q/int_max"}
    assert "q/unique_integers" in capsys.readouterr().out  # the progress bar prints it
    for bad in (dict(scales=1), dict(sizes="yes"), dict(prefix=3)):
        with pytest.raises(ValueError, match="QuantizationLogger"):
            QuantizationLogger(**bad)


def test_float_model_is_refused():
    m = keras.Sequential([keras.Input((6,)), keras.layers.Dense(3)])
    m.compile("adam", "mse")
    with pytest.raises(ValueError, match="no quantized parameters"):
        m.fit(X, Y, epochs=1, verbose=0, callbacks=[QuantizationLogger()])
