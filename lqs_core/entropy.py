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

Decoding bad data (:func:`decode`) ends in one ``ValueError`` before any large allocation: every coding's output is
bounded by its input — ``packed``: exactly ``ceil(n · bits / 8)`` bytes; ``huffman``: at least one bit per value,
``n <= 8 · nbytes``; ``deflate``: at most :data:`DEFLATE_MAX_RATIO` output bytes per input byte, and it is inflated
with an output limit of the ``ceil(n · bits / 8)`` bytes the header declares — and the Huffman decoder works on
blocks of :data:`_BLOCK_BYTES`, so its memory is the output's plus a constant. Only a constant tensor (``bits =
0``) has no data to bound ``n``: :mod:`lqs_core.intfile` caps ``n`` (``MAX_ELEMENTS``) and reads it as a broadcast.

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
#: Bytes of Huffman data decoded per block (the decoder's working memory is a few times ``8 · _BLOCK_BYTES``
#: Python ints, whatever the data's size).
_BLOCK_BYTES = 1 << 15
#: DEFLATE's largest expansion: a 258-byte match coded in 2 bits, 258 / (2 / 8) = 1032 output bytes per input byte.
DEFLATE_MAX_RATIO = 1032


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


def _check_huffman_count(count: int, nbytes: int) -> None:
    """Every Huffman code is at least one bit: ``count <= 8 · nbytes`` (checked before anything is decoded)."""
    if count > 8 * nbytes:
        raise ValueError(f"Huffman data ends after at most {8 * nbytes} of {count} values: {nbytes} bytes, and every "
                         "code is at least one bit (count <= 8 · bytes).")


def _lookup_table(lengths: np.ndarray, top: int) -> Tuple[list, list]:
    """Per ``top``-bit window: the index of the symbol whose code starts it (-1: none) and its code length."""
    codes = canonical_codes(lengths).astype(np.int64)
    table_sym = np.full(1 << top, -1, dtype=np.int64)
    table_len = np.zeros(1 << top, dtype=np.int64)
    for i, (c, n) in enumerate(zip(codes, lengths)):
        lo = int(c) << (top - int(n))
        table_sym[lo : lo + (1 << (top - int(n)))] = i
        table_len[lo : lo + (1 << (top - int(n)))] = n
    return table_sym.tolist(), table_len.tolist()


