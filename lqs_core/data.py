"""Datasets for the lqs experiments: digits, MNIST, CIFAR-10 and Imagenette.

Two entry points:

* :func:`load_arrays` returns ``((x_train, y_train), (x_val, y_val))`` as numpy arrays (float32 raw pixel
  values, **no normalization**; int32 1-D labels). The validation split is the official test split for MNIST
  and CIFAR-10, as in the thesis.
* :func:`load` returns a :class:`Splits` with batched, prefetched ``tf.data`` pipelines; the training pipeline
  is shuffled with a seeded shuffle that reshuffles every epoch (same seed -> same batch order on the same
  machine). Imagenette is read from JPEG files and augmented for training (SPEC §4).

:func:`fetch` makes sure a dataset's files are present and verified and returns where they are (a workflow
rule can call it once so that later jobs never download).

Where the files come from (offline use)
---------------------------------------
``digits`` is scikit-learn's bundled ``load_digits`` (no download, 1 797 images of 8x8, values 0..16). Its
train/validation split is a fixed stratified 80/20 split with ``random_state=DIGITS_SPLIT_RANDOM_STATE`` (0),
independent of the training seed.

For ``mnist``, ``cifar10`` and ``imagenette`` the loader looks, in this order, in

1. the ``data_dir`` argument: a folder holding ``mnist.npz`` and/or ``cifar-10-batches-py/`` and/or
   ``imagenette2-160/{train,val}/<wnid>/*.JPEG`` (or ``imagenette2-160.tgz``). When ``data_dir`` is given,
   the files must be there (nothing is downloaded);
2. the environment variable ``LQS_DATA_DIR``: the same layout; several folders may be given separated by
   ``os.pathsep`` (``:`` on Linux). The project's offline copies work as is::

       export LQS_DATA_DIR=/path/to/shared/data/keras/datasets

   A dataset missing there falls through to 3;
3. the Keras cache ``$KERAS_HOME/datasets`` (``KERAS_HOME`` defaults to ``~/.keras``), where a missing file is
   downloaded with ``keras.utils.get_file`` from the official origin and checked against Keras' published file
   hash (same file names as ``keras.datasets``, so the cache is shared with Keras).

A file that already exists (in 1, 2 or the cache) is **never** handed to ``keras.utils.get_file``: Keras
deletes a cached file whose hash does not match when its re-download fails, and re-packed copies (such as
``shared/data``) have a different file hash. Instead, MNIST and CIFAR-10 copies are verified by their
**content** (SPEC §6): the sha256 over the decoded arrays (:func:`content_sha256`) must equal
:data:`CONTENT_SHA256`, so an identical but re-packed copy is accepted. The result of a successful check is
remembered in memory for the process, keyed by (path, inode, size, mtime) of every file, so repeated loads do
not hash again. Imagenette has no content hash; a downloaded or local ``imagenette2-160.tgz`` is checked
against its file sha256 (:data:`IMAGENETTE_FILE_SHA256`) before it is extracted into the Keras cache.

:func:`describe` returns these rules together with the folders that are currently configured.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import tarfile
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "DATASETS",
    "CONTENT_SHA256",
    "DIGITS_SPLIT_RANDOM_STATE",
    "DIGITS_VAL_FRACTION",
    "ENV_DATA_DIR",
    "DatasetNotFoundError",
    "Splits",
    "content_sha256",
    "describe",
    "fetch",
    "load",
    "load_arrays",
]

DATASETS = ("digits", "mnist", "cifar10", "imagenette")

#: Environment variable naming folder(s) with local copies of the dataset files.
ENV_DATA_DIR = "LQS_DATA_DIR"

#: random_state of the stratified digits train/validation split (independent of the training seed).
DIGITS_SPLIT_RANDOM_STATE = 0
#: Fraction of the digits images used for validation.
DIGITS_VAL_FRACTION = 0.2

#: sha256 over the decoded arrays (see :func:`content_sha256`), SPEC §6.
CONTENT_SHA256 = {
    "mnist": "06b0d1f124c4e5fa796686ade41a9b778edacc8622f2195a352ef479ad44fc16",
    "cifar10": "fd18b93bd15cbf8101362243553ef1c7de46bfdf746e7ee01936a3f94fac8d80",
}

MNIST_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz"
#: Keras' published sha256 of its mnist.npz (keras/src/datasets/mnist.py).
MNIST_FILE_SHA256 = "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
#: Keras' published sha256 of cifar-10-python.tar.gz (keras/src/datasets/cifar10.py).
CIFAR10_FILE_SHA256 = "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"
IMAGENETTE_URL = "https://s3.amazonaws.com/fast-ai-imageclas/imagenette2-160.tgz"
#: sha256 of fast.ai's imagenette2-160.tgz (99,003,388 bytes), as pinned by several public projects.
IMAGENETTE_FILE_SHA256 = "64d0c4859f35a461889e0147755a999a48b49bf38a7e0f9bd27003f10db02fe5"

_MNIST_FILE = "mnist.npz"
_MNIST_KEYS = ("x_train", "y_train", "x_test", "y_test")
_CIFAR_DIR = "cifar-10-batches-py"
# Keras 3 extracts the CIFAR tarball into datasets/<_CIFAR_KERAS_TARGET>/cifar-10-batches-py
# (tf.keras 2.x used datasets/cifar-10-batches-py directly; both are accepted in the cache).
_CIFAR_KERAS_TARGET = "cifar-10-batches-py-target"
_CIFAR_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch",)
_IMAGENETTE_DIR = "imagenette2-160"
_IMAGENETTE_TGZ = "imagenette2-160.tgz"
# get_file(fname="imagenette2-160.tgz", extract=True) extracts into datasets/imagenette2-160_extracted.
_IMAGENETTE_EXTRACTED = "imagenette2-160_extracted"
_IMAGENETTE_DONE = ".lqs_extracted"  # marker written after a complete extraction
_IMAGE_SUFFIXES = {".jpeg", ".jpg"}
_IMAGENETTE_SIZE = 224


class DatasetNotFoundError(FileNotFoundError):
    """The dataset's files are not available locally and could not be downloaded."""


