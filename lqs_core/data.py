"""Datasets for the lqs experiments: digits, MNIST, CIFAR-10 and Imagenette.

Two entry points:

* :func:`load_arrays` returns ``((x_train, y_train), (x_val, y_val))`` as numpy arrays (float32 raw pixel
  values, **no normalization**; int32 1-D labels). The validation split is the official test split for MNIST
  and CIFAR-10, as in the thesis.
* :func:`load` returns a :class:`Splits` ready for ``model.fit``: on the TensorFlow backend batched, prefetched
  ``tf.data`` pipelines, on JAX and PyTorch :class:`keras.utils.PyDataset` objects that yield NumPy batches
  (no TensorFlow needed). The training data is shuffled with a seeded shuffle that reshuffles every epoch (same
  seed -> same batch order on the same machine; the NumPy order is not tf.data's). Imagenette is read from JPEG
  files and augmented for training (docs/method.md §4; in NumPy on JAX/PyTorch, decoded with Pillow).

:func:`fetch` makes sure a dataset's files are present and verified and returns where they are (a workflow
rule can call it once so that later jobs never download). Every argument is checked before any file is read;
a bad one raises ``ValueError`` naming the value and what is allowed.

The manifest
------------
Sources, file names, checksums and array shapes of every dataset are in the manifest ``lqs_core/datasets.json``
(:data:`MANIFEST`; shipped inside the package, ``data/manifest.json`` in a checkout is a symlink to it, and
``data/README.md`` describes it). The checksum constants below are read from it.

Where the files come from (offline use)
---------------------------------------
``digits`` is scikit-learn's bundled ``load_digits`` (no download, 1 797 images of 8x8, values 0..16). Its
train/validation split is a fixed stratified 80/20 split with ``random_state=DIGITS_SPLIT_RANDOM_STATE`` (0),
independent of the training seed.

For ``mnist``, ``cifar10`` and ``imagenette`` the loader looks, in this order, in

1. the ``data_dir`` argument: a folder holding ``mnist.npz`` and/or ``cifar-10-batches-py/`` and/or
   ``imagenette2-160/{train,val}/<wnid>/*.JPEG`` (or ``imagenette2-160.tgz``). When ``data_dir`` is given,
   the files must be there (nothing is downloaded, and 2-4 are not consulted);
2. the environment variable ``LQS_DATA_DIR``: the same layout; several folders may be given separated by
   ``os.pathsep`` (``:`` on Linux). The project's offline copies work as is::

       export LQS_DATA_DIR=/path/to/shared/data/keras/datasets

   A dataset missing there falls through to 3;
3. the ``data/`` folder of a source checkout (:data:`CHECKOUT_DATA_DIR`; ``None`` for an installed package):
   the same layout, for files a user put there by hand (git ignores them);
4. the Keras cache ``$KERAS_HOME/datasets`` (``KERAS_HOME`` defaults to ``~/.keras``), where a missing file is
   downloaded with ``keras.utils.get_file`` from the official origin and checked against Keras' published file
   hash (same file names as ``keras.datasets``, so the cache is shared with Keras). Downloads always go here,
   also from a checkout: the cache is shared by every clone and by Keras, and survives ``git clean``.

A file that already exists (in 1, 2, 3 or the cache) is **never** handed to ``keras.utils.get_file``: Keras
deletes a cached file whose hash does not match when its re-download fails, and re-packed copies (such as
``shared/data``) have a different file hash. Instead, MNIST and CIFAR-10 files are verified by lqs:

* nothing from a data file is ever executed: ``mnist.npz`` is read member by member with
  ``numpy.lib.format.read_array(..., allow_pickle=False)`` and CIFAR-10's pickled batches with a restricted
  unpickler that only admits the numpy globals a genuine batch needs (:data:`CIFAR_PICKLE_GLOBALS`) and refuses
  anything else before it runs (:class:`UnsafeDataFileError`, a ``ValueError`` naming the file and the refused
  global);
* nothing is allocated before its size is checked: each ``.npy`` header of ``mnist.npz`` must declare a numeric
  dtype and the manifest's shape with at most its rows, and the zip member must hold exactly that many bytes; a
  CIFAR-10 batch's arrays are built from their pickled state only when its bytes are what the (numeric) dtype and
  shape need, and its labels must be a flat list of at most 10 000 integers in 0..9 (``ValueError`` naming the
  file, the array and what is allowed);
* each file's bytes are read once and hashed before they are parsed: a file whose sha256 (for the official
  CIFAR-10 batches: md5, the only published checksum) is listed as known in the manifest is accepted;
* otherwise (for example a re-packed copy) the decoded arrays must have the dataset's **content** hash
  (data/README.md): the sha256 over the decoded arrays (:func:`content_sha256`) must equal :data:`CONTENT_SHA256`.

The result of a successful check is remembered in memory for the process, keyed by (path, inode, size, mtime)
of every file, so repeated loads do not hash again. Imagenette has no content hash; a downloaded or local
``imagenette2-160.tgz`` is checked against its file sha256 (:data:`IMAGENETTE_FILE_SHA256`) before it is
extracted into the Keras cache.

:func:`describe` returns these rules together with the folders that are currently configured.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import pickle
import tarfile
import threading
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "DATASETS",
    "CHECKOUT_DATA_DIR",
    "CIFAR_PICKLE_GLOBALS",
    "CONTENT_SHA256",
    "DIGITS_SPLIT_RANDOM_STATE",
    "DIGITS_VAL_FRACTION",
    "ENV_DATA_DIR",
    "MANIFEST",
    "DatasetNotFoundError",
    "Splits",
    "UnsafeDataFileError",
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

_MANIFEST_FILE = "datasets.json"


def _load_manifest() -> dict:
    """The dataset manifest ``lqs_core/datasets.json``, read as package data (works for any kind of install)."""
    from importlib import resources

    try:
        text = resources.files(__package__ or "lqs_core").joinpath(_MANIFEST_FILE).read_text(encoding="utf-8")
        manifest = json.loads(text)
    except (OSError, ValueError) as e:
        raise ImportError(
            f"lqs_core/{_MANIFEST_FILE}, the dataset manifest with the checksums, is missing or unreadable in "
            f"this installation of lqs ({type(e).__name__}: {e}); reinstall lqs."
        ) from e
    missing = [n for n in DATASETS if n not in manifest.get("datasets", {})]
    if missing:
        raise ImportError(f"lqs_core/{_MANIFEST_FILE} lacks the dataset(s) {missing}; reinstall lqs.")
    return manifest


#: The parsed manifest ``lqs_core/datasets.json`` (sources, files, checksums, shapes of every dataset).
MANIFEST = _load_manifest()
_DS = MANIFEST["datasets"]

#: sha256 over the decoded arrays (see :func:`content_sha256`), data/README.md.
CONTENT_SHA256 = {name: _DS[name]["content_sha256"] for name in ("mnist", "cifar10")}

MNIST_URL = _DS["mnist"]["download"]["url"]
#: Keras' published sha256 of its mnist.npz (keras/src/datasets/mnist.py).
MNIST_FILE_SHA256 = _DS["mnist"]["download"]["sha256"]
CIFAR10_URL = _DS["cifar10"]["download"]["url"]
#: Keras' published sha256 of cifar-10-python.tar.gz (keras/src/datasets/cifar10.py).
CIFAR10_FILE_SHA256 = _DS["cifar10"]["download"]["sha256"]
IMAGENETTE_URL = _DS["imagenette"]["download"]["url"]
#: sha256 of fast.ai's imagenette2-160.tgz (99,003,388 bytes), as pinned by several public projects.
IMAGENETTE_FILE_SHA256 = _DS["imagenette"]["download"]["sha256"]

_MNIST_FILE = _DS["mnist"]["download"]["file"]
_MNIST_KEYS = tuple(_DS["mnist"]["files"][_MNIST_FILE]["arrays"])
_CIFAR_DIR = _DS["cifar10"]["folder"]
# Keras 3 extracts the CIFAR tarball into datasets/<_CIFAR_KERAS_TARGET>/cifar-10-batches-py
# (tf.keras 2.x used datasets/cifar-10-batches-py directly; both are accepted in the cache).
_CIFAR_KERAS_TARGET = "cifar-10-batches-py-target"
_CIFAR_TRAIN = tuple(f for f, e in _DS["cifar10"]["files"].items() if e["split"] == "train")
_CIFAR_BATCHES = _CIFAR_TRAIN + tuple(f for f, e in _DS["cifar10"]["files"].items() if e["split"] == "test")
_IMAGENETTE_DIR = _DS["imagenette"]["folder"]
_IMAGENETTE_TGZ = _DS["imagenette"]["download"]["file"]
# get_file(fname="imagenette2-160.tgz", extract=True) extracts into datasets/imagenette2-160_extracted.
_IMAGENETTE_EXTRACTED = "imagenette2-160_extracted"
_IMAGENETTE_DONE = ".lqs_extracted"  # marker written after a complete extraction
_IMAGE_SUFFIXES = {".jpeg", ".jpg"}
_IMAGENETTE_SIZE = 224


def _find_checkout_data_dir():
    """``<checkout>/data`` when lqs_core is imported from a source checkout (not from an installed package)."""
    root = Path(__file__).resolve().parent.parent
    folder = root / "data"
    if (root / "pyproject.toml").is_file() and (folder / "README.md").is_file():
        return folder
    return None


#: The ``data/`` folder of the source checkout lqs_core runs from (searched after LQS_DATA_DIR), else None.
CHECKOUT_DATA_DIR = _find_checkout_data_dir()


class DatasetNotFoundError(FileNotFoundError):
    """The dataset's files are not available locally and could not be downloaded."""


