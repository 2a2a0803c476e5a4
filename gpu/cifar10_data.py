#!/usr/bin/env python3
"""CIFAR-10 to the GPU machine in parts: pack here, carry one part per device call, reassemble and verify there.

The device machine has no network and takes at most 64 MiB per call, the repository's tracked files included
(about 27 MiB today), so the 176 MiB of CIFAR-10 travel compressed, in parts, over consecutive calls while the
machine stays warm (gpu/README.md has the call sequence). Lossless and self-contained (NumPy and the standard
library; no Keras, no TensorFlow):

* ``pack`` (here): read the six python batches from a verified copy (``--data-dir``, the layout of
  :mod:`lqs_core.data`; the copy is checked against the content sha256 of ``lqs_core/datasets.json`` first), turn
  every image into prediction residuals (the median edge detector of LOCO-I/JPEG-LS per colour plane, then the
  green residual minus the red one and the blue minus the green, all modulo 256: exactly invertible), compress the
  whole blob with xz (preset 9e; 133 MiB for the raw pixels, about 99 MiB for the residuals), split it into parts
  of at most ``--part-mib`` MiB and write a manifest (``cifar10-lqs.json``: every part's size and sha256, the blob's
  sha256, the dataset's content sha256).
* ``receive`` (there, once per call): copy the parts that came with this call from the carried folder into the
  staging folder (``/tmp/lqs_parts``), check each against the manifest, say which parts are still missing.
* ``unpack`` (there, in the training call): check every part, decompress, decode, check the content sha256 of the
  decoded arrays, write ``<out>/cifar-10-batches-py/{data_batch_1..5,test_batch}`` (pickle protocol 2 with only
  the globals lqs' restricted reader admits) and have :func:`lqs_core.data.fetch` verify that folder once more,
  with the project's own loader check. The training jobs then read it with ``data_dir=<out>``.
* ``plan`` (here): the size of what travels in each call (tracked and untracked-not-ignored files + carried paths)
  against the 64 MiB limit.

Usage::

    python gpu/cifar10_data.py pack --data-dir /work/shared/data/keras/datasets --out .gpu_data
    python gpu/cifar10_data.py plan --parts .gpu_data --wheels .whl
    # on the device, in each call:  python3 gpu/cifar10_data.py receive .gpu_data /tmp/lqs_parts
    # in the training call:         python3 gpu/cifar10_data.py unpack /tmp/lqs_parts /tmp/lqs_data
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import lzma
import os
import pickle
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # `python gpu/cifar10_data.py` from anywhere: lqs_core from this checkout
    sys.path.insert(0, str(REPO))

MAGIC = b"LQSCIF1\n"
ENCODING = "med-residual+rgb-chain/mod256/v1"
MANIFEST = "cifar10-lqs.json"
PART_PREFIX = "cifar10-lqs.xz."
BATCHES = ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch")
CIFAR_DIR = "cifar-10-batches-py"
MIB = 1 << 20
#: What one device call may carry in all (device README, Limits).
CALL_LIMIT = 64 * MIB
#: Default largest part: 64 MiB minus the ~27 MiB of the repository minus headroom for its growth and the wheels.
DEFAULT_PART_MIB = 32


class PackError(ValueError):
    """A part, the blob or the decoded data does not match the manifest."""


# --------------------------------------------------------------------------------------------------------------
# The lossless transform (vectorised over images and colour planes)


def _med(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """LOCO-I's median edge detector: min(a, b) if c >= max(a, b), max(a, b) if c <= min(a, b), else a + b - c
    (a: left, b: above, c: above-left; int16)."""
    hi, lo = np.maximum(a, b), np.minimum(a, b)
    return np.where(c >= hi, lo, np.where(c <= lo, hi, a + b - c))


def encode(images: np.ndarray) -> np.ndarray:
    """``(n, 3, 32, 32)`` uint8 planes -> residual bytes of the same shape (uint8, modulo 256)."""
    x = images.astype(np.int16)
    a = np.zeros_like(x)
    b = np.zeros_like(x)
    c = np.zeros_like(x)
    a[..., :, 1:] = x[..., :, :-1]  # zero outside the image: row 0 predicts from the left, column 0 from above
    b[..., 1:, :] = x[..., :-1, :]
    c[..., 1:, 1:] = x[..., :-1, :-1]
    r = (x - _med(a, b, c)) & 0xFF
    out = r.copy()
    out[:, 1] = (r[:, 1] - r[:, 0]) & 0xFF  # green residual minus red residual
    out[:, 2] = (r[:, 2] - r[:, 1]) & 0xFF  # blue residual minus green residual
    return out.astype(np.uint8)


def decode(residuals: np.ndarray) -> np.ndarray:
    """Inverse of :func:`encode`: residual bytes ``(n, 3, h, w)`` -> uint8 planes."""
    e = residuals.astype(np.int16)
    r = e.copy()
    r[:, 1] = (e[:, 1] + r[:, 0]) & 0xFF
    r[:, 2] = (e[:, 2] + r[:, 1]) & 0xFF
    n, ch, h, w = r.shape
    x = np.zeros((h, w, n, ch), np.int16)  # pixel-major: each step below works on one contiguous (n, ch) slab
    r = np.ascontiguousarray(r.transpose(2, 3, 0, 1))
    zero = np.zeros((n, ch), np.int16)
    for i in range(h):
        for j in range(w):
            a = x[i, j - 1] if j else zero
            b = x[i - 1, j] if i else zero
            c = x[i - 1, j - 1] if i and j else zero
            x[i, j] = (_med(a, b, c) + r[i, j]) & 0xFF
    return np.ascontiguousarray(x.transpose(2, 3, 0, 1)).astype(np.uint8)


# --------------------------------------------------------------------------------------------------------------
# Reading and writing CIFAR-10 python batches


class _Unpickler(pickle.Unpickler):
    """Admits only the numpy globals a genuine batch needs (lqs_core.data.CIFAR_PICKLE_GLOBALS)."""

    def __init__(self, raw: bytes, allowed: dict):
        super().__init__(io.BytesIO(raw), encoding="bytes")
        self._allowed = allowed

    def find_class(self, module, name):
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refused global {module}.{name}") from None


def read_batches(data_dir) -> list:
    """``[(name, data (n, 3072) uint8, labels (n,) uint8)]`` of the six batches under ``data_dir``, after the
    project's loader verified the folder (:func:`lqs_core.data.fetch`: file checksums or the content sha256)."""
    from lqs_core import data

    root = data.fetch("cifar10", data_dir=str(data_dir))
    out = []
    for name in BATCHES:
        d = _Unpickler((root / name).read_bytes(), data.CIFAR_PICKLE_GLOBALS).load()
        x = np.asarray(d[b"data"] if b"data" in d else d["data"], dtype=np.uint8)
        y = np.asarray(d[b"labels"] if b"labels" in d else d["labels"]).astype(np.uint8)
        out.append((name, x, y))
    return out


