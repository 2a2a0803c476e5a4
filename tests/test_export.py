"""Bit-packed integer export: round trip to identical predictions, format checks, size (docs/method.md §3)."""

import json
import os
import struct
import zlib

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
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(fresh(x)), keras.ops.convert_to_numpy(model(x)))


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
    rng = np.random.default_rng(0)  # weights from NumPy: the same sizes on every Keras backend
    for *_, variable, _ in quantized_params(model):
        variable.assign(rng.normal(0.0, 0.1, variable.shape).astype(np.float32))
    info = export.save_integers(model, tmp_path / "m.lqsint", include_other=False, coding="packed")
    n = info["n_tensors"]
    assert n == 6 and info["other_bytes"] == 0
    # payload = packed size minus the 8-byte min of each tensor (which lives in the header)
    assert info["file_bytes"] == info["packed_bytes"] - 8 * n + info["header_bytes"]
    assert info["header_bytes"] <= 64 + 300 * n
    assert info["packed_bytes"] == int(metrics.summary(model)["packed_bytes"].iloc[-1])
    assert info["file_bytes"] < 1.15 * info["packed_bytes"]
    # entropy-coded (the default): never larger than packed plus the Huffman tables, and metrics knows its size
    auto = export.save_integers(model, tmp_path / "a.lqsint", include_other=False)
    assert auto["file_bytes"] == os.path.getsize(tmp_path / "a.lqsint") == metrics.entropy_bytes(model)
    assert auto["file_bytes"] < info["file_bytes"]
    assert metrics.report(model)["entropy_bytes"] == auto["file_bytes"]
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


# ---------------------------------------------------------------------------------------------------------------
# Hardening: every refusal names the bad value and what is allowed, and nothing is written or changed first.


def weights_of(model):
    return [np.array(keras.ops.convert_to_numpy(w), copy=True) for w in model.weights]


def assert_unchanged(model, before):
    after = weights_of(model)
    assert len(after) == len(before)
    for a, b in zip(after, before):
        np.testing.assert_array_equal(a, b)


def split(data):
    """``(header dict, payload bytearray)`` of a file's bytes (the header is zlib-compressed JSON since version 2)."""
    _, version, header_len, _ = export._PREFIX.unpack_from(data, 0)
    start = export._PREFIX.size
    raw = data[start : start + header_len]
    return json.loads(zlib.decompress(raw) if version >= 2 else raw), bytearray(data[start + header_len :])


def join(header, body):
    """A file with valid checksums from a (possibly edited) header and payload."""
    body = bytes(body)
    header = dict(header, payload_bytes=len(body), payload_crc32=zlib.crc32(body))
    hb = zlib.compress(json.dumps(header).encode("utf-8"))
    return export._PREFIX.pack(export.MAGIC, export.FORMAT_VERSION, len(hb), zlib.crc32(hb)) + hb + body


def with_scale(saved, value, tensor=0):
    header, body = split(saved)
    off = header["tensors"][tensor]["scale_offset"]
    body[off : off + 4] = np.float32(value).astype("<f4").tobytes()
    return join(header, body)


def test_pack_unpack_full_int64_range():
    v = np.array([-(2**63), 2**63 - 1, 0, -1, 12345], dtype=np.int64)
    assert metrics.bits_fixed(v) == 64
    data, lo = export.pack_bits(v, 64)
    assert lo == -(2**63)
    np.testing.assert_array_equal(export.unpack_bits(data, v.size, 64, lo), v)
    with pytest.raises(ValueError, match=r"bits must be in 0\.\.64, got 65"):
        export.unpack_bits(b"\0" * 9, 1, 65, 0)


def test_rewritten_file_still_loads(tmp_path, saved):
    # the test helpers themselves: split + join without edits gives a file that reads and loads
    header, body = split(saved)
    rewritten = _write(tmp_path, join(header, body))
    ints, _ = export.read_integers(rewritten)
    assert list(ints) == [t["name"] for t in header["tensors"]]
    export.load_integers(build(1), rewritten)


def test_save_refuses_integers_beyond_int64(tmp_path):
    # a scale far too small for the weights: floor(P / s) ~ 1e29, which int64 would wrap
    model = randomize(build(0), 0)
    name, (_, _, _, _, quantizer) = export._quantized(model)[2]  # the first QDense kernel
    quantizer.scale.assign(np.full(quantizer.scale.shape, 1e-30, dtype=np.float32))
    path = tmp_path / "m.lqsint"
    path.write_bytes(b"previous")
    with pytest.raises(ValueError) as err:
        export.save_integers(model, path)
    msg = str(err.value)
    assert repr(name) in msg and "int64 range" in msg and str(-(2**63)) in msg and str(2**63 - 1) in msg
    assert "e+29" in msg and "refusing to write wrapped integers" in msg
    assert path.read_bytes() == b"previous" and sorted(os.listdir(tmp_path)) == ["m.lqsint"]
    # the metrics refuse the same model
    with pytest.raises(ValueError, match="int64"):
        metrics.integer_tensors(model)


