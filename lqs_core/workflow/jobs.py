"""What runs inside a workflow job: the notebooks' set-up, GPU claiming, the fetch step, the one-line summary.

* :func:`setup` is the first call of every notebook that trains (``run.ipynb``, ``baseline.ipynb``, the tutorial):
  it sets the Keras backend when asked to (the workflow sets ``KERAS_BACKEND`` in the job's environment already),
  pins the CPU code path (:func:`lqs_core.provenance.pin_cpu`) before TensorFlow is imported, limits the threads
  of the backend, claims a GPU when ``$LQS_GPUS`` says so, and imports TensorFlow with its start-up log lines kept
  out of the notebook;
* :func:`claim_gpu` pins a job to one free GPU of ``$LQS_GPUS`` (``profiles/gpu``);
* the command line is what the Snakefile's rules call::

      python -m lqs_core.workflow.jobs fetch mnist --marker results/quick/data/mnist.json [--data-dir DIR]
      python -m lqs_core.workflow.jobs summary results/demo/runs/<run id>/metrics.json [--backend tensorflow]

This module imports no TensorFlow (and nothing that does) until :func:`setup` is called.
"""

from __future__ import annotations

import argparse
import fcntl
import importlib.util
import json
import math
import os
import shlex
import sys
import tempfile
import time
import warnings
from contextlib import contextmanager
from typing import Iterator, Mapping, Optional

from lqs_core import atomic, provenance

_GPU_LOCKS: list = []  # open lock files of claimed GPUs, held until the process exits


def claim_gpu(devices: Optional[str] = None, lock_dir: Optional[str] = None, poll_seconds: float = 1.0,
              timeout: Optional[float] = None) -> Optional[str]:
    """Pin this process to one GPU that no other workflow job holds; return its id (None: nothing to do).

    ``devices``: comma-separated GPU ids (default ``$LQS_GPUS``; unset or empty: no pinning, TensorFlow sees what
    ``CUDA_VISIBLE_DEVICES`` says). Takes an exclusive ``flock`` on ``<lock_dir>/lqs-gpu-<id>.lock`` (default
    ``$LQS_GPU_LOCK_DIR`` or the temp folder) of the first free id, keeps it until the process ends, and sets
    ``CUDA_VISIBLE_DEVICES`` to that id — call it before TensorFlow touches a GPU. Snakemake's ``gpu`` resource
    (profiles/gpu) already caps the concurrent jobs at the number of GPUs, so a free id exists; this only decides
    which one. Waits (polling) while all are taken, up to ``timeout`` seconds (None: forever).
    """
    devices = os.environ.get("LQS_GPUS", "") if devices is None else devices
    ids = [d.strip() for d in str(devices).split(",") if d.strip()]
    if not ids:
        return None
    lock_dir = lock_dir or os.environ.get("LQS_GPU_LOCK_DIR") or tempfile.gettempdir()
    os.makedirs(lock_dir, exist_ok=True)
    start = time.monotonic()
    while True:
        for dev in ids:
            handle = open(os.path.join(lock_dir, f"lqs-gpu-{dev}.lock"), "a")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                handle.close()
                continue
            _GPU_LOCKS.append(handle)
            os.environ["CUDA_VISIBLE_DEVICES"] = dev
            return dev
        if timeout is not None and time.monotonic() - start > timeout:
            raise TimeoutError(f"No free GPU among {ids} after {timeout} s (locks in {lock_dir}).")
        time.sleep(poll_seconds)


@contextmanager
def stderr_captured() -> Iterator[list]:
    """Send what is written to file descriptor 2 (C++ log lines too) to a temporary file while the block runs.

    Yields a list that holds the captured text afterwards. If the block raises, the text is written back to
    stderr first, so nothing that explains an error is lost.
    """
    captured: list = []
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        failed = False
        try:
            yield captured
        except BaseException:
            failed = True
            raise
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            text = tmp.read().decode("utf-8", "replace")
            captured.append(text)
            if failed and text:
                sys.stderr.write(text)