def write_batches(batches, out_dir) -> Path:
    """Write ``<out_dir>/cifar-10-batches-py/<name>`` python batches (dict with ``data``, ``labels``,
    ``batch_label``; pickle protocol 2: only ``numpy._core.multiarray._reconstruct``, ``numpy.ndarray`` and
    ``numpy.dtype`` as globals, which lqs' restricted reader admits). Files are written under a temporary name and
    renamed."""
    root = Path(out_dir) / CIFAR_DIR
    root.mkdir(parents=True, exist_ok=True)
    for name, x, y in batches:
        payload = {b"batch_label": f"{name} (lqs gpu/cifar10_data.py)".encode(),
                   b"labels": [int(v) for v in y], b"data": np.ascontiguousarray(x, dtype=np.uint8)}
        tmp = root / f".{name}.tmp"
        with open(tmp, "wb") as f:
            pickle.dump(payload, f, protocol=2)
        os.replace(tmp, root / name)
    return root


def content_sha256(batches) -> str:
    from lqs_core.data import content_sha256 as sha

    return sha(*[a for _, x, y in batches for a in (x, y)])


def expected_content_sha256() -> str:
    from lqs_core.data import CONTENT_SHA256

    return CONTENT_SHA256["cifar10"]


# --------------------------------------------------------------------------------------------------------------
# Blob: header + encoded arrays


