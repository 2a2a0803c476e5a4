"""Bit-packed integer export: round trip to identical predictions, format checks, size (SPEC §3)."""

import os
import struct

import keras
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lqs_core import export, metrics
from lqs_core.layers import QConv2D, QDense, quantized_params


@pytest.mark.parametrize("bits, low, n", [(1, 0, 13), (3, -4, 9), (7, -60, 100), (12, 1000, 37), (33, -(2**32), 21)])
def test_pack_unpack_round_trip(bits, low, n):
    rng = np.random.default_rng(bits)
    v = rng.integers(low, low + 2**bits, size=n, dtype=np.int64)
    v[0], v[-1] = low, low + 2**bits - 1  # full range -> exactly `bits` bits
    assert metrics.bits_fixed(v) == bits
    data, lo = export.pack_bits(v, bits)
    assert lo == low and len(data) == -(-n * bits // 8)
    np.testing.assert_array_equal(export.unpack_bits(data, n, bits, lo), v)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(-(2**40), 2**40), min_size=1, max_size=40), st.integers(-(2**20), 2**20))
def test_pack_unpack_property(values, shift):
    v = np.array(values, dtype=np.int64) + shift
    bits = metrics.bits_fixed(v)
    data, lo = export.pack_bits(v, bits)
    assert len(data) == -(-v.size * bits // 8)
    np.testing.assert_array_equal(export.unpack_bits(data, v.size, bits, lo), v)


def test_pack_unpack_across_chunks_and_constant():
    v = np.random.default_rng(0).integers(-16, 16, size=export._CHUNK * 2 + 3)
    data, lo = export.pack_bits(v, 5)
    np.testing.assert_array_equal(export.unpack_bits(data, v.size, 5, lo), v)
    data, lo = export.pack_bits(np.full(10, -7), 0)
    assert data == b"" and lo == -7
    np.testing.assert_array_equal(export.unpack_bits(data, 10, 0, lo), np.full(10, -7))
    with pytest.raises(ValueError):
        export.pack_bits(np.array([0, 8]), 3)


def build(seed, units=16, granularity="rowwise", rounding="floor", names=False):
    keras.utils.set_random_seed(seed)
    kw = {"rounding": rounding}
    return keras.Sequential(
        [
            keras.Input((8, 8, 3)),
            QConv2D(4, 3, granularity="channelwise", name="conv" if names else None, **kw),
            keras.layers.BatchNormalization(),
            keras.layers.ReLU(),
            keras.layers.Flatten(),
            QDense(units, granularity=granularity, activation="relu", name="fc" if names else None, **kw),
            QDense(10, granularity="columnwise", name="out" if names else None, **kw),
        ]
    )


def randomize(model, seed, low=0.002, high=0.02):
    """Random non-power-of-two scales (floats whose bins are not exact) and random BatchNorm statistics."""
    rng = np.random.default_rng(seed)
    for _, _, _, _, quantizer in quantized_params(model):
        quantizer.scale.assign(rng.uniform(low, high, size=quantizer.scale.shape).astype(np.float32))
    bn = [l for l in model.layers if isinstance(l, keras.layers.BatchNormalization)][0]
    bn.set_weights([rng.uniform(0.5, 2.0, size=w.shape).astype(np.float32) for w in bn.get_weights()])
    return model


X = np.random.default_rng(123).uniform(0, 255, size=(16, 8, 8, 3)).astype(np.float32)


def predict(model):
    return keras.ops.convert_to_numpy(model(X, training=False))


def assert_same_integers(a, b):
    ia, ib = metrics.integer_tensors(a), metrics.integer_tensors(b)
    assert len(ia) == len(ib)
    for x, y in zip(ia.values(), ib.values()):
        np.testing.assert_array_equal(x, y)
    for x, y in zip(metrics.scales(a).values(), metrics.scales(b).values()):
        np.testing.assert_array_equal(x, y)


def test_round_trip_reproduces_predictions(tmp_path):
    trained = randomize(build(0), 0)
    path = tmp_path / "model.lqsint"
    info = export.save_integers(trained, path)
    fresh = build(1)
    assert not np.array_equal(predict(fresh), predict(trained))
    export.load_integers(fresh, path)
    assert_same_integers(trained, fresh)
    np.testing.assert_array_equal(predict(fresh), predict(trained))
    assert info["file_bytes"] == os.path.getsize(path)
    # the file's own view, without a model
    ints, sc = export.read_integers(path)
    assert list(ints) == list(metrics.integer_tensors(trained))
    for name, q in metrics.integer_tensors(trained).items():
        np.testing.assert_array_equal(ints[name], q)
        np.testing.assert_array_equal(sc[name], metrics.scales(trained)[name])


def test_round_trip_after_training_steps(tmp_path):
    keras.utils.set_random_seed(3)
    model = keras.Sequential([keras.Input((6,)), QDense(8, granularity="rowwise", threshold=1e-9), QDense(3)])
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
    x = np.random.default_rng(0).normal(size=(32, 6)).astype(np.float32)
    y = np.random.default_rng(1).normal(size=(32, 3)).astype(np.float32)
    model.fit(x, y, epochs=2, batch_size=16, verbose=0)
    path = tmp_path / "trained.lqsint"
    export.save_integers(model, path)
    keras.utils.set_random_seed(4)
    fresh = keras.Sequential([keras.Input((6,)), QDense(8, granularity="rowwise"), QDense(3)])
    export.load_integers(fresh, path)
    assert_same_integers(model, fresh)
    np.testing.assert_array_equal(fresh(x).numpy(), model(x).numpy())


def test_round_trip_with_round_rounding(tmp_path):
    trained = randomize(build(0, rounding="round"), 5)
    export.save_integers(trained, tmp_path / "r.lqsint")
    fresh = build(2, rounding="round")
    export.load_integers(fresh, tmp_path / "r.lqsint")
    assert_same_integers(trained, fresh)
    np.testing.assert_array_equal(predict(fresh), predict(trained))
    floor_model = build(2)
    with pytest.raises(ValueError, match="rounding"):
        export.load_integers(floor_model, tmp_path / "r.lqsint")


def test_huge_integers_beyond_float32_midpoints(tmp_path):
    # default scale ~1.19e-5 and |P| up to ~1e3: |P_q| ~ 1e8 > 2**24, where float32 steps exceed s and the
    # bin midpoint is not representable; the loader must still find a float with the same floor.
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((5,)), QDense(7)])
    kernel = np.random.default_rng(0).normal(0, 300, size=(5, 7)).astype(np.float32)
    model.layers[-1].kernel.assign(kernel)
    assert metrics.max_abs_integer(metrics.integer_tensors(model)) > 2**24
    export.save_integers(model, tmp_path / "big.lqsint")
    keras.utils.set_random_seed(1)
    fresh = keras.Sequential([keras.Input((5,)), QDense(7)])
    export.load_integers(fresh, tmp_path / "big.lqsint")
    assert_same_integers(model, fresh)


