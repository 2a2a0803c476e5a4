"""A corpus of bad inputs to the library: each is refused with an error that names the bad value and what is
allowed, before any training, and nothing stored before is lost or changed. And a corpus of bad files (integer files,
mnist.npz, CIFAR-10 batches, metrics.json, .keras; crafted by tests/bad_files.py): each reader ends in one
ValueError naming the file, the field and what is allowed, before it allocates what the file declares — checked
again in a subprocess under an address-space limit, where allocating it would end in MemoryError or a crash.

(The workflow configuration's corpus is in tests/test_workflow_bad_configs.py.)
"""

import functools
import hashlib
import io as _io
import json
import os
import subprocess
import sys
import tempfile
import zipfile
import zlib

import bad_files
import keras
import numpy as np
import pytest

from lqs_core import data, export, intfile, losses, models, quantizers, results
from lqs_core.layers import QConv2D, QDense
from lqs_core.procedures import enforce_budget, ptq_quantize
from lqs_core.results import load_result
from lqs_core.spec import RunConfig
from lqs_core.training import RunDiverged, train

NAN, INF = float("nan"), float("inf")


def _digits(**fields):
    return lambda: RunConfig(dataset="digits", **fields)


CASES = [
    # (id, call, substrings the message must contain)
    ("seed<0", _digits(seed=-1), ["seed", ">= 0", "-1"]),
    ("seed-str", _digits(seed="abc"), ["seed", "integer", "'abc'"]),
    ("dataset", lambda: RunConfig(dataset="svhn"), ["'svhn'", "allowed", "'digits'"]),
    ("lr-nan", _digits(learning_rate=NAN), ["learning_rate", "finite", "nan"]),
    ("lr-zero", _digits(learning_rate=0), ["learning_rate", "> 0", "0"]),
    ("lambda-inf", _digits(threshold=INF), ["threshold", "finite", "inf"]),
    ("lambda<0", _digits(threshold=-1e-10), ["threshold", ">= 0", "-1e-10"]),
    ("gamma-nan", _digits(scheme="loss_terms", terms={"maxbin": NAN}), ["maxbin", "finite", "nan"]),
    ("term", _digits(scheme="loss_terms", terms={"entropy": 1e-8}), ["'entropy'", "allowed", "'maxbin'"]),
    ("sched-dup", _digits(lr_schedule=[[5, 0.5], [5, 0.2]]), ["lr_schedule", "twice"]),
    ("sched-nan", _digits(lr_schedule=[[5, NAN]]), ["lr_schedule factor", "finite", "nan"]),
    ("channelwise-dense", _digits(granularity="channelwise"), ["'channelwise'", "Conv2D", "'rowwise'"]),
    ("granularity", _digits(granularity="diagonal"), ["'diagonal'", "allowed", "'rowwise'"]),
    ("budget>1", _digits(method="cgmq", budget=1.5), ["1.5", "above 1", "[0.0625, 1]"]),
    ("budget-nan", _digits(method="cgmq", budget=NAN), ["budget", "finite", "nan"]),
    ("bits", _digits(method="lsq", bits=9), ["bits", "2..8", "9"]),
    ("bits-missing", _digits(method="fixed"), ["bits", "'fixed'", "2..8"]),
    ("gate-init", _digits(method="cgmq", budget=0.5, method_options={"gate_init": NAN}), ["gate_init", "nan"]),
    ("ptq-no-weights", _digits(mode="ptq"), ["float_weights", "ptq"]),
    ("qdense-threshold-bool", lambda: QDense(4, threshold=True), ["threshold", "True", ">= 0"]),
    ("qdense-channelwise", lambda: QDense(4, granularity="channelwise"), ["'channelwise'", "2-D"]),
    ("qdense-units", lambda: QDense(0), ["units", "positive integer", "0"]),
    ("qconv-padding", lambda: QConv2D(4, 3, padding="full"), ["'full'", "'valid'", "'same'"]),
    ("quantizer-method", lambda: quantizers.get("ternary"), ["'ternary'", "allowed", "'nested'"]),
    ("quantizer-option", lambda: quantizers.get({"method": "lsq", "bitz": 4}), ["bitz", "allowed", "bits"]),
    ("scale-init", lambda: quantizers.NestedQuantizer(scale_init=0), ["scale_init", "> 0", "0"]),
    ("rounding", lambda: quantizers.NestedQuantizer(rounding="ceil"), ["'ceil'", "allowed", "floor", "round"]),
    ("gamma<0", lambda: losses.MaxBin(-1), ["gamma", ">= 0", "-1"]),
    ("make-term", lambda: losses.make_term("bogus", 1e-8), ["'bogus'", "allowed", "maxbin"]),
    ("model-dataset", lambda: models.build("svhn"), ["'svhn'", "allowed", "digits"]),
    ("model-granularity", lambda: models.build("digits", granularity="diagonal"), ["'diagonal'", "rowwise"]),
    ("data-seed", lambda: data.load("digits", seed="abc"), ["seed", "'abc'", "integer"]),
    ("data-batch", lambda: data.load("digits", batch_size=0), ["batch_size", "0"]),
    ("data-name", lambda: data.load("svhn"), ["'svhn'", "digits"]),
    ("ptq-bits", lambda: ptq_quantize(models.build("digits", None, seed=0), 9), ["bits", "2..8", "9"]),
    ("budget<min", lambda: enforce_budget(models.build("digits", "cgmq", seed=0), -0.5), ["budget", "-0.5"]),
]


