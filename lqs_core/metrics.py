"""Size and integer metrics of a quantized model (docs/method.md §3), in plain numpy / pandas.

Every metric is computed on the integer tensors of the quantized parameters ``P`` of a model,

    P_q = floor(P / s)                        # the quantizer's own rule (``round`` where rounding="round")

keyed ``"layer/param"`` in :func:`lqs_core.layers.quantized_params` order. With ``n`` the number of elements of a
tensor, ``c_v`` the count of value ``v`` in it and ``p_v = c_v / n``:

* unique integers      ``U = |∪_tensors {distinct values}|``            (union over all tensors)
* integer range        ``max |P_q|`` over all tensors (what the thesis plots), plus the global ``min`` / ``max``
* bits (thesis text)   ``bits_unique(U) = ceil(log2 U)``                (0 for a single value)
* fixed-width bits     ``bits_fixed(P_q) = ceil(log2(max - min + 1))`` (0 for a constant tensor)
* entropy              ``H = -Σ_v p_v log2 p_v`` bits per element       (the lower bound of any symbol code)
* Huffman size         ``Σ_v c_v · len_v`` bits, ``len_v`` the Huffman code lengths (1 bit/element for one symbol),
                       plus the code table ``64 + 32 + U_t · (bits_fixed + 6)`` bits (int64 offset, uint32 symbol
                       count, then per symbol its offset value in ``bits_fixed`` bits and its code length in 6 bits)
* packed size          ``ceil(n · bits_fixed / 8) + 8 + 4 · #s`` bytes  (values offset by min, bit-packed; the min
                       as int64; the scales as float32)
* entropy-coded file   ``entropy_bytes``: the integer file (:mod:`lqs_core.intfile`) of the quantized tensors,
                       each coded by the smallest of canonical Huffman, DEFLATE and fixed-width packing, + scales, header
* zipped size (thesis) each ``P_q`` saved as ``.npy`` in the smallest signed integer dtype holding its range
                       (int8 where it fits — never wrapped, int16/int32/int64 otherwise), all in one DEFLATE zip;
                       the FP32 baseline is the same tensors' float weights ``P`` as float32 ``.npy`` in one zip.

The scales are not part of the zipped measure (the thesis zips only ``P_q``); they are part of the packed size.
:func:`summary` is the per-tensor table (the learned-scale analogue of ``larq.models.summary``), :func:`report` the
flat JSON-ready dict of a finished run, :func:`epoch_stats` the cheap per-epoch numbers for training logs.
"""

from __future__ import annotations

import io
import zipfile
from typing import Dict, Iterable, Mapping, Tuple, Union

import numpy as np
import pandas as pd

from lqs_core import entropy, intfile
from lqs_core.layers import quantized_params

TensorsLike = Union[Mapping[str, np.ndarray], Iterable[np.ndarray], np.ndarray]

#: Fixed timestamp of every zip member, so the zipped sizes and bytes are deterministic.
ZIP_DATE_TIME = (1980, 1, 1, 0, 0, 0)
#: Signed integer dtypes tried, smallest first, by :func:`smallest_int_dtype`.
INT_DTYPES = (np.int8, np.int16, np.int32, np.int64)


# ---------------------------------------------------------------------------------------------------------------
# Model -> tensors


def _params_or_raise(model):
    params = quantized_params(model)
    if not params:
        raise ValueError(
            f"Model {getattr(model, 'name', model)!r} has no quantized parameters (no built QDense/QConv2D or other "
            "QuantizedLayer); the integer metrics need at least one."
        )
    return params


def _unique_names(params):
    """Tensor names from ``quantized_params``; a repeated name (possible with nested models) gets ``#2``, ``#3``..."""
    seen: Dict[str, int] = {}
    names = []
    for tensor_name, *_ in params:
        seen[tensor_name] = seen.get(tensor_name, 0) + 1
        names.append(tensor_name if seen[tensor_name] == 1 else f"{tensor_name}#{seen[tensor_name]}")
    return names


def _to_numpy(x) -> np.ndarray:
    import keras

    return np.asarray(keras.ops.convert_to_numpy(x))


def _integers_of(name, variable, quantizer) -> np.ndarray:
    q = _to_numpy(quantizer.integers(variable))
    if not np.all(np.isfinite(q)):
        raise ValueError(f"{name}: floor(P / s) has non-finite values (NaN/inf weights or scales).")
    if q.size and np.max(np.abs(q)) >= 2.0**63:
        raise ValueError(f"{name}: floor(P / s) exceeds the int64 range.")
    return q.astype(np.int64)


