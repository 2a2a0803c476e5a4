"""Entropy coding of one integer tensor: the smallest of canonical Huffman, DEFLATE and fixed-width packing.

The codings of the integer file (:mod:`lqs_core.intfile`, docs/deploy.md), for a flat int64 tensor ``v``:

* ``packed``: ``u = v - min(v)`` in ``bits = ceil(log2(max - min + 1))`` bits per value, least significant bit
  first, values back to back (``numpy.packbits(..., bitorder="little")``): ``ceil(n · bits / 8)`` bytes.
* ``huffman``: a canonical Huffman code. Code lengths ``len_v`` from the value counts (Huffman's algorithm,
  :func:`code_lengths`, which :func:`lqs_core.metrics.huffman_code_lengths` is); the symbols sorted by
  ``(len_v, v)`` get consecutive codes, ``code_0 = 0``, ``code_{i+1} = (code_i + 1) << (len_{i+1} - len_i)``;
  each value is written as its code, most significant bit first, codes back to back (``numpy.packbits`` default
  bit order), zero-padded to a byte: ``ceil(Σ_v c_v · len_v / 8)`` bytes. The code is rebuilt from the sorted
  ``symbols`` and their ``lengths`` alone.
* ``deflate``: the ``packed`` bytes, zlib-compressed (level 9). Huffman spends at least one bit per weight, so a
  tensor that is mostly one value (entropy well below 1 bit) is smaller as DEFLATE, whose LZ77 stage codes runs.

:func:`encode` (``coding="auto"``) keeps the smallest, counting the Huffman table the header must hold
(:func:`table_bytes`); :func:`decode` reverses each. Why these and not rANS (``constriction``) or ``dahuffman``:
measured in docs/deploy.md on the committed runs' integer tensors — the per-tensor minimum is within 1-3 % of
rANS where entropy is above 1 bit per weight, every coding decodes with numpy and the standard library in the few
lines of docs/deploy.md, and a rANS decoder is not a few lines.
"""

from __future__ import annotations

import heapq
import zlib
from typing import Tuple

import numpy as np

CODINGS = ("packed", "huffman", "deflate")
_CHUNK = 1 << 16  # elements per packing chunk (a multiple of 8, so chunks end on byte boundaries)
_MAX_BITS = 64  # int64 integers never need more
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
#: Longest code decoded with a lookup table of ``2**len`` entries; longer codes are decoded bit by bit.
_TABLE_BITS = 16


def _int64(values) -> np.ndarray:
    a = np.asarray(values)
    if a.dtype.kind not in "iub":
        raise ValueError(f"expected an integer array, got dtype {a.dtype}.")
    return a.astype(np.int64, copy=False).ravel()


def width(values) -> int:
    """``ceil(log2(max - min + 1))``: the fixed width of the packed coding (0 for a constant tensor)."""
    v = _int64(values)
    return int(int(v.max()) - int(v.min())).bit_length() if v.size else 0


# ---------------------------------------------------------------------------------------------------------------
# Fixed-width packing


def pack_bits(values: np.ndarray, bits: int) -> Tuple[bytes, int]:
    """Pack an integer array to ``bits`` bits per value (offset by its min, LSB first): ``(bytes, min)``."""
    v = _int64(values)
    if v.size == 0:
        return b"", 0
    lo = int(v.min())
    if bits < width(v):
        raise ValueError(f"{bits} bits cannot hold the range {lo}..{int(v.max())}.")
    if bits == 0:
        return b"", lo
    # v - lo in modular uint64 arithmetic: exact for any int64 range, up to 2**64 - 1 (int64 subtraction would wrap)
    u = v.view(np.uint64) - np.uint64(lo % 2**64)
    shifts = np.arange(bits, dtype=np.uint64)
    parts = []
    for start in range(0, u.size, _CHUNK):
        chunk = u[start : start + _CHUNK]
        bitmat = ((chunk[:, None] >> shifts) & np.uint64(1)).astype(np.uint8)
        parts.append(np.packbits(bitmat.ravel(), bitorder="little").tobytes())
    return b"".join(parts), lo


def unpack_bits(data: bytes, count: int, bits: int, minimum: int) -> np.ndarray:
    """Inverse of :func:`pack_bits`: ``count`` int64 values of ``bits`` bits each, plus ``minimum``."""
    if not 0 <= bits <= _MAX_BITS:
        raise ValueError(f"bits must be in 0..{_MAX_BITS}, got {bits}.")
    if not _INT64_MIN <= minimum <= _INT64_MAX:
        raise ValueError(f"minimum must be an int64, got {minimum}.")
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}.")
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
        out[start : start + n] = (u + np.uint64(minimum % 2**64)).view(np.int64)  # modular, as in pack_bits
    return out


# ---------------------------------------------------------------------------------------------------------------
# Canonical Huffman