@dataclass(frozen=True)
class Splits:
    """A dataset ready for ``model.fit(splits.train, validation_data=splits.val)``."""

    name: str
    train: object  # tf.data.Dataset of (x, y) batches, shuffled (seeded, reshuffled each epoch)
    val: object  # tf.data.Dataset of (x, y) batches, not shuffled
    input_shape: tuple
    num_classes: int
    n_train: int
    n_val: int
    class_names: tuple = ()


# --------------------------------------------------------------------------------------------------
# Content hashing and its per-process cache
# --------------------------------------------------------------------------------------------------


def content_sha256(*arrays) -> str:
    """sha256 over ``arrays`` in order, each as contiguous uint8 bytes (C order).

    MNIST: ``content_sha256(x_train, y_train, x_test, y_test)``. CIFAR-10: for data_batch_1..5 then test_batch,
    the batch's ``data`` array then its ``labels`` (as uint8). Arrays of another integer dtype are accepted when
    all values lie in 0..255 (so a re-packed copy with, e.g., int64 labels hashes the same).
    """
    h = hashlib.sha256()
    for a in arrays:
        a = np.asarray(a)
        if a.dtype != np.uint8:
            if a.size and (
                not np.issubdtype(a.dtype, np.number)
                or not np.all(np.isfinite(a))
                or a.min() < 0
                or a.max() > 255
                or not np.array_equal(a, np.round(a))
            ):
                raise ValueError(f"array of dtype {a.dtype} does not hold uint8 values (0..255 integers)")
            a = a.astype(np.uint8)
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


_VERIFIED: set = set()
_VERIFIED_LOCK = threading.Lock()


def _file_key(paths) -> tuple:
    key = []
    for p in paths:
        st = os.stat(p)
        key.append((str(Path(p).resolve()), st.st_ino, st.st_size, st.st_mtime_ns))
    return tuple(key)