def integer_tensors(model) -> Dict[str, np.ndarray]:
    """``{"layer/param": P_q}`` with ``P_q = floor(P / s)`` (``quantizer.integers``) as int64, in layer order."""
    params = _params_or_raise(model)
    return {
        name: _integers_of(name, variable, quantizer)
        for name, (_, _, _, variable, quantizer) in zip(_unique_names(params), params)
    }


def scales(model) -> Dict[str, np.ndarray]:
    """``{"layer/param": s}``: each quantized parameter's scale as a float32 array (the scale's own shape)."""
    params = _params_or_raise(model)
    return {
        name: _to_numpy(quantizer.scale).astype(np.float32)
        for name, (_, _, _, _, quantizer) in zip(_unique_names(params), params)
    }


def float_tensors(model) -> Dict[str, np.ndarray]:
    """``{"layer/param": P}``: the float parameters themselves (float32), i.e. the FP32 baseline of the same layers."""
    params = _params_or_raise(model)
    return {
        name: _to_numpy(variable).astype(np.float32)
        for name, (_, _, _, variable, _) in zip(_unique_names(params), params)
    }


# ---------------------------------------------------------------------------------------------------------------
# Integer-tensor metrics


def _as_int_array(tensor, name: str = "tensor") -> np.ndarray:
    """``tensor`` as an int64 array; float input must hold finite integer values."""
    a = np.asarray(tensor)
    if a.dtype.kind in "iub":
        return a.astype(np.int64, copy=False)
    if a.dtype.kind == "f":
        if not np.all(np.isfinite(a)) or not np.array_equal(a, np.floor(a)):
            raise ValueError(f"{name}: expected integer values, got non-integer or non-finite floats.")
        return a.astype(np.int64)
    raise ValueError(f"{name}: expected an integer array, got dtype {a.dtype}.")


def _tensor_list(tensors: TensorsLike):
    if isinstance(tensors, np.ndarray):
        return [_as_int_array(tensors)]
    if isinstance(tensors, Mapping):
        return [_as_int_array(t, str(k)) for k, t in tensors.items()]
    return [_as_int_array(t) for t in tensors]


