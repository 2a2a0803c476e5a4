"""Metrics on hand-made integer tensors and on a small model with known integers (docs/method.md §3)."""

import io
import json
import math
import zipfile

import keras
import numpy as np
import pandas as pd
import pytest

from lqs_core import metrics
from lqs_core.layers import QDense

# ----------------------------------------------------------------------------------------------------------------
# Hand-made tensors


def test_unique_integers_is_the_union_over_tensors():
    a = np.array([[0, 1], [1, 2]])
    b = np.array([2, 3, 3, -1])
    assert metrics.unique_integers({"a": a, "b": b}) == 5  # {-1, 0, 1, 2, 3}, not 3 + 4
    assert metrics.unique_integers([a]) == 3
    assert metrics.unique_integers(b) == 3
    assert metrics.unique_integers([]) == 0


def test_unique_and_counts_for_small_and_wide_ranges():
    rng = np.random.default_rng(0)
    for t in [rng.integers(-5, 5, 10000), rng.integers(-(2**40), 2**40, 500), np.array([2**62, -(2**62), 0, 0])]:
        values, counts = np.unique(t, return_counts=True)
        assert metrics.unique_integers([t]) == values.size
        assert metrics.entropy_bits(t) == pytest.approx(-(counts / t.size * np.log2(counts / t.size)).sum())
    assert metrics.unique_integers([np.array([2**40]), np.array([0, 2**40])]) == 2


def test_integer_range_and_max_abs():
    tensors = {"a": np.array([-3, 0, 2]), "b": np.array([[5], [1]])}
    assert metrics.integer_range(tensors) == (-3, 5)
    assert metrics.max_abs_integer(tensors) == 5
    assert metrics.max_abs_integer([np.array([-7, 2])]) == 7
    with pytest.raises(ValueError):
        metrics.integer_range([])


def test_float_input_must_hold_integers():
    assert metrics.unique_integers([np.array([1.0, 2.0, 2.0])]) == 2
    with pytest.raises(ValueError, match="integer"):
        metrics.unique_integers([np.array([0.0, 1.5])])


@pytest.mark.parametrize(
    "n, bits", [(0, 0), (1, 0), (2, 1), (3, 2), (4, 2), (5, 3), (24, 5), (2**20, 20), (2**20 + 1, 21)]
)
def test_bits_unique(n, bits):
    assert metrics.bits_unique(n) == bits


@pytest.mark.parametrize(
    "values, bits",
    [([5, 5, 5], 0), ([0, 1], 1), ([-2, 3], 3), ([0, 255], 8), ([0, 256], 9), ([-128, 127], 8), ([-12, 11], 5)],
)
def test_bits_fixed(values, bits):
    assert metrics.bits_fixed(np.array(values)) == bits


def test_entropy_known_distributions():
    assert metrics.entropy_bits(np.array([0, 0, 1, 1])) == pytest.approx(1.0)
    assert metrics.entropy_bits(np.array([7, 7, 7])) == 0.0
    assert metrics.entropy_bits(np.array([0, 0, 0, 0, 1, 1, 2, 3])) == pytest.approx(1.75)
    assert metrics.entropy_bits(np.array([0, 0, 0, 1])) == pytest.approx(-(0.75 * math.log2(0.75) + 0.25 * math.log2(0.25)))


def test_huffman_known_distribution():
    t = np.array([0, 0, 0, 0, 1, 1, 2, 3])  # p = 1/2, 1/4, 1/8, 1/8 -> lengths 1, 2, 3, 3
    assert list(metrics.huffman_code_lengths([4, 2, 1, 1])) == [1, 2, 3, 3]
    assert metrics.huffman_bits(t, table=False) == 14  # = 8 * entropy (dyadic distribution)
    # table: 64 (min) + 32 (count) + 4 symbols * (bits_fixed 2 + 6)
    assert metrics.huffman_table_bits(t) == 96 + 4 * 8
    assert metrics.huffman_bits(t) == 14 + 128


def test_huffman_single_symbol_and_skewed():
    assert metrics.huffman_bits(np.full(5, 3), table=False) == 5  # one symbol: 1 bit per element
    assert metrics.huffman_bits(np.array([0, 0, 0, 1]), table=False) == 4
    rng = np.random.default_rng(0)
    t = rng.geometric(0.3, size=2000)
    n_bits = metrics.huffman_bits(t, table=False)
    h = metrics.entropy_bits(t) * t.size
    assert h <= n_bits < h + t.size  # Huffman is within 1 bit per symbol of the entropy