def _is_verified(name: str, paths) -> bool:
    key = (name, CONTENT_SHA256[name], _file_key(paths))
    with _VERIFIED_LOCK:
        return key in _VERIFIED


def _check_content(name: str, paths, arrays, where: Path) -> None:
    """Raise ValueError unless the decoded arrays have the published content hash (cached per process)."""
    expected = CONTENT_SHA256[name]
    key = (name, expected, _file_key(paths))
    with _VERIFIED_LOCK:
        if key in _VERIFIED:
            return
    try:
        got = content_sha256(*arrays)
    except ValueError as e:
        got = f"<not computable: {e}>"
    if got != expected:
        raise ValueError(
            f"{_LABEL[name]} at {where} failed the content check: the sha256 content hash of its decoded "
            f"arrays is {got}, expected {expected}. The file is damaged or is not the original data.\n"
            + _how_to_get(name)
        )
    with _VERIFIED_LOCK:
        _VERIFIED.add(key)


# --------------------------------------------------------------------------------------------------
# Locating files
# --------------------------------------------------------------------------------------------------

_LABEL = {"mnist": "MNIST (mnist.npz)", "cifar10": "CIFAR-10 (cifar-10-batches-py/)",
          "imagenette": "Imagenette (imagenette2-160)"}


def _check_name(name) -> str:
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    return name


def _keras_base() -> Path:
    """The Keras cache root as Keras resolves it: $KERAS_HOME, else ~/.keras (or /tmp/.keras)."""
    home = os.environ.get("KERAS_HOME")
    if home:
        return Path(home).expanduser()
    base = Path("~").expanduser()
    if not os.access(base, os.W_OK):
        base = Path("/tmp")
    return base / ".keras"


def _tmp_keras_base() -> Path:
    import tempfile

    return Path("/tmp" if os.path.isdir("/tmp") else tempfile.gettempdir()) / ".keras"


def _cache_bases() -> list[Path]:
    """Cache roots to look in: the Keras root, then get_file's /tmp/.keras fallback."""
    out = [_keras_base()]
    if _tmp_keras_base() not in out:
        out.append(_tmp_keras_base())
    return out


def _download_base() -> Path:
    """Where keras.utils.get_file will write (it falls back to /tmp/.keras when the root is not writable)."""
    base = _keras_base()
    try:
        base.mkdir(parents=True, exist_ok=True)
    except OSError:
        pass
    if not os.access(base, os.W_OK):
        base = _tmp_keras_base()
    return base


def _local_dirs(data_dir):
    """(folders to search, where they came from); from the argument, else LQS_DATA_DIR, else none."""
    if data_dir is not None:
        return [Path(data_dir).expanduser()], "data_dir"
    env = os.environ.get(ENV_DATA_DIR, "")
    dirs = [Path(p).expanduser() for p in env.split(os.pathsep) if p.strip()]
    return dirs, (ENV_DATA_DIR if dirs else None)


def _how_to_get(name: str) -> str:
    cache = _keras_base() / "datasets"
    if name == "mnist":
        return (
            f"To fix: download {MNIST_URL} and save it as <folder>/mnist.npz, then pass data_dir=<folder> or set "
            f"{ENV_DATA_DIR}=<folder> (or put it in the Keras cache as {cache / _MNIST_FILE}). Any copy whose "
            f"decoded arrays have content sha256 {CONTENT_SHA256['mnist']} is accepted, e.g. the offline copy "
            f"in shared/data/keras/datasets."
        )
    if name == "cifar10":
        return (
            f"To fix: download {CIFAR10_URL}, extract it (tar xzf) so that <folder>/{_CIFAR_DIR}/data_batch_1 .. "
            f"data_batch_5 and test_batch exist, then pass data_dir=<folder> or set {ENV_DATA_DIR}=<folder> "
            f"(or put the folder in the Keras cache as {cache / _CIFAR_KERAS_TARGET / _CIFAR_DIR}). Any copy whose "
            f"decoded arrays have content sha256 {CONTENT_SHA256['cifar10']} is accepted, e.g. the offline copy "
            f"in shared/data/keras/datasets."
        )
    return (
        f"To fix: download {IMAGENETTE_URL} (about 94 MB) and put it, or its extracted folder "
        f"{_IMAGENETTE_DIR}/ (train/ and val/ with one folder of JPEGs per class), into <folder>, then pass "
        f"data_dir=<folder> or set {ENV_DATA_DIR}=<folder> (or let it download into {cache})."
    )