def code_lengths(counts) -> np.ndarray:
    """Huffman code lengths for symbol ``counts`` (``heapq``, ties broken by node id); one symbol gets length 1."""
    counts = [int(c) for c in counts]
    n = len(counts)
    if n <= 1:
        return np.ones(n, dtype=np.int64)
    parent = [-1] * (2 * n - 1)
    heap = [(c, i) for i, c in enumerate(counts)]
    heapq.heapify(heap)
    next_id = n
    while len(heap) > 1:
        c1, a = heapq.heappop(heap)
        c2, b = heapq.heappop(heap)
        parent[a] = parent[b] = next_id
        heapq.heappush(heap, (c1 + c2, next_id))
        next_id += 1
    depth = [0] * (2 * n - 1)
    for node in range(2 * n - 3, -1, -1):  # parents have larger ids than their children; the root is 2n-2
        depth[node] = depth[parent[node]] + 1
    return np.asarray(depth[:n], dtype=np.int64)


def canonical_table(values: np.ndarray, counts: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """``(symbols, lengths)``: the distinct ``values`` sorted by ``(code length, value)`` and their lengths."""
    lengths = code_lengths(counts)
    order = np.lexsort((values, lengths))
    return np.asarray(values, dtype=np.int64)[order], lengths[order]


def canonical_codes(lengths: np.ndarray) -> np.ndarray:
    """Codes (uint64) of symbols sorted by length: ``code_{i+1} = (code_i + 1) << (len_{i+1} - len_i)``."""
    codes = np.zeros(len(lengths), dtype=np.uint64)
    code = 0
    for i in range(1, len(lengths)):
        code = (code + 1) << int(lengths[i] - lengths[i - 1])
        codes[i] = code
    return codes


def _check_table(symbols, lengths) -> Tuple[np.ndarray, np.ndarray]:
    symbols = np.asarray(symbols, dtype=np.int64)
    lengths = np.asarray(lengths, dtype=np.int64)
    if symbols.ndim != 1 or symbols.shape != lengths.shape or symbols.size == 0:
        raise ValueError(f"a Huffman table needs as many symbols as lengths (>= 1), got {symbols.size} and "
                         f"{lengths.size}.")
    if lengths.min() < 1 or lengths.max() > _MAX_BITS or np.any(np.diff(lengths) < 0):
        raise ValueError(f"Huffman code lengths must be sorted and in 1..{_MAX_BITS}, got {lengths.tolist()}.")
    if np.unique(symbols).size != symbols.size:
        raise ValueError("Huffman symbols must be distinct.")
    kraft = sum(2.0 ** -int(n) for n in lengths)
    if kraft > 1.0 + 1e-12:
        raise ValueError(f"Huffman code lengths {lengths.tolist()} are not a prefix code (Kraft sum {kraft:.6g} > 1).")
    return symbols, lengths


def huffman_encode(values) -> Tuple[bytes, np.ndarray, np.ndarray]:
    """``(bytes, symbols, lengths)``: ``values`` canonical-Huffman-coded (module docstring)."""
    v = _int64(values)
    if v.size == 0:
        return b"", np.zeros(0, np.int64), np.zeros(0, np.int64)
    distinct, inverse, counts = np.unique(v, return_inverse=True, return_counts=True)
    symbols, lengths = canonical_table(distinct, counts)
    codes = canonical_codes(lengths)
    rank = np.empty(symbols.size, dtype=np.int64)  # position in the canonical order of each sorted distinct value
    rank[np.searchsorted(distinct, symbols)] = np.arange(symbols.size)
    code_of, len_of = codes[rank][inverse.ravel()], lengths[rank][inverse.ravel()]
    ends = np.cumsum(len_of)
    starts = ends - len_of
    bits = np.zeros(int(ends[-1]), dtype=np.uint8)
    for j in range(int(lengths.max())):  # bit j of every code (MSB first), vectorized over elements
        has = len_of > j
        shift = (len_of[has] - 1 - j).astype(np.uint64)
        bits[starts[has] + j] = ((code_of[has] >> shift) & np.uint64(1)).astype(np.uint8)
    return np.packbits(bits).tobytes(), symbols, lengths


def _first_codes(lengths: np.ndarray):
    """Per code length ``L``: the number of codes, the first code and the index of its symbol."""
    top = int(lengths.max())
    count = np.bincount(lengths, minlength=top + 1)
    first, index = [0] * (top + 1), [0] * (top + 1)
    code = k = 0
    for n in range(1, top + 1):
        code = (code + int(count[n - 1])) << 1 if n > 1 else 0
        first[n], index[n] = code, k
        k += int(count[n])
    return count, first, index


def huffman_decode(data: bytes, count: int, symbols, lengths) -> np.ndarray:
    """Inverse of :func:`huffman_encode`: ``count`` int64 values. ``ValueError`` where the bits run out or do not
    form codes of the table."""
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}.")
    if count == 0:
        return np.zeros(0, dtype=np.int64)
    symbols, lengths = _check_table(symbols, lengths)
    bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8))
    top = int(lengths.max())
    if top <= _TABLE_BITS:  # table lookup: the next `top` bits of every position, then one step per symbol
        codes = canonical_codes(lengths).astype(np.int64)
        table_sym = np.full(1 << top, -1, dtype=np.int64)
        table_len = np.zeros(1 << top, dtype=np.int64)
        for i, (c, n) in enumerate(zip(codes, lengths)):
            lo = int(c) << (top - int(n))
            table_sym[lo : lo + (1 << (top - int(n)))] = i
            table_len[lo : lo + (1 << (top - int(n)))] = n
        padded = np.concatenate([bits, np.zeros(top, np.uint8)]).astype(np.int64)
        window = np.zeros(bits.size, dtype=np.int64)
        for j in range(top):
            window = (window << 1) | padded[j : j + bits.size]
        index = np.empty(count, dtype=np.int64)
        pos, ends = 0, bits.size
        win, tsym, tlen = window.tolist(), table_sym.tolist(), table_len.tolist()
        for k in range(count):
            if pos >= ends:
                raise ValueError(f"Huffman data ends after {k} of {count} values.")
            w = win[pos]
            if tsym[w] < 0:
                raise ValueError(f"Huffman data holds a bit pattern that is no code of the table (value {k}).")
            index[k] = tsym[w]
            pos += tlen[w]
        if pos > ends:
            raise ValueError(f"Huffman data ends inside the last of {count} values.")
        return symbols[index]
    n_codes, first, start = _first_codes(lengths)  # long codes: bit by bit, as the reader of docs/deploy.md
    out = np.empty(count, dtype=np.int64)
    code = length = k = 0
    for b in bits.tolist():
        code, length = (code << 1) | b, length + 1
        if length > top:
            raise ValueError(f"Huffman data holds a bit pattern that is no code of the table (value {k}).")
        if 0 <= code - first[length] < n_codes[length]:
            out[k] = symbols[start[length] + code - first[length]]
            k, code, length = k + 1, 0, 0
            if k == count:
                return out
    raise ValueError(f"Huffman data ends after {k} of {count} values.")


