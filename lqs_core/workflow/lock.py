"""Resuming after a hard kill: Snakemake's stale directory locks removed when, and only when, they are stale.

Snakemake locks its working directory with files in ``.snakemake/locks/``; a Snakemake that is killed (``kill -9``,
power loss, the OOM killer) leaves them behind and the next run stops with "Directory cannot be locked" until
``snakemake --unlock``. Whether another Snakemake is still running is exactly what those files cannot tell. The
Snakefile therefore calls :func:`hold_workdir` first: it takes an exclusive ``flock`` on
``.snakemake/lqs-workdir.lock`` for the life of the Snakemake process (the kernel releases it when the process
dies, however it dies). Holding it means no other Snakemake of this workflow runs in this directory, so Snakemake
lock files found then are stale and are removed; when another process holds it, nothing is touched. The holder
writes what it works on into the file (its ``owner``: the results folder); :func:`holder` reads it, and the Snakefile
refuses to start jobs for the same results folder beside it (Snakemake's own lock files may be gone: ``snakemake
--unlock`` removes them while the other Snakemake still runs).
"""

from __future__ import annotations

import fcntl
import glob
import os
from typing import List, Optional

#: The flock file, inside Snakemake's own folder of the working directory.
LOCK_NAME = "lqs-workdir.lock"

_HELD: list = []  # the open lock file, kept for the life of the process


def hold_workdir(snakemake_dir: str = ".snakemake", owner: str = "") -> Optional[List[str]]:
    """Take this directory's workflow lock for the life of the process, write ``owner`` (what this process works on)
    into it, and remove stale Snakemake locks.

    Returns the lock files removed (an empty list if there were none), or None if another process holds the lock
    (or the file system cannot lock), in which case nothing is touched. Calling it again in a process that holds
    the lock removes nothing (the locks now are this process's own).
    """
    if _HELD:
        return []
    os.makedirs(snakemake_dir, exist_ok=True)
    handle = open(os.path.join(snakemake_dir, LOCK_NAME), "a")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:  # held by another Snakemake here (or no locking on this file system)
        handle.close()
        return None
    _HELD.append(handle)
    handle.truncate(0)
    handle.write(owner)
    handle.flush()
    stale = sorted(glob.glob(os.path.join(snakemake_dir, "locks", "*.lock")))
    for path in stale:
        os.unlink(path)
    return stale


def held_by_another(snakemake_dir: str = ".snakemake") -> bool:
    """Whether another process holds this directory's workflow lock now (False where the file system cannot lock,
    or where this process holds it)."""
    path = os.path.join(snakemake_dir, LOCK_NAME)
    if _HELD or not os.path.exists(path):
        return False
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        except OSError:
            return False
    return False  # closing the file released the probe's lock


def holder(snakemake_dir: str = ".snakemake") -> Optional[str]:
    """The ``owner`` another process holding this directory's workflow lock wrote ("" if it wrote none, e.g. an
    older lqs), or None if no other process holds it."""
    if not held_by_another(snakemake_dir):
        return None
    with open(os.path.join(snakemake_dir, LOCK_NAME), encoding="utf-8", errors="replace") as f:
        return f.read().strip()