def test_packed_size_arithmetic():
    # 10 values 0..9 -> 4 bits -> 40 bits = 5 bytes; + 8 (min) + 3 scales * 4
    assert metrics.packed_size_bytes(np.arange(10), np.ones((3, 1))) == 5 + 8 + 12
    # 9 values of 3 bits = 27 bits -> 4 bytes
    assert metrics.packed_size_bytes(np.array([0, 7] + [1] * 7), np.ones(1)) == 4 + 8 + 4
    # constant tensor: no payload at all
    assert metrics.packed_size_bytes(np.full((4, 4), -3), np.ones(1)) == 0 + 8 + 4


def test_smallest_int_dtype():
    assert metrics.smallest_int_dtype(np.array([-128, 127])) == np.int8
    assert metrics.smallest_int_dtype(np.array([-129, 0])) == np.int16
    assert metrics.smallest_int_dtype(np.array([0, 128])) == np.int16
    assert metrics.smallest_int_dtype(np.array([0, 40000])) == np.int32


def test_zip_does_not_wrap_int8_overflow():
    tensors = {"w": np.array([[200, -300], [1, 2]]), "b": np.array([-5, 5])}
    back = metrics.read_npy_zip(metrics.npy_zip_bytes(tensors))
    assert back["w"].dtype == np.int16 and back["b"].dtype == np.int8
    np.testing.assert_array_equal(back["w"], tensors["w"])
    np.testing.assert_array_equal(back["b"], tensors["b"])


def test_zipped_size_grows_beyond_int8_and_is_deterministic():
    rng = np.random.default_rng(1)
    small = rng.integers(-100, 100, size=4000)
    assert metrics.zipped_npy_size_bytes({"a": small}) < metrics.zipped_npy_size_bytes({"a": small * 300})
    assert metrics.npy_zip_bytes({"a": small}) == metrics.npy_zip_bytes({"a": small})
    with zipfile.ZipFile(io.BytesIO(metrics.npy_zip_bytes({"a": small}))) as z:
        info = z.getinfo("a.npy")
        assert info.compress_type == zipfile.ZIP_DEFLATED
        assert info.file_size == 128 + small.size  # int8 .npy: 128-byte header + 1 byte per value


def test_zipped_float_baseline_is_float32():
    a = np.random.default_rng(2).normal(size=(64, 8))
    size = metrics.zipped_float_size_bytes({"w": a})
    assert 64 * 8 * 4 * 0.5 < size < 64 * 8 * 4 + 400  # float noise barely compresses
    assert metrics.zipped_float_size_bytes({"w": a.astype(np.float64)}) == size


# ----------------------------------------------------------------------------------------------------------------
# A small model with known integers

K1 = np.array([[0, 1, 2], [-1, 0, 1], [3, 3, 3], [-2, -2, 0]])
S_K1 = np.array([[0.5], [0.25], [0.125], [1.0]], dtype=np.float32)  # rowwise (4, 1)
B1 = np.array([5, -5, 0])
S_B1 = 0.5
K2 = np.full((3, 2), 7)
S_K2 = 2.0
B2 = np.array([-8, 8])
S_B2 = 0.25


def known_model():
    model = keras.Sequential(
        [keras.Input((4,)), QDense(3, kernel_quantizer={"method": "nested", "granularity": "rowwise"}, name="d1"),
         QDense(2, kernel_quantizer="nested", name="d2")],
        name="known",
    )
    d1, d2 = model.get_layer("d1"), model.get_layer("d2")
    # P = (P_q + 0.5) * s: exact in float32 with power-of-two scales, floor(P / s) = P_q exactly.
    for layer, param, q, s in [(d1, "kernel", K1, S_K1), (d1, "bias", B1, S_B1), (d2, "kernel", K2, S_K2), (d2, "bias", B2, S_B2)]:
        variable, quantizer = layer._quantized[param]
        quantizer.scale.assign(np.full(quantizer.scale.shape, s, dtype=np.float32) if np.isscalar(s) else s)
        variable.assign(((q + 0.5) * np.asarray(s)).astype(np.float32))
    return model


def test_integer_tensors_and_scales_of_a_model():
    ints = metrics.integer_tensors(known_model())
    assert list(ints) == ["d1/kernel", "d1/bias", "d2/kernel", "d2/bias"]
    for got, want in zip(ints.values(), [K1, B1, K2, B2]):
        assert got.dtype == np.int64
        np.testing.assert_array_equal(got, want)
    sc = metrics.scales(known_model())
    assert sc["d1/kernel"].dtype == np.float32 and sc["d1/kernel"].shape == (4, 1)
    np.testing.assert_array_equal(sc["d2/kernel"], np.full((1, 1), 2.0, np.float32))


