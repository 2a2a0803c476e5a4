"""lqs_core.summary: every layer, whole-model totals, readable in a terminal and in Jupyter."""

import warnings

import keras
import numpy as np
import pytest

import lqs_core
from lqs_core import entropy, export, metrics
from lqs_core.model_summary import COLUMNS


def converted():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.Flatten(name="flat")(x)
    x = keras.layers.Dense(6, name="hidden")(x)
    outputs = keras.layers.Dense(3, name="head")(x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return lqs_core.quantize_model(keras.Model(inputs, outputs, name="small"), "nested", scale_init=0.01,
                                       exclude=["head"])


@pytest.mark.backends
def test_rows_and_totals_against_the_tensors():
    model = converted()
    s = lqs_core.summary(model)
    rows = s.layers.set_index("layer")
    assert list(s.layers.columns) == COLUMNS
    assert {"conv", "bn", "flat", "hidden", "head"} <= set(rows.index)
    ints, scales = metrics.integer_tensors(model), metrics.scales(model)
    kernel, bias = ints["conv/kernel"], ints["conv/bias"]
    assert rows.loc["conv", "params"] == kernel.size + bias.size
    assert rows.loc["conv", "unique"] == metrics.unique_integers([kernel, bias])
    assert rows.loc["conv", "packed_bytes"] == sum(metrics.packed_size_bytes(ints[n], scales[n])
                                                   for n in ("conv/kernel", "conv/bias"))
    assert rows.loc["conv", "entropy_bytes"] == sum(entropy.coded_size(ints[n]) + 4 * scales[n].size
                                                    for n in ("conv/kernel", "conv/bias"))
    assert rows.loc["conv", "quantizer"] == "nested scalar λ=0"
    # float layers: raw bytes, and named
    assert rows.loc["bn", "packed_bytes"] == rows.loc["bn", "float32_bytes"] == 4 * 4 * 4
    assert "does not quantize" in rows.loc["bn", "note"] and "excluded" in rows.loc["head", "note"]
    assert rows.loc["flat", "params"] == 0
    t = s.totals
    assert t["float32_bytes"] == 4 * sum(int(np.prod(w.shape)) for w in model.weights
                                         if "scale" not in w.path)
    assert t["entropy_bytes"] == export.encode_integers(model)[1]["file_bytes"]
    assert t["compression"] == pytest.approx(t["float32_bytes"] / t["entropy_bytes"])
    assert t["quantized_params"] + t["float_params"] == t["params"]


def test_printed_in_full_and_html(capsys):
    s = lqs_core.summary(converted())
    with_long = s.layers.copy()
    text = str(s)
    assert "…" not in text and "..." not in text
    for name in with_long["layer"]:
        assert name in text
    assert "compression" in text and "entropy-coded file" in text and "float weights kept in 2: bn, head" in text
    html = s._repr_html_()
    assert html.count("<tr") == len(s.layers) + 1 and "compression" in html


def test_float_model_has_no_quantized_layers_but_a_summary():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="d")], name="plain")
    s = lqs_core.summary(model)
    assert s.totals["quantized_params"] == 0 and s.totals["entropy_bytes"] == 4 * 15
    assert s.totals["compression"] == pytest.approx(1.0)
