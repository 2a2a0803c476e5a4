"""The size numbers of :func:`lqs_core.metrics.report` for integer tensors that did not come from lqs quantizers.

Per tensor ``q`` (integers) with ``bits`` the storage width per weight (``None``: the fixed width
``bits_fixed(q) = ceil(log2(max - min + 1))``): ``packed_bytes = ceil(Σ bits / 8) + 4·n_scales`` (float32 scales),
``huffman_bytes``, ``entropy_bits`` per weight; over all tensors ``unique_integers`` (union), ``int_min/int_max``,
``int_range = max|q|``, ``zip_bytes`` (the thesis' measure: the integers as ``.npy`` in a ZIP), ``entropy_bytes``
(the lqs integer file of these tensors, each entropy-coded, with its ``n_scales`` float32 scales:
:func:`lqs_core.intfile.build`, the size lqs' comparison figures use) and the float counterparts
``float_zip_bytes`` / ``float32_bytes`` of the float weights they replace.
"""

from __future__ import annotations

from typing import Mapping, Optional

import numpy as np

from lqs_core import intfile, metrics


def integer_report(ints: Mapping[str, np.ndarray], floats: Mapping[str, np.ndarray],
                   bits: Optional[Mapping[str, np.ndarray]] = None,
                   n_scales: Optional[Mapping[str, int]] = None) -> dict:
    """``metrics.report``'s keys for ``ints`` (name -> integer array); ``floats``: the float weights they stand
    for; ``bits``: per-weight storage widths where the format has them (HGQ2), else fixed width per tensor;
    ``n_scales``: float32 scales stored per tensor (default 1)."""
    if not ints:
        raise ValueError("integer_report: no integer tensors.")
    ints = {k: np.asarray(v).astype(np.int64) for k, v in ints.items()}
    n_scales = dict(n_scales or {})
    rows = []
    for name, q in ints.items():
        width = (np.asarray(bits[name], dtype=np.float64) if bits is not None and name in bits
                 else np.full(q.shape, metrics.bits_fixed(q), dtype=np.float64))
        rows.append({
            "params": int(q.size),
            "bits_fixed": float(width.mean()) if q.size else 0.0,
            "bits_max": int(width.max()) if q.size else 0,
            "entropy_bits": metrics.entropy_bits(q),
            "huffman_bytes": -(-metrics.huffman_bits(q) // 8),
            "packed_bytes": int(-(-int(np.ceil(width.sum())) // 8) + 4 * int(n_scales.get(name, 1))),
        })
    params = sum(r["params"] for r in rows)

    def weighted(key):
        return float(sum(r[key] * r["params"] for r in rows) / params) if params else 0.0

    lo, hi = metrics.integer_range(ints)
    union = metrics.unique_integers(ints)
    zip_bytes = metrics.zipped_npy_size_bytes(ints)
    float_zip = metrics.zipped_float_size_bytes({k: np.asarray(v, np.float32) for k, v in floats.items()})
    packed = sum(r["packed_bytes"] for r in rows)
    float32 = 4 * params
    records = [{"name": name, "host": "", "param": name.rsplit("/", 1)[-1], "rounding": "round", "granularity": "",
                "axis": None, "q": q, "s": np.ones(int(n_scales.get(name, 1)), np.float32)}
               for name, q in ints.items()]
    return {
        "n_tensors": len(rows),
        "params": int(params),
        "unique_integers": int(union),
        "int_min": int(lo),
        "int_max": int(hi),
        "int_range": int(max(abs(lo), abs(hi))),
        "bits_unique": int(metrics.bits_unique(union)),
        "bits_fixed": int(max(r["bits_max"] for r in rows)),
        "mean_bits_fixed": weighted("bits_fixed"),
        "entropy_bits_per_weight": weighted("entropy_bits"),
        "huffman_bytes": int(sum(r["huffman_bytes"] for r in rows)),
        "packed_bytes": int(packed),
        "zip_bytes": int(zip_bytes),
        "float_zip_bytes": int(float_zip),
        "float32_bytes": int(float32),
        "zip_ratio": float(float_zip / zip_bytes) if zip_bytes else 0.0,
        "packed_ratio": float(float32 / packed) if packed else 0.0,
        "relative_bops": weighted("bits_fixed") / 32.0,
        "mean_weight_bits": weighted("bits_fixed"),
        "entropy_bytes": int(len(intfile.build(records)[0])),
    }


__all__ = ["integer_report"]
