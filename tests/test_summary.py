"""lqs_core.summary: every layer, whole-model totals, readable in a terminal and in Jupyter."""

import warnings

import keras
import numpy as np
import pytest

import lqs_core
from lqs_core import entropy, export, metrics
from lqs_core.loss_terms import MaxBin
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
    text = str(s)
    assert "…" not in text and "..." not in text
    for name in s.layers["layer"]:
        assert name in text
    assert "compression" in text and "entropy-coded file" in text and "2 keep float weights" in text
    # each note once, below the table, with the layers it applies to; the rows point to it
    assert text.count("a layer type lqs does not quantize") == 1 and "float [1]" in text and "float [2]" in text
    assert "[1] BatchNormalization, a layer type lqs does not quantize: bn" in text
    assert "[2] Dense, not quantized (excluded): head" in text
    html = s._repr_html_()
    assert html.count("<tr") == len(s.layers) + 1 and "compression" in html and "note" in html


def test_long_cells_wrap_and_never_lose_a_character():
    from lqs_core.model_summary import render_table, short_type, wrap_text

    assert wrap_text("expanded_conv_depthwise_relu", 24) == ["expanded_conv_depthwise_", "relu"]
    assert wrap_text("nested outputwise λ=1e-09", 16) == ["nested", "outputwise", "λ=1e-09"]
    assert wrap_text("abcdefghijklmnopqrstuvwxyz", 10) == ["abcdefghij", "klmnopqrst", "uvwxyz"]
    assert short_type("QuantizedWrapper(DepthwiseConv2D)") == "DepthwiseConv2D"
    assert short_type("QuantizedMultiHeadAttention") == "MHA" and short_type("BatchNormalization") == "BatchNorm"
    rows = [{"name": "a_very_long_layer_name_" * 5, "n": "1,234"}, {"name": "short", "n": "5"}]
    lines = render_table(rows, [("name", "name"), ("n", "n")], {"name": 10}, width=40)
    assert max(map(len, lines)) <= 40
    assert "".join(lines[1:]).replace(" ", "").replace("1,234", "") == "a_very_long_layer_name_" * 5 + "short5"


def lines_of(model):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return str(lqs_core.summary(model)).splitlines()


def test_every_line_fits_100_columns_mobilenet_v2_and_a_transformer():
    """MobileNetV2: 52 BatchNorm layers (one note), names up to 28 characters, a 1.3 M-weight classifier; a
    transformer block with per-layer specs, and with loss terms (the longest quantizer descriptions)."""
    from test_convert import transformer_block

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        q = lqs_core.quantize_model(keras.applications.MobileNetV2(weights=None),
                                    {"Conv1": {"method": "lsq", "bits": 4},
                                     "*": {"method": "nested", "threshold": 1e-9, "scale_init": 1e-3}},
                                    granularity="outputwise")
    lines = lines_of(q)
    assert max(map(len, lines)) <= 100, max(lines, key=len)
    assert len(lines) < len(q.layers) + 25  # a few wrapped names and the note's lines
    assert sum("BatchNormalization" in line for line in lines) == 1  # the note, once
    joined = "".join(line.split("  ")[0] for line in lines)  # the layer column, wrapped names joined again
    for name in ("expanded_conv_depthwise_relu", "block_16_project_BN", "predictions"):
        assert name in joined
    for quantizer, terms in (({"mha": "nested", "ff": {"method": "lsq", "bits": 4}, "head": None}, []),
                             ("nested", [MaxBin(1e-3)])):
        transformer = lqs_core.quantize_model(transformer_block(), quantizer, loss_terms=terms, warn=False)
        lines = lines_of(transformer)
        assert max(map(len, lines)) <= 100, max(lines, key=len)
        mha = next(line for line in lines if line.startswith("mha "))
        assert " MHA " in mha and "nested scalar" in mha