def to_blob(batches) -> bytes:
    header, chunks, offset = [], [], 0
    for name, x, y in batches:
        res = encode(x.reshape(-1, 3, 32, 32)).tobytes()
        header.append({"name": name, "n": int(len(y)), "data": [offset, len(res)],
                       "labels": [offset + len(res), len(y)]})
        chunks += [res, y.astype(np.uint8).tobytes()]
        offset += len(res) + len(y)
    head = json.dumps({"encoding": ENCODING, "batches": header}).encode()
    return MAGIC + struct.pack("<Q", len(head)) + head + b"".join(chunks)


def from_blob(blob: bytes) -> list:
    if not blob.startswith(MAGIC):
        raise PackError("not an lqs CIFAR-10 blob (bad magic)")
    (n_head,) = struct.unpack_from("<Q", blob, len(MAGIC))
    start = len(MAGIC) + 8
    head = json.loads(blob[start:start + n_head])
    if head.get("encoding") != ENCODING:
        raise PackError(f"unknown encoding {head.get('encoding')!r}; expected {ENCODING!r}")
    body = memoryview(blob)[start + n_head:]
    out = []
    for b in head["batches"]:
        (o, n), (lo, ln) = b["data"], b["labels"]
        res = np.frombuffer(body[o:o + n], np.uint8).reshape(b["n"], 3, 32, 32)
        out.append((b["name"], decode(res).reshape(b["n"], 3072), np.frombuffer(body[lo:lo + ln], np.uint8).copy()))
    return out


# --------------------------------------------------------------------------------------------------------------
# Parts and manifest


def sha256_file(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(MIB), b""):
            h.update(chunk)
    return h.hexdigest()


def split(data: bytes, part_bytes: int) -> list:
    if part_bytes < 1:
        raise ValueError(f"part size must be >= 1 byte, got {part_bytes}")
    return [data[i:i + part_bytes] for i in range(0, len(data), part_bytes)] or [b""]


