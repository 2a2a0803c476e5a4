"""The integer file of a trained quantized model: entropy-coded integer tensors + float32 scales (docs/deploy.md).

:func:`save_integers` writes, for every quantized parameter (in :func:`lqs_core.layers.quantized_params` order),
the integers ``P_q`` (the quantizer's own rule, ``floor(P / s)`` for the nested quantizer) coded by
:func:`lqs_core.entropy.encode` — canonical Huffman, or fixed-width packing ``bits = ceil(log2(max - min + 1))``
where that is smaller (``coding="auto"``) — and its scale (float32); and, unless ``include_other=False``, every
other weight of the model (non-quantized layers, BatchNorm statistics) raw in its own dtype, so that
:func:`load_integers` reproduces the trained model's predictions exactly. The bytes are :mod:`lqs_core.intfile`'s
format version 2 (zlib-compressed JSON header); files of version 1 (packed only, plain JSON header, lqs 0.1) are
read as before. :func:`read_integers` needs no model; docs/deploy.md has a reader of a few lines of numpy that
needs neither lqs nor TensorFlow. The file of the quantized tensors alone (``include_other=False``) is the size
:func:`lqs_core.metrics.report` calls ``entropy_bytes``. Files are written atomically (temporary file +
``os.replace``).

Loading sets each scale to the stored scale and each float parameter to the middle of its integer's bin,
``P = (P_q + 0.5) · s`` for ``floor`` (``P_q · s`` for ``round``): ``P_q · s`` itself may floor to ``P_q - 1`` after
float32 rounding. Elements whose ``integers(P)`` still differs (large ``|P_q|``, where float32 spacing approaches
``s``) are moved one float32 step at a time towards their bin; the load raises if any integer still differs.

Checks (every one raises ``ValueError`` naming the tensor or file, the bad value and what is allowed):

* saving refuses a scale that is not finite and > 0 and integers ``P_q`` outside the int64 range (a scale too small
  for its weights), which would otherwise be written wrapped; the check runs before anything is written, so an
  existing file at ``path`` is kept;
* reading refuses a file that is truncated, has another magic or format version, fails a checksum, or whose
  header is malformed (bits outside 0..64, an integer range that is not int64 or does not fit its bits, a scale
  shape that does not broadcast to its tensor, duplicate names, a Huffman table that is no prefix code), whose
  scales are not finite and > 0, or whose decoded integers fall outside the range its header declares; limits on
  the header's size and the elements it declares are checked before anything is decoded (:mod:`lqs_core.intfile`);
* loading into a model checks the file and the model's structure (count, host, parameter, shapes, rounding, the
  other weights' shapes, dtypes and finite values) before it decodes any tensor or assigns anything, and restores
  the model's previous values if an assignment still fails (the float32 case above): on any error the model is
  unchanged.
"""

from __future__ import annotations

import os
import warnings
from typing import Dict, List, Optional, Tuple

import numpy as np

from lqs_core import entropy, intfile
from lqs_core.atomic import write_bytes
from lqs_core.entropy import _CHUNK, _INT64_MAX, _INT64_MIN, _MAX_BITS, pack_bits, unpack_bits  # noqa: F401
from lqs_core.intfile import FORMAT_NAME, FORMAT_VERSION, MAGIC, READ_VERSIONS
from lqs_core.intfile import PREFIX as _PREFIX
from lqs_core.intfile import _block, _field_shape, checked as _checked, decode as _decode, read_file as _read
from lqs_core.intfile import scale_problem as _scale_problem
from lqs_core.layers import quantized_params
from lqs_core.metrics import _to_numpy, _unique_names, packed_size_bytes

_MAX_NUDGES = 16


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


def _integers_for_export(name: str, variable, quantizer, path) -> np.ndarray:
    """``integers(P)`` of one quantized parameter as int64, or a ``ValueError`` naming the tensor and the range."""
    rounding = str(getattr(quantizer, "rounding", "floor"))
    q = _to_numpy(quantizer.integers(variable))
    if not np.all(np.isfinite(q)):
        raise ValueError(
            f"tensor {name!r}: {rounding}(P / s) has {int((~np.isfinite(q)).sum())} non-finite value(s) (NaN/inf "
            f"weights); the file stores int64 integers only. Nothing was written to {os.fspath(path)!r}."
        )
    if q.size:
        lo, hi = float(q.min()), float(q.max())
        if lo < -(2.0**63) or hi >= 2.0**63:
            p_max = float(np.max(np.abs(_to_numpy(variable))))
            s_min = float(np.min(_to_numpy(quantizer.scale)))
            raise ValueError(
                f"tensor {name!r}: {rounding}(P / s) spans {lo:.6g}..{hi:.6g}, outside the int64 range "
                f"{_INT64_MIN}..{_INT64_MAX} that the file stores (max |P| = {p_max:.6g}, min s = {s_min:.6g}: the "
                f"scale is too small for these weights); refusing to write wrapped integers. Nothing was written to "
                f"{os.fspath(path)!r}."
            )
    return q.astype(np.int64)


