"""The integer file (``.lqsint``), format version 2: bytes from integer tensors, scales and raw weights.

This module builds the bytes (so that :mod:`lqs_core.metrics` can measure a model's file size without a file) and
reads and checks files of versions 1 and 2 (numpy only); :mod:`lqs_core.export` writes files and loads them into
models. The format, with a
reader in plain numpy, is documented in docs/deploy.md. All little-endian::

    offset 0   6 bytes   magic b"LQSINT"
           6   uint16    format version (2)
           8   uint32    header length H
          12   uint32    CRC-32 of the H header bytes
          16   H bytes   header: zlib-compressed UTF-8 JSON (version 1: the JSON itself, uncompressed)
      16 + H             payload: per tensor its coded integers then its float32 scale, then the other weights;
                         every block at the (offset, nbytes) the header gives, relative to the payload start

Header: ``{"format": "lqs-integers", "version": 2, "tensors": [...], "other": [...] or null, "payload_bytes",
"payload_crc32"}``; a tensor entry holds ``name, host, param, shape, rounding, granularity, axis, coding, min,
max, bits, offset, nbytes, scale_shape, scale_offset, scale_nbytes`` and, for ``coding == "huffman"``,
``symbols, lengths`` (the canonical Huffman table, :mod:`lqs_core.entropy`); an ``other`` entry ``name, shape,
dtype, offset, nbytes`` (the raw little-endian array).

Limits a reader checks before it allocates or decodes anything (a ``ValueError`` names the file, the field and
what is allowed): a header of at most :data:`MAX_HEADER_BYTES` (after decompression, inflated with that output
limit) and JSON nesting Python can parse; tensors of at most :data:`MAX_DIMS` dimensions and, all of a file's tensors
together, at most :data:`MAX_ELEMENTS` elements; each tensor's data no smaller than its coding needs for the declared
element count (:mod:`lqs_core.entropy`), so that decoding allocates at most a fixed factor of the file's size. A
constant tensor (``bits = 0``, no data) is read as a read-only broadcast of its one value (``numpy.broadcast_to``):
its declared size costs no memory.
"""

from __future__ import annotations

import json
import math
import struct
import zlib
from typing import Iterable, List, Optional, Tuple

import numpy as np

from lqs_core import entropy

MAGIC = b"LQSINT"
FORMAT_NAME = "lqs-integers"
FORMAT_VERSION = 2
#: Versions :mod:`lqs_core.export` reads.
READ_VERSIONS = (1, 2)
PREFIX = struct.Struct("<6sHII")  # magic, version, header length, header crc32
#: Most elements a file may declare, all its tensors together: 2**31 (16 GiB as int64). A file of lqs' models
#: holds far fewer; the limit keeps a small crafted header from asking for gigabytes.
MAX_ELEMENTS = 2**31
#: Most bytes of a header's JSON (64 MiB; a tensor entry with its Huffman table takes a few kB).
MAX_HEADER_BYTES = 2**26
#: Most dimensions of a tensor (numpy's limit).
MAX_DIMS = 64


def encode_header(header: dict, version: int = FORMAT_VERSION) -> bytes:
    """The header bytes: compact JSON, zlib-compressed (level 9) from version 2 on."""
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    return zlib.compress(raw, 9) if version >= 2 else raw


def _header_json(data: bytes, version: int) -> bytes:
    """The header's JSON bytes, at most :data:`MAX_HEADER_BYTES` (inflated with that output limit)."""
    if version < 2:
        raw = data
    else:
        inflater = zlib.decompressobj()
        try:
            raw = inflater.decompress(data, MAX_HEADER_BYTES + 1)
        except zlib.error as e:
            raise ValueError(f"corrupt header ({e}).") from None
        if len(raw) <= MAX_HEADER_BYTES and not inflater.eof:
            raise ValueError("corrupt header (incomplete or truncated zlib stream).")
    if len(raw) > MAX_HEADER_BYTES:
        raise ValueError(f"header too large: its JSON has more than {MAX_HEADER_BYTES} bytes (MAX_HEADER_BYTES), "
                         "the most a header may have.")
    return raw