#: The XLA flags that keep JAX's CPU computations on the calling thread (``threads`` = 1).
XLA_SINGLE_THREAD_FLAGS = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
BACKENDS = ("tensorflow", "jax", "torch")


def _keras_backend() -> str:
    """The Keras backend this process uses or will use (``KERAS_BACKEND``, ``keras.json``), without importing it."""
    from lqs_core import _configured_backend

    return _configured_backend()


def setup(threads: int = 0, backend: str = "") -> Optional[str]:
    """Prepare this process for training; call it before anything imports Keras or TensorFlow. Returns the claimed
    GPU.

    In this order: ``backend`` (``tensorflow`` | ``jax`` | ``torch``; empty: ``KERAS_BACKEND`` as the job's
    environment has it, which is how the workflow chooses it) set as ``KERAS_BACKEND``; the CPU code path pinned
    (``ONEDNN_MAX_CPU_ISA``, :func:`lqs_core.provenance.pin_cpu`); with ``threads`` > 0 TensorFlow, OpenMP and
    PyTorch limited to that many intra-op threads and one inter-op thread (so N jobs share N cores), and with
    ``threads`` = 1 on JAX XLA's CPU thread pool off (:data:`XLA_SINGLE_THREAD_FLAGS`; XLA has no setting for 2..N
    threads); TensorFlow's C++ log level 2 and on-demand GPU memory (TensorFlow and JAX) unless set; a GPU of ``$LQS_GPUS`` claimed
    (:func:`claim_gpu`); TensorFlow, where it is installed, imported with its start-up lines (absl, oneDNN)
    captured instead of printed (Keras imports it on every backend to seed it), and its thread pools set.
    """
    if backend:
        if backend not in BACKENDS:
            raise ValueError(f"backend {backend!r} is not one of {', '.join(BACKENDS)}")
        keras = sys.modules.get("keras")
        if keras is not None and _keras_backend() != backend:
            raise RuntimeError(f"Keras was imported with the backend {_keras_backend()!r} before "
                               f"lqs_core.workflow.jobs.setup(backend={backend!r}); call setup() first (or restart "
                               "the kernel).")
        os.environ["KERAS_BACKEND"] = backend
    backend = _keras_backend()
    if "tensorflow" in sys.modules:
        warnings.warn("TensorFlow was imported before lqs_core.workflow.jobs.setup(): the CPU code path and the "
                      "threads are whatever TensorFlow chose; call setup() first.", stacklevel=2)
    provenance.pin_cpu()
    if threads:
        os.environ["TF_NUM_INTRAOP_THREADS"] = str(int(threads))
        os.environ["TF_NUM_INTEROP_THREADS"] = "1"
        os.environ["OMP_NUM_THREADS"] = str(int(threads))
        if backend == "jax" and int(threads) == 1 and "multi_thread_eigen" not in os.environ.get("XLA_FLAGS", ""):
            os.environ["XLA_FLAGS"] = " ".join(filter(None, [os.environ.get("XLA_FLAGS", ""),
                                                             XLA_SINGLE_THREAD_FLAGS]))
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # JAX: GPU memory on demand too
    gpu = claim_gpu()
    tf = None
    if backend == "tensorflow" or importlib.util.find_spec("tensorflow") is not None:
        with stderr_captured():
            import tensorflow as tf  # the point of this function: imported after the environment above is set

    if threads and tf is not None:
        tf.config.threading.set_intra_op_parallelism_threads(int(threads))
        tf.config.threading.set_inter_op_parallelism_threads(1)
    if threads and backend == "torch":
        import torch

        torch.set_num_threads(int(threads))
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:  # already set, or parallel work already started in this process
            pass
    return gpu


# ---------------------------------------------------------------------------------------------------------------
# The rules' commands