def test_save_accepts_large_integers_inside_int64(tmp_path):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), QDense(2, use_bias=False)])
    layer = model.layers[-1]
    layer.kernel.assign(np.array([[1.0, -1.0], [0.5, 0.25], [-0.75, 0.0]], dtype=np.float32))
    scale = layer.quantized_params()[0][2].scale
    scale.assign(np.full(scale.shape, 1e-18, dtype=np.float32))  # floor(P / s) up to 1e18 < 2**63 ~ 9.2e18
    ints = metrics.integer_tensors(model)
    assert metrics.max_abs_integer(ints) > 2**59
    export.save_integers(model, tmp_path / "big.lqsint")
    got, _ = export.read_integers(tmp_path / "big.lqsint")
    for name, q in ints.items():
        np.testing.assert_array_equal(got[name], q)


@pytest.mark.parametrize("bad", [0.0, -0.01, np.nan, np.inf])
def test_save_refuses_bad_scales(tmp_path, bad):
    model = randomize(build(0), 0)
    name, (_, _, _, _, quantizer) = export._quantized(model)[0]
    s = keras.ops.convert_to_numpy(quantizer.scale).copy()
    s.flat[1] = bad
    quantizer.scale.assign(s)
    with pytest.raises(ValueError) as err:
        export.save_integers(model, tmp_path / "m.lqsint")
    msg = str(err.value)
    assert repr(name) in msg and "finite float > 0" in msg and f"({float(bad):.6g})" in msg
    assert not os.listdir(tmp_path)


def test_save_refuses_nan_weights(tmp_path):
    model = randomize(build(0), 0)
    kernel = model.layers[-1].kernel
    k = keras.ops.convert_to_numpy(kernel).copy()
    k[0, 0] = np.nan
    kernel.assign(k)
    with pytest.raises(ValueError, match=r"q_dense.*/kernel.*non-finite.*int64 integers only"):
        export.save_integers(model, tmp_path / "m.lqsint")
    assert not os.listdir(tmp_path)


@pytest.mark.parametrize("bad", [-0.01, 0.0, -0.0, np.nan, np.inf, -np.inf])
def test_read_refuses_bad_scales(tmp_path, saved, bad):
    path = _write(tmp_path, with_scale(saved, bad, tensor=1))
    name = split(saved)[0]["tensors"][1]["name"]
    for read in (export.read_integers, lambda p: export.load_integers(build(1), p)):
        with pytest.raises(ValueError) as err:
            read(path)
        msg = str(err.value)
        assert str(path) in msg and repr(name) in msg and f"({float(bad):.6g})" in msg
        assert "a scale must be a finite float > 0" in msg


@pytest.mark.parametrize("bad", [np.nan, 0.0, -1.0])
def test_load_with_bad_scale_leaves_model_unchanged(tmp_path, saved, bad):
    # the bad scale is the last tensor's: every other tensor would have been assigned before the error
    n = len(split(saved)[0]["tensors"])
    model = build(1)
    before = weights_of(model)
    with pytest.raises(ValueError, match="finite float > 0"):
        export.load_integers(model, _write(tmp_path, with_scale(saved, bad, tensor=n - 1)))
    assert_unchanged(model, before)


def test_failed_assignment_restores_the_model(tmp_path, saved, monkeypatch):
    # an assignment that fails after others succeeded (here: the third tensor) rolls every assignment back
    model = build(1)
    before = weights_of(model)
    real, calls = export._assign_tensor, []

    def flaky(name, *args):
        calls.append(name)
        if len(calls) == 3:
            raise ValueError(f"tensor {name!r}: simulated failure")
        return real(name, *args)

    monkeypatch.setattr(export, "_assign_tensor", flaky)
    with pytest.raises(ValueError, match="simulated failure"):
        export.load_integers(model, _write(tmp_path, saved))
    assert len(calls) == 3
    assert_unchanged(model, before)


def test_unreproducible_integers_leave_model_unchanged(tmp_path, saved, monkeypatch):
    monkeypatch.setattr(export, "_float_for_integers", lambda q, s, r: (q * s.astype(np.float64)).astype(np.float32))
    monkeypatch.setattr(export, "_MAX_NUDGES", 0)
    model = build(1)
    before = weights_of(model)
    with pytest.raises(ValueError, match="element.*model was left unchanged"):
        export.load_integers(model, _write(tmp_path, saved))
    assert_unchanged(model, before)


def test_structure_mismatch_leaves_model_unchanged(tmp_path, saved):
    for model in (build(1, units=17), build(1, granularity="scalar"), build(1, rounding="round")):
        before = weights_of(model)
        with pytest.raises(ValueError, match=r"tensor '.*' \(file: '.*'\)"):
            export.load_integers(model, _write(tmp_path, saved))
        assert_unchanged(model, before)