@dataclass(frozen=True)
class Splits:
    """A dataset ready for ``model.fit(splits.train, validation_data=splits.val)``.

    ``train`` / ``val``: ``tf.data.Dataset`` objects on the TensorFlow backend, :class:`keras.utils.PyDataset`
    objects yielding NumPy batches on JAX and PyTorch; iterating over either gives ``(x, y)`` batches (float32 raw
    pixels, int32 labels), and every complete iteration over ``train`` is one epoch in a new seeded order."""

    name: str
    train: object  # (x, y) batches, shuffled (seeded, reshuffled each epoch)
    val: object  # (x, y) batches, not shuffled
    input_shape: tuple
    num_classes: int
    n_train: int
    n_val: int
    class_names: tuple = ()


# --------------------------------------------------------------------------------------------------
# Argument checks (before any file is read)
# --------------------------------------------------------------------------------------------------


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _check_name(name) -> str:
    if not isinstance(name, str) or name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    return name


def _check_data_dir(data_dir):
    if data_dir is None:
        return None
    if not isinstance(data_dir, (str, os.PathLike)) or not str(os.fspath(data_dir)).strip():
        raise ValueError(f"data_dir must be a folder path (str or os.PathLike) or None, got {data_dir!r}.")
    return data_dir


def _check_seed(seed):
    if seed is not None and (not _is_int(seed) or not 0 <= seed < 2**63):
        raise ValueError(f"seed must be an integer >= 0 (or None: unseeded), got {seed!r}.")
    return seed


def _check_count(arg: str, value, allow_none: bool = True):
    if value is None and allow_none:
        return None
    if not _is_int(value) or value < 1:
        extra = " or None (all)" if allow_none else ""
        raise ValueError(f"{arg} must be an integer >= 1{extra}, got {value!r}.")
    return value


def _check_augment(augment):
    if augment is not None and not isinstance(augment, (bool, np.bool_)):
        raise ValueError(f"augment must be True, False or None (the dataset's default), got {augment!r}.")
    return augment