def test_naive_reconstruction_is_detected(tmp_path, monkeypatch):
    # P = P_q * s floors to P_q - 1 for some elements: nudging repairs them; with nudging off the load must refuse.
    trained = randomize(build(0), 0)
    export.save_integers(trained, tmp_path / "m.lqsint")
    monkeypatch.setattr(export, "_float_for_integers", lambda q, s, r: (q * s.astype(np.float64)).astype(np.float32))
    # with the float32 nudges on, the loader repairs those elements
    fresh = build(1)
    export.load_integers(fresh, tmp_path / "m.lqsint")
    assert_same_integers(trained, fresh)
    np.testing.assert_array_equal(predict(fresh), predict(trained))
    monkeypatch.setattr(export, "_MAX_NUDGES", 0)
    with pytest.raises(ValueError, match="element"):
        export.load_integers(build(1), tmp_path / "m.lqsint")


def test_file_size_close_to_packed_size(tmp_path):
    model = randomize(build(0, units=64), 0)
    info = export.save_integers(model, tmp_path / "m.lqsint", include_other=False)
    n = info["n_tensors"]
    assert n == 6 and info["other_bytes"] == 0
    # payload = packed size minus the 8-byte min of each tensor (which lives in the header)
    assert info["file_bytes"] == info["packed_bytes"] - 8 * n + info["header_bytes"]
    assert info["header_bytes"] <= 64 + 300 * n
    assert info["packed_bytes"] == int(metrics.summary(model)["packed_bytes"].iloc[-1])
    assert info["file_bytes"] < 1.15 * info["packed_bytes"]
    with_other = export.save_integers(model, tmp_path / "m2.lqsint")
    assert with_other["other_bytes"] == 4 * 4 * 4  # BatchNorm: 4 float32 vectors of 4


