"""Entropy coding (lqs_core.entropy) and the integer file format 2 (lqs_core.intfile): NumPy references, the
documented reader of docs/deploy.md, and the version-1 files of lqs 0.1 (committed runs) still read."""

import math
import os
import re
import tracemalloc
import zlib

import keras
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import bad_files
from lqs_core import entropy, export, intfile, metrics
from lqs_core.layers import QDense

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def documented_reader():
    """``read_lqsint`` as docs/deploy.md prints it."""
    with open(os.path.join(ROOT, "docs", "deploy.md"), encoding="utf-8") as f:
        text = f.read()
    code = re.search(r"<!-- reader:start -->\n```python\n(.*?)```\n<!-- reader:end -->", text, re.S).group(1)
    namespace = {}
    exec(compile(code, "docs/deploy.md", "exec"), namespace)  # noqa: S102 - our own documentation
    return namespace["read_lqsint"]


def is_prefix_free(codes, lengths):
    words = [format(int(c), f"0{int(n)}b") for c, n in zip(codes, lengths)]
    return not any(a != b and b.startswith(a) for a in words for b in words)


@settings(max_examples=80, deadline=None)
@given(st.lists(st.integers(-(2**40), 2**40), min_size=1, max_size=300), st.integers(0, 5))
def test_huffman_round_trip_and_length(values, repeat):
    v = np.array(values * (1 + repeat), dtype=np.int64)
    data, symbols, lengths = entropy.huffman_encode(v)
    np.testing.assert_array_equal(entropy.huffman_decode(data, v.size, symbols, lengths), v)
    distinct, counts = np.unique(v, return_counts=True)
    # the data is the Huffman size metrics reports (without its table), rounded up to bytes
    assert len(data) == -(-metrics.huffman_bits(v, table=False) // 8)
    assert sorted(symbols.tolist()) == distinct.tolist()
    assert is_prefix_free(entropy.canonical_codes(lengths), lengths)
    assert sum(2.0 ** -int(n) for n in lengths) <= 1.0
    # the lengths sort ascending, symbols of one length ascending
    assert all(np.diff(lengths) >= 0)


def test_canonical_codes_known_example():
    # counts 4, 2, 1, 1 -> lengths 1, 2, 3, 3 -> codes 0, 10, 110, 111
    symbols, lengths = entropy.canonical_table(np.array([5, -1, 7, 2]), np.array([4, 2, 1, 1]))
    assert symbols.tolist() == [5, -1, 2, 7] and lengths.tolist() == [1, 2, 3, 3]
    assert entropy.canonical_codes(lengths).tolist() == [0b0, 0b10, 0b110, 0b111]
    data, _, _ = entropy.huffman_encode(np.array([5, 5, 5, 5, -1, -1, 2, 7]))
    assert data == bytes([0b00001010, 0b11011100])  # 0 0 0 0 10 10 110 111, padded


def test_long_codes_decode_bit_by_bit():
    # Fibonacci counts give Huffman codes longer than the lookup table's 16 bits
    counts = [1, 1]
    while len(counts) < 22:
        counts.append(counts[-1] + counts[-2])
    v = np.repeat(np.arange(len(counts)), counts)
    np.random.default_rng(0).shuffle(v)
    data, symbols, lengths = entropy.huffman_encode(v)
    assert lengths.max() > entropy._TABLE_BITS
    np.testing.assert_array_equal(entropy.huffman_decode(data, v.size, symbols, lengths), v)


def test_bad_huffman_data_is_refused():
    v = np.array([0, 0, 1, 2, 2, 2, 3])
    data, symbols, lengths = entropy.huffman_encode(v)
    with pytest.raises(ValueError, match="ends after"):
        entropy.huffman_decode(data[:0], v.size, symbols, lengths)
    with pytest.raises(ValueError, match="prefix code"):
        entropy.huffman_decode(data, v.size, symbols, [1, 1, 1, 1])
    with pytest.raises(ValueError, match="distinct"):
        entropy.huffman_decode(data, v.size, [0, 0, 1, 2], lengths)
    with pytest.raises(ValueError, match="Unknown coding"):
        entropy.encode(v, "rans")


@pytest.mark.parametrize("make, expected", [
    (lambda rng: np.full(1000, 3), "packed"),  # constant: 0 bits
    (lambda rng: rng.integers(-8, 8, 4000), "packed"),  # uniform over 16 values: 4 bits either way
    (lambda rng: np.round(rng.laplace(0, 3, 4000)).astype(int), "huffman"),  # peaked, > 1 bit per weight
    (lambda rng: np.where(rng.uniform(size=8000) < 0.97, 0, rng.integers(-30, 30, 8000)), "deflate"),  # mostly 0
])
def test_auto_picks_the_smallest(make, expected):
    v = make(np.random.default_rng(0))
    fields, data = entropy.encode(v)
    assert fields["coding"] == expected
    assert entropy.coded_size(v) == min(entropy.coded_size(v, c) for c in entropy.CODINGS)
    np.testing.assert_array_equal(entropy.decode(fields, data, v.size), v)


def trained_model(seed=0):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((12,)), QDense(32, kernel_quantizer={"method": "nested",
                              "granularity": "rowwise", "scale_init": 0.02}, activation="relu"),
                              keras.layers.BatchNormalization(), QDense(4)])
    x = np.random.default_rng(seed).normal(size=(64, 12)).astype("float32")
    model.compile(keras.optimizers.Adam(1e-2), "mse")
    model.fit(x, x[:, :4], epochs=2, verbose=0)
    return model