def _check_image_size(image_size):
    if image_size is None:
        return None
    if isinstance(image_size, float) and image_size.is_integer():
        image_size = int(image_size)
    if not _is_int(image_size) or image_size < 1:
        raise ValueError(f"image_size must be an integer >= 1 (pixels) or None (224), got {image_size!r}.")
    return int(image_size)


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


def _mark_verified(name: str, paths) -> None:
    with _VERIFIED_LOCK:
        _VERIFIED.add((name, CONTENT_SHA256[name], _file_key(paths)))


def _check_content(name: str, paths, arrays, where: Path) -> None:
    """Raise ValueError unless the decoded arrays have the published content hash (cached per process)."""
    expected = CONTENT_SHA256[name]
    if _is_verified(name, paths):
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
    _mark_verified(name, paths)


def _read_checked(name: str, path: Path) -> tuple[bytes, bool]:
    """``(bytes, known)``: the file's bytes, read once, and whether its checksum is listed in the manifest.

    The bytes are hashed before anything parses them, and parsing uses these same bytes (no second read).
    """
    raw = path.read_bytes()
    known = _DS[name]["files"].get(path.name, {}).get("known", [])
    sha256 = hashlib.sha256(raw).hexdigest()
    if any(k.get("sha256") == sha256 for k in known):
        return raw, True
    md5s = {k["md5"] for k in known if "md5" in k}
    if md5s:
        # The official CIFAR-10 batches are published with md5 only; a second preimage of a fixed md5 is not
        # feasible, so a match identifies the original file.
        try:
            md5 = hashlib.md5(raw, usedforsecurity=False).hexdigest()
        except ValueError:  # md5 unavailable (FIPS mode): fall back to the content check
            md5 = None
        if md5 in md5s:
            return raw, True
    return raw, False


# --------------------------------------------------------------------------------------------------
# Locating files
# --------------------------------------------------------------------------------------------------

_LABEL = {"mnist": "MNIST (mnist.npz)", "cifar10": "CIFAR-10 (cifar-10-batches-py/)",
          "imagenette": "Imagenette (imagenette2-160)"}


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
    """(folders to search, where they came from): the argument alone, else LQS_DATA_DIR then the checkout's data/."""
    if data_dir is not None:
        return [Path(data_dir).expanduser()], "data_dir"
    env = os.environ.get(ENV_DATA_DIR, "")
    dirs = [Path(p).expanduser() for p in env.split(os.pathsep) if p.strip()]
    source = ENV_DATA_DIR if dirs else None
    if CHECKOUT_DATA_DIR is not None and CHECKOUT_DATA_DIR not in dirs:
        dirs.append(CHECKOUT_DATA_DIR)
        source = source or "checkout"
    return dirs, source


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


def _not_found(name: str, searched, cause=None, notes=()) -> DatasetNotFoundError:
    msg = f"{_LABEL[name]} was not found"
    if cause is not None:
        msg += f" and could not be downloaded ({type(cause).__name__}: {cause})"
    msg += "."
    for note in notes:
        msg += "\n" + note
    looked = [f"{s} (folder does not exist)" if not Path(s).parent.exists() else str(s) for s in searched]
    msg += "\nLooked in: " + (", ".join(looked) or "-") + ".\n" + _how_to_get(name)
    return DatasetNotFoundError(msg)


def _get_file(name: str, searched, notes=(), **kwargs) -> Path:
    """keras.utils.get_file into the Keras cache; any failure becomes a DatasetNotFoundError."""
    import keras

    base = _download_base()
    try:
        path = keras.utils.get_file(cache_dir=str(base), cache_subdir="datasets", **kwargs)
    except Exception as e:  # offline (URL fetch failure), hash mismatch after download, extraction error
        raise _not_found(name, searched, cause=e, notes=notes) from e
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


def _cifar_problem(d: Path):
    """Why the folder ``d`` (which should be a cifar-10-batches-py folder) cannot be used, or None if unused."""
    if d.is_dir():
        missing = [str(d / b) for b in _CIFAR_BATCHES if not (d / b).is_file()]
        return (
            f"{d} is incomplete: missing {', '.join(missing)}. A CIFAR-10 folder must contain "
            f"{', '.join(_CIFAR_BATCHES)} (the python version: {CIFAR10_URL} extracted)."
        )
    parent = d.parent
    if (parent / _CIFAR_BATCHES[0]).is_file():
        return (
            f"{parent} looks like a {_CIFAR_DIR} folder itself: name its parent folder instead (the files are "
            f"expected in <folder>/{_CIFAR_DIR}/)."
        )
    return None


def _cifar_path(data_dir) -> Path:
    dirs, source = _local_dirs(data_dir)
    searched = [d / _CIFAR_DIR for d in dirs]
    notes = []
    for p in searched:
        if _cifar_complete(p):
            return p
        problem = _cifar_problem(p)
        if problem:
            notes.append(problem)
            if source != "data_dir":
                warnings.warn(problem + " Looking further.", stacklevel=3)
    if source == "data_dir":
        raise _not_found("cifar10", searched, notes=notes)
    cached = []
    for b in _cache_bases():
        cached += [b / "datasets" / _CIFAR_KERAS_TARGET / _CIFAR_DIR, b / "datasets" / _CIFAR_DIR]
    searched += cached
    for p in cached:
        if _cifar_complete(p):
            return p
    target = _get_file("cifar10", searched, notes=notes, fname=_CIFAR_KERAS_TARGET, origin=CIFAR10_URL,
                       file_hash=CIFAR10_FILE_SHA256, extract=True)
    path = target / _CIFAR_DIR
    if not _cifar_complete(path):
        raise _not_found("cifar10", searched + [path], notes=notes + [_cifar_problem(path) or ""])
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
# Reading arrays (uint8, as stored); nothing from a file is executed
# --------------------------------------------------------------------------------------------------