# ---------------------------------------------------------------------------------------------------------------
# One tensor: the smaller coding


def table_bytes(n_symbols: int) -> int:
    """What the header pays for a Huffman table, counted when choosing the coding: 9 bytes per symbol (an int64
    value and a length byte; the JSON the file keeps it in is zlib-compressed to about that)."""
    return 9 * int(n_symbols)


def encode(values, coding: str = "auto") -> Tuple[dict, bytes]:
    """``(fields, data)``: ``values`` coded ``"packed"``, ``"huffman"`` or (``"auto"``) whichever is smaller with
    its table. ``fields`` holds what the header stores: ``coding``, ``min``, ``max``, ``bits`` and, for Huffman,
    ``symbols`` / ``lengths`` (python ints)."""
    if coding not in ("auto", *CODINGS):
        raise ValueError(f"Unknown coding {coding!r}; allowed: 'auto', {', '.join(map(repr, CODINGS))}.")
    v = _int64(values)
    bits = width(v)
    lo = int(v.min()) if v.size else 0
    fields = {"min": lo, "max": int(v.max()) if v.size else lo, "bits": bits}
    packed, _ = pack_bits(v, bits)
    if coding == "packed" or v.size == 0 or (coding == "auto" and bits == 0):
        return {"coding": "packed", **fields}, packed
    candidates = []  # (bytes counted, order, fields, data): the smallest wins, ties in CODINGS order
    if coding in ("auto", "huffman"):
        data, symbols, lengths = huffman_encode(v)
        candidates.append((len(data) + table_bytes(symbols.size), 1, {"coding": "huffman", **fields,
                           "symbols": symbols.tolist(), "lengths": lengths.tolist()}, data))
    if coding in ("auto", "deflate"):
        data = zlib.compress(packed, 9)
        candidates.append((len(data), 2, {"coding": "deflate", **fields}, data))
    if coding == "auto":
        candidates.append((len(packed), 0, {"coding": "packed", **fields}, packed))
    _, _, fields, data = min(candidates, key=lambda c: c[:2])
    return fields, data


def decode(fields: dict, data: bytes, count: int) -> np.ndarray:
    """Inverse of :func:`encode`: ``count`` int64 values from the header ``fields`` and the ``data`` bytes."""
    if fields.get("coding", "packed") == "packed":
        return unpack_bits(data, count, fields["bits"], fields["min"])
    if fields["coding"] == "deflate":
        try:
            packed = zlib.decompress(data)
        except zlib.error as e:
            raise ValueError(f"deflate data does not decompress ({e}).") from None
        return unpack_bits(packed, count, fields["bits"], fields["min"])
    if fields["coding"] == "huffman":
        return huffman_decode(data, count, fields["symbols"], fields["lengths"])
    raise ValueError(f"unknown coding {fields['coding']!r}; allowed: {', '.join(map(repr, CODINGS))}.")


def coded_size(values, coding: str = "auto") -> int:
    """Bytes of :func:`encode`'s data plus, for Huffman, :func:`table_bytes`."""
    fields, data = encode(values, coding)
    return len(data) + (table_bytes(len(fields["symbols"])) if fields["coding"] == "huffman" else 0)


__all__ = [
    "CODINGS",
    "canonical_codes",
    "canonical_table",
    "code_lengths",
    "coded_size",
    "decode",
    "encode",
    "huffman_decode",
    "huffman_encode",
    "pack_bits",
    "table_bytes",
    "unpack_bits",
    "width",
]