@pytest.mark.parametrize("coding", ["auto", "huffman", "deflate", "packed"])
def test_file_round_trip_and_documented_reader(tmp_path, coding):
    model = trained_model()
    path = tmp_path / "m.lqsint"
    info = export.save_integers(model, path, coding=coding)
    header = export.read_header(path)
    assert header["version"] == 2
    assert all(t["coding"] == coding for t in header["tensors"]) or coding == "auto"
    ints, scales = export.read_integers(path)
    for name, q in metrics.integer_tensors(model).items():
        np.testing.assert_array_equal(ints[name], q)
    documented = documented_reader()(path)
    assert list(documented) == list(ints)
    for name, (q, s) in documented.items():
        np.testing.assert_array_equal(q, ints[name])
        np.testing.assert_array_equal(s, scales[name])
    fresh = trained_model(seed=1)
    export.load_integers(fresh, path)
    x = np.random.default_rng(9).normal(size=(8, 12)).astype("float32")
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(fresh(x)), keras.ops.convert_to_numpy(model(x)))
    assert info["file_bytes"] == os.path.getsize(path)


def test_entropy_bytes_is_the_file_size_and_not_larger_than_packed(tmp_path):
    model = trained_model()
    auto = export.save_integers(model, tmp_path / "a.lqsint", include_other=False)
    packed = export.save_integers(model, tmp_path / "p.lqsint", include_other=False, coding="packed")
    assert metrics.entropy_bytes(model) == auto["file_bytes"] == metrics.report(model)["entropy_bytes"]
    assert metrics.sizes(model)["entropy_bytes"] == auto["file_bytes"]
    assert auto["coded_bytes"] <= packed["coded_bytes"]


def version1(path_v2, tmp_path):
    """The same tensors as a version-1 file (packed, plain JSON header), as lqs 0.1 wrote them."""
    blob = open(path_v2, "rb").read()
    _, _, n, _ = intfile.PREFIX.unpack_from(blob, 0)
    header = intfile.decode_header(blob[16:16 + n], 2)
    for t in header["tensors"]:
        assert t.pop("coding") == "packed"
    header["version"] = 1
    raw = intfile.encode_header(header, version=1)
    out = tmp_path / "v1.lqsint"
    out.write_bytes(intfile.PREFIX.pack(intfile.MAGIC, 1, len(raw), zlib.crc32(raw)) + raw + blob[16 + n:])
    return out