def _numpy_reconstruct():
    try:
        from numpy._core.multiarray import _reconstruct  # numpy >= 2
    except ImportError:  # pragma: no cover (numpy 1.x)
        from numpy.core.multiarray import _reconstruct
    return _reconstruct


#: The only globals a CIFAR-10 python batch may name (the numpy array reconstruction of its ``data``; the numpy
#: 1.x and 2.x module names of the same function). The restricted unpickler refuses any other global, and hands
#: the batch's pickle stand-ins (:class:`_PickledDtype`, :class:`_PickledArray`) instead of numpy's own functions,
#: so that numpy never sees an unchecked array or dtype state (an object dtype of a huge shape, flags that crash it).
CIFAR_PICKLE_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct(),
    ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct(),
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}

#: Rows of a CIFAR-10 batch (images and labels; the manifest's shapes), its image bytes and its classes.
_CIFAR_ROWS = max(e["arrays"]["labels"]["shape"][0] for e in _DS["cifar10"]["files"].values())
_CIFAR_IMAGE_BYTES = 3 * 32 * 32
_CIFAR_CLASSES = 10


class UnsafeDataFileError(ValueError):
    """A data file asked for code to be run (a pickle global outside :data:`CIFAR_PICKLE_GLOBALS`); refused."""


def _text(value) -> str:
    """A pickled str (bytes from a Python 2 pickle read with ``encoding="bytes"``) as str."""
    return value.decode("ascii") if isinstance(value, bytes) else value


class _PickledDtype:
    """What a batch's ``numpy.dtype(code, align, copy)`` call makes: a plain numeric dtype (no objects, fields or
    sub-arrays), checked with its pickled state before numpy builds it."""

    def __init__(self, path: Path, code=None, *flags):
        self._path = path
        try:
            self.dtype = np.dtype(_text(code))
        except (TypeError, ValueError, UnicodeDecodeError):
            raise ValueError(f"{path}: its pickle names the dtype {code!r}; a CIFAR-10 batch holds numeric arrays "
                             "(uint8) only.") from None
        if self.dtype.kind not in "biuf" or self.dtype.fields is not None or self.dtype.subdtype is not None:
            raise ValueError(f"{path}: its pickle names the dtype {self.dtype}; a CIFAR-10 batch holds numeric "
                             "arrays (uint8) only.")

    def __setstate__(self, state):
        """A plain dtype's state: ``([version,] byteorder, None, None, None[, -1, -1, 0])``."""
        state = tuple(state) if isinstance(state, tuple) else (state,)
        rest = state[1:] if state and isinstance(state[0], int) else state
        order = _text(rest[0]) if rest and isinstance(rest[0], (str, bytes)) else None
        if order not in ("<", ">", "|", "=") or any(v not in (None, -1, 0) for v in rest[1:]):
            raise ValueError(f"{self._path}: its pickle gives the dtype {self.dtype} the state {state!r:.200}; only "
                             "a plain numeric dtype's state (byte order, no fields or flags) is allowed.")
        if order in "<>":
            self.dtype = self.dtype.newbyteorder(order)


class _NdarrayName:
    """What ``numpy.ndarray`` in a batch's pickle stands for: a name :class:`_PickledArray` accepts (calling it, which
    would allocate any shape, is impossible)."""


_NDARRAY = _NdarrayName()


class _PickledArray:
    """What a batch's ``_reconstruct(ndarray, ...)`` call makes: the array is built from its pickled state (shape,
    :class:`_PickledDtype`, order, raw bytes) only when the bytes are exactly what the shape and dtype need."""

    def __init__(self, path: Path, cls=None, *args):
        self._path = path
        self.array = None
        if cls is not _NDARRAY:
            raise ValueError(f"{path}: its pickle reconstructs a {type(cls).__name__}; only numpy.ndarray is "
                             "allowed.")

    def __setstate__(self, state):
        """``([version,] shape, dtype, fortran_order, raw bytes)``."""
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise ValueError(f"{self._path}: its pickle gives an array the state {state!r:.200}; expected "
                             "([version,] shape, dtype, fortran order, bytes).")
        shape, dtype, fortran, raw = state[-4:]
        if not isinstance(dtype, _PickledDtype) or not isinstance(raw, bytes) or not isinstance(shape, tuple) \
                or len(shape) > 32 or not all(isinstance(d, int) and d >= 0 for d in shape):
            raise ValueError(f"{self._path}: its pickle gives an array a malformed state (shape {shape!r:.100}, "
                             f"dtype {type(dtype).__name__}, data {type(raw).__name__}); expected a shape of "
                             "integers >= 0, a numeric dtype and the raw bytes.")
        need = math.prod(shape) * dtype.dtype.itemsize
        if len(raw) != need:
            raise ValueError(f"{self._path}: a pickled array of shape {shape} and dtype {dtype.dtype} has "
                             f"{len(raw)} bytes of data; it needs {need}.")
        flat = np.frombuffer(raw, dtype=dtype.dtype)
        self.array = flat.reshape(shape, order="F" if fortran else "C").copy(order="F" if fortran else "C")


class _BatchUnpickler(pickle.Unpickler):
    """Unpickler for CIFAR-10 batches: only the numpy globals of :data:`CIFAR_PICKLE_GLOBALS` can be named, and
    they are answered by the checked stand-ins :class:`_PickledArray` and :class:`_PickledDtype`."""

    def __init__(self, raw: bytes, path: Path):
        super().__init__(io.BytesIO(raw), encoding="bytes")  # bytes keys, as keras.datasets.cifar reads them
        self._path = path

    def find_class(self, module, name):
        found = CIFAR_PICKLE_GLOBALS.get((module, name))
        if found is None:
            allowed = ", ".join(f"{m}.{n}" for m, n in CIFAR_PICKLE_GLOBALS)
            raise UnsafeDataFileError(
                f"{self._path} was refused: it is not a genuine CIFAR-10 python batch, its pickle asks for the "
                f"global {module}.{name}, and only {allowed} are allowed. Nothing from the file was run; "
                f"replace it with the original files.\n" + _how_to_get("cifar10")
            )
        if name == "dtype":
            return lambda *args: _PickledDtype(self._path, *args)
        if name == "ndarray":
            return _NDARRAY  # only ever the first argument of _reconstruct; not callable
        return lambda *args: _PickledArray(self._path, *args)

    def persistent_load(self, pid):
        raise UnsafeDataFileError(f"{self._path} was refused: its pickle uses persistent ids, which a CIFAR-10 "
                                  "batch never does. Nothing from the file was run.")