def _not_found(name: str, searched, cause=None) -> DatasetNotFoundError:
    msg = f"{_LABEL[name]} was not found"
    if cause is not None:
        msg += f" and could not be downloaded ({type(cause).__name__}: {cause})"
    msg += ".\nLooked in: " + (", ".join(str(s) for s in searched) or "-") + ".\n" + _how_to_get(name)
    return DatasetNotFoundError(msg)


def _get_file(name: str, searched, **kwargs) -> Path:
    """keras.utils.get_file into the Keras cache; any failure becomes a DatasetNotFoundError."""
    import keras

    base = _download_base()
    try:
        path = keras.utils.get_file(cache_dir=str(base), cache_subdir="datasets", **kwargs)
    except Exception as e:  # offline (URL fetch failure), hash mismatch after download, extraction error
        raise _not_found(name, searched, cause=e) from e
    return Path(path)


def _mnist_path(data_dir) -> Path:
    dirs, source = _local_dirs(data_dir)
    searched = [d / _MNIST_FILE for d in dirs]
    for p in searched:
        if p.is_file():
            return p
    if source == "data_dir":
        raise _not_found("mnist", searched)
    cached = [b / "datasets" / _MNIST_FILE for b in _cache_bases()]
    searched += cached
    for p in cached:
        if p.is_file():  # never hand an existing file to get_file (it may delete it)
            return p
    return _get_file("mnist", searched, fname=_MNIST_FILE, origin=MNIST_URL, file_hash=MNIST_FILE_SHA256)


def _cifar_complete(d: Path) -> bool:
    return all((d / b).is_file() for b in _CIFAR_BATCHES)


def _cifar_path(data_dir) -> Path:
    dirs, source = _local_dirs(data_dir)
    searched = [d / _CIFAR_DIR for d in dirs]
    for p in searched:
        if _cifar_complete(p):
            return p
    if source == "data_dir":
        raise _not_found("cifar10", searched)
    cached = []
    for b in _cache_bases():
        cached += [b / "datasets" / _CIFAR_KERAS_TARGET / _CIFAR_DIR, b / "datasets" / _CIFAR_DIR]
    searched += cached
    for p in cached:
        if _cifar_complete(p):
            return p
    target = _get_file("cifar10", searched, fname=_CIFAR_KERAS_TARGET, origin=CIFAR10_URL,
                       file_hash=CIFAR10_FILE_SHA256, extract=True)
    path = target / _CIFAR_DIR
    if not _cifar_complete(path):
        raise _not_found("cifar10", searched + [path])
    return path


def _imagenette_complete(root: Path) -> bool:
    return (root / "train").is_dir() and (root / "val").is_dir()


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _extract_local_tgz(tgz: Path) -> Path:
    """Verify a user's imagenette2-160.tgz and extract it into the Keras cache (the tgz is left untouched)."""
    got = _file_sha256(tgz)
    if got != IMAGENETTE_FILE_SHA256:
        raise ValueError(
            f"{tgz} failed the file check: its sha256 hash is {got}, expected {IMAGENETTE_FILE_SHA256}.\n"
            + _how_to_get("imagenette")
        )
    out = _download_base() / "datasets" / _IMAGENETTE_EXTRACTED
    out.mkdir(parents=True, exist_ok=True)
    with tarfile.open(tgz) as tf_:
        try:
            tf_.extractall(out, filter="data")
        except TypeError:  # Python without extraction filters
            tf_.extractall(out)
    (out / _IMAGENETTE_DONE).write_text(IMAGENETTE_FILE_SHA256 + "\n")
    return out / _IMAGENETTE_DIR