def _windows(raw: np.ndarray, start: int, n: int, top: int) -> list:
    """The ``top`` bits starting at each bit position ``start .. start + n - 1`` of ``raw`` (MSB first; zero bits
    past its end), as ints. ``start`` is a multiple of 8."""
    chunk = np.unpackbits(raw[start // 8 : (start + n + top + 7) // 8])
    padded = np.zeros(n + top, dtype=np.int64)
    padded[: min(chunk.size, n + top)] = chunk[: n + top]
    window = np.zeros(n, dtype=np.int64)
    for j in range(top):
        window = (window << 1) | padded[j : j + n]
    return window.tolist()


def _decode_by_table(raw: np.ndarray, count: int, lengths: np.ndarray) -> np.ndarray:
    """Symbol indices of ``count`` codes of at most :data:`_TABLE_BITS` bits: one table lookup per value, the
    windows built block by block (:data:`_BLOCK_BYTES`)."""
    top = int(lengths.max())
    tsym, tlen = _lookup_table(lengths, top)
    index = np.empty(count, dtype=np.int64)
    pos, ends, block = 0, 8 * raw.size, 8 * _BLOCK_BYTES
    k = 0
    while k < count:
        if pos >= ends:
            raise ValueError(f"Huffman data ends after {k} of {count} values.")
        start = pos - pos % 8
        win = _windows(raw, start, min(block, ends - start), top)
        stop = start + len(win)
        while k < count and pos < stop:
            w = win[pos - start]
            if tsym[w] < 0:
                raise ValueError(f"Huffman data holds a bit pattern that is no code of the table (value {k}).")
            index[k] = tsym[w]
            pos += tlen[w]
            k += 1
    if pos > ends:
        raise ValueError(f"Huffman data ends inside the last of {count} values.")
    _check_no_trailing(pos, raw.size, count)
    return index


def _check_no_trailing(bits_used: int, nbytes: int, count: int) -> None:
    """The codes of ``count`` values end in the last byte: ``ceil(bits_used / 8) == nbytes`` (the encoder pads to a
    byte only)."""
    if -(-bits_used // 8) < nbytes:
        raise ValueError(f"Huffman data has {nbytes - -(-bits_used // 8)} byte(s) after its last ({count}th) value; "
                         f"its {count} codes take {-(-bits_used // 8)} bytes.")


def _decode_bit_by_bit(raw: np.ndarray, count: int, lengths: np.ndarray) -> np.ndarray:
    """Symbol indices of ``count`` codes read one bit at a time (codes longer than :data:`_TABLE_BITS`), as the
    reader of docs/deploy.md; the bits unpacked block by block (:data:`_BLOCK_BYTES`)."""
    top = int(lengths.max())
    n_codes, first, start = _first_codes(lengths)
    index = np.empty(count, dtype=np.int64)
    code = length = k = 0
    for offset in range(0, raw.size, _BLOCK_BYTES):
        for i, b in enumerate(np.unpackbits(raw[offset : offset + _BLOCK_BYTES]).tolist()):
            code, length = (code << 1) | b, length + 1
            if length > top:
                raise ValueError(f"Huffman data holds a bit pattern that is no code of the table (value {k}).")
            if 0 <= code - first[length] < n_codes[length]:
                index[k] = start[length] + code - first[length]
                k, code, length = k + 1, 0, 0
                if k == count:
                    _check_no_trailing(8 * offset + i + 1, raw.size, count)
                    return index
    raise ValueError(f"Huffman data ends after {k} of {count} values.")


def huffman_decode(data: bytes, count: int, symbols, lengths) -> np.ndarray:
    """Inverse of :func:`huffman_encode`: ``count`` int64 values. ``ValueError`` where the bits run out, do not
    form codes of the table or go on past the byte of the last code, and (before decoding) where
    ``count > 8 · len(data)``. Memory: the output and a constant (:data:`_BLOCK_BYTES`)."""
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}.")
    if count == 0:
        return np.zeros(0, dtype=np.int64)
    symbols, lengths = _check_table(symbols, lengths)
    _check_huffman_count(count, len(data))
    raw = np.frombuffer(data, dtype=np.uint8)
    if int(lengths.max()) <= _TABLE_BITS:
        return symbols[_decode_by_table(raw, count, lengths)]
    return symbols[_decode_bit_by_bit(raw, count, lengths)]


def inflate(data: bytes, size: int) -> bytes:
    """The ``size`` bytes DEFLATE ``data`` (zlib) holds; ``ValueError``, before inflating more than ``size + 1``
    bytes, where it holds more, fewer, or more than :data:`DEFLATE_MAX_RATIO` per input byte could give."""
    if size > DEFLATE_MAX_RATIO * len(data):
        raise ValueError(f"deflate data of {len(data)} bytes cannot hold the {size} bytes its header declares (at "
                         f"most {DEFLATE_MAX_RATIO} bytes per byte: {DEFLATE_MAX_RATIO * len(data)}).")
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(data, size + 1)
    except zlib.error as e:
        raise ValueError(f"deflate data does not decompress ({e}).") from None
    if len(out) > size:
        raise ValueError(f"deflate data decompresses to more than the {size} bytes its header declares.")
    if not inflater.eof:
        raise ValueError(f"deflate data does not decompress (incomplete or truncated stream after {len(out)} bytes).")
    if len(out) < size:
        raise ValueError(f"deflate data decompresses to {len(out)} bytes, its header declares {size}.")
    return out


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
        packed = inflate(data, -(-count * fields["bits"] // 8))
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
    "DEFLATE_MAX_RATIO",
    "canonical_codes",
    "canonical_table",
    "code_lengths",
    "coded_size",
    "decode",
    "encode",
    "huffman_decode",
    "huffman_encode",
    "inflate",
    "pack_bits",
    "table_bytes",
    "unpack_bits",
    "width",
]
