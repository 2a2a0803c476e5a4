"""Tests for lqs_core.data: digits, argument checks, content verification, safe parsing, offline behaviour,
the manifest and data/ folder, real shared copies, Imagenette; the pipelines on every Keras backend (marker
``backends``: tf.data on TensorFlow, NumPy batches on JAX and PyTorch) and the NumPy augmentation against
TensorFlow's image ops."""

import hashlib
import json
import os
import pickle
import re
import subprocess
import tarfile
from pathlib import Path

import numpy as np
import pytest

from lqs_core import data

REPO = Path(__file__).resolve().parents[1]


def _shared_datasets():
    env = os.environ.get("LQS_SHARED_DATA")
    candidates = []
    if env:
        candidates += [Path(env) / "keras" / "datasets", Path(env)]
    candidates.append(REPO.parent / "shared" / "data" / "keras" / "datasets")
    for c in candidates:
        if (c / "mnist.npz").is_file():
            return c
    return None


SHARED = _shared_datasets()
needs_shared = pytest.mark.skipif(SHARED is None, reason="shared/data/keras/datasets not available")


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path, monkeypatch):
    """Each test gets its own Keras cache, no LQS_DATA_DIR and no checkout data/ folder; downloads are refused
    unless a test allows them."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    monkeypatch.delenv(data.ENV_DATA_DIR, raising=False)
    monkeypatch.setattr(data, "CHECKOUT_DATA_DIR", None)
    import keras

    def no_download(*args, **kwargs):
        raise AssertionError(f"unexpected keras.utils.get_file call: {kwargs}")

    monkeypatch.setattr(keras.utils, "get_file", no_download)


def _offline_get_file(*args, **kwargs):
    """What keras.utils.get_file raises when there is no network."""
    raise Exception(f"URL fetch failure on {kwargs.get('origin')}: None -- "
                    "[Errno -3] Temporary failure in name resolution")


def _labels(ds):
    return np.concatenate([np.asarray(y) for _, y in ds])  # tf.data (EagerTensor) or NumPy batches


def _fake_mnist(path: Path, seed=0, n_train=12, n_test=5):
    rng = np.random.default_rng(seed)
    arrays = {
        "x_train": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "y_train": rng.integers(0, 10, n_train, dtype=np.uint8),
        "x_test": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "y_test": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)
    return arrays, data.content_sha256(*(arrays[k] for k in ("x_train", "y_train", "x_test", "y_test")))


# --------------------------------------------------------------------------------------------------
# digits, names, pipelines
# --------------------------------------------------------------------------------------------------


def test_datasets_constant():
    assert data.DATASETS == ("digits", "mnist", "cifar10", "imagenette")


def test_digits_arrays_shapes_split_and_determinism():
    (x_tr, y_tr), (x_va, y_va) = data.load_arrays("digits")
    assert x_tr.shape == (1437, 8, 8, 1) and x_va.shape == (360, 8, 8, 1)
    assert y_tr.shape == (1437,) and y_va.shape == (360,)
    assert x_tr.dtype == np.float32 and y_tr.dtype == np.int32 and y_va.dtype == np.int32
    assert x_tr.min() == 0.0 and x_tr.max() == 16.0 and np.all(x_tr == np.round(x_tr))
    # stratified: every class ~20 % in validation
    tr_counts, va_counts = np.bincount(y_tr, minlength=10), np.bincount(y_va, minlength=10)
    assert np.all(np.abs(va_counts / (tr_counts + va_counts) - 0.2) < 0.02)
    (x_tr2, y_tr2), (x_va2, y_va2) = data.load_arrays("digits")
    np.testing.assert_array_equal(x_tr, x_tr2)
    np.testing.assert_array_equal(y_va, y_va2)


@pytest.mark.backends
def test_digits_pipeline_seeded_order():
    a = data.load("digits", batch_size=64, seed=1)
    b = data.load("digits", batch_size=64, seed=1)
    c = data.load("digits", batch_size=64, seed=2)
    assert (a.name, a.input_shape, a.num_classes, a.n_train, a.n_val) == ("digits", (8, 8, 1), 10, 1437, 360)
    first = _labels(a.train)  # epoch 1 (every iteration over `train` is one epoch)
    assert len(first) == 1437
    np.testing.assert_array_equal(first, _labels(b.train))  # same seed -> same batch order
    assert not np.array_equal(first, _labels(c.train))  # other seed -> other order
    assert not np.array_equal(first, _labels(a.train))  # reshuffled each epoch
    x, y = next(iter(c.train))
    assert x.shape == (64, 8, 8, 1) and x.dtype.name == "float32" and y.dtype.name == "int32"
    # validation is not shuffled and equals load_arrays' split
    (_, _), (x_va, y_va) = data.load_arrays("digits")
    np.testing.assert_array_equal(_labels(a.val), y_va)
    np.testing.assert_array_equal(np.concatenate([np.asarray(x) for x, _ in a.val]), x_va)


@pytest.mark.backends
def test_max_train_and_max_val():
    s = data.load("digits", batch_size=32, seed=3, max_train=100, max_val=50)
    assert (s.n_train, s.n_val) == (100, 50)
    assert len(_labels(s.train)) == 100 and len(_labels(s.val)) == 50
    again = data.load("digits", batch_size=32, seed=3, max_train=100, max_val=50)
    np.testing.assert_array_equal(_labels(s.val), _labels(again.val))
    assert data.load("digits", max_train=10_000).n_train == 1437
    with pytest.raises(ValueError):
        data.load("digits", max_train=0)


def test_unknown_name_and_bad_options():
    for fn in (data.load, data.load_arrays, data.fetch):
        with pytest.raises(ValueError, match="mnist2") as e:
            fn("mnist2")
        assert all(n in str(e.value) for n in data.DATASETS)
    with pytest.raises(ValueError, match="imagenette"):
        data.load("digits", image_size=32)
    with pytest.raises(ValueError, match="augment"):
        data.load("digits", augment=True)
    with pytest.raises(ValueError, match="load"):
        data.load_arrays("imagenette")


def test_describe_mentions_offline_settings():
    text = data.describe()
    assert "LQS_DATA_DIR" in text and "KERAS_HOME" in text


# --------------------------------------------------------------------------------------------------
# Content verification and file locations
# --------------------------------------------------------------------------------------------------


def test_content_sha256_matches_hand_computation():
    x = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    y = np.array([1, 7], dtype=np.uint8)
    x_view = np.asfortranarray(x)  # not C-contiguous: must hash the C-order bytes
    expected = hashlib.sha256(x.tobytes() + y.tobytes() + y.tobytes() + x.tobytes()).hexdigest()
    assert data.content_sha256(x_view, y, y.astype(np.int64), x) == expected
    assert data.content_sha256([1, 7]) == hashlib.sha256(bytes([1, 7])).hexdigest()
    with pytest.raises(ValueError):
        data.content_sha256(np.array([256]))


def test_wrong_content_is_rejected_and_kept(tmp_path):
    path = tmp_path / "user" / "mnist.npz"
    _fake_mnist(path)
    before = path.read_bytes()
    with pytest.raises(ValueError, match="hash") as e:
        data.load_arrays("mnist", data_dir=tmp_path / "user")
    msg = str(e.value)
    assert str(path) in msg and data.CONTENT_SHA256["mnist"] in msg and data.MNIST_URL in msg
    assert path.read_bytes() == before


def test_verified_local_copy_via_data_dir_and_env(tmp_path, monkeypatch):
    path = tmp_path / "user" / "mnist.npz"
    arrays, digest = _fake_mnist(path)
    monkeypatch.setitem(data.CONTENT_SHA256, "mnist", digest)
    (x_tr, y_tr), (x_va, y_va) = data.load_arrays("mnist", data_dir=path.parent)
    assert x_tr.shape == (12, 28, 28) and x_tr.dtype == np.float32 and y_va.dtype == np.int32
    np.testing.assert_array_equal(x_tr, arrays["x_train"])
    monkeypatch.setenv(data.ENV_DATA_DIR, os.pathsep.join([str(tmp_path / "nothing"), str(path.parent)]))
    s = data.load("mnist", batch_size=4)
    assert (s.n_train, s.n_val, s.input_shape) == (12, 5, (28, 28))
    assert data.fetch("mnist") == path


def test_missing_file_offline_gives_clear_error_and_keeps_user_files(tmp_path, monkeypatch):
    import keras

    user = tmp_path / "user"
    _fake_mnist(user / "mnist.npz")
    before = (user / "mnist.npz").read_bytes()
    monkeypatch.setattr(keras.utils, "get_file", _offline_get_file)
    monkeypatch.setenv(data.ENV_DATA_DIR, str(user))
    # CIFAR-10 is not in LQS_DATA_DIR -> falls through to the Keras cache -> download fails offline
    with pytest.raises(data.DatasetNotFoundError) as e:
        data.load_arrays("cifar10")
    assert isinstance(e.value, FileNotFoundError)
    msg = str(e.value)
    assert data.CIFAR10_URL in msg and "LQS_DATA_DIR" in msg and "URL fetch failure" in msg
    assert (user / "mnist.npz").read_bytes() == before
    # an explicit data_dir never downloads: missing there is an error straight away
    monkeypatch.setattr(keras.utils, "get_file", lambda *a, **k: pytest.fail("get_file called"))
    with pytest.raises(data.DatasetNotFoundError, match="mnist.npz"):
        data.load_arrays("mnist", data_dir=tmp_path / "empty")


def test_existing_cache_file_is_never_passed_to_get_file(tmp_path, monkeypatch):
    # a re-packed copy in the Keras cache: its file hash differs from Keras' -> Keras would delete it offline
    cached = tmp_path / "keras_home" / "datasets" / "mnist.npz"
    _, digest = _fake_mnist(cached, seed=5)
    before = cached.read_bytes()
    monkeypatch.setitem(data.CONTENT_SHA256, "mnist", digest)
    (x_tr, _), _ = data.load_arrays("mnist")  # the autouse fixture makes get_file fail the test
    assert x_tr.shape == (12, 28, 28)
    assert cached.read_bytes() == before


def test_download_goes_through_keras_get_file(tmp_path, monkeypatch):
    import keras

    calls = []

    def fake_get_file(fname=None, origin=None, file_hash=None, cache_dir=None, cache_subdir=None, **kw):
        calls.append(dict(fname=fname, origin=origin, file_hash=file_hash, cache_subdir=cache_subdir, **kw))
        target = Path(cache_dir) / cache_subdir / fname
        _fake_mnist(target, seed=7)
        return str(target)

    monkeypatch.setattr(keras.utils, "get_file", fake_get_file)
    _, digest = _fake_mnist(tmp_path / "ref.npz", seed=7)
    monkeypatch.setitem(data.CONTENT_SHA256, "mnist", digest)
    path = data.fetch("mnist")
    assert path == tmp_path / "keras_home" / "datasets" / "mnist.npz"
    assert calls == [dict(fname="mnist.npz", origin=data.MNIST_URL, file_hash=data.MNIST_FILE_SHA256,
                          cache_subdir="datasets")]
    data.load_arrays("mnist")  # second time: found in the cache, no further get_file call
    assert len(calls) == 1


# --------------------------------------------------------------------------------------------------
# Argument checks: a clear ValueError naming the bad value, before any file is looked at
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, words",
    [
        (dict(seed="abc"), ["seed", "'abc'", "integer >= 0"]),
        (dict(seed=-1), ["seed", "-1", "integer >= 0"]),
        (dict(seed=1.5), ["seed", "1.5", "integer >= 0"]),
        (dict(seed=True), ["seed", "True", "integer >= 0"]),
        (dict(batch_size=0), ["batch_size", "0", "integer >= 1"]),
        (dict(batch_size="32"), ["batch_size", "'32'", "integer >= 1"]),
        (dict(max_train=0), ["max_train", "0", "integer >= 1", "None"]),
        (dict(max_train=2.5), ["max_train", "2.5", "integer >= 1"]),
        (dict(max_val="10"), ["max_val", "'10'", "integer >= 1"]),
        (dict(augment="yes"), ["augment", "'yes'", "True, False or None"]),
        (dict(data_dir=123), ["data_dir", "123", "folder path"]),
        (dict(data_dir=""), ["data_dir", "''", "folder path"]),
    ],
)
def test_bad_arguments_name_the_value_before_reading_files(kwargs, words, monkeypatch):
    # the dataset's files are absent: an error about files would mean the argument was checked too late
    monkeypatch.setattr(data, "_mnist_path", lambda *a: pytest.fail("files looked up before the arguments"))
    with pytest.raises(ValueError) as e:
        data.load("mnist", **kwargs)
    assert all(w in str(e.value) for w in words), str(e.value)


def test_bad_image_size_and_name(monkeypatch):
    monkeypatch.setattr(data, "_imagenette_path", lambda *a: pytest.fail("files looked up before the arguments"))
    for bad in ("big", 0, -3, 2.5):
        with pytest.raises(ValueError, match="image_size") as e:
            data.load("imagenette", image_size=bad)
        assert repr(bad) in str(e.value) and "integer >= 1" in str(e.value)
    for bad in (None, 5, "MNIST"):
        for fn in (data.load, data.load_arrays, data.fetch):
            with pytest.raises(ValueError, match="unknown dataset") as e:
                fn(bad)
            assert repr(bad) in str(e.value) and "cifar10" in str(e.value)
    for fn in (data.load_arrays, data.fetch):
        with pytest.raises(ValueError, match="data_dir") as e:
            fn("mnist", data_dir=["/a"])
        assert "['/a']" in str(e.value)


@pytest.mark.backends
def test_valid_argument_forms_still_work():
    s = data.load("digits", batch_size=np.int64(16), seed=np.int32(3), max_train=np.int64(20), max_val=10,
                  augment=False)
    assert (s.n_train, s.n_val) == (20, 10)
    assert data.load("digits", seed=0, augment=None).n_train == 1437


# --------------------------------------------------------------------------------------------------
# Nothing from a data file is executed
# --------------------------------------------------------------------------------------------------


def _fake_cifar(folder: Path, seed=0, n=4, str_keys=False, protocol=4):
    """A CIFAR-10 python folder of tiny batches; returns (arrays for content_sha256, data of data_batch_1)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = []
    for b in data._CIFAR_BATCHES:
        batch = {"batch_label": b, "labels": rng.integers(0, 10, n).tolist(),
                 "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8)}
        if not str_keys:
            batch = {k.encode(): (v.encode() if isinstance(v, str) else v) for k, v in batch.items()}
        (folder / b).write_bytes(pickle.dumps(batch, protocol=protocol))
        arrays += [batch["data" if str_keys else b"data"], batch["labels" if str_keys else b"labels"]]
    return arrays


class _WritesMarker:
    """Unpickling this calls Path.write_text(marker): what a crafted data file could do with pickle.load."""

    def __init__(self, marker):
        self.marker = Path(marker)

    def __reduce__(self):
        return Path.write_text, (self.marker, "code from a data file ran\n")


class _RunsShell:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("payload", ["write_text", "os.system", "nested"])
def test_crafted_cifar_pickle_is_refused_and_never_runs(payload, tmp_path, monkeypatch):
    marker = tmp_path / "marker"
    folder = tmp_path / "evil" / "cifar-10-batches-py"
    _fake_cifar(folder)
    evil = {"write_text": _WritesMarker(marker), "os.system": _RunsShell(marker),
            "nested": {b"data": np.zeros((4, 3072), np.uint8), b"labels": [0] * 4, b"x": _WritesMarker(marker)}}
    crafted = pickle.dumps(evil[payload], protocol=4)
    if payload != "os.system":  # the payload is live: plain pickle.loads runs it
        pickle.loads(crafted)
        assert marker.is_file()
        marker.unlink()
    (folder / "data_batch_1").write_bytes(crafted)
    monkeypatch.setenv(data.ENV_DATA_DIR, str(tmp_path / "evil"))
    refused = {"write_text": "pathlib.Path.write_text", "os.system": f"{os.system.__module__}.system",
               "nested": "pathlib"}[payload]
    for call in (lambda: data.load_arrays("cifar10"), lambda: data.load("cifar10"), lambda: data.fetch("cifar10")):
        with pytest.raises(data.UnsafeDataFileError) as e:
            call()
        msg = str(e.value)
        assert isinstance(e.value, ValueError) and "refused" in msg, msg
        assert str(folder / "data_batch_1") in msg and refused in msg, msg
        assert "numpy.core.multiarray._reconstruct" in msg  # says what is allowed
        assert not marker.exists()


def test_pickled_object_in_mnist_npz_is_refused(tmp_path):
    marker = tmp_path / "marker"
    arrays = {k: np.zeros(3, np.uint8) for k in ("x_train", "y_train", "x_test", "y_test")}
    arrays["x_train"] = np.array([_WritesMarker(marker)], dtype=object)
    np.savez(tmp_path / "mnist.npz", **arrays)
    with pytest.raises(ValueError, match="mnist.npz"):
        data.load_arrays("mnist", data_dir=tmp_path)
    assert not marker.exists()


def test_cifar_pickle_globals_are_exactly_what_real_batches_need():
    assert set(data.CIFAR_PICKLE_GLOBALS) == {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"),
    }


@pytest.mark.parametrize("str_keys", [False, True])
def test_repacked_cifar_is_parsed_safely_and_checked_by_content(str_keys, tmp_path, monkeypatch):
    arrays = _fake_cifar(tmp_path / "user" / "cifar-10-batches-py", seed=3, str_keys=str_keys)
    with pytest.raises(ValueError, match="content check"):  # not listed in the manifest, wrong content
        data.load_arrays("cifar10", data_dir=tmp_path / "user")
    monkeypatch.setitem(data.CONTENT_SHA256, "cifar10", data.content_sha256(*arrays))
    (x_tr, y_tr), (x_va, y_va) = data.load_arrays("cifar10", data_dir=tmp_path / "user")
    assert x_tr.shape == (20, 32, 32, 3) and x_va.shape == (4, 32, 32, 3) and y_tr.dtype == np.int32
    np.testing.assert_array_equal(x_va, arrays[10].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
    np.testing.assert_array_equal(y_tr, np.concatenate(arrays[1:10:2]))


def test_file_with_known_checksum_is_accepted_before_parsing(tmp_path, monkeypatch):
    path = tmp_path / "mnist.npz"
    _fake_mnist(path, seed=9)
    with pytest.raises(ValueError, match="content check"):
        data.load_arrays("mnist", data_dir=tmp_path)
    known = data._DS["mnist"]["files"]["mnist.npz"]["known"]
    monkeypatch.setitem(data._DS["mnist"]["files"]["mnist.npz"], "known",
                        known + [{"source": "test", "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}])
    monkeypatch.setattr(data, "_check_content", lambda *a: pytest.fail("content check despite a known checksum"))
    (x_tr, _), _ = data.load_arrays("mnist", data_dir=tmp_path)
    assert x_tr.shape == (12, 28, 28)


def test_cifar_md5_of_the_official_batches_counts_as_known(tmp_path, monkeypatch):
    folder = tmp_path / "cifar-10-batches-py"
    _fake_cifar(folder)
    files = data._DS["cifar10"]["files"]
    for b in data._CIFAR_BATCHES:
        md5 = hashlib.md5((folder / b).read_bytes()).hexdigest()
        monkeypatch.setitem(files[b], "known", [{"source": "official", "md5": md5}])
    monkeypatch.setattr(data, "_check_content", lambda *a: pytest.fail("content check despite known md5s"))
    assert data.fetch("cifar10", data_dir=tmp_path) == folder


# --------------------------------------------------------------------------------------------------
# Incomplete folders
# --------------------------------------------------------------------------------------------------


def test_cifar_folder_missing_a_batch_names_the_file(tmp_path, monkeypatch):
    import keras

    folder = tmp_path / "user" / "cifar-10-batches-py"
    _fake_cifar(folder)
    (folder / "data_batch_3").unlink()
    with pytest.raises(data.DatasetNotFoundError) as e:
        data.load_arrays("cifar10", data_dir=tmp_path / "user")
    msg = str(e.value)
    assert str(folder / "data_batch_3") in msg and "missing" in msg
    assert all(b in msg for b in data._CIFAR_BATCHES) and data.CIFAR10_URL in msg
    assert str(folder / "data_batch_2") not in msg.split("must contain")[0]  # only the missing file is listed
    # via LQS_DATA_DIR the incomplete folder is skipped with a warning; offline the error still names the file
    monkeypatch.setattr(keras.utils, "get_file", _offline_get_file)
    monkeypatch.setenv(data.ENV_DATA_DIR, str(tmp_path / "user"))
    with pytest.warns(UserWarning, match="data_batch_3"), pytest.raises(data.DatasetNotFoundError) as e:
        data.load("cifar10")
    assert str(folder / "data_batch_3") in str(e.value) and "URL fetch failure" in str(e.value)


def test_cifar_folder_given_instead_of_its_parent(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    _fake_cifar(folder)
    with pytest.raises(data.DatasetNotFoundError, match="name its parent folder"):
        data.fetch("cifar10", data_dir=folder)


# --------------------------------------------------------------------------------------------------
# The manifest and the data/ folder
# --------------------------------------------------------------------------------------------------


def test_manifest_is_package_data_and_feeds_the_constants():
    from importlib import resources

    manifest = json.loads(resources.files("lqs_core").joinpath("datasets.json").read_text(encoding="utf-8"))
    assert manifest == data.MANIFEST and set(manifest["datasets"]) == set(data.DATASETS)
    ds = manifest["datasets"]
    assert data.CONTENT_SHA256 == {n: ds[n]["content_sha256"] for n in ("mnist", "cifar10")}
    assert (data.MNIST_URL, data.MNIST_FILE_SHA256) == (ds["mnist"]["download"]["url"],
                                                       ds["mnist"]["download"]["sha256"])
    assert data.CIFAR10_FILE_SHA256 == ds["cifar10"]["download"]["sha256"]
    assert data.IMAGENETTE_FILE_SHA256 == ds["imagenette"]["download"]["sha256"]
    assert data._CIFAR_BATCHES == tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch",)
    assert data._MNIST_KEYS == ("x_train", "y_train", "x_test", "y_test")
    for name in ("mnist", "cifar10"):
        for entry in ds[name]["files"].values():
            assert entry["arrays"] and entry["known"]
            assert all(len(k.get("sha256", "")) == 64 or len(k.get("md5", "")) == 32 for k in entry["known"])
    assert re.findall(r"[0-9a-f]{32,}", Path(data.__file__).read_text()) == []  # no checksums in the code


def test_data_folder_symlink_readme_and_gitignore():
    link = REPO / "data" / "manifest.json"
    assert link.is_symlink() and os.readlink(link) == "../lqs_core/datasets.json"
    assert json.loads(link.read_text()) == data.MANIFEST
    readme = (REPO / "data" / "README.md").read_text()
    hashes = []

    def walk(node):
        if isinstance(node, dict):
            for k, v in node.items():
                if k in ("sha256", "content_sha256", "md5") and isinstance(v, str):
                    hashes.append(v)
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(data.MANIFEST["datasets"])
    assert all(re.fullmatch(r"[0-9a-f]{32}|[0-9a-f]{64}", h) for h in hashes)
    assert len(hashes) > 15 and [h for h in hashes if h not in readme] == []
    assert "LQS_DATA_DIR" in readme and "manifest.json" in readme
    if (REPO / ".git").exists():
        ignored = subprocess.run(
            ["git", "check-ignore", "--no-index", "data/mnist.npz", "data/cifar-10-batches-py/data_batch_1",
             "data/README.md", "data/manifest.json"], cwd=REPO, capture_output=True, text=True).stdout.split()
        assert ignored == ["data/mnist.npz", "data/cifar-10-batches-py/data_batch_1"]


def test_checkout_data_folder_is_searched_after_lqs_data_dir(tmp_path, monkeypatch):
    import lqs_core

    if (REPO / "pyproject.toml").is_file() and Path(lqs_core.__file__).resolve().parent == REPO / "lqs_core":
        assert data._find_checkout_data_dir() == REPO / "data"
    checkout = tmp_path / "checkout_data"
    _, digest = _fake_mnist(checkout / "mnist.npz", seed=1)
    monkeypatch.setitem(data.CONTENT_SHA256, "mnist", digest)
    monkeypatch.setattr(data, "CHECKOUT_DATA_DIR", checkout)
    assert data.fetch("mnist") == checkout / "mnist.npz"
    _, digest2 = _fake_mnist(tmp_path / "env" / "mnist.npz", seed=2)
    monkeypatch.setitem(data.CONTENT_SHA256, "mnist", digest2)
    monkeypatch.setenv(data.ENV_DATA_DIR, str(tmp_path / "env"))
    assert data.fetch("mnist") == tmp_path / "env" / "mnist.npz"  # LQS_DATA_DIR first
    with pytest.raises(data.DatasetNotFoundError):  # an explicit data_dir is the only place looked in
        data.fetch("mnist", data_dir=tmp_path / "nothing")
    assert str(checkout) in data.describe()


# --------------------------------------------------------------------------------------------------
# Real offline copies (shared/data)
# --------------------------------------------------------------------------------------------------


@needs_shared
def test_real_mnist_from_shared_copy():
    (x_tr, y_tr), (x_va, y_va) = data.load_arrays("mnist", data_dir=SHARED)
    assert x_tr.shape == (60000, 28, 28) and y_tr.shape == (60000,) and x_va.shape == (10000, 28, 28)
    assert y_va.shape == (10000,) and x_tr.dtype == np.float32 and y_tr.dtype == np.int32
    assert x_tr.min() == 0.0 and x_tr.max() == 255.0
    assert np.bincount(y_tr).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert np.bincount(y_va).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.mark.slow  # reads 180 MB and allocates ~740 MB of float32 (2-4 s)
@needs_shared
def test_real_cifar10_from_shared_copy(monkeypatch):
    monkeypatch.setenv(data.ENV_DATA_DIR, str(SHARED))
    (x_tr, y_tr), (x_va, y_va) = data.load_arrays("cifar10")  # verifies the content hash on the way
    assert x_tr.shape == (50000, 32, 32, 3) and x_va.shape == (10000, 32, 32, 3) and x_tr.dtype == np.float32
    assert y_tr.shape == (50000,) and y_va.dtype == np.int32 and x_va.min() == 0.0 and x_va.max() == 255.0
    assert np.bincount(y_tr).tolist() == [5000] * 10 and np.bincount(y_va).tolist() == [1000] * 10
    assert np.bincount(y_tr[:10000]).tolist() == [1005, 974, 1032, 1016, 999, 937, 1030, 1001, 1025, 981]
    del x_tr, x_va
    assert data.fetch("cifar10") == SHARED / "cifar-10-batches-py"


# --------------------------------------------------------------------------------------------------
# Imagenette on a tiny folder of the same layout
# --------------------------------------------------------------------------------------------------

WNIDS = ("n03888605", "n01440764")  # deliberately not sorted


@pytest.fixture
def tiny_imagenette(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    root = tmp_path / "imgs" / "imagenette2-160"
    for split, n in (("train", 3), ("val", 2)):
        for wnid in WNIDS:
            d = root / split / wnid
            d.mkdir(parents=True)
            for i in range(n):
                h, w = (40, 40) if i % 2 == 0 else (40, 52)
                arr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
                Image.fromarray(arr).save(d / f"{wnid}_{i}.JPEG", quality=95)
    (root / "train" / WNIDS[0] / "notes.txt").write_text("not an image")
    return tmp_path / "imgs"


def _epoch(ds):
    xs, ys = zip(*[(np.asarray(x), np.asarray(y)) for x, y in ds])
    return np.concatenate(xs), np.concatenate(ys)


@pytest.mark.backends
def test_imagenette_tiny_pipeline(tiny_imagenette):
    s = data.load("imagenette", batch_size=4, seed=0, data_dir=tiny_imagenette, image_size=32)
    assert (s.name, s.input_shape, s.num_classes, s.n_train, s.n_val) == ("imagenette", (32, 32, 3), 2, 6, 4)
    assert s.class_names == tuple(sorted(WNIDS))
    x_va, y_va = _epoch(s.val)
    assert x_va.shape == (4, 32, 32, 3) and x_va.dtype == np.float32
    assert y_va.tolist() == [0, 0, 1, 1]  # sorted wnid order: n01440764 -> 0, n03888605 -> 1; val not shuffled
    x_tr, y_tr = _epoch(s.train)
    assert x_tr.shape == (6, 32, 32, 3) and sorted(y_tr.tolist()) == [0, 0, 0, 1, 1, 1]
    assert x_tr.min() >= 0.0 and x_tr.max() <= 255.0
    # augmentation is deterministic for a seed, different for another seed and between epochs
    x_same, y_same = _epoch(data.load("imagenette", batch_size=4, seed=0, data_dir=tiny_imagenette,
                                      image_size=32).train)
    np.testing.assert_array_equal(x_tr, x_same)
    np.testing.assert_array_equal(y_tr, y_same)
    x_other, _ = _epoch(data.load("imagenette", batch_size=4, seed=1, data_dir=tiny_imagenette,
                                  image_size=32).train)
    assert not np.array_equal(x_tr, x_other)
    x_next, _ = _epoch(s.train)
    assert not np.array_equal(x_tr, x_next)
    # without augmentation the train images get the validation preprocessing (resize only), just shuffled
    plain = data.load("imagenette", batch_size=8, seed=0, data_dir=tiny_imagenette, image_size=32, augment=False)
    (x_p1, y_p1), (x_p2, y_p2) = _epoch(plain.train), _epoch(plain.train)
    assert x_p1.shape == (6, 32, 32, 3)
    fingerprints = []
    for x_p, y_p in ((x_p1, y_p1), (x_p2, y_p2)):  # the same images in every epoch, only reordered
        order = np.lexsort((x_p.reshape(6, -1).sum(1), y_p))
        fingerprints.append(x_p[order])
    np.testing.assert_array_equal(*fingerprints)


@pytest.mark.backends
def test_imagenette_env_max_and_missing(tiny_imagenette, tmp_path, monkeypatch):
    monkeypatch.setenv(data.ENV_DATA_DIR, str(tiny_imagenette))
    s = data.load("imagenette", batch_size=2, image_size=16, max_train=4, max_val=1)
    assert (s.n_train, s.n_val, s.input_shape) == (4, 1, (16, 16, 3))
    assert data.fetch("imagenette") == tiny_imagenette / "imagenette2-160"
    with pytest.raises(data.DatasetNotFoundError, match="imagenette2-160.tgz"):
        data.load("imagenette", data_dir=tmp_path / "empty")


def test_imagenette_local_tgz_is_extracted_into_cache(tiny_imagenette, tmp_path, monkeypatch):
    user = tmp_path / "user"
    user.mkdir()
    tgz = user / "imagenette2-160.tgz"
    with tarfile.open(tgz, "w:gz") as t:
        t.add(tiny_imagenette / "imagenette2-160", arcname="imagenette2-160")
    before = tgz.read_bytes()
    with pytest.raises(ValueError, match="hash"):
        data.fetch("imagenette", data_dir=user)
    monkeypatch.setattr(data, "IMAGENETTE_FILE_SHA256", hashlib.sha256(before).hexdigest())
    root = data.fetch("imagenette", data_dir=user)
    assert root == tmp_path / "keras_home" / "datasets" / "imagenette2-160_extracted" / "imagenette2-160"
    assert data.load("imagenette", data_dir=user, image_size=16).n_train == 6
    assert tgz.read_bytes() == before


# --------------------------------------------------------------------------------------------------
# The NumPy pipelines (JAX / PyTorch) on any backend, and their image ops against TensorFlow's
# --------------------------------------------------------------------------------------------------


@pytest.mark.backends
def test_pipeline_kind_follows_the_backend():
    import keras

    s = data.load("digits", batch_size=100, seed=0)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        assert isinstance(s.train, tf.data.Dataset) and isinstance(s.val, tf.data.Dataset)
    else:
        assert isinstance(s.train, keras.utils.PyDataset) and isinstance(s.val, keras.utils.PyDataset)
        assert len(s.train) == 15 and len(s.val) == 4  # ceil(1437 / 100), ceil(360 / 100)


@pytest.mark.backends
def test_numpy_batches_seeded_per_epoch():
    ArrayBatches = data._batch_classes()["ArrayBatches"]
    x = np.arange(50, dtype=np.uint8).reshape(50, 1)
    y = np.arange(50)

    def epochs(ds, n=3):
        return [np.concatenate([b[1] for b in ds]) for _ in range(n)]

    a, b = epochs(ArrayBatches(x, y, 8, seed=5, shuffle=True)), epochs(ArrayBatches(x, y, 8, seed=5, shuffle=True))
    for e in range(3):
        np.testing.assert_array_equal(a[e], b[e])  # same seed -> same order, epoch by epoch
        assert sorted(a[e].tolist()) == list(range(50))  # every example once per epoch
    assert not np.array_equal(a[0], a[1]) and not np.array_equal(a[1], a[2])  # reshuffled each epoch
    assert not np.array_equal(a[0], epochs(ArrayBatches(x, y, 8, seed=6, shuffle=True), 1)[0])
    ds = ArrayBatches(x, y, 8, seed=5, shuffle=True)
    xb, yb = ds[0]
    assert xb.dtype == np.float32 and yb.dtype == np.int32 and xb.shape == (8, 1) and len(ds) == 7
    np.testing.assert_array_equal(xb[:, 0], yb)
    assert len(ds[6][1]) == 2  # the last batch holds the rest
    with pytest.raises(IndexError):
        ds[7]
    ds.on_epoch_end()  # what Keras' fit calls after each epoch
    np.testing.assert_array_equal(np.concatenate([ds[i][1] for i in range(len(ds))]), a[1])
    val = ArrayBatches(x, y, 8, seed=5, shuffle=False)
    for _ in range(2):
        np.testing.assert_array_equal(np.concatenate([b[1] for b in val]), y)  # not shuffled


def test_numpy_image_ops_match_tensorflow():
    tf = pytest.importorskip("tensorflow")
    rng = np.random.default_rng(0)
    img = rng.uniform(0, 255, (37, 53, 3)).astype(np.float32)
    for size in ((64, 64), (20, 30), (37, 53), (5, 80)):
        np.testing.assert_allclose(data._resize_bilinear(img, *size), tf.image.resize(img, size).numpy(),
                                   rtol=1e-5, atol=1e-3)
    img[0, 0] = 0.0  # black: saturation has nothing to scale
    img[1, 1] = 77.0  # grey: s = 0 stays 0
    for factor in (0.8, 1.0, 1.2, 3.0):
        np.testing.assert_allclose(data._adjust_saturation(img, factor),
                                   tf.image.adjust_saturation(img, factor).numpy(), rtol=1e-4, atol=2e-3)


@pytest.mark.backends
def test_numpy_augmentation_is_seeded_and_in_range():
    rng_img = np.random.default_rng(1)
    img = rng_img.uniform(0, 255, (40, 52, 3)).astype(np.float32)
    a = data._augment(img, np.random.default_rng([0, 3, 0, 5]), 32, 37)
    b = data._augment(img, np.random.default_rng([0, 3, 0, 5]), 32, 37)
    c = data._augment(img, np.random.default_rng([0, 3, 1, 5]), 32, 37)
    assert a.shape == (32, 32, 3) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a.min() >= 0.0 and a.max() <= 255.0