def encode_integers(model, include_other: bool = True, coding: str = "auto", path="<memory>") -> Tuple[bytes, dict]:
    """The bytes :func:`save_integers` would write, and its report (without ``path``); nothing is written."""
    entries = _quantized(model)
    tensors, packed_total = [], 0
    for name, (_, layer, param, variable, quantizer) in entries:
        s = _to_numpy(quantizer.scale).astype("<f4")
        problem = _scale_problem(s)
        if problem:
            raise ValueError(f"tensor {name!r}: {problem}. Nothing was written to {os.fspath(path)!r}.")
        q = _integers_for_export(name, variable, quantizer, path)
        packed_total += packed_size_bytes(q, s)
        tensors.append({"name": name, "host": type(layer).__name__, "param": param, "q": q, "s": s,
                        "rounding": str(getattr(quantizer, "rounding", "floor")),
                        "granularity": str(getattr(quantizer, "granularity", "")),
                        "axis": getattr(quantizer, "axis", None)})
    other = [(_weight_name(w), _to_numpy(w)) for w in _other_weights(model, entries)] if include_other else None
    blob, info = intfile.build(tensors, other, coding)
    return blob, {"file_bytes": len(blob), "packed_bytes": int(packed_total), **info}


def save_integers(model, path, include_other: bool = True, coding: str = "auto") -> dict:
    """Write the integer tensors and scales of ``model`` to ``path`` (format: :mod:`lqs_core.intfile`); atomic.

    ``include_other`` also stores the model's non-quantized weights (raw), so that :func:`load_integers` restores
    the whole model. ``coding``: ``"auto"`` (per tensor the smallest of canonical Huffman, DEFLATE and fixed-width
    packing), ``"huffman"``, ``"deflate"`` or ``"packed"``. Returns ``{"path", "file_bytes", "packed_bytes",
    "coded_bytes", "scale_bytes", "header_bytes", "other_bytes", "n_tensors"}`` where ``packed_bytes`` is the sum of
    :func:`lqs_core.metrics.packed_size_bytes` of the tensors and ``coded_bytes`` what their integers take in the
    file. Raises ``ValueError`` (before anything is written) for a model without quantized parameters, a scale that
    is not finite and > 0, integers that are not finite or exceed int64, and an unknown ``coding``.
    """
    if coding not in ("auto", *entropy.CODINGS):
        raise ValueError(f"Unknown coding {coding!r}; allowed: 'auto', {', '.join(map(repr, entropy.CODINGS))}.")
    blob, info = encode_integers(model, include_other, coding, path)
    write_bytes(path, blob, fsync=True)
    return {"path": os.fspath(path), **info}


# ---------------------------------------------------------------------------------------------------------------
# Read


def read_header(path) -> dict:
    """The (checked) JSON header of an integer file: format, version, per-tensor entries, other weights."""
    return _read(path)[0]


def read_integers(path) -> Tuple[Dict[str, np.ndarray], Dict[str, np.ndarray]]:
    """``({name: P_q int64}, {name: s float32})`` from a file written by :func:`save_integers`, no model needed.

    A constant tensor (one value, stored without data) is a read-only broadcast of that value (``np.array(q)``
    copies it). Raises ``ValueError`` for a file that is not a valid integer file (module docstring, "Checks")."""
    header, body = _read(path)
    return _checked(path, _decode, header, body)


# ---------------------------------------------------------------------------------------------------------------
# Load


def _float_for_integers(q: np.ndarray, s: np.ndarray, rounding: str) -> np.ndarray:
    offset = 0.5 if rounding == "floor" else 0.0
    return ((q.astype(np.float64) + offset) * s.astype(np.float64)).astype(np.float32)


def _pair(stored: List[dict], entries, match: str):
    if len(stored) != len(entries):
        raise ValueError(
            f"the file has {len(stored)} quantized tensors ({', '.join(t['name'] for t in stored)}), "
            f"the model {len(entries)} ({', '.join(n for n, _ in entries)})."
        )
    if match == "name":
        by_name = {t["name"]: t for t in stored}
        missing = [n for n, _ in entries if n not in by_name]
        if missing:
            raise ValueError(f"the file has no tensor named {missing[0]!r} (it has {sorted(by_name)}).")
        return [(by_name[n], (n, e)) for n, e in entries]
    return list(zip(stored, entries))


def _plan_tensors(pairs):
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
    return plan


def _model_dtype(w) -> Optional[np.dtype]:
    try:
        return np.dtype(getattr(w, "dtype", None))
    except TypeError:  # e.g. bfloat16, which numpy does not name: no dtype check
        return None