def _imagenette_path(data_dir) -> Path:
    dirs, source = _local_dirs(data_dir)
    searched = []
    for d in dirs:
        for root in (d / _IMAGENETTE_DIR, d):
            searched.append(root)
            if _imagenette_complete(root):
                return root
    cached = [b / "datasets" / _IMAGENETTE_EXTRACTED for b in _cache_bases()]

    def from_cache():
        for c in cached:
            if (c / _IMAGENETTE_DONE).is_file() and _imagenette_complete(c / _IMAGENETTE_DIR):
                return c / _IMAGENETTE_DIR
        return None

    for d in dirs:
        for tgz in (d / _IMAGENETTE_TGZ, d / _IMAGENETTE_DIR / _IMAGENETTE_TGZ):
            if tgz.is_file():
                # a verified extraction already in the cache came from the genuine archive: reuse it
                return from_cache() or _extract_local_tgz(tgz)
        searched.append(d / _IMAGENETTE_TGZ)
    if source == "data_dir":
        raise _not_found("imagenette", searched)
    searched += [c / _IMAGENETTE_DIR for c in cached]
    root = from_cache()
    if root is not None:
        return root
    extracted = _get_file("imagenette", searched, fname=_IMAGENETTE_TGZ, origin=IMAGENETTE_URL,
                          file_hash=IMAGENETTE_FILE_SHA256, extract=True)
    root = extracted / _IMAGENETTE_DIR
    if not _imagenette_complete(root):
        raise _not_found("imagenette", searched + [root])
    (extracted / _IMAGENETTE_DONE).write_text(IMAGENETTE_FILE_SHA256 + "\n")
    return root


# --------------------------------------------------------------------------------------------------
# Reading arrays (uint8, as stored)
# --------------------------------------------------------------------------------------------------


def _read_mnist(path: Path, verify: bool = True):
    if verify and _is_verified("mnist", [path]):
        verify = False
    try:
        with np.load(path, allow_pickle=False) as f:
            x_tr, y_tr, x_te, y_te = (np.asarray(f[k]) for k in _MNIST_KEYS)
    except Exception as e:
        raise ValueError(f"{path} is not a readable mnist.npz with keys {_MNIST_KEYS} ({e}).\n"
                         + _how_to_get("mnist")) from e
    if verify:
        _check_content("mnist", [path], (x_tr, y_tr, x_te, y_te), path)
    return (x_tr, y_tr), (x_te, y_te)


def _read_cifar_batch(path: Path):
    # CIFAR-10's python batches are pickles (the official format); only load copies you trust.
    with open(path, "rb") as f:
        d = pickle.load(f, encoding="bytes")
    get = lambda k: d[k.encode()] if k.encode() in d else d[k]  # noqa: E731 (bytes or str keys)
    return np.asarray(get("data")), np.asarray(get("labels"))


def _read_cifar(root: Path, verify: bool = True):
    files = [root / b for b in _CIFAR_BATCHES]
    if verify and _is_verified("cifar10", files):
        verify = False
    try:
        batches = [_read_cifar_batch(p) for p in files]
    except Exception as e:
        raise ValueError(f"{root} does not hold readable CIFAR-10 python batches ({e}).\n"
                         + _how_to_get("cifar10")) from e
    if verify:
        _check_content("cifar10", files, [a for batch in batches for a in batch], root)
    try:
        xs = [data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1) for data, _ in batches]
        ys = [labels.reshape(-1) for _, labels in batches]
    except ValueError as e:
        raise ValueError(f"{root}: unexpected CIFAR-10 array shapes ({e}).\n" + _how_to_get("cifar10")) from e
    return (np.concatenate(xs[:5]), np.concatenate(ys[:5])), (xs[5], ys[5])


def _read_digits():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x = x.reshape(-1, 8, 8, 1).astype(np.uint8)  # values 0..16, exact
    idx_tr, idx_va = train_test_split(
        np.arange(len(y)), test_size=DIGITS_VAL_FRACTION, stratify=y, random_state=DIGITS_SPLIT_RANDOM_STATE
    )
    idx_tr, idx_va = np.sort(idx_tr), np.sort(idx_va)
    return (x[idx_tr], y[idx_tr]), (x[idx_va], y[idx_va])


