"""Atomic file writes: a temporary file beside the target, renamed over it when complete.

An interrupted or failed write leaves the previous file (or none) and no temporary file behind. Temporary names are
``.tmp-<name>.<random><suffix>`` with the target's own suffix (``.keras``, ``.weights.h5``, ``.png``, ...), so
writers that infer the format from the extension (Keras, matplotlib) see the right one. The finished file gets the
usual permissions (``0666 & ~umask``; ``mkstemp`` creates 0600).
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from typing import Iterator


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _suffix(name: str) -> str:
    return ".weights.h5" if name.endswith(".weights.h5") else os.path.splitext(name)[1]


@contextmanager
def atomic_path(path) -> Iterator[str]:
    """``with atomic_path(final) as tmp: write(tmp)``: ``tmp`` replaces ``final`` only if the block succeeds,
    otherwise it is removed. The folder of ``final`` is created if needed."""
    directory, name = os.path.split(os.path.abspath(os.fspath(path)))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".tmp-{name}.", suffix=_suffix(name), dir=directory)
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, os.fspath(path))
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_text(path, text: str, fsync: bool = False) -> str:
    """Write ``text`` (UTF-8, newlines as given) to ``path`` atomically (``fsync``: flushed to disk before the
    rename); returns the path."""
    return write_bytes(path, text.encode("utf-8"), fsync=fsync)


def write_bytes(path, data: bytes, fsync: bool = False) -> str:
    """Write ``data`` to ``path`` atomically (``fsync``: flushed to disk before the rename); returns the path."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
    return os.fspath(path)


def remove_stale(directory) -> list:
    """Remove the temporary files (``.tmp-*``) that a write killed before its rename left in ``directory``.

    Call it only where no other process writes at the same time (e.g. a run's own output folder before it saves).
    Returns the names removed."""
    directory = os.fspath(directory)
    removed = []
    if os.path.isdir(directory):
        for name in sorted(os.listdir(directory)):
            path = os.path.join(directory, name)
            if name.startswith(".tmp-") and os.path.isfile(path):
                os.unlink(path)
                removed.append(name)
    return removed
