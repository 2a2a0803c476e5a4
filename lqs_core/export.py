"""Compact export of a trained quantized model: bit-packed integer tensors + float32 scales (SPEC §3).

:func:`save_integers` writes, for every quantized parameter (in :func:`lqs_core.layers.quantized_params` order),
the integers ``P_q = floor(P / s)`` offset by their min and bit-packed to their fixed width
``bits = ceil(log2(max - min + 1))`` (LSB first, numpy ``packbits``), the min (int64) and the scale (float32); and,
unless ``include_other=False``, every other weight of the model (non-quantized layers, BatchNorm statistics) raw in
its own dtype, so that :func:`load_integers` reproduces the trained model's predictions exactly.

File layout, format version 1 (all little-endian)::

    offset 0   6 bytes   magic b"LQSINT"
           6   uint16    format version (1)
           8   uint32    header length H
          12   uint32    CRC-32 of the header
          16   H bytes   header: UTF-8 JSON (format, version, tensors, other, payload_bytes, payload_crc32)
      16 + H             payload: per tensor its packed bits then its float32 scale, then the other weights;
                         every block at the (offset, nbytes) the header gives, relative to the payload start

Each header tensor entry holds ``name, host, param, shape, rounding, granularity, min, max, bits, offset, nbytes,
scale_shape, scale_offset, scale_nbytes``. The payload of a tensor is ``ceil(numel · bits / 8)`` bytes, so the
file is the packed size of :func:`lqs_core.metrics.packed_size_bytes` (whose ``+ 8`` for the min lives in the
header) plus the header and the other weights. Files are written atomically (temporary file + ``os.replace``).

Loading sets each scale to the stored scale and each float parameter to the middle of its integer's bin,
``P = (P_q + 0.5) · s`` for ``floor`` (``P_q · s`` for ``round``): ``P_q · s`` itself may floor to ``P_q - 1`` after
float32 rounding. Elements whose ``integers(P)`` still differs (large ``|P_q|``, where float32 spacing approaches
``s``) are moved one float32 step at a time towards their bin; the load raises if any integer still differs.
"""

from __future__ import annotations

import json
import os
import struct
import warnings
import zlib
from typing import Dict, Tuple

import numpy as np

from lqs_core.atomic import write_bytes
from lqs_core.layers import quantized_params
from lqs_core.metrics import _as_int_array, _to_numpy, _unique_names, bits_fixed, packed_size_bytes

MAGIC = b"LQSINT"
FORMAT_NAME = "lqs-integers"
FORMAT_VERSION = 1
_PREFIX = struct.Struct("<6sHII")  # magic, version, header length, header crc32
_CHUNK = 1 << 16  # elements per packing chunk (a multiple of 8, so chunks end on byte boundaries)
_MAX_NUDGES = 16


# ---------------------------------------------------------------------------------------------------------------
# Bit packing


def pack_bits(values: np.ndarray, bits: int) -> Tuple[bytes, int]:
    """Pack an integer array to ``bits`` bits per value (offset by its min, LSB first): ``(bytes, min)``."""
    v = _as_int_array(values).ravel()
    if v.size == 0:
        return b"", 0
    lo = int(v.min())
    if bits < bits_fixed(v):
        raise ValueError(f"{bits} bits cannot hold the range {lo}..{int(v.max())}.")
    if bits == 0:
        return b"", lo
    u = (v - lo).astype(np.uint64)  # v - lo >= 0 and < 2**63 for int64 input
    shifts = np.arange(bits, dtype=np.uint64)
    parts = []
    for start in range(0, u.size, _CHUNK):
        chunk = u[start : start + _CHUNK]
        bitmat = ((chunk[:, None] >> shifts) & np.uint64(1)).astype(np.uint8)
        parts.append(np.packbits(bitmat.ravel(), bitorder="little").tobytes())
    return b"".join(parts), lo