def decode_header(data: bytes, version: int) -> dict:
    """Inverse of :func:`encode_header` (``ValueError`` for bytes that are not such a header)."""
    raw = _header_json(data, version)
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"corrupt header ({e}).") from None
    except RecursionError:
        raise ValueError("corrupt header: its JSON is nested too deeply to parse (a header is an object of lists of "
                         "flat objects).") from None


def build(tensors: Iterable[dict], other: Optional[Iterable[Tuple[str, np.ndarray]]] = None,
          coding: str = "auto") -> Tuple[bytes, dict]:
    """The file's bytes and ``{"coded_bytes", "scale_bytes", "other_bytes", "header_bytes", "n_tensors"}``.

    ``tensors``: dicts with ``name, host, param, rounding, granularity, axis`` and the int64 integers ``q`` and
    float32 scale ``s``; each is coded by :func:`lqs_core.entropy.encode` (``coding``: ``"auto"`` = the smallest of
    packed, Huffman and DEFLATE, or one of them for all). ``other``: ``(name, array)`` pairs stored raw, or ``None``.
    """
    payload: List[bytes] = []
    offset = 0

    def add(block: bytes) -> Tuple[int, int]:
        nonlocal offset
        payload.append(block)
        start, offset = offset, offset + len(block)
        return start, len(block)

    entries, coded, scale_bytes = [], 0, 0
    for t in tensors:
        q = np.asarray(t["q"], dtype=np.int64)
        s = np.asarray(t["s"], dtype="<f4")
        fields, data = entropy.encode(q, coding)
        t_off, t_len = add(data)
        s_off, s_len = add(s.tobytes())
        coded, scale_bytes = coded + t_len, scale_bytes + s_len
        entry = {
            "name": t["name"], "host": t["host"], "param": t["param"], "shape": [int(d) for d in q.shape],
            "rounding": t["rounding"], "granularity": t["granularity"], "axis": t["axis"],
            "coding": fields["coding"], "min": fields["min"], "max": fields["max"], "bits": fields["bits"],
            "offset": t_off, "nbytes": t_len,
            "scale_shape": [int(d) for d in s.shape], "scale_offset": s_off, "scale_nbytes": s_len,
        }
        if fields["coding"] == "huffman":
            entry.update(symbols=fields["symbols"], lengths=fields["lengths"])
        entries.append(entry)
    stored_other, other_bytes = None, 0
    if other is not None:
        stored_other = []
        for name, a in other:
            a = np.asarray(a)
            a = a.astype(a.dtype.newbyteorder("<"))
            o_off, o_len = add(a.tobytes())
            other_bytes += o_len
            stored_other.append({"name": name, "shape": list(a.shape), "dtype": a.dtype.str, "offset": o_off,
                                 "nbytes": o_len})
    body = b"".join(payload)
    header = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "tensors": entries, "other": stored_other,
              "payload_bytes": len(body), "payload_crc32": zlib.crc32(body)}
    header_bytes = encode_header(header)
    blob = PREFIX.pack(MAGIC, FORMAT_VERSION, len(header_bytes), zlib.crc32(header_bytes)) + header_bytes + body
    return blob, {"coded_bytes": coded, "scale_bytes": scale_bytes, "other_bytes": other_bytes,
                  "header_bytes": PREFIX.size + len(header_bytes), "n_tensors": len(entries)}


# ---------------------------------------------------------------------------------------------------------------
# Read (versions 1 and 2)


def scale_problem(s) -> Optional[str]:
    """``None`` if every value of the scale ``s`` is finite and > 0, else what is wrong with it."""
    s = np.asarray(s, dtype=np.float64)
    bad = ~(np.isfinite(s) & (s > 0))
    if not bad.any():
        return None
    values = s[bad].ravel()
    shown = ", ".join(f"{v:.6g}" for v in values[:3]) + (", ..." if values.size > 3 else "")
    return f"{int(bad.sum())} of {s.size} scale value(s) are not finite and > 0 ({shown}); a scale must be a finite float > 0"