def test_version1_files_still_read(tmp_path):
    model = trained_model()
    export.save_integers(model, tmp_path / "p.lqsint", coding="packed")
    old = version1(tmp_path / "p.lqsint", tmp_path)
    assert export.read_header(old)["version"] == 1
    ints, _ = export.read_integers(old)
    for name, q in metrics.integer_tensors(model).items():
        np.testing.assert_array_equal(ints[name], q)
    fresh = trained_model(seed=1)
    export.load_integers(fresh, old)
    for a, b in zip(metrics.integer_tensors(fresh).values(), metrics.integer_tensors(model).values()):
        np.testing.assert_array_equal(a, b)


#: A format-1 file written by lqs before format 2 (a demo run's, kept here: the main job rewrites results/ with
#: today's format).
VERSION1_FILE = os.path.join(ROOT, "tests", "data", "intfile-v1", "digits-nested-rowwise-v1.lqsint")


def test_committed_version1_files_read_and_shrink():
    path = VERSION1_FILE
    assert export.read_header(path)["version"] == 1
    ints, scales = export.read_integers(path)
    documented = documented_reader()(path)
    for name, q in ints.items():
        np.testing.assert_array_equal(documented[name][0], q)
    header = export.read_header(path)
    records = [{**{k: t[k] for k in ("name", "host", "param", "rounding", "granularity")}, "axis": t.get("axis"),
                "q": ints[t["name"]], "s": scales[t["name"]]} for t in header["tensors"]]
    blob, info = intfile.build(records)
    v1_coded = sum(t["nbytes"] for t in header["tensors"])
    assert info["coded_bytes"] <= v1_coded
    assert math.isclose(info["scale_bytes"], sum(t["scale_nbytes"] for t in header["tensors"]))


# ---------------------------------------------------------------------------------------------------------------
# Bad data: refused before the decoder allocates what it declares (more crafted files: tests/test_bad_inputs.py)


def test_inflate_stops_at_the_declared_size():
    bomb = bad_files.deflate_bomb(256 << 20)  # 256 MiB of zeros in 256 kB
    tracemalloc.start()
    with pytest.raises(ValueError, match="decompresses to more than the 100 bytes its header declares"):
        entropy.decode({"coding": "deflate", "bits": 8, "min": 0}, bomb, 100)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 4 << 20, peak


@pytest.mark.parametrize("data, count, message", [
    (zlib.compress(bytes(10)), 10**6, r"deflate data of 11 bytes cannot hold the 1000000 bytes .* 1032 bytes per byte"),
    (zlib.compress(bytes(100))[:-5], 100, "incomplete or truncated stream"),
    (zlib.compress(bytes(50)), 100, "decompresses to 50 bytes, its header declares 100"),
    (b"not zlib", 8, "does not decompress"),
], ids=["ratio", "cut", "short", "garbage"])
def test_bad_deflate_data(data, count, message):
    with pytest.raises(ValueError, match=message):
        entropy.decode({"coding": "deflate", "bits": 8, "min": 0}, data, count)


def test_huffman_count_is_bounded_by_the_data_before_decoding(monkeypatch):
    monkeypatch.setattr(entropy, "_decode_by_table", lambda *a: pytest.fail("decoded despite too few bytes"))
    with pytest.raises(ValueError, match=r"ends after at most 16 of 17 values: 2 bytes"):
        entropy.huffman_decode(b"\0\0", 17, [0, 1], [1, 1])


@pytest.mark.parametrize("lengths", [[1, 1], [1, 17, 17]])  # table lookup; bit by bit (codes over 16 bits)
def test_huffman_decoder_memory_does_not_grow_with_the_data(lengths):
    symbols = list(range(len(lengths)))
    data = bytes(1 << 20)  # a million bytes of code 0; 8 values wanted
    tracemalloc.start()
    with pytest.raises(ValueError, match=r"has 1048575 byte\(s\) after its last \(8th\) value"):
        entropy.huffman_decode(data, 8, symbols, lengths)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 24 << 20, peak  # a block's windows, not ~450 bytes per byte of data