def _snapshot(folder):
    digest = {}
    for base, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(base, name)
            with open(path, "rb") as f:
                digest[os.path.relpath(path, folder)] = hashlib.sha256(f.read()).hexdigest()
    return digest


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """A complete run stored before the bad inputs are tried."""
    folder = tmp_path_factory.mktemp("store") / "digits-float-s42"
    train(RunConfig(dataset="digits", scheme="float", epochs=1, max_train=64, max_val=32), out_dir=folder, verbose=0)
    return folder


@pytest.mark.parametrize("call, expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_refused_clearly(call, expected, stored):
    before = _snapshot(stored)
    with pytest.raises(ValueError) as error:
        call()
    message = str(error.value)
    for part in expected:
        assert part in message, f"{part!r} not in {message!r}"
    assert _snapshot(stored) == before


def test_corpus_is_large_enough():
    assert len(CASES) >= 30


def test_unwritable_out_dir_is_refused_before_training(tmp_path, stored, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setattr(data, "load", lambda *a, **k: pytest.fail("data loaded before out_dir was checked"))
    with pytest.raises(ValueError, match="cannot be written"):
        train(RunConfig(dataset="digits", epochs=1), out_dir=blocker / "run", verbose=0)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="on JAX/PyTorch Keras clips the cross-entropy of a "
                    "blown-up softmax at about 16, so the loss does not show the divergence")
def test_diverged_run_is_not_saved_and_keeps_the_stored_one(stored):
    before = _snapshot(stored)
    config = RunConfig(dataset="digits", scheme="float", learning_rate=1e9, epochs=2, max_train=256, max_val=32)
    with pytest.raises(RunDiverged, match="diverged"):
        train(config, out_dir=stored, verbose=0)
    assert _snapshot(stored) == before
    assert load_result(stored, load_model=False).report["epochs"] == 1


def test_incomplete_run_folder_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        load_result(tmp_path)


# ---------------------------------------------------------------------------------------------------------------
# Bad files: each reader ends in one ValueError naming the file, the field and what is allowed, before it allocates
# what the file declares (crafted files: tests/bad_files.py).


HERE = os.path.dirname(os.path.abspath(__file__))
LEGACY = os.path.join(HERE, "data", "lqs-0.1", "nested_rowwise.keras")


def _read_intfile(path):
    return export.read_integers(path)


def _read_mnist(path):
    return data.load_arrays("mnist", data_dir=path.parent)


def _read_cifar(path):
    """``path`` is the crafted data_batch_1; the other batches are written valid (4 images each)."""
    for b in data._CIFAR_BATCHES[1:]:
        (path.parent / b).write_bytes(bad_files.cifar_batch())
    return data.load_arrays("cifar10", data_dir=path.parent.parent)


def _read_metrics(path):
    return load_result(path.parent, load_model=False)


def _read_keras(path):
    return results.load_model(path, compile=False)


@functools.lru_cache(maxsize=None)
def _keras_bytes(change: str = "") -> bytes:
    """A saved two-layer lqs model (.keras bytes); ``change`` breaks one weight: NaN kernel, zero or NaN scale."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), QDense(3, kernel_quantizer={"method": "nested", "threshold": 1e-3},
                                                        name="q_dense"), keras.layers.BatchNormalization(name="bn")],
                             name="m")
    host = model.layers[0]
    if change == "nan-kernel":
        k = keras.ops.convert_to_numpy(host.kernel).copy()
        k[1, 2] = np.nan
        host.kernel.assign(k)
    elif change in ("zero-scale", "nan-scale"):
        host.kernel_quantizer.scale.assign(np.full(host.kernel_quantizer.scale.shape, 0.0 if change == "zero-scale"
                                                   else np.nan, np.float32))
    elif change == "inf-moving-variance":
        bn = model.layers[1]
        bn.moving_variance.assign(np.full(bn.moving_variance.shape, np.inf, np.float32))
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "m.keras")
        model.save(path)
        with open(path, "rb") as f:
            return f.read()


def _with_config(blob: bytes, edit) -> bytes:
    """``blob`` (a .keras zip) with ``edit(config)`` applied to its config.json (``edit`` may return raw bytes)."""
    src = zipfile.ZipFile(_io.BytesIO(blob))
    out = _io.BytesIO()
    with zipfile.ZipFile(out, "w") as dst:
        for name in src.namelist():
            content = src.read(name)
            if name == "config.json":
                config = json.loads(content)
                edited = edit(config)
                content = edited if isinstance(edited, bytes) else json.dumps(config).encode()
            dst.writestr(name, content)
    return out.getvalue()


def _kernel_quantizer(**changes):
    def edit(config):
        config["config"]["layers"][1]["config"]["kernel_quantizer"]["config"].update(changes)
    return lambda: _with_config(_keras_bytes(), edit)


def _legacy_host(**changes):
    def edit(config):
        hosts = [layer for layer in config["config"]["layers"] if layer.get("registered_name") == "lqs>QDense"]
        hosts[0]["config"].update(changes)
    return lambda: _with_config(open(LEGACY, "rb").read(), edit)


def _intfile(*entries, data=b"", **kw):
    return lambda: bad_files.lqsint(entries, data, **kw)


def _int_data(data: bytes, **fields):
    """An integer file of one tensor ``t`` whose coded data is ``data``."""
    return _intfile(bad_files.tensor(data=data, **fields), data=data)


_HUFF = {"coding": "huffman", "bits": 1, "hi": 1, "symbols": [0, 1], "lengths": [1, 1]}
_BOMB = bad_files.deflate_bomb(64 << 20)  # 64 MiB of zeros in 64 kB
_CUT = zlib.compress(bytes(range(64)))[:-6]  # a DEFLATE stream without its end
_U8 = np.lib.format.dtype_to_descr(np.dtype(np.uint8))

FILE_CASES = [
    # (id, file name, bytes (a function), reader, substrings the message must contain; "{path}": the file's path)
    ("int-constant-huge", "m.lqsint", _intfile(bad_files.tensor(shape=[2**20, 2**20])), _read_intfile,
     ["{path}", "'t'", "shape [1048576, 1048576] has 1099511627776 elements", "MAX_ELEMENTS", "2147483648"]),
    ("int-shape-wraps-int64", "m.lqsint", _intfile(bad_files.tensor(shape=[2**31, 2**31, 4])), _read_intfile,
     ["{path}", "more than the 2147483648"]),
    ("int-total-elements", "m.lqsint", _intfile(*(bad_files.tensor(f"t{i}", shape=[2**30]) for i in range(3))),
     _read_intfile, ["{path}", "'t2'", "3221225472 elements", "MAX_ELEMENTS"]),
    ("int-dims", "m.lqsint", _intfile(bad_files.tensor(shape=[1] * 65)), _read_intfile,
     ["{path}", "shape", "at most 64"]),
    ("int-dim-huge", "m.lqsint", _intfile(bad_files.tensor(shape=[0, 2**70])), _read_intfile,
     ["{path}", "shape", "each at most 2147483648"]),
    ("int-deflate-bomb", "m.lqsint", _int_data(_BOMB, shape=[16], coding="deflate", bits=8, hi=255), _read_intfile,
     ["{path}", "'t'", "decompresses to more than the 16 bytes"]),
    ("int-deflate-ratio", "m.lqsint", _int_data(b"x\x9c", shape=[10**6], coding="deflate", bits=8, hi=255),
     _read_intfile, ["{path}", "cannot hold the 1000000 bytes", "1032"]),
    ("int-deflate-cut", "m.lqsint", _int_data(_CUT, shape=[64], coding="deflate", bits=8, hi=255), _read_intfile,
     ["{path}", "incomplete or truncated"]),
    ("int-huffman-count", "m.lqsint", _int_data(b"\0" * 10, shape=[1000], **_HUFF), _read_intfile,
     ["{path}", "at most 80 of 1000 values", "at least one bit"]),
    ("int-huffman-trailing", "m.lqsint", _int_data(b"\0" * 4096, shape=[8], **_HUFF), _read_intfile,
     ["{path}", "4095 byte(s) after its last"]),
    ("int-huffman-symbols", "m.lqsint", _int_data(b"\0", shape=[8], **{**_HUFF, "symbols": ["0", 1]}), _read_intfile,
     ["{path}", "symbols is ['0', 1]", "list of integers in"]),
    ("int-huffman-lengths", "m.lqsint", _int_data(b"\0", shape=[8], **{**_HUFF, "lengths": [0, 1]}), _read_intfile,
     ["{path}", "lengths is [0, 1]", "1..64"]),
    ("int-header-nested", "m.lqsint", lambda: bad_files.lqsint([], header_bytes=zlib.compress(
        b"[" * 100_000 + b"]" * 100_000)), _read_intfile, ["{path}", "nested too deeply"]),
    ("int-header-bomb", "m.lqsint", lambda: bad_files.lqsint([], header_bytes=bad_files.deflate_bomb(
        intfile.MAX_HEADER_BYTES + (1 << 20))), _read_intfile, ["{path}", "header too large", "MAX_HEADER_BYTES"]),
    ("int-entry-not-object", "m.lqsint", _intfile([1, 2]), _read_intfile,
     ["{path}", "tensor entry is a list, expected an object"]),
    ("npz-huge-shape", "mnist.npz", lambda: bad_files.mnist_npz(x_train=bad_files.npy((2**31, 28, 28))), _read_mnist,
     ["{path}", "'x_train'", "(2147483648, 28, 28)", "(n, 28, 28) with n <= 60000"]),
    ("npz-labels-2d", "mnist.npz", lambda: bad_files.mnist_npz(y_test=bad_files.npy((2, 5), data=bytes(10))),
     _read_mnist, ["{path}", "'y_test'", "(2, 5)", "(n) with n <= 10000"]),
    ("npz-size-mismatch", "mnist.npz", lambda: bad_files.mnist_npz(x_test=bad_files.npy((9000, 28, 28), data=bytes(5))),
     _read_mnist, ["{path}", "'x_test'", "holds", "needs"]),
    ("npz-string-dtype", "mnist.npz", lambda: bad_files.mnist_npz(y_train=bad_files.npy((3,), "<U8", bytes(96))),
     _read_mnist, ["{path}", "'y_train'", "dtype <U8", "numeric dtype"]),
    ("npz-missing", "mnist.npz", lambda: bad_files.mnist_npz(y_test=None), _read_mnist,
     ["{path}", "no array 'y_test'"]),
    ("npz-not-zip", "mnist.npz", lambda: bad_files.npy((3,), _U8, bytes(3)), _read_mnist,
     ["{path}", "not a readable mnist.npz"]),
    ("cifar-nested-labels", "cifar-10-batches-py/data_batch_1",
     lambda: bad_files.cifar_batch(labels_ops=bad_files.nested_list_ops(100_000)), _read_cifar,
     ["{path}", "'labels'", "flat list of at most 10000 integers in 0..9"]),
    ("cifar-shared-labels", "cifar-10-batches-py/data_batch_1",
     lambda: bad_files.cifar_batch(labels=bad_files.shared_lists(10, 12)), _read_cifar,
     ["{path}", "flat list of at most 10000 integers in 0..9", "of 10 items"]),
    ("cifar-label-10", "cifar-10-batches-py/data_batch_1", lambda: bad_files.cifar_batch(labels=[0, 1, 2, 10]),
     _read_cifar, ["{path}", "integers in 0..9"]),
    ("cifar-label-bool", "cifar-10-batches-py/data_batch_1", lambda: bad_files.cifar_batch(labels=[0, 1, 2, True]),
     _read_cifar, ["{path}", "integers in 0..9"]),
    ("cifar-data-rows", "cifar-10-batches-py/data_batch_1",
     lambda: bad_files.cifar_batch(data=np.zeros((3, 3072), np.uint8)), _read_cifar,
     ["{path}", "'data'", "4 x 3072", "shape (3, 3072)"]),
    ("cifar-data-list", "cifar-10-batches-py/data_batch_1", lambda: bad_files.cifar_batch(data=[[0] * 3072] * 4),
     _read_cifar, ["{path}", "'data' must be a numeric array", "got a list"]),
    ("cifar-object-dtype", "cifar-10-batches-py/data_batch_1", lambda: bad_files.cifar_batch(
        data=bad_files.PickledArray((2**28,), bad_files.PickledDtype("O8"), [1, 2])), _read_cifar,
     ["{path}", "dtype object", "numeric arrays (uint8) only"]),
    ("cifar-dtype-flags", "cifar-10-batches-py/data_batch_1", lambda: bad_files.cifar_batch(
        data=bad_files.PickledArray((4, 3072), bad_files.PickledDtype("u1", (3, "|", None, None, None, -1, -1, 63)),
                                    bytes(4 * 3072))), _read_cifar,
     ["{path}", "state", "plain numeric dtype"]),
    ("cifar-subarray-dtype", "cifar-10-batches-py/data_batch_1", lambda: bad_files.cifar_batch(
        data=bad_files.PickledArray((4,), bad_files.PickledDtype("(3072,)u1"), bytes(4 * 3072))), _read_cifar,
     ["{path}", "numeric arrays (uint8) only"]),
    ("cifar-array-bytes", "cifar-10-batches-py/data_batch_1", lambda: bad_files.cifar_batch(
        data=bad_files.PickledArray((2**40, 3072), bad_files.PickledDtype(), b"")), _read_cifar,
     ["{path}", "0 bytes of data", "needs"]),
    ("metrics-cut", "run/metrics.json", lambda: b'{"config": {"dataset": "dig', _read_metrics,
     ["{path}", "not valid JSON"]),
    ("metrics-nested", "run/metrics.json", lambda: b"[" * 100_000 + b"]" * 100_000, _read_metrics,
     ["{path}", "nested too deeply"]),
    ("metrics-list", "run/metrics.json", lambda: b"[1, 2]", _read_metrics,
     ["{path}", "JSON object with a 'config' object"]),
    ("metrics-config", "run/metrics.json", lambda: b'{"config": {"dataset": "svhn"}}', _read_metrics,
     ["{path}", "'config'", "'svhn'", "digits"]),
    ("keras-cut", "m.keras", lambda: _keras_bytes()[: len(_keras_bytes()) // 2], _read_keras,
     ["not a valid .keras (zip) file: {path} (truncated?)"]),
    ("keras-text", "m.keras", lambda: b"hello", _read_keras, ["not a valid .keras (zip) file: {path}"]),
    ("keras-no-config", "m.keras", lambda: _zip_without_config(), _read_keras, ["{path}", "has no config.json"]),
    ("keras-nested-config", "m.keras", lambda: _with_config(_keras_bytes(), lambda c: b"[" * 100_000 + b"]" * 100_000),
     _read_keras, ["{path}", "config.json", "nested too deeply"]),
    ("keras-nan-threshold", "m.keras", _kernel_quantizer(threshold=float("nan")), _read_keras,
     ["{path}", "layer 'q_dense'", "kernel_quantizer (NestedQuantizer)", "threshold (lambda) must be a finite number"]),
    ("keras-unknown-option", "m.keras", _kernel_quantizer(bitz=4), _read_keras,
     ["{path}", "kernel_quantizer", "Unknown option(s) ['bitz']", "allowed: threshold"]),
    ("keras-rounding", "m.keras", _kernel_quantizer(rounding="ceil"), _read_keras,
     ["{path}", "Unknown rounding 'ceil'; allowed: floor, round"]),
    ("keras-granularity", "m.keras", _kernel_quantizer(granularity="diagonal"), _read_keras,
     ["{path}", "Unknown granularity 'diagonal'", "rowwise"]),
    ("keras-scale-init", "m.keras", _kernel_quantizer(scale_init=-1.0), _read_keras,
     ["{path}", "scale_init", "> 0", "-1.0"]),
    ("keras-legacy-threshold", "m.keras", _legacy_host(threshold=float("nan")), _read_keras,
     ["{path}", "cannot be loaded", "threshold (lambda) must be a finite number >= 0, got nan"]),
    ("keras-nan-kernel", "m.keras", lambda: _keras_bytes("nan-kernel"), _read_keras,
     ["{path}", "q_dense/kernel", "1 of 12 value(s) NaN or inf", "must be finite"]),
    ("keras-zero-scale", "m.keras", lambda: _keras_bytes("zero-scale"), _read_keras,
     ["{path}", "layer 'q_dense'", "scale of 'kernel'", "finite float > 0"]),
    ("keras-nan-scale", "m.keras", lambda: _keras_bytes("nan-scale"), _read_keras,
     ["{path}", "kernel_quantizer/scale", "NaN or inf"]),
    ("keras-inf-variance", "m.keras", lambda: _keras_bytes("inf-moving-variance"), _read_keras,
     ["{path}", "moving_variance", "NaN or inf"]),
]


def _zip_without_config() -> bytes:
    out = _io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("metadata.json", "{}")
    return out.getvalue()


@pytest.mark.parametrize("name, content, read, expected", [c[1:] for c in FILE_CASES], ids=[c[0] for c in FILE_CASES])
def test_bad_file_is_refused_clearly(name, content, read, expected, tmp_path):
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content())
    with pytest.raises(ValueError) as error:
        read(path)
    message = str(error.value)
    for part in expected:
        part = part.replace("{path}", str(path))
        assert part in message, f"{part!r} not in {message!r}"
    assert len(message) < 1500, f"{len(message)} characters: {message[:300]!r}..."


def test_file_corpus_is_large_enough():
    assert len(FILE_CASES) >= 40
    assert {c[3] for c in FILE_CASES} == {_read_intfile, _read_mnist, _read_cifar, _read_metrics, _read_keras}


def test_valid_keras_file_loads_as_before(tmp_path):
    path = tmp_path / "m.keras"
    path.write_bytes(_keras_bytes())
    model = results.load_model(path)
    again = keras.saving.load_model(path)
    for a, b in zip(model.weights, again.weights):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))


def test_quantizer_from_config_gives_lqs_reason():
    config = quantizers.serialize(quantizers.get({"method": "lsq", "bits": 4}))
    config["config"]["bitz"] = 4
    with pytest.raises(ValueError, match=r"Unknown option\(s\) \['bitz'\] for quantizer LSQQuantizer; allowed: bits"):
        quantizers.get(config)
    config["config"].pop("bitz")
    config["config"]["bits"] = 9
    with pytest.raises(ValueError, match="bits"):
        quantizers.get(config)


# ---------------------------------------------------------------------------------------------------------------
# The same files under an address-space limit: a reader that allocated what the file declares would end in
# MemoryError (or worse) instead of the clear error.

#: Address space granted above what the interpreter uses after importing numpy and the readers.
HEADROOM = 2 << 30

MEMORY_SCRIPT = r"""
import json, os, resource, sys
sys.path.insert(0, sys.argv[1])
import numpy as np
import bad_files
from lqs_core import data, intfile

case, folder = sys.argv[2], sys.argv[3]
GIB = 1 << 30


def write(name, blob):
    path = os.path.join(folder, name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(blob)
    return path


def cifar(blob):
    path = write("c/cifar-10-batches-py/data_batch_1", blob)
    for b in data._CIFAR_BATCHES[1:]:
        write("c/cifar-10-batches-py/" + b, bad_files.cifar_batch())
    return lambda: data.load_arrays("cifar10", data_dir=os.path.join(folder, "c")), path


def lqsint(blob, call=intfile.read):
    path = write("m.lqsint", blob)
    return lambda: call(path), path


def mnist(blob):
    path = write("mnist.npz", blob)
    return lambda: data.load_arrays("mnist", data_dir=folder), path


bomb = bad_files.deflate_bomb(3 * GIB) if case in ("deflate", "header") else None
huffman = dict(coding="huffman", bits=1, hi=1, symbols=[0, 1], lengths=[1, 1], data=bytes(16 << 20))
cases = {
    "constant": lambda: lqsint(bad_files.lqsint([bad_files.tensor(shape=[2**20, 2**20])])),
    "constant-8gib": lambda: lqsint(bad_files.lqsint([bad_files.tensor(shape=[2**30])]),
                                    lambda p: intfile.read(p)[1]["t"].shape),
    "deflate": lambda: lqsint(bad_files.lqsint(
        [bad_files.tensor(shape=[16], coding="deflate", bits=8, hi=255, data=bomb)], bomb)),
    "header": lambda: lqsint(bad_files.lqsint([], header_bytes=bomb)),
    "huffman": lambda: lqsint(bad_files.lqsint([bad_files.tensor(shape=[8], **huffman)], huffman["data"])),
    "npz": lambda: mnist(bad_files.mnist_npz(y_train=bad_files.npy((3 * GIB,), data=bytes(1 << 20)))),
    "cifar-object": lambda: cifar(bad_files.cifar_batch(
        data=bad_files.PickledArray((2**28,), bad_files.PickledDtype("O8"), [1, 2]))),
    "cifar-flags": lambda: cifar(bad_files.cifar_batch(data=bad_files.PickledArray(
        (2**28,), bad_files.PickledDtype("u1", (3, "|", None, None, None, -1, -1, 63)), [1, 2]))),
    "cifar-shared": lambda: cifar(bad_files.cifar_batch(labels=bad_files.shared_lists(10, 12))),
}
call, path = cases[case]()
del bomb
size = int(next(l.split()[1] for l in open("/proc/self/status") if l.startswith("VmSize:"))) * 1024
limit = size + int(sys.argv[4])
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
out = {"path": path, "limit": limit}
try:
    np.ones(limit - size + (1 << 28), np.uint8)
    out["control"] = "allocated"
except MemoryError:
    out["control"] = "MemoryError"
try:
    out["result"] = repr(call())
except BaseException as e:
    out["error"], out["message"] = type(e).__name__, str(e)[:2000]
print(json.dumps(out))
"""

MEMORY_CASES = [
    ("constant", ["ValueError", "MAX_ELEMENTS"]),
    ("constant-8gib", ["(1073741824,)"]),  # a constant tensor is a broadcast: read, with no memory
    ("deflate", ["ValueError", "decompresses to more than the 16 bytes"]),
    ("header", ["ValueError", "header too large"]),
    ("huffman", ["ValueError", "after its last"]),
    ("npz", ["ValueError", "'y_train'", "(3221225472,)", "n <= 60000"]),
    ("cifar-object", ["ValueError", "dtype object", "numeric arrays (uint8) only"]),
    ("cifar-flags", ["ValueError", "plain numeric dtype"]),
    ("cifar-shared", ["ValueError", "flat list of at most 10000 integers"]),
]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS and /proc/self/status: Linux")
@pytest.mark.parametrize("case, expected", MEMORY_CASES, ids=[c[0] for c in MEMORY_CASES])
def test_bad_file_fails_clearly_under_a_memory_limit(case, expected, tmp_path):
    root = os.path.dirname(HERE)
    proc = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT, HERE, case, str(tmp_path), str(HEADROOM)],
                          capture_output=True, text=True, cwd=root, timeout=300)
    assert proc.returncode == 0, f"rc {proc.returncode} (a crash?): {proc.stderr[-2000:]}"
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["control"] == "MemoryError", "the address-space limit does not hold"
    seen = f"{out.get('error')}: {out.get('message')}" if "error" in out else out["result"]
    for part in expected:
        assert part in seen, f"{part!r} not in {seen!r}"
    if "error" in out:
        assert out["path"] in out["message"]


@pytest.mark.parametrize("labels", [[3, 1, 4, 1], np.array([3, 1, 4, 1]), np.array([3, 1, 4, 1], dtype=">i8")],
                         ids=["list", "int64-array", "big-endian-array"])
def test_valid_cifar_batch_forms_still_read(labels, tmp_path):
    images = np.arange(4 * 3072, dtype=np.uint32).reshape(4, 3072) % 251
    for data_array in (images.astype(np.uint8), np.asfortranarray(images.astype(">u2"))):
        raw = bad_files.cifar_batch(labels=labels, data=data_array)
        x, y = data._read_cifar_batch(tmp_path / "data_batch_1", raw)
        np.testing.assert_array_equal(x, data_array)
        np.testing.assert_array_equal(y, [3, 1, 4, 1])
        assert x.dtype == data_array.dtype and x.flags.f_contiguous == data_array.flags.f_contiguous