def _npy_header(member, key: str):
    """``(shape, fortran_order, dtype)`` from the header of an ``.npy`` member, its data not read."""
    version = np.lib.format.read_magic(member)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(member)
    if version == (2, 0):
        return np.lib.format.read_array_header_2_0(member)
    raise ValueError(f"array {key!r}: .npy format version {version[0]}.{version[1]}; allowed: 1.0, 2.0.")


def _check_npy(member, info: zipfile.ZipInfo, key: str, expected) -> None:
    """An ``.npy`` member's header against the manifest before its data is read: a numeric dtype, the manifest's
    shape with at most its rows (``(n, *rest)``, ``n <= rows``), and the member's size equal to header + data."""
    shape, _, dtype = _npy_header(member, key)
    rows, rest = expected[0], tuple(expected[1:])
    if dtype.kind not in "biuf" or dtype.fields is not None or dtype.subdtype is not None:
        raise ValueError(f"array {key!r} has dtype {dtype}; allowed: a numeric dtype (uint8 as published).")
    if len(shape) != len(expected) or tuple(shape[1:]) != rest or shape[0] > rows:
        raise ValueError(f"array {key!r} declares shape {shape}; allowed: (n, {', '.join(map(str, rest))}) with "
                         f"n <= {rows}.".replace(", )", ")"))
    need = member.tell() + math.prod(shape) * dtype.itemsize
    if info.file_size != need:
        raise ValueError(f"array {key!r} ({info.filename}) holds {info.file_size} bytes, its header (shape {shape}, "
                         f"dtype {dtype}) needs {need}.")


def _read_npz(raw: bytes, arrays: dict):
    """The arrays of an ``.npz`` file's bytes that the manifest entry ``arrays`` names (``{key: {"shape"}}``; members
    ``<key>.npy``), each checked by :func:`_check_npy` before it is read (``numpy.lib.format.read_array``, no
    pickles)."""
    out = []
    with zipfile.ZipFile(io.BytesIO(raw)) as archive:
        for key, spec in arrays.items():
            try:
                info = archive.getinfo(key + ".npy")
            except KeyError:
                raise ValueError(f"no array {key!r} ({key}.npy); it has {archive.namelist()[:10]}.") from None
            with archive.open(info) as member:
                _check_npy(member, info, key, spec["shape"])
            with archive.open(info) as member:
                out.append(np.asarray(np.lib.format.read_array(member, allow_pickle=False)))
    return out


def _read_mnist(path: Path, verify: bool = True):
    if verify and _is_verified("mnist", [path]):
        verify = False
    raw, known = _read_checked("mnist", path) if verify else (path.read_bytes(), False)
    try:
        x_tr, y_tr, x_te, y_te = _read_npz(raw, _DS["mnist"]["files"][_MNIST_FILE]["arrays"])
    except Exception as e:
        raise ValueError(f"{path} is not a readable mnist.npz with keys {_MNIST_KEYS} ({e}).\n"
                         + _how_to_get("mnist")) from e
    if verify:
        if known:
            _mark_verified("mnist", [path])
        else:
            _check_content("mnist", [path], (x_tr, y_tr, x_te, y_te), path)
    return (x_tr, y_tr), (x_te, y_te)


def _entry(d: dict, key: str):
    """``d[key]`` under a bytes or str key (Python 2 or 3 pickles); ``KeyError`` when neither is there."""
    for k in (key.encode(), key):
        if k in d:
            return d[k]
    raise KeyError(key)


def _cifar_labels(labels, path: Path) -> np.ndarray:
    """A batch's labels: a flat list (or 1-D integer array) of at most :data:`_CIFAR_ROWS` ints in 0..9, checked
    element by element before numpy sees them."""
    if isinstance(labels, _PickledArray) and labels.array is not None:
        labels = labels.array
        ok = labels.ndim == 1 and labels.dtype.kind in "iu" and labels.size <= _CIFAR_ROWS and (
            labels.size == 0 or (int(labels.min()) >= 0 and int(labels.max()) < _CIFAR_CLASSES))
    else:
        ok = isinstance(labels, list) and len(labels) <= _CIFAR_ROWS and all(
            type(v) is int and 0 <= v < _CIFAR_CLASSES for v in labels)
    if not ok:
        raise ValueError(f"{path} is not a CIFAR-10 python batch: its 'labels' must be a flat list of at most "
                         f"{_CIFAR_ROWS} integers in 0..{_CIFAR_CLASSES - 1}, got a {type(labels).__name__}"
                         f"{f' of {len(labels)} items' if isinstance(labels, (list, np.ndarray)) else ''}.\n"
                         + _how_to_get("cifar10"))
    return np.asarray(labels)


def _cifar_data(data, n: int, path: Path) -> np.ndarray:
    """A batch's images: a numeric array of ``n · 3072`` values (``n`` = the number of labels)."""
    array = data.array if isinstance(data, _PickledArray) else None
    if array is None or array.size != n * _CIFAR_IMAGE_BYTES:
        got = f"an array of shape {array.shape}" if array is not None else f"a {type(data).__name__}"
        raise ValueError(f"{path} is not a CIFAR-10 python batch: its 'data' must be a numeric array of {n} x "
                         f"{_CIFAR_IMAGE_BYTES} values (one row per label), got {got}.\n" + _how_to_get("cifar10"))
    return array