def read_file(path) -> Tuple[dict, bytes]:
    with open(path, "rb") as f:
        blob = f.read()
    if len(blob) < PREFIX.size:
        raise ValueError(
            f"{path}: truncated file or not an lqs integer file: {len(blob)} bytes, shorter than the "
            f"{PREFIX.size}-byte prefix (magic {MAGIC!r}, format version, header length, header CRC-32)."
        )
    magic, version, header_len, header_crc = PREFIX.unpack_from(blob, 0)
    if magic != MAGIC:
        raise ValueError(
            f"{path}: not an lqs integer file: it starts with {magic!r}, an lqs integer file starts with {MAGIC!r}."
        )
    if version not in READ_VERSIONS:
        raise ValueError(f"{path}: unsupported format version {version}; this lqs reads versions "
                         f"{', '.join(map(str, READ_VERSIONS))} only.")
    header_bytes = blob[PREFIX.size : PREFIX.size + header_len]
    if len(header_bytes) != header_len:
        raise ValueError(
            f"{path}: truncated file: the header is {header_len} bytes, only {len(header_bytes)} follow the prefix."
        )
    if zlib.crc32(header_bytes) != header_crc:
        raise ValueError(f"{path}: corrupt file (header checksum mismatch).")
    try:
        header = decode_header(header_bytes, version)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
    if not isinstance(header, dict):
        raise ValueError(f"{path}: corrupt header (a JSON {type(header).__name__}, expected an object).")
    if header.get("format") != FORMAT_NAME or header.get("version") != version:
        raise ValueError(
            f"{path}: unsupported format {header.get('format')!r} version {header.get('version')!r} "
            f"(expected {FORMAT_NAME!r} version {version}, as the file's prefix says)."
        )
    for key in ("payload_bytes", "payload_crc32"):
        if not _is_int(header.get(key)) or header[key] < 0:
            raise ValueError(f"{path}: corrupt header ({key} is {header.get(key)!r}, expected an integer >= 0).")
    body = blob[PREFIX.size + header_len :]
    if len(body) < header["payload_bytes"]:
        raise ValueError(
            f"{path}: truncated file: the payload is {len(body)} bytes, the header says {header['payload_bytes']}."
        )
    if len(body) > header["payload_bytes"]:
        raise ValueError(
            f"{path}: corrupt file: {len(body)} bytes of payload, the header says {header['payload_bytes']} "
            "(trailing data after the payload)."
        )
    if zlib.crc32(body) != header["payload_crc32"]:
        raise ValueError(f"{path}: corrupt file (payload checksum mismatch).")
    return header, body


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _field_int(t: dict, key: str, what: str, low: Optional[int] = None, high: Optional[int] = None) -> int:
    v = t[key]
    if not _is_int(v) or (low is not None and v < low) or (high is not None and v > high):
        allowed = "an integer" + (f" in {low}..{high}" if low is not None and high is not None else "")
        allowed += f" >= {low}" if low is not None and high is None else ""
        raise ValueError(f"corrupt header: {what}: {key} is {v!r}, expected {allowed}.")
    return v


def _field_shape(t: dict, key: str, what: str) -> Tuple[int, ...]:
    v = t[key]
    if not isinstance(v, list) or len(v) > MAX_DIMS or not all(_is_int(d) and 0 <= d <= MAX_ELEMENTS for d in v):
        shown = repr(v) if len(repr(v)) <= 200 else repr(v)[:200] + "..."
        raise ValueError(f"corrupt header: {what}: {key} is {shown}, expected a list of integers >= 0 (at most "
                         f"{MAX_DIMS} of them, each at most {MAX_ELEMENTS}).")
    return tuple(v)