def test_summary_rows_and_totals():
    df = metrics.summary(known_model())
    assert isinstance(df, pd.DataFrame)
    assert list(df["tensor"]) == ["d1/kernel", "d1/bias", "d2/kernel", "d2/bias", "total"]
    rows = df.set_index("tensor")
    h_k1 = -(2 * (3 / 12) * math.log2(3 / 12) + 2 * (2 / 12) * math.log2(2 / 12) + 2 * (1 / 12) * math.log2(1 / 12))
    expected = {
        # params, n_scales, unique, min, max, max_abs, bits_unique, bits_fixed, packed, float32
        "d1/kernel": (12, 4, 6, -2, 3, 3, 3, 3, 5 + 8 + 16, 48),
        "d1/bias": (3, 1, 3, -5, 5, 5, 2, 4, 2 + 8 + 4, 12),
        "d2/kernel": (6, 1, 1, 7, 7, 7, 0, 0, 0 + 8 + 4, 24),
        "d2/bias": (2, 1, 2, -8, 8, 8, 1, 5, 2 + 8 + 4, 8),
        "total": (23, 7, 11, -8, 8, 8, 4, 5, 69, 92),
    }
    cols = ["params", "n_scales", "unique", "min", "max", "max_abs", "bits_unique", "bits_fixed", "packed_bytes",
            "float32_bytes"]
    for name, values in expected.items():
        assert tuple(int(rows.loc[name, c]) for c in cols) == values, name
    entropies = {"d1/kernel": h_k1, "d1/bias": math.log2(3), "d2/kernel": 0.0, "d2/bias": 1.0}
    for name, h in entropies.items():
        assert rows.loc[name, "entropy_bits"] == pytest.approx(h)
    assert rows.loc["total", "entropy_bits"] == pytest.approx((12 * h_k1 + 3 * math.log2(3) + 2 * 1.0) / 23)
    assert rows.loc["d1/kernel", "scale_mean"] == pytest.approx(0.46875)
    assert rows.loc["total", "scale_mean"] == pytest.approx((12 * 0.46875 + 3 * 0.5 + 6 * 2.0 + 2 * 0.25) / 23)
    assert rows.loc["d1/kernel", "granularity"] == "rowwise" and rows.loc["d2/kernel", "granularity"] == "scalar"
    # d2/kernel: one symbol -> 6 bits of data + table 96 + 1 * (0 + 6) = 108 bits -> 14 bytes
    assert rows.loc["d2/kernel", "huffman_bytes"] == 14
    assert rows.loc["total", "huffman_bytes"] == rows["huffman_bytes"].iloc[:-1].sum()


def test_report_is_json_serializable_and_consistent():
    model = known_model()
    rep = metrics.report(model)
    json.dumps(rep)  # no numpy scalars
    assert all(type(v) in (int, float) for v in rep.values()), {k: type(v) for k, v in rep.items()}
    assert rep["unique_integers"] == 11
    assert (rep["int_min"], rep["int_max"], rep["int_range"]) == (-8, 8, 8)
    assert rep["bits_unique"] == 4 and rep["bits_fixed"] == 5
    assert rep["mean_bits_fixed"] == pytest.approx((12 * 3 + 3 * 4 + 0 + 2 * 5) / 23)
    assert rep["packed_bytes"] == 69 and rep["float32_bytes"] == 92
    assert rep["zip_bytes"] == metrics.zipped_npy_size_bytes(metrics.integer_tensors(model))
    assert rep["float_zip_bytes"] == metrics.zipped_float_size_bytes(metrics.float_tensors(model))
    assert rep["zip_ratio"] == pytest.approx(rep["float_zip_bytes"] / rep["zip_bytes"])
    assert rep["packed_ratio"] == pytest.approx(92 / 69)


def test_epoch_stats():
    stats = metrics.epoch_stats(known_model())
    assert stats["unique_integers"] == 11
    assert (stats["int_min"], stats["int_max"], stats["int_range"]) == (-8, 8, 8)
    assert stats["scale_mean/d1/kernel"] == pytest.approx(0.46875)
    assert stats["scale_mean/d2/bias"] == pytest.approx(0.25)
    json.dumps(stats)


def test_model_without_quantized_parameters_raises():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    for fn in (metrics.integer_tensors, metrics.summary, metrics.report, metrics.epoch_stats):
        with pytest.raises(ValueError, match="no quantized parameters"):
            fn(model)