def _read_cifar_batch(path: Path, raw: bytes):
    """(data, labels) of one CIFAR-10 python batch, parsed from ``raw`` with the restricted unpickler."""
    try:
        d = _BatchUnpickler(raw, path).load()
    except UnsafeDataFileError:
        raise
    except Exception as e:
        raise ValueError(f"{path} is not a readable CIFAR-10 python batch ({type(e).__name__}: {e}).\n"
                         + _how_to_get("cifar10")) from e
    if not isinstance(d, dict):
        raise ValueError(f"{path} is not a CIFAR-10 python batch: it holds a {type(d).__name__}, expected a dict "
                         "with 'data' and 'labels'.\n" + _how_to_get("cifar10"))
    try:
        data, labels = _entry(d, "data"), _entry(d, "labels")
    except KeyError as e:
        keys = sorted(repr(k)[:40] for k in d if isinstance(k, (str, bytes)))[:10]
        raise ValueError(f"{path} is not a CIFAR-10 python batch: it has no {e.args[0]!r} entry (keys: "
                         f"{keys}).\n" + _how_to_get("cifar10")) from None
    labels = _cifar_labels(labels, path)
    return _cifar_data(data, labels.size, path), labels


def _read_cifar(root: Path, verify: bool = True):
    files = [root / b for b in _CIFAR_BATCHES]
    if verify and _is_verified("cifar10", files):
        verify = False
    batches, all_known = [], True
    for p in files:
        raw, known = _read_checked("cifar10", p) if verify else (p.read_bytes(), False)
        all_known = all_known and known
        batches.append(_read_cifar_batch(p, raw))
        del raw
    if verify:
        if all_known:
            _mark_verified("cifar10", files)
        else:
            _check_content("cifar10", files, [a for batch in batches for a in batch], root)
    try:
        xs = [data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1) for data, _ in batches]
        ys = [labels.reshape(-1) for _, labels in batches]
    except ValueError as e:
        raise ValueError(f"{root}: unexpected CIFAR-10 array shapes ({e}).\n" + _how_to_get("cifar10")) from e
    n = len(_CIFAR_TRAIN)
    return (np.concatenate(xs[:n]), np.concatenate(ys[:n])), (xs[n], ys[n])


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
    data_dir = _check_data_dir(data_dir)
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
    data_dir = _check_data_dir(data_dir)
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


#: Iterators Keras' ``fit`` creates per epoch over a ``tf.data`` training set of known length (Keras 3's
#: ``EpochIterator``: one when the epoch starts, and one more, unused, when it ends), each drawing the next seed of
#: the reshuffling pipeline: epoch ``e`` (0-based) is ordered by the ``2e + 1``-th seed.
KERAS_ITERATORS_PER_EPOCH = 2


def _advance_tf_pipeline(train, epochs: int) -> None:
    """Draw the shuffle seeds of ``epochs`` epochs of ``fit`` from the ``tf.data`` pipeline ``train`` (iterators are
    created and dropped, no batch is read), so that ``fit(..., initial_epoch=epochs)`` sees epoch ``epochs``'
    order."""
    for _ in range(KERAS_ITERATORS_PER_EPOCH * int(epochs)):
        iterator = iter(train)
        del iterator


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


def _imagenette_selection(root: Path, seed, max_train, max_val):
    """The Imagenette files and labels kept for ``max_train`` / ``max_val`` (both backends' pipelines)."""
    f_tr, y_tr, f_va, y_va, classes = _imagenette_files(root)
    sel = _subset_index(len(f_tr), max_train, seed, 0)
    if sel is not None:
        f_tr, y_tr = [f_tr[i] for i in sel], y_tr[sel]
    sel = _subset_index(len(f_va), max_val, seed, 1)
    if sel is not None:
        f_va, y_va = [f_va[i] for i in sel], y_va[sel]
    return f_tr, y_tr, f_va, y_va, classes


def _crop_size(size: int) -> int:
    return int(round(size * 256 / 224))  # resize 256 -> crop 224, scaled with image_size


def _imagenette_pipelines(root: Path, batch_size, seed, max_train, max_val, augment, size):
    import tensorflow as tf

    f_tr, y_tr, f_va, y_va, classes = _imagenette_selection(root, seed, max_train, max_val)
    big = _crop_size(size)

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
        # docs/method.md §4 / the thesis' augment_image, with stateless (seeded, order-independent) random ops.
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


# --------------------------------------------------------------------------------------------------
# NumPy batches for the JAX and PyTorch backends (keras.utils.PyDataset; no TensorFlow)
# --------------------------------------------------------------------------------------------------

# Streams of the seeded generators: 0 and 1 are the max_train / max_val subsets (_subset_index).
_ORDER_STREAM = 2
_AUGMENT_STREAM = 3
_BATCH_CLASSES = {}


def _use_tf_data() -> bool:
    """Whether :func:`load` builds ``tf.data`` pipelines (the TensorFlow backend) or NumPy batches (JAX, PyTorch)."""
    import keras

    return keras.backend.backend() == "tensorflow"