def _field_ints(t: dict, key: str, what: str, low: int, high: int) -> List[int]:
    v = t[key]
    if not isinstance(v, list) or not all(_is_int(x) and low <= x <= high for x in v):
        shown = repr(v) if len(repr(v)) <= 200 else repr(v)[:200] + "..."
        raise ValueError(f"corrupt header: {what}: {key} is {shown}, expected a list of integers in {low}..{high}.")
    return v


def _block(body: bytes, offset: int, nbytes: int, what: str) -> bytes:
    if not (_is_int(offset) and _is_int(nbytes)) or offset < 0 or nbytes < 0 or offset + nbytes > len(body):
        raise ValueError(
            f"corrupt file: the block of {what} (offset {offset!r}, {nbytes!r} bytes) lies outside the payload of "
            f"{len(body)} bytes."
        )
    return body[offset : offset + nbytes]


def _check_tensor(t: dict, body: bytes) -> dict:
    """One header entry checked against its blocks of ``body``, nothing decoded: ``{name, shape, count, data,
    scale_shape, s_data, entry}``. The data must be at least what its coding needs for ``count`` values."""
    if not isinstance(t, dict):
        raise ValueError(f"corrupt header: a tensor entry is a {type(t).__name__}, expected an object.")
    name = t["name"]
    what = f"tensor {name!r}"
    if not isinstance(name, str):
        raise ValueError(f"corrupt header: tensor name {name!r} is not a string.")
    shape = _field_shape(t, "shape", what)
    bits = _field_int(t, "bits", what, 0, entropy._MAX_BITS)
    lo = _field_int(t, "min", what, entropy._INT64_MIN, entropy._INT64_MAX)
    hi = _field_int(t, "max", what, lo, entropy._INT64_MAX)
    if (hi - lo).bit_length() > bits:
        raise ValueError(f"corrupt header: {what}: {bits} bits cannot hold its integer range {lo}..{hi}.")
    coding = t.get("coding", "packed")  # version 1 files are packed
    if coding not in entropy.CODINGS:
        raise ValueError(f"corrupt header: {what}: coding is {coding!r}, expected one of {entropy.CODINGS}.")
    count = math.prod(shape)
    if count > MAX_ELEMENTS:
        raise ValueError(f"{what}: shape {list(shape)} has {count} elements, more than the {MAX_ELEMENTS} "
                         "(MAX_ELEMENTS) a file may hold.")
    if coding == "huffman":
        _field_ints(t, "symbols", what, entropy._INT64_MIN, entropy._INT64_MAX)
        _field_ints(t, "lengths", what, 1, entropy._MAX_BITS)
    data = _block(body, t["offset"], t["nbytes"], what)
    scale_shape = _field_shape(t, "scale_shape", f"{what} scale")
    s_data = _block(body, t["scale_offset"], t["scale_nbytes"], f"{what} scale")
    if len(s_data) != 4 * math.prod(scale_shape):
        raise ValueError(
            f"corrupt file: the scale of {what} has {len(s_data)} bytes, shape {scale_shape} needs "
            f"{4 * math.prod(scale_shape)} (float32)."
        )
    try:
        np.broadcast_shapes(scale_shape, shape)
    except ValueError:
        raise ValueError(
            f"corrupt header: {what}: scale shape {scale_shape} does not broadcast to the tensor shape {shape}."
        ) from None
    return {"name": name, "shape": shape, "count": count, "lo": lo, "hi": hi, "data": data,
            "scale_shape": scale_shape, "s_data": s_data, "entry": t}


def check_tensors(header: dict, body: bytes) -> List[dict]:
    """Every tensor entry of ``header`` checked (:func:`_check_tensor`), names distinct and at most
    :data:`MAX_ELEMENTS` elements in all, before anything is decoded or allocated."""
    entries = header["tensors"]
    if not isinstance(entries, list):
        raise ValueError(f"corrupt header: 'tensors' is {type(entries).__name__}, expected a list.")
    checked_, names, total = [], set(), 0
    for t in entries:
        c = _check_tensor(t, body)
        if c["name"] in names:
            raise ValueError(f"corrupt header: tensor name {c['name']!r} appears twice.")
        names.add(c["name"])
        total += c["count"]
        if total > MAX_ELEMENTS:
            raise ValueError(f"the tensors up to {c['name']!r} have {total} elements, more than the {MAX_ELEMENTS} "
                             "(MAX_ELEMENTS) a file may hold.")
        checked_.append(c)
    return checked_


