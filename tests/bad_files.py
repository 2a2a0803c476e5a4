"""Crafted bad files for the reader tests: small files that declare far more than they hold, or nest deeper than a
parser can follow. NumPy and the standard library only (the memory-bound tests run them in a bare subprocess)."""

import io
import json
import pickle
import struct
import zipfile
import zlib

import numpy as np

SCALE = np.float32(0.5).tobytes()  # the one scale value every crafted tensor gets, at payload offset 0


def deflate_bomb(size: int, chunk: int = 1 << 20) -> bytes:
    """A zlib stream that inflates to at least ``size`` zero bytes, about 1 kB per MiB: one chunk compressed and
    full-flushed (which resets the compressor), its output repeated; no end, so it never stops by itself."""
    c = zlib.compressobj(9)
    head = c.compress(bytes(chunk)) + c.flush(zlib.Z_FULL_FLUSH)
    again = c.compress(bytes(chunk)) + c.flush(zlib.Z_FULL_FLUSH)
    return head + again * max(0, -(-size // chunk) - 1)


def tensor(name="t", shape=(4,), coding="packed", bits=0, lo=0, hi=None, data=b"", **extra) -> dict:
    """A tensor entry of an integer file; its data follows the scale (:data:`SCALE`) in the payload."""
    entry = {"name": name, "host": "QDense", "param": "kernel", "shape": list(shape), "rounding": "floor",
             "granularity": "scalar", "axis": None, "coding": coding, "min": lo, "max": lo if hi is None else hi,
             "bits": bits, "offset": len(SCALE), "nbytes": len(data), "scale_shape": [], "scale_offset": 0,
             "scale_nbytes": len(SCALE)}
    entry.update(extra)
    return entry


def lqsint(entries, data=b"", header_bytes=None, version=2) -> bytes:
    """An integer file with valid checksums: ``entries`` (all sharing the payload ``SCALE + data``), or the given
    (compressed) ``header_bytes`` as they are."""
    body = SCALE + data
    if header_bytes is None:
        header = {"format": "lqs-integers", "version": version, "tensors": list(entries), "other": None,
                  "payload_bytes": len(body), "payload_crc32": zlib.crc32(body)}
        raw = json.dumps(header).encode()
        header_bytes = zlib.compress(raw, 9) if version >= 2 else raw
    return struct.pack("<6sHII", b"LQSINT", version, len(header_bytes), zlib.crc32(header_bytes)) + header_bytes + body


def npy(shape, descr="|u1", data=b"", version=(1, 0)) -> bytes:
    """An ``.npy`` member: a header declaring ``shape`` and ``descr``, then ``data`` (whatever it really holds)."""
    header = {"descr": descr, "fortran_order": False, "shape": tuple(shape)}
    out = io.BytesIO()
    if version == (1, 0):
        np.lib.format.write_array_header_1_0(out, header)
    else:
        np.lib.format.write_array_header_2_0(out, header)
    return out.getvalue() + data


def mnist_npz(**members) -> bytes:
    """A small valid-looking mnist.npz (3 training, 2 test images); ``members`` replace or add ``.npy`` members by
    key (``None`` leaves one out)."""
    rng = np.random.default_rng(0)
    arrays = {"x_train": rng.integers(0, 256, (3, 28, 28), dtype=np.uint8), "y_train": np.arange(3, dtype=np.uint8),
              "x_test": rng.integers(0, 256, (2, 28, 28), dtype=np.uint8), "y_test": np.arange(2, dtype=np.uint8)}
    files = {}
    for key, a in arrays.items():
        buf = io.BytesIO()
        np.lib.format.write_array(buf, a)
        files[key] = buf.getvalue()
    files.update(members)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for key, member in files.items():
            if member is not None:
                archive.writestr(key + ".npy", member)
    return out.getvalue()


_PLACEHOLDER = "LABELS-PLACEHOLDER"


def cifar_batch(labels=None, data=None, labels_ops=None) -> bytes:
    """A CIFAR-10 python batch of 4 images (bytes keys, as the official files; protocol 3, which has no frames to
    keep intact). ``labels_ops`` replaces the labels by raw pickle opcodes (structures ``pickle.dumps`` cannot
    write)."""
    batch = {b"batch_label": b"crafted", b"labels": [0, 1, 2, 3] if labels is None else labels,
             b"data": np.zeros((4, 3072), np.uint8) if data is None else data}
    if labels_ops is None:
        return pickle.dumps(batch, protocol=3)
    batch[b"labels"] = _PLACEHOLDER
    raw = pickle.dumps(batch, protocol=3)
    marker = b"X" + struct.pack("<I", len(_PLACEHOLDER)) + _PLACEHOLDER.encode()  # its BINUNICODE opcode
    assert raw.count(marker) == 1
    return raw.replace(marker, labels_ops)


def nested_list_ops(depth: int) -> bytes:
    """Pickle opcodes of ``[[[...[]...]]]`` nested ``depth`` deep (EMPTY_LIST ``depth`` times, APPEND ``depth - 1``)."""
    return b"]" * depth + b"a" * (depth - 1)


def shared_lists(width: int, depth: int) -> list:
    """``[L, L, ...]`` of ``width`` references to the same list, ``depth`` levels: a few bytes pickled (memo),
    ``width ** depth`` elements to anything that walks it."""
    node = [0] * width
    for _ in range(depth - 1):
        node = [node] * width
    return node


class PickledDtype:
    """Pickles as ``numpy.dtype(code)`` with the given state (numpy builds it as it is told)."""

    def __init__(self, code="u1", state=(3, "|", None, None, None, -1, -1, 0)):
        self.code, self.state = code, state

    def __reduce__(self):
        return np.dtype, (self.code, False, True), self.state


class PickledArray:
    """Pickles as numpy's array reconstruction with the given shape, dtype and data (numpy trusts all three)."""

    def __init__(self, shape, dtype, data):
        self.shape, self.dtype, self.data = shape, dtype, data

    def __reduce__(self):
        try:
            from numpy._core.multiarray import _reconstruct
        except ImportError:  # numpy 1.x
            from numpy.core.multiarray import _reconstruct
        return _reconstruct, (np.ndarray, (0,), b"b"), (1, tuple(self.shape), self.dtype, False, self.data)