def _batch_classes() -> dict:
    """The :class:`keras.utils.PyDataset` subclasses of the NumPy pipelines, defined at first use (imports Keras)."""
    if _BATCH_CLASSES:
        return _BATCH_CLASSES
    import keras

    class Batches(keras.utils.PyDataset):
        """``n`` examples in batches of ``batch_size``: ``(x, y)`` NumPy arrays, float32 raw pixels and int32
        labels. With ``shuffle``, epoch ``e`` takes the examples in the order of a permutation seeded with
        ``(seed, e)`` (same seed -> same order; ``seed=None``: fresh entropy per object); Keras' ``fit`` ends an
        epoch with :meth:`on_epoch_end`, and so does every complete iteration over the object."""

        def __init__(self, n: int, batch_size: int, seed, shuffle: bool, workers: int = 1):
            super().__init__(workers=workers, use_multiprocessing=False)
            self.n, self.batch_size, self.seed, self.shuffle = int(n), int(batch_size), seed, bool(shuffle)
            self._root = [int(seed)] if seed is not None else [np.random.SeedSequence().entropy]
            self.epoch = 0
            self._order = self.order(0)

        def rng(self, *key):
            """A generator seeded with ``(seed, *key)``."""
            return np.random.default_rng(self._root + [int(k) for k in key])

        def order(self, epoch: int) -> np.ndarray:
            """The example order of epoch ``epoch`` (0-based)."""
            if not self.shuffle:
                return np.arange(self.n)
            return self.rng(_ORDER_STREAM, epoch).permutation(self.n)

        def __len__(self):
            return -(-self.n // self.batch_size)

        def __getitem__(self, index):
            if not 0 <= index < len(self):
                raise IndexError(f"batch {index} of {len(self)}")
            return self.take(self._order[index * self.batch_size: (index + 1) * self.batch_size])

        def take(self, idx):  # pragma: no cover - overridden
            raise NotImplementedError

        def on_epoch_end(self):
            self.epoch += 1
            self._order = self.order(self.epoch)

        def __iter__(self):
            for index in range(len(self)):
                yield self[index]
            self.on_epoch_end()

    class ArrayBatches(Batches):
        """Batches of in-memory arrays (digits, MNIST, CIFAR-10; ``x`` kept in its stored dtype, cast per batch)."""

        def __init__(self, x, y, batch_size, seed, shuffle):
            self.x, self.y = x, np.asarray(y).astype(np.int32)
            super().__init__(len(self.y), batch_size, seed, shuffle)

        def take(self, idx):
            return self.x[idx].astype(np.float32), self.y[idx]

    class ImageBatches(Batches):
        """Batches of Imagenette JPEG files: resized to ``size`` (validation, or ``augment=False``), or augmented as
        the tf.data pipeline does, with a generator seeded with ``(seed, epoch, image index)``."""

        def __init__(self, files, labels, batch_size, seed, shuffle, augment, size, workers):
            self.files, self.labels = list(files), np.asarray(labels, np.int32)
            self.augment, self.size, self.big = bool(augment), int(size), _crop_size(size)
            super().__init__(len(self.files), batch_size, seed, shuffle, workers=workers)

        def image(self, i: int, epoch: int) -> np.ndarray:
            img = _read_image(self.files[i])
            if not self.augment:
                return _resize_bilinear(img, self.size, self.size)
            return _augment(img, self.rng(_AUGMENT_STREAM, epoch, i), self.size, self.big)

        def take(self, idx):
            epoch = self.epoch
            return np.stack([self.image(int(i), epoch) for i in idx]), self.labels[idx]

    _BATCH_CLASSES.update(Batches=Batches, ArrayBatches=ArrayBatches, ImageBatches=ImageBatches)
    return _BATCH_CLASSES


def _read_image(path) -> np.ndarray:
    """A JPEG (or PNG) file as a float32 ``(h, w, 3)`` RGB array, decoded with Pillow."""
    try:
        from PIL import Image
    except ImportError as e:
        raise ImportError("Reading Imagenette without TensorFlow (the JAX and PyTorch backends) decodes the JPEG "
                          "files with Pillow: pip install pillow") from e
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.float32)


