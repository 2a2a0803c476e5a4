"""The other libraries' methods as comparators (:mod:`lqs_core.external`): HGQ2 and Keras' ``model.quantize``,
trained / applied on the digits MLP and measured with lqs' size numbers."""

import importlib.util

import numpy as np
import pytest
from conftest import BACKEND, to_numpy

from lqs_core import models, spec, training
from lqs_core.external import integer_report
from lqs_core.spec import RunConfig, run_id

requires_hgq2 = pytest.mark.skipif(importlib.util.find_spec("hgq") is None, reason="hgq2 not installed")


def test_integer_report_against_numpy():
    q = {"a": np.array([[0, 1, -1, 3]]), "b": np.array([2, 2])}
    floats = {"a": np.array([[0.0, 0.1, -0.1, 0.3]], np.float32), "b": np.array([0.2, 0.2], np.float32)}
    r = integer_report(q, floats)
    assert r["unique_integers"] == 5 and (r["int_min"], r["int_max"], r["int_range"]) == (-1, 3, 3)
    # fixed width per tensor: ceil(log2(3 - (-1) + 1)) = 3 bits x 4, ceil(log2(1)) = 0 bits x 2; a float32 scale each
    assert r["packed_bytes"] == -(-12 // 8) + 4 + 0 + 4
    assert r["mean_bits_fixed"] == pytest.approx((3 * 4 + 0 * 2) / 6)
    widths = {"a": np.array([[0, 2, 2, 3]]), "b": np.array([2, 2])}
    assert integer_report(q, floats, bits=widths)["packed_bytes"] == 1 + 4 + 1 + 4
    with pytest.raises(ValueError, match="no integer tensors"):
        integer_report({}, {})


def test_integer_report_entropy_bytes_is_an_integer_file(tmp_path):
    """``entropy_bytes`` is the size of an lqs integer file holding exactly these integers and scales."""
    from lqs_core import intfile

    rng = np.random.default_rng(0)
    q = {"d/kernel": rng.choice([-1, 0, 0, 0, 0, 0, 1, 40], size=(64, 32)), "d/bias": np.arange(32) - 16}
    floats = {k: v.astype(np.float32) for k, v in q.items()}
    r = integer_report(q, floats, n_scales={"d/kernel": 32})
    records = [{"name": k, "host": "", "param": k.split("/")[1], "rounding": "round", "granularity": "",
                "axis": None, "q": v, "s": np.ones(32 if k == "d/kernel" else 1, np.float32)} for k, v in q.items()]
    blob = intfile.build(records)[0]
    assert r["entropy_bytes"] == len(blob)
    (tmp_path / "f.lqsint").write_bytes(blob)
    _, tensors, scales = intfile.read(tmp_path / "f.lqsint")
    assert all(np.array_equal(tensors[k], q[k]) for k in q) and scales["d/kernel"].size == 32
    # a skewed 8-symbol kernel: entropy coding beats 6-bit fixed-width packing
    assert r["entropy_bytes"] < r["packed_bytes"]


def test_run_ids_and_validation():
    h = RunConfig(dataset="mnist", method="hgq2", method_options={"beta": 1e-6})
    assert run_id(h) == "mnist-hgq2-beta1e-06-qat-s42" and h.quantizer_spec is None
    k = RunConfig(dataset="mnist", scheme="ptq_eval", method="keras_quantize", bits=8, float_weights="x")
    assert run_id(k) == "mnist-keras_quantize-b8-s42"
    with pytest.raises(ValueError, match="bits"):
        RunConfig(dataset="mnist", scheme="ptq_eval", method="keras_quantize", bits=3, float_weights="x")
    with pytest.raises(ValueError, match="ptq_eval"):
        RunConfig(dataset="mnist", method="keras_quantize", bits=8)
    with pytest.raises(ValueError, match="beta"):
        RunConfig(dataset="mnist", method="hgq2", method_options={"beta": -1.0})
    with pytest.raises(ValueError, match="unknown option"):
        RunConfig(dataset="mnist", method="hgq2", method_options={"gamma": 1.0})
    with pytest.raises(ValueError, match="qat"):
        RunConfig(dataset="mnist", method="hgq2", mode="ptq", float_weights="x")


@requires_hgq2
@pytest.mark.backends
def test_hgq2_run_learns_and_reports_its_bits(tmp_path):
    from lqs_core.external import hgq2

    # Adam moves a bit width by about lr per step: 4 x 45 steps at lr 1e-2 leave room for a few bits
    weak = training.train(RunConfig(dataset="digits", method="hgq2", method_options={"beta": 1e-8}, epochs=4,
                                    learning_rate=1e-2), out_dir=tmp_path / "weak", verbose=0)
    strong = training.train(RunConfig(dataset="digits", method="hgq2", method_options={"beta": 1e-4}, epochs=4,
                                      learning_rate=1e-2), out_dir=tmp_path / "strong", verbose=0)
    assert weak.report["val_accuracy"] > 0.8
    # the regularizer buys fewer bits per weight
    assert strong.report["mean_bits_fixed"] < weak.report["mean_bits_fixed"]
    assert strong.report["packed_bytes"] < weak.report["packed_bytes"]
    assert "mean_weight_bits" in weak.history.columns and weak.history["unique_integers"].notna().all()
    # the integers are exact: w_q = q / 2^max f for every weight
    ints, bits, _ = hgq2.integer_tensors(weak.model)
    layer = weak.model.get_layer("dense_1")
    w_q = to_numpy(layer.qkernel).astype(np.float64)
    f_max = float(np.max(to_numpy(layer.kq.quantizer.f)))
    np.testing.assert_array_equal(ints["dense_1/kernel"], np.round(w_q * 2.0 ** f_max).astype(np.int64))
    assert (tmp_path / "weak" / "metrics.json").exists() and not (tmp_path / "weak" / "integers.lqsint").exists()


@pytest.mark.backends
def test_keras_quantize_of_the_float_baseline(tmp_path):
    base = training.train(RunConfig(dataset="digits", scheme="float", epochs=3), out_dir=tmp_path / "base", verbose=0)
    out = {}
    for bits in (8, 4):
        c = RunConfig(dataset="digits", scheme="ptq_eval", method="keras_quantize", bits=bits,
                      float_weights=str(tmp_path / "base"))
        out[bits] = training.train(c, out_dir=tmp_path / run_id(c), verbose=0).report
    assert out[8]["val_accuracy"] > base.report["val_accuracy"] - 0.05
    assert out[8]["int_range"] <= 127 and out[4]["int_min"] >= -8 and out[4]["int_max"] <= 7
    assert out[4]["packed_bytes"] < out[8]["packed_bytes"] < base.report["float32_bytes"]
    assert out[8]["mean_bits_fixed"] == 8 and out[4]["mean_bits_fixed"] == 4