def test_huffman_blocks_join_seamlessly(monkeypatch):
    monkeypatch.setattr(entropy, "_BLOCK_BYTES", 3)  # codes straddle many block boundaries
    v = np.round(np.random.default_rng(5).laplace(0, 4, 3000)).astype(np.int64)
    data, symbols, lengths = entropy.huffman_encode(v)
    np.testing.assert_array_equal(entropy.huffman_decode(data, v.size, symbols, lengths), v)
    counts = [1, 1]
    while len(counts) < 22:
        counts.append(counts[-1] + counts[-2])
    v = np.repeat(np.arange(len(counts)), counts)[:5000]
    data, symbols, lengths = entropy.huffman_encode(v)
    np.testing.assert_array_equal(entropy.huffman_decode(data, v.size, symbols, lengths), v)


def test_constant_tensor_is_a_broadcast_of_its_value(tmp_path):
    path = tmp_path / "c.lqsint"
    # 2**30 elements: 8 GiB as int64
    path.write_bytes(bad_files.lqsint([bad_files.tensor(shape=[2**15, 2**15], lo=-3)]))
    tracemalloc.start()
    ints, scales = export.read_integers(path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    q = ints["t"]
    assert q.shape == (2**15, 2**15) and q.dtype == np.int64 and not q.flags.writeable
    assert int(q[123, 456]) == -3 and peak < 1 << 20
    assert scales["t"] == np.float32(0.5)


def test_constant_deflate_tensor_must_inflate_to_nothing(tmp_path):
    path = tmp_path / "c.lqsint"
    path.write_bytes(bad_files.lqsint([bad_files.tensor(shape=[9], coding="deflate", data=zlib.compress(b"x"))],
                                      zlib.compress(b"x")))
    with pytest.raises(ValueError, match=r"tensor 't': deflate data decompresses to more than the 0 bytes"):
        export.read_integers(path)


def test_header_limits(tmp_path, monkeypatch):
    path = tmp_path / "h.lqsint"
    path.write_bytes(bad_files.lqsint([bad_files.tensor(name="x" * 5000)]))
    monkeypatch.setattr(intfile, "MAX_HEADER_BYTES", 4096)
    with pytest.raises(ValueError, match=rf"{path}: header too large: its JSON has more than 4096 bytes"):
        export.read_integers(path)
    path.write_bytes(bad_files.lqsint([], header_bytes=b"[" * 2000 + b"]" * 2000, version=1))
    with pytest.raises(ValueError, match="nested too deeply"):
        export.read_integers(path)


def test_load_checks_shapes_before_decoding(tmp_path, monkeypatch):
    model = trained_model()
    path = tmp_path / "m.lqsint"
    export.save_integers(model, path)
    other = keras.Sequential([keras.Input((12,)), QDense(33), keras.layers.BatchNormalization(), QDense(4)])
    monkeypatch.setattr(entropy, "decode", lambda *a: pytest.fail("a tensor was decoded before the shapes matched"))
    with pytest.raises(ValueError, match=r"shape \(12, 32\) in the file, \(12, 33\) in the model"):
        export.load_integers(other, path)


def test_load_refuses_non_finite_other_weights(tmp_path):
    model = trained_model()
    bn = model.layers[1]
    bn.moving_variance.assign(np.full(bn.moving_variance.shape, np.inf, np.float32))
    path = tmp_path / "m.lqsint"
    export.save_integers(model, path)
    fresh = trained_model(seed=1)
    before = [keras.ops.convert_to_numpy(w).copy() for w in fresh.weights]
    with pytest.raises(ValueError, match=r"moving_variance.*32 of 32 value\(s\) are NaN or inf; a weight must be"):
        export.load_integers(fresh, path)
    for w, b in zip(fresh.weights, before):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(w), b)