def fetch(dataset: str, data_dir: Optional[str] = None, marker: Optional[str] = None) -> str:
    """Download (or find and verify) ``dataset`` once (:func:`lqs_core.data.fetch`); write ``marker`` (JSON:
    dataset and path) for the workflow. Returns the verified path."""
    from lqs_core import data  # imported here: this module stays free of the data loaders' dependencies

    path = str(data.fetch(dataset, data_dir=data_dir))
    if marker:
        atomic.write_text(marker, json.dumps({"dataset": dataset, "path": path}) + "\n")
    return path


class BackendMismatch(RuntimeError):
    """A run's ``metrics.json`` records another Keras backend than its job was started with."""


def summary_line(metrics_path, backend: Optional[str] = None) -> str:
    """One readable line of a finished run, from its ``metrics.json``: the run's folder (its id in the workflow),
    validation accuracy, unique integers and range (quantized runs), training seconds, and the Keras backend where
    it is not TensorFlow. With ``backend``: :class:`BackendMismatch` if the run records another backend (the
    workflow's guard against a job that ran on the wrong one)."""
    with open(metrics_path, encoding="utf-8") as f:
        metrics = json.load(f)
    machine = metrics.get("machine")  # as lqs_core.workflow.table.run_backend reads it (this module imports no table)
    recorded = str((machine.get("backend") if isinstance(machine, Mapping) else None) or "tensorflow")
    if backend and recorded != backend:
        raise BackendMismatch(f"{metrics_path}: the run was computed on the Keras backend {recorded!r}, but its job "
                              f"was started for {backend!r} (KERAS_BACKEND); its files are not kept.")
    report = metrics.get("report") or {}
    parts = [os.path.basename(os.path.dirname(os.path.abspath(metrics_path)))]
    acc = report.get("val_accuracy")
    parts.append(f"val acc {100 * acc:.2f}%" if isinstance(acc, (int, float)) and math.isfinite(acc)
                 else "val acc n/a")
    if "unique_integers" in report:
        parts.append(f"unique {report['unique_integers']}")
    if "int_min" in report and "int_max" in report:
        parts.append(f"range {report['int_min']}..{report['int_max']}")
    if isinstance(report.get("train_seconds"), (int, float)):
        parts.append(f"{report['train_seconds']:.1f} s")
    if recorded != "tensorflow":
        parts.append(recorded)
    return " | ".join(parts)


def papermill_args(params: Optional[Mapping]) -> list:
    """papermill's arguments for a notebook's parameters, one list item per shell word: ``-p name value`` for
    numbers, booleans and None (papermill reads 1e-10, True, None back as such), ``-r`` for strings, ``-y`` with
    JSON for lists and mappings."""
    args = []
    for name, value in sorted((params or {}).items()):
        if isinstance(value, (list, dict)):
            args += ["-y", json.dumps({name: value})]
        elif isinstance(value, str):
            args += ["-r", name, value]
        else:
            args += ["-p", name, repr(value)]
    return args


def papermill_options(params: Optional[Mapping]) -> str:
    """:func:`papermill_args` as one shell string, each word quoted."""
    return " ".join(shlex.quote(arg) for arg in papermill_args(params))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m lqs_core.workflow.jobs", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("fetch", help="download (or find and verify) a dataset before any job trains on it")
    p.add_argument("dataset")
    p.add_argument("--data-dir", default=None, help="local dataset copies (default: $LQS_DATA_DIR, the Keras cache)")
    p.add_argument("--marker", default=None, help="write this JSON file (dataset, path) when done")
    p = sub.add_parser("summary", help="print the one-line summary of a finished run")
    p.add_argument("metrics", help="the run's metrics.json")
    p.add_argument("--backend", default=None, help="fail unless the run records this Keras backend")
    args = parser.parse_args(argv)
    if args.command == "fetch":
        print(fetch(args.dataset, args.data_dir or None, args.marker))
    else:
        try:
            print(summary_line(args.metrics, args.backend), flush=True)
        except BackendMismatch as error:
            raise SystemExit(f"FAILED: {error}") from None


if __name__ == "__main__":
    main()