def _resize_bilinear(img: np.ndarray, height: int, width: int) -> np.ndarray:
    """``tf.image.resize(img, [height, width])`` in NumPy: bilinear, half-pixel centres, no antialiasing."""

    def taps(n_in, n_out):
        c = (np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5
        low = np.floor(c)
        frac = (c - low).astype(np.float32)
        return np.clip(low, 0, n_in - 1).astype(np.intp), np.clip(low + 1, 0, n_in - 1).astype(np.intp), frac

    y0, y1, fy = taps(img.shape[0], height)
    x0, x1, fx = taps(img.shape[1], width)
    rows = img[y0] + (img[y1] - img[y0]) * fy[:, None, None]
    return (rows[:, x0] + (rows[:, x1] - rows[:, x0]) * fx[None, :, None]).astype(np.float32)


def _adjust_saturation(img: np.ndarray, factor: float) -> np.ndarray:
    """``tf.image.adjust_saturation`` in closed form: in HSV, ``s <- clip(s * factor, 0, 1)`` with hue and value
    kept, i.e. every channel ``c <- v - (v - c) * s' / s`` (``v`` the pixel's max, ``s = (v - min) / v``)."""
    v = img.max(axis=-1, keepdims=True)
    low = img.min(axis=-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        s = np.where(v > 0, (v - low) / v, 0.0)
        ratio = np.where(s > 0, np.clip(s * factor, 0.0, 1.0) / s, 1.0)
    return (v - (v - img) * ratio).astype(np.float32)


def _augment(img: np.ndarray, rng, size: int, big: int) -> np.ndarray:
    """The training augmentation of docs/method.md §4 in NumPy: resize ``big`` -> random crop ``size`` -> random
    horizontal flip -> brightness ±0.2 (added to raw 0..255 pixels, as the thesis) -> saturation 0.8..1.2 ->
    clip 0..255."""
    img = _resize_bilinear(img, big, big)
    top, left = rng.integers(0, big - size + 1, size=2)
    img = img[top: top + size, left: left + size]
    if rng.random() < 0.5:
        img = img[:, ::-1]
    img = img + np.float32(rng.uniform(-0.2, 0.2))
    img = _adjust_saturation(img, rng.uniform(0.8, 1.2))
    return np.clip(img, 0.0, 255.0).astype(np.float32)


def _imagenette_batches(root: Path, batch_size, seed, max_train, max_val, augment, size):
    f_tr, y_tr, f_va, y_va, classes = _imagenette_selection(root, seed, max_train, max_val)
    ImageBatches = _batch_classes()["ImageBatches"]
    workers = max(1, min(4, os.cpu_count() or 1))  # threads: Pillow's decoder and NumPy release the GIL
    train = ImageBatches(f_tr, y_tr, batch_size, seed, True, augment, size, workers)
    val = ImageBatches(f_va, y_va, batch_size, seed, False, False, size, workers)
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
    start_epoch: int = 0,
) -> Splits:
    """Batched pipelines for ``name`` (see the module docstring for where files come from): ``tf.data`` on the
    TensorFlow backend, NumPy batches (:class:`keras.utils.PyDataset`) on JAX and PyTorch.

    ``train`` is shuffled with ``seed`` (reshuffled each epoch; same seed -> same batch order on the same
    machine and, for tf.data, TensorFlow global-seed state), ``val`` is not shuffled; both yield float32 raw
    pixels and int32 labels (tf.data: prefetched). ``max_train`` / ``max_val`` keep the first N examples of a
    permutation seeded with ``seed`` (quick profiles). ``augment=None`` uses the dataset default: only Imagenette
    augments (resize 256 -> random crop 224 -> random horizontal flip -> brightness +-0.2 -> saturation 0.8-1.2
    -> clip 0..255; validation: resize 224). ``image_size`` (Imagenette only) replaces 224, the resize before
    the crop becomes ``round(image_size * 8 / 7)``. ``start_epoch`` (a resumed run, :mod:`lqs_core.checkpoint`):
    ``fit(..., initial_epoch=start_epoch)`` on ``train`` sees the order of that (0-based) epoch, as an
    uninterrupted ``fit`` does — NumPy batches: their epoch counter; ``tf.data``: the shuffle seeds of the earlier
    epochs drawn (:data:`KERAS_ITERATORS_PER_EPOCH`), no batch read. Every argument is checked before any file is
    read.
    """
    name = _check_name(name)
    _check_count("batch_size", batch_size, allow_none=False)
    _check_seed(seed)
    data_dir = _check_data_dir(data_dir)
    _check_count("max_train", max_train)
    _check_count("max_val", max_val)
    _check_augment(augment)
    image_size = _check_image_size(image_size)
    if not _is_int(start_epoch) or start_epoch < 0:
        raise ValueError(f"start_epoch must be an integer >= 0, got {start_epoch!r}.")
    if start_epoch and name == "imagenette" and _use_tf_data():
        raise ValueError("start_epoch: resuming the tf.data Imagenette pipeline at a later epoch is not supported "
                         "(it would decode every skipped image); use the JAX or PyTorch backend, whose NumPy "
                         "pipeline starts at any epoch.")
    if name == "imagenette":
        size = _IMAGENETTE_SIZE if image_size is None else image_size
        root = _imagenette_path(data_dir)
        pipelines = _imagenette_pipelines if _use_tf_data() else _imagenette_batches
        train, val, n_tr, n_va, classes = pipelines(
            root, int(batch_size), seed, max_train, max_val, True if augment is None else bool(augment), size
        )
        _start_numpy_batches(train, start_epoch)
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
    if _use_tf_data():
        train = _array_dataset(x_tr, y_tr, int(batch_size), seed, shuffle=True)
        val = _array_dataset(x_va, y_va, int(batch_size), seed, shuffle=False)
        _advance_tf_pipeline(train, start_epoch)
    else:
        ArrayBatches = _batch_classes()["ArrayBatches"]
        train = ArrayBatches(x_tr, y_tr, int(batch_size), seed, shuffle=True)
        val = ArrayBatches(x_va, y_va, int(batch_size), seed, shuffle=False)
        _start_numpy_batches(train, start_epoch)
    return Splits(name, train, val, _INPUT_SHAPE[name], 10, len(y_tr), len(y_va), _CLASS_NAMES[name])


def _start_numpy_batches(train, start_epoch: int) -> None:
    """Set the NumPy training batches to epoch ``start_epoch``'s order (its seeded permutation)."""
    if start_epoch and hasattr(train, "order"):
        train.epoch = int(start_epoch)
        train._order = train.order(train.epoch)


def describe() -> str:
    """How the loader finds data files, with the folders currently configured (``print(describe())``)."""
    env = [d for d in os.environ.get(ENV_DATA_DIR, "").split(os.pathsep) if d.strip()]
    lines = [
        "lqs datasets: " + ", ".join(DATASETS),
        "  digits: scikit-learn's bundled load_digits (no download); stratified 80/20 split, "
        f"random_state={DIGITS_SPLIT_RANDOM_STATE}.",
        "  mnist, cifar10, imagenette are looked up in: 1) load(..., data_dir=...) (only there when given), "
        f"2) ${ENV_DATA_DIR} (folders separated by '{os.pathsep}'), 3) the data/ folder of a source checkout, "
        "4) the Keras cache $KERAS_HOME/datasets (downloaded there with keras.utils.get_file when missing).",
        "  Expected layout of a data folder: mnist.npz, cifar-10-batches-py/{data_batch_1..5,test_batch}, "
        "imagenette2-160/{train,val}/<wnid>/*.JPEG (or imagenette2-160.tgz).",
        f"  Offline: export {ENV_DATA_DIR}=/path/to/shared/data/keras/datasets (verified by checksum, or by "
        "content sha256 for re-packed copies; local files are never passed to get_file or deleted; nothing in "
        "a data file is executed).",
        f"  {ENV_DATA_DIR} now: " + (os.pathsep.join(env) if env else "(not set)"),
        f"  Checkout data/ folder: {CHECKOUT_DATA_DIR if CHECKOUT_DATA_DIR is not None else '(not a checkout)'}",
        f"  Keras cache now: {_keras_base() / 'datasets'}",
        f"  Sources: {MNIST_URL} ; {CIFAR10_URL} ; {IMAGENETTE_URL}",
        f"  Checksums: lqs_core/{_MANIFEST_FILE} (data/manifest.json in a checkout).",
    ]
    return "\n".join(lines)