def edit_tensor(saved, **fields):
    header, body = split(saved)
    header["tensors"][0].update(fields)
    return join(header, body)


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"bits": 65}, r"bits is 65, expected an integer in 0\.\.64"),
        ({"bits": -1}, r"bits is -1, expected an integer in 0\.\.64"),
        ({"bits": 2.5}, r"bits is 2\.5, expected an integer"),
        ({"min": 2**63}, r"min is 9223372036854775808, expected an integer in -9223372036854775808\.\.9223372036854775807"),
        ({"min": 5, "max": 4}, r"max is 4, expected an integer in 5\.\."),
        ({"min": 0, "max": 2**40}, r"bits cannot hold its integer range 0\.\.1099511627776"),
        ({"shape": [3, -1]}, r"shape is \[3, -1\], expected a list of integers >= 0"),
        ({"scale_shape": [5]}, r"scale of tensor .* has 12 bytes, shape \(5,\) needs 20 \(float32\)"),
        ({"nbytes": 10**9}, r"lies outside the payload"),
        ({"offset": "0"}, r"offset '0'"),
    ],
)
def test_malformed_headers_are_refused(tmp_path, saved, fields, message):
    path = _write(tmp_path, edit_tensor(saved, **fields))
    with pytest.raises(ValueError, match=message):
        export.read_integers(path)
    model = build(1)
    before = weights_of(model)
    with pytest.raises(ValueError, match=message):
        export.load_integers(model, path)
    assert_unchanged(model, before)


def test_integers_outside_the_declared_range(tmp_path, saved):
    header, _ = split(saved)
    t = header["tensors"][0]
    # declare a narrower range than the packed values (same bits, so the packed size still matches)
    with pytest.raises(ValueError, match=r"unpacks to -?\d+\.\.-?\d+, outside the range"):
        export.read_integers(_write(tmp_path, edit_tensor(saved, max=t["min"] + 1)))


def test_scale_shape_must_broadcast(tmp_path, saved):
    header, _ = split(saved)
    t = header["tensors"][0]  # conv kernel (3, 3, 3, 4), channelwise scale (1, 1, 3, 1)
    assert t["shape"] == [3, 3, 3, 4] and t["scale_shape"] == [1, 1, 3, 1]
    with pytest.raises(ValueError, match=r"scale shape \(1, 1, 1, 3\) does not broadcast to the tensor shape \(3, 3, 3, 4\)"):
        export.read_integers(_write(tmp_path, edit_tensor(saved, scale_shape=[1, 1, 1, 3])))


def test_duplicate_names_and_missing_fields(tmp_path, saved):
    header, body = split(saved)
    header["tensors"][1]["name"] = header["tensors"][0]["name"]
    with pytest.raises(ValueError, match="appears twice"):
        export.read_integers(_write(tmp_path, join(header, body)))
    header, body = split(saved)
    del header["tensors"][0]["bits"]
    with pytest.raises(ValueError, match=r"corrupt header \(missing field 'bits'\)"):
        export.read_integers(_write(tmp_path, join(header, body)))
    header, body = split(saved)
    header["tensors"] = {"not": "a list"}
    with pytest.raises(ValueError, match="'tensors' is dict, expected a list"):
        export.read_integers(_write(tmp_path, join(header, body)))


def test_other_weights_checked_before_assignment(tmp_path, saved):
    header, body = split(saved)
    header["other"][0]["shape"] = [5]
    model = build(1)
    before = weights_of(model)
    with pytest.raises(ValueError, match=r"weight '.*' \(file: '.*'\): shape \(5,\) in the file, \(4,\) in the model"):
        export.load_integers(model, _write(tmp_path, join(header, body)))
    header, body = split(saved)
    header["other"][0]["dtype"] = "|O"
    with pytest.raises(ValueError, match=r"dtype '\|O', expected a numeric dtype"):
        export.load_integers(model, _write(tmp_path, join(header, body)))
    header, body = split(saved)
    header["other"][0]["dtype"] = "<c8"  # complex into a float32 weight (checked before the block size)
    with pytest.raises(ValueError, match=r"dtype complex64 in the file cannot be assigned to the model's float32"):
        export.load_integers(model, _write(tmp_path, join(header, body)))
    assert_unchanged(model, before)


def test_clear_messages_for_foreign_and_cut_files(tmp_path, saved):
    with pytest.raises(ValueError, match=r"not an lqs integer file: it starts with b'PK\\x03\\x04SI', an lqs integer file starts with b'LQSINT'"):
        export.read_integers(_write(tmp_path, b"PK\x03\x04" + saved[2:]))
    with pytest.raises(ValueError, match=r"truncated file or not an lqs integer file: 3 bytes, shorter than the 16-byte prefix"):
        export.read_integers(_write(tmp_path, b"LQS"))
    _, _, header_len, _ = export._PREFIX.unpack_from(saved, 0)
    with pytest.raises(ValueError, match=rf"truncated file: the header is {header_len} bytes, only 10 follow the prefix"):
        export.read_integers(_write(tmp_path, saved[:26]))
    with pytest.raises(ValueError, match=r"truncated file: the payload is \d+ bytes, the header says \d+"):
        export.read_integers(_write(tmp_path, saved[:-3]))
    with pytest.raises(ValueError, match=r"trailing data after the payload"):
        export.read_integers(_write(tmp_path, saved + b"\0"))
    future = saved[:6] + struct.pack("<H", 3) + saved[8:]
    with pytest.raises(ValueError, match="unsupported format version 3; this lqs reads versions 1, 2 only"):
        export.read_integers(_write(tmp_path, future))