def test_without_other_weights_warns(tmp_path):
    trained = randomize(build(0), 0)
    export.save_integers(trained, tmp_path / "m.lqsint", include_other=False)
    fresh = build(1)
    with pytest.warns(UserWarning, match="other weights"):
        export.load_integers(fresh, tmp_path / "m.lqsint")
    assert_same_integers(trained, fresh)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    path = tmp_path_factory.mktemp("export") / "m.lqsint"
    export.save_integers(randomize(build(0), 0), path)
    return path.read_bytes()


def _write(tmp_path, data):
    p = tmp_path / "bad.lqsint"
    p.write_bytes(data)
    return p


def test_corrupt_payload(tmp_path, saved):
    bad = bytearray(saved)
    bad[-5] ^= 0xFF
    with pytest.raises(ValueError, match="corrupt"):
        export.read_integers(_write(tmp_path, bytes(bad)))
    with pytest.raises(ValueError, match="corrupt"):
        export.load_integers(build(1), _write(tmp_path, bytes(bad)))


def test_corrupt_header(tmp_path, saved):
    bad = bytearray(saved)
    bad[30] ^= 0x01
    with pytest.raises(ValueError, match="corrupt"):
        export.read_integers(_write(tmp_path, bytes(bad)))


@pytest.mark.parametrize("keep", [0, 5, 20, -1])
def test_truncated_file(tmp_path, saved, keep):
    with pytest.raises(ValueError, match="truncated"):
        export.read_integers(_write(tmp_path, saved[:keep] if keep >= 0 else saved[:-1]))


def test_wrong_magic_and_version(tmp_path, saved):
    with pytest.raises(ValueError, match="not an lqs integer file"):
        export.read_integers(_write(tmp_path, b"PK\x03\x04" + saved[4:]))
    future = saved[:6] + struct.pack("<H", 99) + saved[8:]
    with pytest.raises(ValueError, match="version 99"):
        export.read_integers(_write(tmp_path, future))


def test_mismatched_models_name_the_tensor(tmp_path, saved):
    path = _write(tmp_path, saved)
    wide = build(1, units=17)  # fc kernel (144, 17) instead of (144, 16)
    with pytest.raises(ValueError, match=r"q_dense.*/kernel.*shape"):
        export.load_integers(wide, path)
    other_granularity = build(1, granularity="scalar")
    with pytest.raises(ValueError, match="scale shape"):
        export.load_integers(other_granularity, path)
    keras.utils.set_random_seed(0)
    fewer = keras.Sequential([keras.Input((8, 8, 3)), QConv2D(4, 3, granularity="channelwise")])
    with pytest.raises(ValueError, match="6 quantized tensors"):
        export.load_integers(fewer, path)


def test_match_by_name(tmp_path):
    trained = randomize(build(0, names=True), 0)
    path = tmp_path / "named.lqsint"
    export.save_integers(trained, path)
    fresh = build(1, names=True)
    export.load_integers(fresh, path, match="name")
    np.testing.assert_array_equal(predict(fresh), predict(trained))
    with pytest.raises(ValueError, match="no tensor named"):
        export.load_integers(build(1), path, match="name")  # auto names q_conv2d_N differ


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    path = tmp_path / "m.lqsint"
    export.save_integers(randomize(build(0), 0), path)
    before = path.read_bytes()
    with pytest.raises(ValueError, match="no quantized parameters"):
        export.save_integers(keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)]), path)
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["m.lqsint"]  # no temporary files left behind
