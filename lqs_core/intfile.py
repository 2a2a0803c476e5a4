"""The integer file (``.lqsint``), format version 2: bytes from integer tensors, scales and raw weights.

This module only writes the bytes (so that :mod:`lqs_core.metrics` can measure a model's file size without a file);
:mod:`lqs_core.export` writes files, reads versions 1 and 2 and loads them into models. The format, with a
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
"""

from __future__ import annotations

import json
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


def encode_header(header: dict, version: int = FORMAT_VERSION) -> bytes:
    """The header bytes: compact JSON, zlib-compressed (level 9) from version 2 on."""
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    return zlib.compress(raw, 9) if version >= 2 else raw


def decode_header(data: bytes, version: int) -> dict:
    """Inverse of :func:`encode_header` (``ValueError`` for bytes that are not such a header)."""
    try:
        raw = zlib.decompress(data) if version >= 2 else data
        return json.loads(raw.decode("utf-8"))
    except (zlib.error, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"corrupt header ({e}).") from None


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


__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "MAGIC", "PREFIX", "READ_VERSIONS", "build", "decode_header",
           "encode_header"]
