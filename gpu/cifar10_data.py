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
  whole blob with xz (preset 9e, about 8 minutes on one core; 133 MiB for the raw pixels, 98.8 MiB for the
  residuals) into ``cifar10-lqs.xz`` and split it (below).
* ``split`` (here): cut ``cifar10-lqs.xz`` into parts, by default sized so that each device call fills up to
  64 MiB less ``--margin-mib`` with the repository (tracked and untracked-not-ignored files, measured now), its part
  and, in call 1, the wheels of ``.whl/`` (``--parts N`` / ``--part-mib X`` for fixed sizes); writes the manifest
  ``cifar10-lqs.json`` (every part's size and sha256, the stream's and the blob's sha256, the dataset's content
  sha256). Run it again whenever the repository grew: no recompression.
* ``receive`` (there, once per call): copy the parts that came with this call from the carried folder into the
  staging folder (``/tmp/lqs_parts``), check each against the manifest, say which parts are still missing.
* ``unpack`` (there, in the training call): check every part, decompress, decode, check the content sha256 of the
  decoded arrays, write ``<out>/cifar-10-batches-py/{data_batch_1..5,test_batch}`` (pickle protocol 4 with only
  the globals lqs' restricted reader admits) and have :func:`lqs_core.data.fetch` verify that folder once more,
  with the project's own loader check. The training jobs then read it with ``data_dir=<out>``.
* ``plan`` (here): the size of what travels in each call (tracked and untracked-not-ignored files + carried paths)
  against the 64 MiB limit.

Usage::

    python gpu/cifar10_data.py pack --data-dir /work/shared/data/keras/datasets     # -> .gpu_data/
    python gpu/cifar10_data.py split        # only when the repository changed since: parts fitted to the calls
    python gpu/cifar10_data.py plan         # MiB per call, and whether each fits
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
    ``batch_label``; pickle protocol 4, bytes as bytes: only ``numpy._core.multiarray._reconstruct``,
    ``numpy.ndarray`` and ``numpy.dtype`` as globals, which lqs' restricted reader admits). Files are written
    under a temporary name and renamed."""
    root = Path(out_dir) / CIFAR_DIR
    root.mkdir(parents=True, exist_ok=True)
    for name, x, y in batches:
        payload = {b"batch_label": f"{name} (lqs gpu/cifar10_data.py)".encode(),
                   b"labels": [int(v) for v in y], b"data": np.ascontiguousarray(x, dtype=np.uint8)}
        tmp = root / f".{name}.tmp"
        with open(tmp, "wb") as f:
            pickle.dump(payload, f, protocol=4)
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


XZ_FILE = "cifar10-lqs.xz"
#: Bytes kept free in every call below the 64 MiB limit (the manifest, and growth of the repository between the
#: split and the call).
DEFAULT_MARGIN_MIB = 2.0
#: ``plan``: a call fits when at least this much is left below 64 MiB.
PLAN_SAFETY_MIB = 0.5
#: Bytes reserved in every call for the manifest that travels with each part.
MANIFEST_RESERVE = 16 << 10


def compress_blob(blob: bytes, out_dir, preset: int = 9 | lzma.PRESET_EXTREME, extra: dict | None = None) -> dict:
    """Compress ``blob`` with xz into ``<out_dir>/cifar10-lqs.xz``; returns the manifest without parts."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    xz = lzma.compress(blob, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC64, preset=preset)
    tmp = out / (XZ_FILE + ".tmp")
    tmp.write_bytes(xz)
    os.replace(tmp, out / XZ_FILE)
    return {
        "format": 1,
        "what": "CIFAR-10 python batches, lossless residual encoding, xz, split (gpu/cifar10_data.py)",
        "encoding": ENCODING,
        "blob_bytes": len(blob),
        "blob_sha256": hashlib.sha256(blob).hexdigest(),
        "xz_bytes": len(xz),
        "xz_sha256": hashlib.sha256(xz).hexdigest(),
        **(extra or {}),
    }


def _whole_xz(folder: Path, manifest: dict | None) -> bytes:
    """The whole xz stream: ``cifar10-lqs.xz``, else the parts of an earlier split joined (sha256 checked)."""
    path = folder / XZ_FILE
    if path.is_file():
        xz = path.read_bytes()
    elif manifest and manifest.get("parts"):
        check_parts(folder, manifest)
        xz = b"".join((folder / p["file"]).read_bytes() for p in manifest["parts"])
    else:
        raise PackError(f"{folder}: neither {XZ_FILE} nor parts to split; run `pack` first")
    if manifest and hashlib.sha256(xz).hexdigest() != manifest["xz_sha256"]:
        raise PackError(f"{folder}: the xz stream does not have the manifest's sha256")
    return xz


def fit_sizes(total: int, base: int, wheels: int, margin: int = int(DEFAULT_MARGIN_MIB * MIB),
              limit: int = CALL_LIMIT) -> list:
    """Part sizes that fill each call up to ``limit - margin``: every call sends the repository (``base`` bytes),
    the first call the wheels too; the last part is the rest."""
    room = limit - margin - base - MANIFEST_RESERVE
    if room - wheels <= 0:
        raise PackError(f"the repository ({base / MIB:.1f} MiB) and the wheels ({wheels / MIB:.1f} MiB) leave no "
                        f"room below {limit / MIB:.0f} MiB - {margin / MIB:.1f} MiB margin")
    sizes, left = [], total
    while left > 0:
        size = min(left, room - (wheels if not sizes else 0))
        sizes.append(size)
        left -= size
    return sizes or [0]


def split_parts(out_dir, sizes=None, part_mib: float | None = None, parts: int | None = None) -> dict:
    """Split the xz stream under ``out_dir`` into parts (explicit byte ``sizes``, or ``parts`` equal parts, or parts
    of ``part_mib`` MiB) and write the manifest; no recompression. Returns the manifest."""
    out = Path(out_dir)
    manifest = json.loads((out / MANIFEST).read_text()) if (out / MANIFEST).is_file() else None
    base = json.loads((out / (MANIFEST + ".base")).read_text()) if (out / (MANIFEST + ".base")).is_file() else manifest
    if base is None:
        raise PackError(f"{out}: no manifest; run `pack` first")
    xz = _whole_xz(out, manifest or base)
    if sizes is None:
        if parts is not None:
            if parts < 1:
                raise ValueError(f"--parts must be >= 1, got {parts}")
            step = -(-len(xz) // parts)
            sizes = [min(step, len(xz) - i) for i in range(0, len(xz), step)]
        else:
            if not (part_mib or 0) > 0:
                raise ValueError(f"--part-mib must be > 0, got {part_mib!r}")
            step = int(part_mib * MIB)
            sizes = [min(step, len(xz) - i) for i in range(0, len(xz), step)]
    if sum(sizes) != len(xz) or any(s <= 0 for s in sizes):
        raise ValueError(f"part sizes {sizes} do not add up to the stream's {len(xz)} bytes")
    if not (out / XZ_FILE).is_file():  # keep the whole stream: later splits need no parts
        (out / XZ_FILE).write_bytes(xz)
    for old in out.glob(PART_PREFIX + "*"):
        old.unlink()
    entries, offset = [], 0
    for k, size in enumerate(sizes, start=1):
        chunk = xz[offset:offset + size]
        offset += size
        name = f"{PART_PREFIX}{k:03d}"
        (out / name).write_bytes(chunk)
        entries.append({"file": name, "bytes": len(chunk), "sha256": hashlib.sha256(chunk).hexdigest()})
    fields = {k: v for k, v in base.items() if k != "parts"}
    new = {**fields, "parts": entries}
    tmp = out / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(new, indent=2) + "\n")
    os.replace(tmp, out / MANIFEST)
    return new


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
    write_batches(batches, out_dir)
    from lqs_core import data

    return data.fetch("cifar10", data_dir=str(out_dir))  # the loader's own check of the written files


def pack(data_dir, out_dir, preset: int = 9 | lzma.PRESET_EXTREME, **split_args) -> dict:
    """Read and verify the batches under ``data_dir``, encode, compress into ``<out_dir>/cifar10-lqs.xz`` and split
    (``split_args`` as :func:`split_parts`; default: fitted to the calls, :func:`fit_sizes`)."""
    batches = read_batches(data_dir)
    content = content_sha256(batches)
    if content != expected_content_sha256():  # fetch verified it already; a second look costs a second
        raise PackError(f"{data_dir}: content sha256 {content} is not CIFAR-10's")
    base = compress_blob(to_blob(batches), out_dir, preset, extra={"content_sha256": content, "batches": list(BATCHES)})
    out = Path(out_dir)
    (out / MANIFEST).unlink(missing_ok=True)
    (out / (MANIFEST + ".base")).write_text(json.dumps(base, indent=2) + "\n")
    if not split_args.get("sizes") and not split_args.get("parts") and not split_args.get("part_mib"):
        split_args["sizes"] = fit_sizes(base["xz_bytes"], travelling_bytes(), wheel_bytes())
    return split_parts(out_dir, **split_args)


def wheel_bytes(wheels_dir=REPO / ".whl") -> int:
    folder = Path(wheels_dir)
    return sum(p.stat().st_size for p in folder.glob("*.whl")) if folder.is_dir() else 0


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


def plan(parts_dir, wheels_dir=REPO / ".whl", repo=REPO, safety_mib: float = PLAN_SAFETY_MIB) -> dict:
    """What each device call sends (the repository + ``.gpu_data/cifar10-lqs.json`` + its part; the wheels in call
    1) against the 64 MiB limit: a call fits with at least ``safety_mib`` to spare (``split`` leaves
    :data:`DEFAULT_MARGIN_MIB`, so the repository may grow by the difference before a new ``split`` is needed)."""
    manifest = read_manifest(parts_dir)
    base = travelling_bytes(repo)
    wheels = wheel_bytes(wheels_dir)
    man = (Path(parts_dir) / MANIFEST).stat().st_size
    calls = []
    for k, p in enumerate(manifest["parts"], start=1):
        carried = p["bytes"] + man + (wheels if k == 1 else 0)
        folder = Path(parts_dir).name
        calls.append({"call": k, "carry": [f"{folder}/{MANIFEST}", f"{folder}/{p['file']}"]
                      + ([".whl"] if k == 1 else []), "carry_mib": round(carried / MIB, 2),
                      "total_mib": round((base + carried) / MIB, 2),
                      "headroom_mib": round((CALL_LIMIT - base - carried) / MIB, 2),
                      "fits": base + carried <= CALL_LIMIT - safety_mib * MIB})
    return {"repository_mib": round(base / MIB, 2), "wheels_mib": round(wheels / MIB, 2),
            "limit_mib": CALL_LIMIT / MIB, "safety_mib": safety_mib, "calls": calls,
            "ok": all(c["fits"] for c in calls)}


def _split_options(p) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--parts", type=int, help="N equal parts")
    g.add_argument("--part-mib", type=float, help="parts of at most this many MiB")
    p.add_argument("--margin-mib", type=float, default=DEFAULT_MARGIN_MIB,
                   help="default split: parts that fill each call up to 64 MiB minus this (default %(default)s), "
                        "the repository and, in call 1, the wheels (.whl) counted")


def _split_args(ap, args) -> dict:
    if args.parts is not None:
        if args.parts < 1:
            ap.error(f"--parts must be >= 1, got {args.parts}")
        return {"parts": args.parts}
    if args.part_mib is not None:
        if not args.part_mib > 0:
            ap.error(f"--part-mib must be > 0, got {args.part_mib}")
        return {"part_mib": args.part_mib}
    if not args.margin_mib >= 0:
        ap.error(f"--margin-mib must be >= 0, got {args.margin_mib}")
    if args.cmd == "pack":
        return {}  # fitted after compression, when the stream's size is known
    base = json.loads((Path(args.out) / MANIFEST).read_text()) if (Path(args.out) / MANIFEST).is_file() else None
    if base is None:
        ap.error(f"{args.out}: nothing packed yet; run `pack` first")
    try:
        return {"sizes": fit_sizes(base["xz_bytes"], travelling_bytes(), wheel_bytes(),
                                   int(args.margin_mib * MIB))}
    except PackError as e:
        ap.error(str(e))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pack", help="here: verified CIFAR-10 copy -> xz stream -> parts + manifest")
    p.add_argument("--data-dir", required=True,
                   help="folder holding cifar-10-batches-py/ (e.g. shared/data/keras/datasets)")
    p.add_argument("--out", default=str(REPO / ".gpu_data"), help="ignored folder for the parts (default .gpu_data)")
    p.add_argument("--preset", type=int, default=9, help="xz preset 0..9 (extreme mode on; default 9)")
    _split_options(p)
    p = sub.add_parser("split", help="here: split the packed stream again (no recompression), e.g. after the "
                                     "repository grew")
    p.add_argument("--out", default=str(REPO / ".gpu_data"))
    _split_options(p)
    p = sub.add_parser("receive", help="there: copy this call's parts into the staging folder, check them")
    p.add_argument("src", help="the carried folder (.gpu_data)")
    p.add_argument("staging", help="staging folder on the device (/tmp/lqs_parts)")
    p = sub.add_parser("unpack", help="there: all parts -> verified cifar-10-batches-py/")
    p.add_argument("staging")
    p.add_argument("out", help="data folder to write (its cifar-10-batches-py/ is what the loader reads)")
    p = sub.add_parser("plan", help="here: MiB that travel in each call against the 64 MiB limit")
    p.add_argument("--parts", default=str(REPO / ".gpu_data"))
    p.add_argument("--wheels", default=str(REPO / ".whl"))
    p.add_argument("--safety-mib", type=float, default=PLAN_SAFETY_MIB,
                   help="a call fits with at least this much below 64 MiB (default %(default)s)")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    try:
        if args.cmd in ("pack", "split"):
            split_args = _split_args(ap, args)
            if args.cmd == "pack":
                if not 0 <= args.preset <= 9:
                    ap.error(f"--preset must be in 0..9, got {args.preset}")
                m = pack(args.data_dir, args.out, args.preset | lzma.PRESET_EXTREME, **split_args)
            else:
                m = split_parts(args.out, **split_args)
            print(f"{m['blob_bytes'] / MIB:.1f} MiB -> xz {m['xz_bytes'] / MIB:.2f} MiB in {len(m['parts'])} parts: "
                  + ", ".join(f"{p['file']} {p['bytes'] / MIB:.2f} MiB" for p in m["parts"]))
        elif args.cmd == "receive":
            missing = receive(args.src, args.staging)
            have = sorted(f.name for f in Path(args.staging).glob(PART_PREFIX + "*") if not f.name.endswith(".tmp"))
            print(f"staged in {args.staging}: {', '.join(have) or '-'}; still missing: {', '.join(missing) or 'none'}")
        elif args.cmd == "unpack":
            root = unpack(args.staging, args.out)
            print(f"CIFAR-10 verified (content sha256 {expected_content_sha256()[:16]}…) at {root}")
        else:
            result = plan(args.parts, args.wheels, safety_mib=args.safety_mib)
            print(json.dumps(result, indent=2))
            if not result["ok"]:
                print("error: a call does not fit; `split` again (or with --parts N+1)", file=sys.stderr)
                return 1
    except PackError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"({args.cmd}: {time.perf_counter() - t0:.1f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