def _distinct(t: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Sorted distinct values of an int64 array and their counts; ``np.bincount`` (O(n)) where the range is
    small against the size, as it is for quantized weights, ``np.unique`` (a sort) otherwise."""
    t = t.ravel()
    if t.size == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    lo, hi = int(t.min()), int(t.max())
    if hi - lo < max(1 << 16, 2 * t.size):
        counts = np.bincount(t - lo, minlength=hi - lo + 1)
        values = np.flatnonzero(counts)
        return values.astype(np.int64) + lo, counts[values].astype(np.int64)
    values, counts = np.unique(t, return_counts=True)
    return values.astype(np.int64), counts.astype(np.int64)


def unique_integers(tensors: TensorsLike) -> int:
    """``|∪_t distinct(t)|``: the number of distinct integer values over all tensors together (union)."""
    distinct = [_distinct(t)[0] for t in _tensor_list(tensors)]
    if not distinct:
        return 0
    return int(_distinct(np.concatenate(distinct))[0].size)


def integer_range(tensors: TensorsLike) -> Tuple[int, int]:
    """``(min, max)`` of the integer values over all tensors."""
    arrays = [t for t in _tensor_list(tensors) if t.size]
    if not arrays:
        raise ValueError("integer_range: no integer values (empty input).")
    return int(min(t.min() for t in arrays)), int(max(t.max() for t in arrays))


def max_abs_integer(tensors: TensorsLike) -> int:
    """``max |P_q|`` over all tensors: the "integer range" the thesis plots."""
    lo, hi = integer_range(tensors)
    return max(abs(lo), abs(hi))


def bits_unique(n_unique: int) -> int:
    """``ceil(log2(n_unique))`` (thesis text): bits to index ``n_unique`` values; 0 for one value (or none)."""
    n = int(n_unique)
    if n < 0:
        raise ValueError(f"n_unique must be >= 0, got {n_unique!r}.")
    return max(n - 1, 0).bit_length()  # exact ceil(log2 n) for n >= 1, no float rounding


def bits_fixed(tensor) -> int:
    """``ceil(log2(max - min + 1))``: the fixed width a tensor's values need once offset by its min (0 if constant)."""
    t = _as_int_array(tensor)
    if t.size == 0:
        return 0
    return int(int(t.max()) - int(t.min())).bit_length()


def _counts(tensor) -> np.ndarray:
    return _distinct(_as_int_array(tensor))[1]


def entropy_bits(tensor) -> float:
    """Shannon entropy per element in bits: ``H = -Σ_v p_v log2 p_v`` with ``p_v`` the value frequencies."""
    counts = _counts(tensor)
    if counts.size <= 1:
        return 0.0
    p = counts / counts.sum()
    return float(-(p * np.log2(p)).sum())


def huffman_code_lengths(counts) -> np.ndarray:
    """Code lengths of a Huffman code for symbol ``counts`` (built with ``heapq``); one symbol gets length 1."""
    return entropy.code_lengths(counts)


def _table_bits(n_symbols: int, width: int) -> int:
    return 64 + 32 + n_symbols * (width + 6)


def huffman_table_bits(tensor) -> int:
    """Code-table cost: ``64 + 32 + U · (bits_fixed + 6)`` bits (int64 min, uint32 symbol count, per symbol its
    offset value in ``bits_fixed`` bits and its code length in 6 bits — enough to rebuild a canonical code)."""
    t = _as_int_array(tensor)
    return _table_bits(int(_counts(t).size), bits_fixed(t))


def huffman_bits(tensor, table: bool = True) -> int:
    """Total bits of the tensor Huffman-coded: ``Σ_v c_v · len_v`` (+ :func:`huffman_table_bits` if ``table``)."""
    t = _as_int_array(tensor)
    counts = _counts(t)
    data = int((counts * huffman_code_lengths(counts)).sum()) if counts.size else 0
    return data + (_table_bits(int(counts.size), bits_fixed(t)) if table else 0)


def packed_size_bytes(tensor, scale) -> int:
    """Fixed-width packed size: ``ceil(numel · bits_fixed / 8) + 8 + 4 · numel(scale)`` bytes
    (values offset by their min and bit-packed, the min as int64, the scales as float32)."""
    t = _as_int_array(tensor)
    return -(-t.size * bits_fixed(t) // 8) + 8 + 4 * int(np.size(scale))


def smallest_int_dtype(tensor) -> np.dtype:
    """The smallest signed integer dtype (int8, int16, int32, int64) that holds every value of ``tensor``."""
    t = _as_int_array(tensor)
    if t.size == 0:
        return np.dtype(np.int8)
    lo, hi = int(t.min()), int(t.max())
    for dtype in INT_DTYPES:
        info = np.iinfo(dtype)
        if info.min <= lo and hi <= info.max:
            return np.dtype(dtype)
    raise ValueError(f"values {lo}..{hi} do not fit int64.")  # unreachable for int64 input


def _zip_arrays(arrays: Mapping[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, array in arrays.items():
            npy = io.BytesIO()
            np.save(npy, array, allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=ZIP_DATE_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, npy.getvalue())
    return buffer.getvalue()


def _named(tensors: TensorsLike) -> Dict[str, np.ndarray]:
    if isinstance(tensors, np.ndarray):
        return {"tensor_0": tensors}
    if isinstance(tensors, Mapping):
        return {str(k): v for k, v in tensors.items()}
    return {f"tensor_{i}": t for i, t in enumerate(tensors)}


def npy_zip_bytes(tensors: TensorsLike) -> bytes:
    """The zip of the thesis' measure: each integer tensor as ``<name>.npy`` in :func:`smallest_int_dtype`,
    DEFLATE-compressed, fixed timestamps (deterministic bytes)."""
    named = {k: _as_int_array(v, k) for k, v in _named(tensors).items()}
    return _zip_arrays({k: v.astype(smallest_int_dtype(v)) for k, v in named.items()})


def read_npy_zip(data: bytes) -> Dict[str, np.ndarray]:
    """Read back a zip of ``.npy`` members (from :func:`npy_zip_bytes`): ``{name: array}``."""
    out = {}
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        for name in archive.namelist():
            with archive.open(name) as f:
                out[name[:-4] if name.endswith(".npy") else name] = np.load(io.BytesIO(f.read()), allow_pickle=False)
    return out


def zipped_npy_size_bytes(tensors: TensorsLike) -> int:
    """Thesis measure: bytes of one DEFLATE zip of every ``P_q`` as ``.npy`` in the smallest signed int dtype
    holding its range (int8 where it fits; never wrapped)."""
    return len(npy_zip_bytes(tensors))


def zipped_float_size_bytes(arrays: TensorsLike) -> int:
    """FP32 baseline of the thesis measure: bytes of one DEFLATE zip of every array as a float32 ``.npy``."""
    return len(_zip_arrays({k: np.asarray(v, dtype=np.float32) for k, v in _named(arrays).items()}))


# ---------------------------------------------------------------------------------------------------------------
# Model-level tables and reports

SUMMARY_COLUMNS = [
    "tensor", "shape", "params", "granularity", "rounding", "n_scales", "scale_mean", "unique", "min", "max",
    "max_abs", "bits_unique", "bits_fixed", "entropy_bits", "huffman_bytes", "packed_bytes", "float32_bytes",
]


def _records(model):
    """Per quantized tensor what :func:`lqs_core.intfile.build` takes: name, host, param, ``P_q``, ``s``,
    rounding, granularity, axis."""
    params = _params_or_raise(model)
    return [{"name": name, "host": type(layer).__name__, "param": param,
             "q": _integers_of(name, variable, quantizer), "s": _to_numpy(quantizer.scale).astype(np.float32),
             "rounding": str(getattr(quantizer, "rounding", "floor")),
             "granularity": str(getattr(quantizer, "granularity", "")), "axis": getattr(quantizer, "axis", None)}
            for name, (_, layer, param, variable, quantizer) in zip(_unique_names(params), params)]


def _row(record) -> dict:
    """The :func:`summary` row of one tensor's record (:func:`_records`)."""
    q, s = record["q"], record["s"]
    n_unique = unique_integers(q)
    return {
        "tensor": record["name"],
        "shape": tuple(int(d) for d in q.shape),
        "params": int(q.size),
        "granularity": f"axis={record['axis']}" if record["axis"] is not None else (record["granularity"] or "?"),
        "rounding": record["rounding"],
        "n_scales": int(s.size),
        "scale_mean": float(s.astype(np.float64).mean()),
        "unique": n_unique,
        "min": int(q.min()) if q.size else 0,
        "max": int(q.max()) if q.size else 0,
        "max_abs": int(np.abs(q).max()) if q.size else 0,
        "bits_unique": bits_unique(n_unique),
        "bits_fixed": bits_fixed(q),
        "entropy_bits": entropy_bits(q),
        "huffman_bytes": -(-huffman_bits(q) // 8),
        "packed_bytes": packed_size_bytes(q, s),
        "float32_bytes": 4 * int(q.size),
    }


def _rows(model, records=None):
    """Per-tensor rows and ``{name: P_q}``; ``records`` (a list) also gets what :func:`lqs_core.intfile.build`
    takes per tensor."""
    found = _records(model)
    if records is not None:
        records.extend(found)
    return [_row(r) for r in found], {r["name"]: r["q"] for r in found}


def _weighted(rows, key):
    total = sum(r["params"] for r in rows)
    return float(sum(r[key] * r["params"] for r in rows) / total) if total else 0.0


def summary(model) -> pd.DataFrame:
    """One row per quantized tensor plus a final ``"total"`` row.

    Per tensor: ``params = numel``, ``n_scales = numel(s)``, ``scale_mean = mean(s)``, ``unique``, ``min``, ``max``,
    ``max_abs = max|P_q|``, ``bits_unique = ceil(log2 unique)``, ``bits_fixed = ceil(log2(max-min+1))``,
    ``entropy_bits`` (per weight), ``huffman_bytes = ceil(huffman_bits/8)``, ``packed_bytes``,
    ``float32_bytes = 4·params``. Total row: ``unique`` = union, ``min``/``max``/``max_abs`` global,
    ``bits_unique`` of the union, ``bits_fixed`` = max over tensors, sizes and counts summed, ``scale_mean`` and
    ``entropy_bits`` param-weighted means.
    """
    rows, ints = _rows(model)
    lo, hi = integer_range(ints)
    union = unique_integers(ints)
    total = {
        "tensor": "total",
        "shape": (),
        "params": sum(r["params"] for r in rows),
        "granularity": "",
        "rounding": "",
        "n_scales": sum(r["n_scales"] for r in rows),
        "scale_mean": _weighted(rows, "scale_mean"),
        "unique": union,
        "min": lo,
        "max": hi,
        "max_abs": max(abs(lo), abs(hi)),
        "bits_unique": bits_unique(union),
        "bits_fixed": max(r["bits_fixed"] for r in rows),
        "entropy_bits": _weighted(rows, "entropy_bits"),
        "huffman_bytes": sum(r["huffman_bytes"] for r in rows),
        "packed_bytes": sum(r["packed_bytes"] for r in rows),
        "float32_bytes": sum(r["float32_bytes"] for r in rows),
    }
    return pd.DataFrame(rows + [total], columns=SUMMARY_COLUMNS)


def report(model) -> dict:
    """Flat, JSON-serializable final numbers of a run (python ints / floats only).

    ``unique_integers`` (union), ``int_min``, ``int_max``, ``int_range = max|P_q|``, ``bits_unique =
    ceil(log2 unique)``, ``bits_fixed`` (max over tensors), ``mean_bits_fixed`` (param-weighted),
    ``entropy_bits_per_weight`` (param-weighted), ``huffman_bytes``, ``packed_bytes`` (sums), ``zip_bytes`` (thesis
    measure), ``float_zip_bytes`` (the same layers' float ``P`` zipped as float32 ``.npy``), ``float32_bytes =
    4·params``, ``zip_ratio = float_zip_bytes / zip_bytes``, ``packed_ratio = float32_bytes / packed_bytes``,
    ``entropy_bytes`` (:func:`entropy_bytes`: the integer file of these tensors, each entropy-coded).
    """
    records = []
    rows, ints = _rows(model, records)
    lo, hi = integer_range(ints)
    union = unique_integers(ints)
    huffman = sum(r["huffman_bytes"] for r in rows)
    packed = sum(r["packed_bytes"] for r in rows)
    float32 = sum(r["float32_bytes"] for r in rows)
    zip_bytes = zipped_npy_size_bytes(ints)
    float_zip = zipped_float_size_bytes(float_tensors(model))
    return {
        "n_tensors": len(rows),
        "params": int(sum(r["params"] for r in rows)),
        "unique_integers": int(union),
        "int_min": int(lo),
        "int_max": int(hi),
        "int_range": int(max(abs(lo), abs(hi))),
        "bits_unique": int(bits_unique(union)),
        "bits_fixed": int(max(r["bits_fixed"] for r in rows)),
        "mean_bits_fixed": _weighted(rows, "bits_fixed"),
        "entropy_bits_per_weight": _weighted(rows, "entropy_bits"),
        "huffman_bytes": int(huffman),
        "packed_bytes": int(packed),
        "zip_bytes": int(zip_bytes),
        "float_zip_bytes": int(float_zip),
        "float32_bytes": int(float32),
        "zip_ratio": float(float_zip / zip_bytes) if zip_bytes else 0.0,
        "packed_ratio": float(float32 / packed) if packed else 0.0,
        "entropy_bytes": int(len(intfile.build(records)[0])),
    }


def entropy_bytes(model) -> int:
    """Bytes of the integer file of ``model``'s quantized tensors (integers entropy-coded, the smallest of canonical
    Huffman, DEFLATE and fixed-width packing per tensor, plus scales and header; :mod:`lqs_core.intfile`), computed without
    writing it: ``export.save_integers(model, path, include_other=False)`` writes exactly this many bytes."""
    return int(len(intfile.build(_records(model))[0]))


def sizes(model) -> dict:
    """The model's quantized tensors' sizes in one pass: ``float32_bytes``, ``packed_bytes``, ``huffman_bytes``
    (sums as in :func:`summary`'s total row) and ``entropy_bytes`` (:func:`entropy_bytes`)."""
    records = []
    rows, _ = _rows(model, records)
    out = {key: int(sum(r[key] for r in rows)) for key in ("float32_bytes", "packed_bytes", "huffman_bytes")}
    return {**out, "entropy_bytes": int(len(intfile.build(records)[0]))}


def epoch_stats(model) -> dict:
    """Cheap per-epoch numbers: ``unique_integers`` (union), ``int_range = max|P_q|``, ``int_min``, ``int_max``, and
    ``"scale_mean/<tensor>" = mean(s)`` per quantized tensor (python ints / floats)."""
    params = _params_or_raise(model)
    ints, stats = [], {}
    for name, (_, _, _, variable, quantizer) in zip(_unique_names(params), params):
        ints.append(_integers_of(name, variable, quantizer))
        stats[f"scale_mean/{name}"] = float(_to_numpy(quantizer.scale).astype(np.float64).mean())
    lo, hi = integer_range(ints)
    return {
        "unique_integers": unique_integers(ints),
        "int_range": max(abs(lo), abs(hi)),
        "int_min": lo,
        "int_max": hi,
        **stats,
    }


__all__ = [
    "SUMMARY_COLUMNS",
    "bits_fixed",
    "bits_unique",
    "entropy_bits",
    "entropy_bytes",
    "epoch_stats",
    "float_tensors",
    "huffman_bits",
    "huffman_code_lengths",
    "huffman_table_bits",
    "integer_range",
    "integer_tensors",
    "max_abs_integer",
    "npy_zip_bytes",
    "packed_size_bytes",
    "read_npy_zip",
    "report",
    "scales",
    "sizes",
    "smallest_int_dtype",
    "summary",
    "unique_integers",
    "zipped_float_size_bytes",
    "zipped_npy_size_bytes",
]