def unpack_bits(data: bytes, count: int, bits: int, minimum: int) -> np.ndarray:
    """Inverse of :func:`pack_bits`: ``count`` int64 values of ``bits`` bits each, plus ``minimum``."""
    if bits == 0:
        return np.full(count, minimum, dtype=np.int64)
    need = -(-count * bits // 8)
    if len(data) != need:
        raise ValueError(f"packed data has {len(data)} bytes, expected {need} for {count} values of {bits} bits.")
    raw = np.frombuffer(data, dtype=np.uint8)
    weights = np.left_shift(np.uint64(1), np.arange(bits, dtype=np.uint64))
    out = np.empty(count, dtype=np.int64)
    chunk_bytes = _CHUNK * bits // 8
    for i, start in enumerate(range(0, count, _CHUNK)):
        n = min(_CHUNK, count - start)
        bitmat = np.unpackbits(raw[i * chunk_bytes : i * chunk_bytes + -(-n * bits // 8)], bitorder="little")
        bitmat = bitmat[: n * bits].reshape(n, bits).astype(np.uint64)
        u = (bitmat * weights).sum(axis=1, dtype=np.uint64)
        out[start : start + n] = u.astype(np.int64) + np.int64(minimum)
    return out


# ---------------------------------------------------------------------------------------------------------------
# Save


def _quantized(model):
    params = quantized_params(model)
    if not params:
        raise ValueError(
            f"Model {getattr(model, 'name', model)!r} has no quantized parameters (no built QDense/QConv2D or other "
            "QuantizedLayer); nothing to export."
        )
    return list(zip(_unique_names(params), params))


def _other_weights(model, entries):
    """Weights of ``model`` that are neither a quantized parameter nor a scale, in ``model.weights`` order."""
    skip = set()
    for _, (_, _, _, variable, quantizer) in entries:
        skip.add(id(variable))
        skip.add(id(quantizer.scale))
    return [w for w in model.weights if id(w) not in skip]


def _weight_name(w) -> str:
    return str(getattr(w, "path", None) or getattr(w, "name", "weight"))


def save_integers(model, path, include_other: bool = True) -> dict:
    """Write the integer tensors and scales of ``model`` to ``path`` (format above); atomic.

    ``include_other`` also stores the model's non-quantized weights (raw), so that :func:`load_integers` restores
    the whole model. Returns ``{"path", "file_bytes", "packed_bytes", "header_bytes", "other_bytes",
    "n_tensors"}`` where ``packed_bytes`` is the sum of :func:`lqs_core.metrics.packed_size_bytes` of the tensors.
    """
    entries = _quantized(model)
    payload, tensors, packed_total = [], [], 0
    offset = 0

    def add(block: bytes) -> Tuple[int, int]:
        nonlocal offset
        payload.append(block)
        start, offset = offset, offset + len(block)
        return start, len(block)

    for name, (_, layer, param, variable, quantizer) in entries:
        q = _to_numpy(quantizer.integers(variable))
        if not np.all(np.isfinite(q)):
            raise ValueError(f"{name}: floor(P / s) has non-finite values; cannot export.")
        q = q.astype(np.int64)
        s = _to_numpy(quantizer.scale).astype("<f4")
        bits = bits_fixed(q)
        data, lo = pack_bits(q, bits)
        t_off, t_len = add(data)
        s_off, s_len = add(s.tobytes())
        packed_total += packed_size_bytes(q, s)
        tensors.append(
            {
                "name": name,
                "host": type(layer).__name__,
                "param": param,
                "shape": [int(d) for d in q.shape],
                "rounding": str(getattr(quantizer, "rounding", "floor")),
                "granularity": str(getattr(quantizer, "granularity", "")),
                "axis": getattr(quantizer, "axis", None),
                "min": lo,
                "max": int(q.max()) if q.size else lo,
                "bits": bits,
                "offset": t_off,
                "nbytes": t_len,
                "scale_shape": [int(d) for d in s.shape],
                "scale_offset": s_off,
                "scale_nbytes": s_len,
            }
        )

    other, other_bytes = [], 0
    if include_other:
        for w in _other_weights(model, entries):
            a = _to_numpy(w)
            a = a.astype(a.dtype.newbyteorder("<"))
            o_off, o_len = add(a.tobytes())
            other_bytes += o_len
            other.append(
                {"name": _weight_name(w), "shape": list(a.shape), "dtype": a.dtype.str, "offset": o_off, "nbytes": o_len}
            )

    body = b"".join(payload)
    header = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "tensors": tensors,
        "other": other if include_other else None,
        "payload_bytes": len(body),
        "payload_crc32": zlib.crc32(body),
    }
    header_bytes = json.dumps(header, separators=(",", ":")).encode("utf-8")
    blob = _PREFIX.pack(MAGIC, FORMAT_VERSION, len(header_bytes), zlib.crc32(header_bytes)) + header_bytes + body
    write_bytes(path, blob, fsync=True)
    return {
        "path": os.fspath(path),
        "file_bytes": len(blob),
        "packed_bytes": int(packed_total),
        "header_bytes": _PREFIX.size + len(header_bytes),
        "other_bytes": int(other_bytes),
        "n_tensors": len(tensors),
    }


# ---------------------------------------------------------------------------------------------------------------
# Read


def _read(path) -> Tuple[dict, bytes]:
    with open(path, "rb") as f:
        blob = f.read()
    if len(blob) < _PREFIX.size:
        raise ValueError(f"{path}: truncated or not an lqs integer file ({len(blob)} bytes).")
    magic, version, header_len, header_crc = _PREFIX.unpack_from(blob, 0)
    if magic != MAGIC:
        raise ValueError(f"{path}: not an lqs integer file (bad magic {magic!r}).")
    if version != FORMAT_VERSION:
        raise ValueError(f"{path}: unsupported format version {version} (this lqs reads version {FORMAT_VERSION}).")
    header_bytes = blob[_PREFIX.size : _PREFIX.size + header_len]
    if len(header_bytes) != header_len:
        raise ValueError(f"{path}: truncated file (header cut short).")
    if zlib.crc32(header_bytes) != header_crc:
        raise ValueError(f"{path}: corrupt file (header checksum mismatch).")
    try:
        header = json.loads(header_bytes.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: corrupt header ({e}).") from None
    if header.get("format") != FORMAT_NAME or header.get("version") != FORMAT_VERSION:
        raise ValueError(
            f"{path}: unsupported format {header.get('format')!r} version {header.get('version')!r} "
            f"(expected {FORMAT_NAME!r} version {FORMAT_VERSION})."
        )
    body = blob[_PREFIX.size + header_len :]
    if len(body) != header.get("payload_bytes"):
        raise ValueError(
            f"{path}: truncated or corrupt file (payload is {len(body)} bytes, header says {header.get('payload_bytes')})."
        )
    if zlib.crc32(body) != header.get("payload_crc32"):
        raise ValueError(f"{path}: corrupt file (payload checksum mismatch).")
    return header, body


def _block(body: bytes, offset: int, nbytes: int, what: str) -> bytes:
    if offset < 0 or nbytes < 0 or offset + nbytes > len(body):
        raise ValueError(f"corrupt file: block of {what} lies outside the payload.")
    return body[offset : offset + nbytes]


def _decode(header: dict, body: bytes):
    tensors, scales_ = {}, {}
    for t in header["tensors"]:
        shape = tuple(t["shape"])
        count = int(np.prod(shape, dtype=np.int64))
        data = _block(body, t["offset"], t["nbytes"], t["name"])
        values = unpack_bits(data, count, int(t["bits"]), int(t["min"])).reshape(shape)
        s_data = _block(body, t["scale_offset"], t["scale_nbytes"], f"{t['name']} scale")
        s = np.frombuffer(s_data, dtype="<f4")
        if s.size != int(np.prod(t["scale_shape"], dtype=np.int64)):
            raise ValueError(f"corrupt file: scale of {t['name']} has {s.size} values for shape {t['scale_shape']}.")
        tensors[t["name"]] = values
        scales_[t["name"]] = s.reshape(tuple(t["scale_shape"])).astype(np.float32)
    return tensors, scales_


def read_header(path) -> dict:
    """The (checked) JSON header of an integer file: format, version, per-tensor entries, other weights."""
    return _read(path)[0]


def read_integers(path) -> Tuple[Dict[str, np.ndarray], Dict[str, np.ndarray]]:
    """``({name: P_q int64}, {name: s float32})`` from a file written by :func:`save_integers`, no model needed."""
    header, body = _read(path)
    return _checked_decode(path, header, body)


def _checked_decode(path, header, body):
    try:
        return _decode(header, body)
    except (KeyError, TypeError, IndexError) as e:
        raise ValueError(f"{path}: corrupt header (missing or malformed field {e}).") from None
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None


# ---------------------------------------------------------------------------------------------------------------
# Load


def _float_for_integers(q: np.ndarray, s: np.ndarray, rounding: str) -> np.ndarray:
    offset = 0.5 if rounding == "floor" else 0.0
    return ((q.astype(np.float64) + offset) * s.astype(np.float64)).astype(np.float32)


def load_integers(model, path, match: str = "order") -> dict:
    """Load a file from :func:`save_integers` into ``model`` (same architecture), reproducing its predictions.

    Each scale is set to the stored scale and each float parameter to the middle of its integer's bin (see the
    module docstring); afterwards ``quantizer.integers(P)`` equals the stored ``P_q`` exactly or this raises.
    ``match="order"`` pairs stored and model tensors by position (layer names may differ, e.g. ``q_dense`` vs
    ``q_dense_1`` in a second model); ``match="name"`` requires equal tensor names. In both cases the host class,
    parameter name, shape, scale shape and rounding must agree; a ``ValueError`` names the tensor otherwise. The
    stored non-quantized weights, if any, are assigned in order as well. Every check on the file and the model's
    structure runs before anything is assigned; only the (rare) float32 failure above can leave the model partly
    loaded. Returns ``{"tensors": n, "other": n}``, the counts assigned.
    """
    if match not in ("order", "name"):
        raise ValueError(f"match must be 'order' or 'name', got {match!r}.")
    header, body = _read(path)
    stored_ints, stored_scales = _checked_decode(path, header, body)
    entries = _quantized(model)
    stored = header["tensors"]
    if len(stored) != len(entries):
        raise ValueError(
            f"{path}: the file has {len(stored)} quantized tensors ({', '.join(t['name'] for t in stored)}), "
            f"the model {len(entries)} ({', '.join(n for n, _ in entries)})."
        )
    if match == "name":
        by_name = {t["name"]: t for t in stored}
        missing = [n for n, _ in entries if n not in by_name]
        if missing:
            raise ValueError(f"{path}: the file has no tensor named {missing[0]!r} (it has {sorted(by_name)}).")
        pairs = [(by_name[n], (n, e)) for n, e in entries]
    else:
        pairs = list(zip(stored, entries))

    plan = []
    for t, (name, (_, layer, param, variable, quantizer)) in pairs:
        label = f"tensor {name!r} (file: {t['name']!r})"
        if t["host"] != type(layer).__name__ or t["param"] != param:
            raise ValueError(f"{label}: the file holds {t['host']}.{t['param']}, the model {type(layer).__name__}.{param}.")
        if tuple(t["shape"]) != tuple(variable.shape):
            raise ValueError(f"{label}: shape {tuple(t['shape'])} in the file, {tuple(variable.shape)} in the model.")
        if tuple(t["scale_shape"]) != tuple(quantizer.scale.shape):
            raise ValueError(
                f"{label}: scale shape {tuple(t['scale_shape'])} in the file, {tuple(quantizer.scale.shape)} in the "
                "model (different granularity?)."
            )
        rounding = str(getattr(quantizer, "rounding", "floor"))
        if t["rounding"] != rounding:
            raise ValueError(f"{label}: rounding {t['rounding']!r} in the file, {rounding!r} in the model.")
        plan.append((name, t["name"], variable, quantizer, rounding))

    other_plan = []
    stored_other = header.get("other")
    model_other = _other_weights(model, entries)
    if stored_other is not None:
        if len(stored_other) != len(model_other):
            raise ValueError(
                f"{path}: the file has {len(stored_other)} non-quantized weights, the model {len(model_other)}."
            )
        for o, w in zip(stored_other, model_other):
            if tuple(o["shape"]) != tuple(w.shape):
                raise ValueError(
                    f"weight {_weight_name(w)!r} (file: {o['name']!r}): shape {tuple(o['shape'])} in the file, "
                    f"{tuple(w.shape)} in the model."
                )
            raw = _block(body, o["offset"], o["nbytes"], o["name"])
            dtype = np.dtype(o["dtype"])
            if len(raw) != dtype.itemsize * int(np.prod(o["shape"], dtype=np.int64)):
                raise ValueError(f"corrupt file: weight {o['name']!r} has {len(raw)} bytes for its shape and dtype.")
            other_plan.append((w, np.frombuffer(raw, dtype=dtype).reshape(tuple(o["shape"]))))
    elif model_other:
        warnings.warn(
            f"{path} holds no non-quantized weights; the model's {len(model_other)} other weights are left as they are.",
            stacklevel=2,
        )

    for name, file_name, variable, quantizer, rounding in plan:
        q, s = stored_ints[file_name], stored_scales[file_name]
        quantizer.scale.assign(s)
        s_b = np.broadcast_to(s, q.shape)
        p = _float_for_integers(q, s_b, rounding)
        for _ in range(_MAX_NUDGES + 1):
            variable.assign(p)
            got = _to_numpy(quantizer.integers(variable)).astype(np.int64)
            low, high = got < q, got > q
            if not (low.any() or high.any()):
                break
            p = np.where(low, np.nextafter(p, np.float32(np.inf)), p)
            p = np.where(high, np.nextafter(p, np.float32(-np.inf)), p).astype(np.float32)
        else:
            bad = int((got != q).sum())
            raise ValueError(
                f"tensor {name!r}: {bad} element(s) have no float32 value P with {rounding}(P / s) equal to the stored "
                "integer; the loaded model would not reproduce the trained one."
            )
    for w, value in other_plan:
        w.assign(value)
    return {"tensors": len(plan), "other": len(other_plan)}


__all__ = [
    "FORMAT_VERSION",
    "load_integers",
    "pack_bits",
    "read_header",
    "read_integers",
    "save_integers",
    "unpack_bits",
]