def _is_constant(c: dict) -> bool:
    """A tensor of one value stored without data: ``bits = 0``, packed or DEFLATE (of no bytes)."""
    return c["entry"]["bits"] == 0 and c["entry"].get("coding", "packed") != "huffman"


def _decode_tensor(c: dict) -> Tuple[np.ndarray, np.ndarray]:
    """``(P_q, s)`` of one entry checked by :func:`_check_tensor`. A constant tensor (:func:`_is_constant`) is a
    read-only broadcast of its one value: its size costs no memory, whatever shape the header declares."""
    what = f"tensor {c['name']!r}"
    lo, hi = c["lo"], c["hi"]
    try:
        if _is_constant(c):
            entropy.decode(c["entry"], c["data"], 0)  # the data of no values (DEFLATE: must inflate to 0 bytes)
            values = np.broadcast_to(np.int64(lo), c["shape"])
        else:
            values = entropy.decode(c["entry"], c["data"], c["count"]).reshape(c["shape"])
    except ValueError as e:
        raise ValueError(f"corrupt file: {what}: {e}") from None
    if values.size and not _is_constant(c) and (int(values.min()) < lo or int(values.max()) > hi):
        raise ValueError(
            f"corrupt file: {what} unpacks to {int(values.min())}..{int(values.max())}, outside the range "
            f"{lo}..{hi} its header declares."
        )
    s = np.frombuffer(c["s_data"], dtype="<f4")
    problem = scale_problem(s)
    if problem:
        raise ValueError(f"{what}: {problem}.")
    return values, s.reshape(c["scale_shape"]).astype(np.float32)


def decode(header: dict, body: bytes):
    """``({name: P_q int64}, {name: s float32})``: every entry checked first (:func:`check_tensors`), then
    decoded."""
    tensors, scales_ = {}, {}
    for c in check_tensors(header, body):
        tensors[c["name"]], scales_[c["name"]] = _decode_tensor(c)
    return tensors, scales_


def checked(path, fn, *args):
    """``fn(*args)``, with a malformed header field (KeyError, TypeError, ...) or a ValueError reported as a
    ``ValueError`` that names ``path``."""
    try:
        return fn(*args)
    except KeyError as e:
        raise ValueError(f"{path}: corrupt header (missing field {e.args[0]!r}).") from None
    except (TypeError, IndexError, AttributeError, OverflowError) as e:
        raise ValueError(f"{path}: corrupt header (malformed field: {e}).") from None
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None


def read(path) -> Tuple[dict, dict, dict]:
    """``(header, {name: P_q int64}, {name: s float32})`` of the checked file at ``path`` (version 1 or 2)."""
    header, body = read_file(path)
    tensors, scales = checked(path, decode, header, body)
    return header, tensors, scales


def recoded_size(path) -> int:
    """Bytes of the integer file of ``path``'s quantized tensors alone, written by this version (every tensor
    entropy-coded, ``coding="auto"``, no other weights): :func:`lqs_core.metrics.entropy_bytes` of the model that
    wrote it. Measures files of version 1 (fixed-width packed) as if written today."""
    header, tensors, scales = read(path)
    records = [dict(name=t["name"], host=t["host"], param=t["param"], rounding=t["rounding"],
                    granularity=t["granularity"], axis=t["axis"], q=tensors[t["name"]], s=scales[t["name"]])
               for t in header["tensors"]]
    return len(build(records)[0])


__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "MAGIC", "MAX_DIMS", "MAX_ELEMENTS", "MAX_HEADER_BYTES", "PREFIX",
           "READ_VERSIONS", "build", "check_tensors", "checked", "decode", "decode_header", "encode_header", "read",
           "read_file", "recoded_size", "scale_problem"]