def _raw_arrays(name: str, data_dir):
    if name == "digits":
        return _read_digits()
    if name == "mnist":
        return _read_mnist(_mnist_path(data_dir))
    if name == "cifar10":
        return _read_cifar(_cifar_path(data_dir))
    raise ValueError(
        "imagenette is read from JPEG files and has no in-memory array form; use load('imagenette', ...)"
    )


# --------------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------------


def fetch(name: str, data_dir=None) -> Path:
    """Make sure the dataset's files are present (downloading into the Keras cache if needed) and verified.

    Returns the verified location: ``mnist.npz``, the ``cifar-10-batches-py`` folder, the ``imagenette2-160``
    folder (with ``train/`` and ``val/``), or, for ``digits``, scikit-learn's bundled data file.
    """
    name = _check_name(name)
    if name == "digits":
        import sklearn.datasets

        return Path(sklearn.datasets.__file__).parent / "data" / "digits.csv.gz"
    if name == "mnist":
        path = _mnist_path(data_dir)
        if not _is_verified("mnist", [path]):  # already verified in this process: no need to read again
            _read_mnist(path)
        return path
    if name == "cifar10":
        path = _cifar_path(data_dir)
        if not _is_verified("cifar10", [path / b for b in _CIFAR_BATCHES]):
            _read_cifar(path)
        return path
    path = _imagenette_path(data_dir)
    _imagenette_files(path)  # checks the layout
    return path


def load_arrays(name: str, data_dir=None):
    """``((x_train, y_train), (x_val, y_val))`` as numpy arrays.

    x: float32 raw pixel values, no normalization (digits 0..16, MNIST/CIFAR-10 0..255); digits (n, 8, 8, 1),
    mnist (n, 28, 28), cifar10 (n, 32, 32, 3). y: int32, 1-D. Validation is the official test split for MNIST
    and CIFAR-10 and a fixed stratified 20 % split for digits. Not available for imagenette (use :func:`load`).
    """
    name = _check_name(name)
    (x_tr, y_tr), (x_va, y_va) = _raw_arrays(name, data_dir)
    return (
        (x_tr.astype(np.float32), y_tr.astype(np.int32)),
        (x_va.astype(np.float32), y_va.astype(np.int32)),
    )


def _subset_index(n: int, max_n, seed: int, stream: int):
    """Indices of the first ``max_n`` items of a seeded permutation, or None when everything is kept."""
    if max_n is None:
        return None
    if isinstance(max_n, bool) or not isinstance(max_n, (int, np.integer)) or max_n < 1:
        raise ValueError(f"max_train / max_val must be a positive integer or None, got {max_n!r}")
    if max_n >= n:
        return None
    rng = np.random.default_rng(None if seed is None else [int(seed), stream])
    return rng.permutation(n)[: int(max_n)]


def _index_pipeline(n: int, seed, shuffle: bool):
    import tensorflow as tf

    ds = tf.data.Dataset.range(n)
    if shuffle:
        ds = ds.shuffle(n, seed=seed, reshuffle_each_iteration=True)
    return ds