def pack_blob(blob: bytes, out_dir, part_mib: float = DEFAULT_PART_MIB, preset: int = 9 | lzma.PRESET_EXTREME,
              extra: dict | None = None) -> dict:
    """Compress ``blob`` with xz, split into parts of at most ``part_mib`` MiB under ``out_dir``, write the
    manifest; returns it."""
    if not part_mib > 0:
        raise ValueError(f"--part-mib must be > 0, got {part_mib!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob(PART_PREFIX + "*"):
        old.unlink()
    xz = lzma.compress(blob, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC64, preset=preset)
    parts = []
    for k, chunk in enumerate(split(xz, int(part_mib * MIB)), start=1):
        name = f"{PART_PREFIX}{k:03d}"
        (out / name).write_bytes(chunk)
        parts.append({"file": name, "bytes": len(chunk), "sha256": hashlib.sha256(chunk).hexdigest()})
    manifest = {
        "format": 1,
        "what": "CIFAR-10 python batches, lossless residual encoding, xz, split (gpu/cifar10_data.py)",
        "encoding": ENCODING,
        "blob_bytes": len(blob),
        "blob_sha256": hashlib.sha256(blob).hexdigest(),
        "xz_bytes": len(xz),
        "xz_sha256": hashlib.sha256(xz).hexdigest(),
        "parts": parts,
        **(extra or {}),
    }
    tmp = out / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    os.replace(tmp, out / MANIFEST)
    return manifest


def read_manifest(folder) -> dict:
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise PackError(f"{path} is missing: carry the manifest with the parts (gpu/README.md)")
    return json.loads(path.read_text())


def check_parts(folder, manifest: dict, present_only: bool = False) -> list:
    """Names of the parts missing in ``folder``; raises :class:`PackError` for a part of the wrong size or hash."""
    missing = []
    for p in manifest["parts"]:
        path = Path(folder) / p["file"]
        if not path.is_file():
            missing.append(p["file"])
            continue
        size = path.stat().st_size
        if size != p["bytes"]:
            raise PackError(f"{path}: {size} bytes, the manifest says {p['bytes']} (incomplete copy?)")
        got = sha256_file(path)
        if got != p["sha256"]:
            raise PackError(f"{path}: sha256 {got}, the manifest says {p['sha256']}")
    if missing and not present_only:
        raise PackError(f"parts missing in {folder}: {', '.join(missing)}")
    return missing


def receive(src, staging) -> list:
    """Copy the manifest and the parts present in ``src`` into ``staging`` (each checked); returns the parts still
    missing in ``staging``."""
    manifest = read_manifest(src)
    staging = Path(staging)
    staging.mkdir(parents=True, exist_ok=True)
    if (staging / MANIFEST).is_file() and read_manifest(staging) != manifest:
        raise PackError(f"{staging / MANIFEST} differs from {Path(src) / MANIFEST}: parts of two different packs; "
                        f"empty {staging} and start again")
    shutil.copyfile(Path(src) / MANIFEST, staging / MANIFEST)
    for p in manifest["parts"]:
        source = Path(src) / p["file"]
        if source.is_file() and not (staging / p["file"]).is_file():
            tmp = staging / (p["file"] + ".tmp")
            shutil.copyfile(source, tmp)
            os.replace(tmp, staging / p["file"])
    return check_parts(staging, manifest, present_only=True)


def unpack(staging, out_dir) -> Path:
    """Check every part, decompress, decode, check the content sha256, write the python batches under
    ``out_dir`` and verify them with :func:`lqs_core.data.fetch`; returns the ``cifar-10-batches-py`` folder."""
    manifest = read_manifest(staging)
    check_parts(staging, manifest)
    dec = lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
    pieces = []
    for p in manifest["parts"]:
        pieces.append(dec.decompress((Path(staging) / p["file"]).read_bytes()))
    if not dec.eof:
        raise PackError("the xz stream ended early: a part is missing or truncated")
    blob = b"".join(pieces)
    if hashlib.sha256(blob).hexdigest() != manifest["blob_sha256"]:
        raise PackError("the decompressed blob does not have the manifest's sha256")
    batches = from_blob(blob)
    del blob, pieces
    got, want = content_sha256(batches), expected_content_sha256()
    if got != want:
        raise PackError(f"decoded CIFAR-10 has content sha256 {got}, lqs_core/datasets.json says {want}")
    root = write_batches(batches, out_dir)
    from lqs_core import data

    return data.fetch("cifar10", data_dir=str(out_dir))  # the loader's own check of the written files


def pack(data_dir, out_dir, part_mib: float = DEFAULT_PART_MIB, preset: int = 9 | lzma.PRESET_EXTREME) -> dict:
    batches = read_batches(data_dir)
    content = content_sha256(batches)
    if content != expected_content_sha256():  # fetch verified it already; a second look costs a second
        raise PackError(f"{data_dir}: content sha256 {content} is not CIFAR-10's")
    return pack_blob(to_blob(batches), out_dir, part_mib, preset,
                     extra={"content_sha256": content, "batches": list(BATCHES)})


# --------------------------------------------------------------------------------------------------------------
# What travels per call


def travelling_bytes(repo=REPO) -> int:
    """Bytes of the tracked and the untracked-not-ignored files of the checkout (what every call sends)."""
    out = subprocess.run(["git", "-C", str(repo), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                         check=True, capture_output=True).stdout
    total = 0
    for name in out.decode().split("\0"):
        p = Path(repo) / name
        if name and p.is_file() and not p.is_symlink():
            total += p.stat().st_size
    return total


def plan(parts_dir, wheels_dir=None, repo=REPO) -> dict:
    manifest = read_manifest(parts_dir)
    base = travelling_bytes(repo)
    wheels = sum(p.stat().st_size for p in Path(wheels_dir).glob("*.whl")) if wheels_dir and Path(wheels_dir).is_dir() else 0
    man = (Path(parts_dir) / MANIFEST).stat().st_size
    calls = []
    n = len(manifest["parts"])
    for k, p in enumerate(manifest["parts"], start=1):
        carried = p["bytes"] + man + (wheels if k in (1, n) else 0)
        calls.append({"call": k, "part": p["file"], "carry_bytes": carried, "total_bytes": base + carried,
                      "fits": base + carried <= CALL_LIMIT})
    return {"repository_bytes": base, "wheels_bytes": wheels, "limit_bytes": CALL_LIMIT, "calls": calls}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pack", help="here: verified CIFAR-10 copy -> xz parts + manifest")
    p.add_argument("--data-dir", required=True, help="folder holding cifar-10-batches-py/ (e.g. shared/data/keras/datasets)")
    p.add_argument("--out", default=str(REPO / ".gpu_data"), help="ignored folder for the parts (default .gpu_data)")
    p.add_argument("--part-mib", type=float, default=DEFAULT_PART_MIB, help="largest part in MiB (default %(default)s)")
    p.add_argument("--preset", type=int, default=9, help="xz preset 0..9 (extreme mode on; default 9)")
    p = sub.add_parser("receive", help="there: copy this call's parts into the staging folder, check them")
    p.add_argument("src", help="the carried folder (.gpu_data)")
    p.add_argument("staging", help="staging folder on the device (/tmp/lqs_parts)")
    p = sub.add_parser("unpack", help="there: all parts -> verified cifar-10-batches-py/")
    p.add_argument("staging")
    p.add_argument("out", help="data folder to write (its cifar-10-batches-py/ is what the loader reads)")
    p = sub.add_parser("plan", help="here: bytes that travel in each call against the 64 MiB limit")
    p.add_argument("--parts", default=str(REPO / ".gpu_data"))
    p.add_argument("--wheels", default=str(REPO / ".whl"))
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    try:
        if args.cmd == "pack":
            if not 0 <= args.preset <= 9:
                ap.error(f"--preset must be in 0..9, got {args.preset}")
            if not args.part_mib > 0:
                ap.error(f"--part-mib must be > 0, got {args.part_mib}")
            m = pack(args.data_dir, args.out, args.part_mib, args.preset | lzma.PRESET_EXTREME)
            print(f"packed {m['blob_bytes'] / MIB:.1f} MiB -> xz {m['xz_bytes'] / MIB:.1f} MiB in "
                  f"{len(m['parts'])} parts: " + ", ".join(f"{p['file']} {p['bytes'] / MIB:.1f} MiB" for p in m["parts"]))
        elif args.cmd == "receive":
            missing = receive(args.src, args.staging)
            have = sorted(f.name for f in Path(args.staging).glob(PART_PREFIX + "*") if not f.name.endswith(".tmp"))
            print(f"staged in {args.staging}: {', '.join(have) or '-'}; still missing: {', '.join(missing) or 'none'}")
        elif args.cmd == "unpack":
            root = unpack(args.staging, args.out)
            print(f"CIFAR-10 verified (content sha256 {expected_content_sha256()[:16]}…) at {root}")
        else:
            print(json.dumps(plan(args.parts, args.wheels), indent=2))
    except PackError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"({args.cmd}: {time.perf_counter() - t0:.1f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