def _plan_other(stored_other, model_other, body):
    if not isinstance(stored_other, list):
        raise ValueError(f"corrupt header: 'other' is {type(stored_other).__name__}, expected a list or null.")
    if len(stored_other) != len(model_other):
        raise ValueError(f"the file has {len(stored_other)} non-quantized weights, the model {len(model_other)}.")
    plan = []
    for o, w in zip(stored_other, model_other):
        label = f"weight {_weight_name(w)!r} (file: {o['name']!r})"
        shape = _field_shape(o, "shape", label)
        if shape != tuple(w.shape):
            raise ValueError(f"{label}: shape {shape} in the file, {tuple(w.shape)} in the model.")
        dtype = np.dtype(o["dtype"])
        if dtype.kind not in "biufc":
            raise ValueError(f"corrupt header: {label}: dtype {o['dtype']!r}, expected a numeric dtype.")
        target = _model_dtype(w)
        if target is not None and not np.can_cast(dtype, target, "same_kind"):
            raise ValueError(f"{label}: dtype {dtype} in the file cannot be assigned to the model's {target}.")
        raw = _block(body, o["offset"], o["nbytes"], label)
        if len(raw) != dtype.itemsize * int(np.prod(shape, dtype=np.int64)):
            raise ValueError(f"corrupt file: {label} has {len(raw)} bytes for shape {shape} and dtype {dtype}.")
        value = np.frombuffer(raw, dtype=dtype).reshape(shape)
        _check_finite(value, label)
        plan.append((w, value))
    return plan


def _check_finite(value: np.ndarray, label: str) -> None:
    """A float weight must be finite (NaN/inf would make every prediction NaN)."""
    if value.dtype.kind in "fc" and not np.all(np.isfinite(value)):
        bad = int((~np.isfinite(value)).sum())
        raise ValueError(f"{label}: {bad} of {value.size} value(s) are NaN or inf; a weight must be finite.")


def _assign_tensor(name, variable, quantizer, rounding, q, s):
    quantizer.scale.assign(s)
    p = _float_for_integers(q, np.broadcast_to(s, q.shape), rounding)
    for _ in range(_MAX_NUDGES + 1):
        variable.assign(p)
        got = _to_numpy(quantizer.integers(variable)).astype(np.int64)
        low, high = got < q, got > q
        if not (low.any() or high.any()):
            return
        p = np.where(low, np.nextafter(p, np.float32(np.inf)), p)
        p = np.where(high, np.nextafter(p, np.float32(-np.inf)), p).astype(np.float32)
    bad = int((got != q).sum())
    raise ValueError(
        f"tensor {name!r}: {bad} element(s) have no float32 value P with {rounding}(P / s) equal to the stored "
        "integer; the loaded model would not reproduce the trained one. The model was left unchanged."
    )


def load_integers(model, path, match: str = "order") -> dict:
    """Load a file from :func:`save_integers` into ``model`` (same architecture), reproducing its predictions.

    Each scale is set to the stored scale and each float parameter to the middle of its integer's bin (see the
    module docstring); afterwards ``quantizer.integers(P)`` equals the stored ``P_q`` exactly or this raises.
    ``match="order"`` pairs stored and model tensors by position (layer names may differ, e.g. ``q_dense`` vs
    ``q_dense_1`` in a second model); ``match="name"`` requires equal tensor names. In both cases the host class,
    parameter name, shape, scale shape and rounding must agree; a ``ValueError`` names the tensor otherwise. The
    stored non-quantized weights, if any, are assigned in order as well (same shapes, castable dtypes).

    Every check on the file (including its scales: finite and > 0) and on the model's structure runs before
    anything is assigned, the file's shapes against the model's before any tensor is decoded; if an assignment
    still fails (the float32 case of the module docstring), the model's previous values are restored. On any error
    the model is unchanged. Returns ``{"tensors": n, "other": n}``, the counts assigned.
    """
    if match not in ("order", "name"):
        raise ValueError(f"match must be 'order' or 'name', got {match!r}.")
    header, body = _read(path)
    stored = [c["entry"] for c in _checked(path, intfile.check_tensors, header, body)]  # fields only, no decoding
    entries = _quantized(model)
    pairs = _checked(path, _pair, stored, entries, match)
    plan = _checked(path, _plan_tensors, pairs)  # shapes against the model's before anything is decoded
    other_plan = []
    stored_other = header.get("other")
    model_other = _other_weights(model, entries)
    if stored_other is not None:
        other_plan = _checked(path, _plan_other, stored_other, model_other, body)
    elif model_other:
        warnings.warn(
            f"{path} holds no non-quantized weights; the model's {len(model_other)} other weights are left as they are.",
            stacklevel=2,
        )
    stored_ints, stored_scales = _checked(path, _decode, header, body)

    # Every check passed and nothing is assigned yet. Keep the current values of everything assigned below, so that
    # a failure (an integer no float32 reproduces, or an error from the backend) leaves the model as it was.
    touched = [quantizer.scale for _, _, _, quantizer, _ in plan] + [variable for _, _, variable, _, _ in plan]
    touched += [w for w, _ in other_plan]
    backup = [(v, np.array(_to_numpy(v), copy=True)) for v in touched]
    try:
        for name, file_name, variable, quantizer, rounding in plan:
            _assign_tensor(name, variable, quantizer, rounding, stored_ints[file_name], stored_scales[file_name])
        for w, value in other_plan:
            w.assign(value)
    except BaseException:
        for v, value in backup:
            v.assign(value)
        raise
    return {"tensors": len(plan), "other": len(other_plan)}


__all__ = [
    "FORMAT_VERSION",
    "encode_integers",
    "load_integers",
    "pack_bits",
    "read_header",
    "read_integers",
    "save_integers",
    "unpack_bits",
]