def _array_dataset(x, y, batch_size: int, seed, shuffle: bool):
    import tensorflow as tf

    xt = tf.convert_to_tensor(x)  # uint8; cast per batch keeps memory at 1 byte / pixel
    yt = tf.convert_to_tensor(y.astype(np.int32))

    def take(i):
        return tf.cast(tf.gather(xt, i), tf.float32), tf.gather(yt, i)

    ds = _index_pipeline(len(y), seed, shuffle).batch(batch_size)
    return ds.map(take, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def _imagenette_files(root: Path):
    """(train_files, train_labels, val_files, val_labels, class_names); class index = sorted wnid order."""
    train, val = root / "train", root / "val"
    classes = sorted(p.name for p in train.iterdir() if p.is_dir()) if train.is_dir() else []
    if not classes:
        raise ValueError(f"{train} holds no class folders.\n" + _how_to_get("imagenette"))
    index = {c: i for i, c in enumerate(classes)}

    def listing(split: Path):
        files, labels = [], []
        if not split.is_dir():
            raise ValueError(f"{split} is missing.\n" + _how_to_get("imagenette"))
        for d in sorted(p for p in split.iterdir() if p.is_dir()):
            if d.name not in index:
                raise ValueError(f"{d}: class {d.name!r} is not among the training classes {classes}")
            imgs = sorted(p for p in d.iterdir() if p.is_file() and p.suffix.lower() in _IMAGE_SUFFIXES)
            files += [str(p) for p in imgs]
            labels += [index[d.name]] * len(imgs)
        if not files:
            raise ValueError(f"{split} holds no JPEG images.\n" + _how_to_get("imagenette"))
        return files, np.asarray(labels, dtype=np.int32)

    return (*listing(train), *listing(val), tuple(classes))


def _imagenette_pipelines(root: Path, batch_size, seed, max_train, max_val, augment, size):
    import tensorflow as tf

    f_tr, y_tr, f_va, y_va, classes = _imagenette_files(root)
    sel = _subset_index(len(f_tr), max_train, seed, 0)
    if sel is not None:
        f_tr, y_tr = [f_tr[i] for i in sel], y_tr[sel]
    sel = _subset_index(len(f_va), max_val, seed, 1)
    if sel is not None:
        f_va, y_va = [f_va[i] for i in sel], y_va[sel]
    big = int(round(size * 256 / 224))  # resize 256 -> crop 224, scaled with image_size

    def read(files, labels, i):
        raw = tf.io.read_file(tf.gather(files, i))
        img = tf.io.decode_image(raw, channels=3, expand_animations=False)  # JPEG (also tolerates PNG)
        return tf.cast(img, tf.float32), tf.gather(labels, i)

    def preprocess_val(files, labels):
        def fn(i):
            img, y = read(files, labels, i)
            return tf.image.resize(img, [size, size]), y

        return fn

    def preprocess_train(files, labels):
        # SPEC §4 / the thesis' augment_image, with stateless (seeded, order-independent) random ops.
        def fn(i, r):
            img, y = read(files, labels, i)
            s = tf.random.experimental.stateless_split(tf.stack([r, i]), num=4)
            img = tf.image.resize(img, [big, big])
            img = tf.image.stateless_random_crop(img, [size, size, 3], seed=s[0])
            img = tf.image.stateless_random_flip_left_right(img, seed=s[1])
            # +-0.2 added to raw 0..255 pixels, exactly as the thesis code (tf.image.random_brightness(0.2)).
            img = tf.image.stateless_random_brightness(img, 0.2, seed=s[2])
            img = tf.image.stateless_random_saturation(img, 0.8, 1.2, seed=s[3])
            return tf.clip_by_value(img, 0.0, 255.0), y

        return fn

    tr_files, tr_labels = tf.constant(f_tr), tf.constant(y_tr)
    va_files, va_labels = tf.constant(f_va), tf.constant(y_va)
    AUTOTUNE = tf.data.AUTOTUNE

    idx = _index_pipeline(len(f_tr), seed, shuffle=True)
    if augment:
        rnd = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
        train = tf.data.Dataset.zip((idx, rnd)).map(preprocess_train(tr_files, tr_labels),
                                                    num_parallel_calls=AUTOTUNE)
    else:
        train = idx.map(preprocess_val(tr_files, tr_labels), num_parallel_calls=AUTOTUNE)
    train = train.batch(batch_size).prefetch(AUTOTUNE)
    val = (
        tf.data.Dataset.range(len(f_va))
        .map(preprocess_val(va_files, va_labels), num_parallel_calls=AUTOTUNE)
        .batch(batch_size)
        .prefetch(AUTOTUNE)
    )
    return train, val, len(f_tr), len(f_va), classes


_INPUT_SHAPE = {"digits": (8, 8, 1), "mnist": (28, 28), "cifar10": (32, 32, 3)}
_CLASS_NAMES = {
    "digits": tuple(str(i) for i in range(10)),
    "mnist": tuple(str(i) for i in range(10)),
    "cifar10": ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
}


def load(
    name: str,
    batch_size: int = 32,
    seed: int = 42,
    data_dir=None,
    max_train=None,
    max_val=None,
    augment=None,
    image_size=None,
) -> Splits:
    """Batched tf.data pipelines for ``name`` (see the module docstring for where files come from).

    ``train`` is shuffled with ``seed`` (reshuffled each epoch; same seed -> same batch order on the same
    machine and TensorFlow global-seed state), ``val`` is not shuffled; both yield float32 raw pixels and
    int32 labels and are prefetched. ``max_train`` / ``max_val`` keep the first N examples of a permutation
    seeded with ``seed`` (quick profiles). ``augment=None`` uses the dataset default: only Imagenette augments
    (resize 256 -> random crop 224 -> random horizontal flip -> brightness +-0.2 -> saturation 0.8-1.2 ->
    clip 0..255; validation: resize 224). ``image_size`` (Imagenette only) replaces 224, the resize before
    the crop becomes ``round(image_size * 8 / 7)``.
    """
    name = _check_name(name)
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if name == "imagenette":
        size = _IMAGENETTE_SIZE if image_size is None else int(image_size)
        if size < 1:
            raise ValueError(f"image_size must be positive, got {image_size!r}")
        root = _imagenette_path(data_dir)
        train, val, n_tr, n_va, classes = _imagenette_pipelines(
            root, int(batch_size), seed, max_train, max_val, True if augment is None else bool(augment), size
        )
        return Splits(name, train, val, (size, size, 3), len(classes), n_tr, n_va, classes)
    if image_size is not None:
        raise ValueError(f"image_size applies to imagenette only, not to {name!r}")
    if augment:
        raise ValueError(f"no augmentation is defined for {name!r} (only imagenette augments)")
    (x_tr, y_tr), (x_va, y_va) = _raw_arrays(name, data_dir)
    sel = _subset_index(len(y_tr), max_train, seed, 0)
    if sel is not None:
        x_tr, y_tr = x_tr[sel], y_tr[sel]
    sel = _subset_index(len(y_va), max_val, seed, 1)
    if sel is not None:
        x_va, y_va = x_va[sel], y_va[sel]
    train = _array_dataset(x_tr, y_tr, int(batch_size), seed, shuffle=True)
    val = _array_dataset(x_va, y_va, int(batch_size), seed, shuffle=False)
    return Splits(name, train, val, _INPUT_SHAPE[name], 10, len(y_tr), len(y_va), _CLASS_NAMES[name])


def describe() -> str:
    """How the loader finds data files, with the folders currently configured (``print(describe())``)."""
    dirs, _ = _local_dirs(None)
    lines = [
        "lqs datasets: " + ", ".join(DATASETS),
        "  digits: scikit-learn's bundled load_digits (no download); stratified 80/20 split, "
        f"random_state={DIGITS_SPLIT_RANDOM_STATE}.",
        "  mnist, cifar10, imagenette are looked up in: 1) load(..., data_dir=...), "
        f"2) ${ENV_DATA_DIR} (folders separated by '{os.pathsep}'), 3) the Keras cache $KERAS_HOME/datasets "
        "(downloaded there with keras.utils.get_file when missing).",
        "  Expected layout of a data folder: mnist.npz, cifar-10-batches-py/{data_batch_1..5,test_batch}, "
        "imagenette2-160/{train,val}/<wnid>/*.JPEG (or imagenette2-160.tgz).",
        f"  Offline: export {ENV_DATA_DIR}=/path/to/shared/data/keras/datasets (verified by content sha256, "
        "so re-packed copies are accepted; local files are never passed to get_file or deleted).",
        f"  {ENV_DATA_DIR} now: " + (os.pathsep.join(str(d) for d in dirs) if dirs else "(not set)"),
        f"  Keras cache now: {_keras_base() / 'datasets'}",
        f"  Sources: {MNIST_URL} ; {CIFAR10_URL} ; {IMAGENETTE_URL}",
    ]
    return "\n".join(lines)
