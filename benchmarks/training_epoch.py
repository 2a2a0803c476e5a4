"""One MNIST training epoch of lqs against plain Keras and against the FLOP bound, in one run (issue #12).

The thesis' MLP (Flatten -> Dense(128) -> ReLU -> Dense(10) -> softmax), 60 000 real MNIST images, batch 32, Adam,
one thread (``threads``, as every workflow job), per Keras backend in its own process. Timed per epoch, after one
warm-up epoch each, in alternating order; medians:

* ``keras_default``: the float network with plain Keras' default compile settings (``steps_per_execution=1``,
  ``jit_compile="auto"``), what a user writes;
* ``lqs_float``: the same float network compiled as :func:`lqs_core.training.train` compiles (TensorFlow: an epoch
  per execution, :func:`lqs_core.training.steps_per_execution`; JAX: ``jax.jit``);
* ``lqs_quantized``: lqs' quantized network (nested, row-wise, λ = 1e-10) compiled as ``train`` does — what a
  workflow run trains.

FLOP bound: a training step costs about ``3 × 2 × MACs`` FLOP per image (forward, gradient by input, gradient by
weight; MACs = 784·128 + 128·10), i.e. 3.66e10 FLOP per epoch; divided by the rate one thread reaches on the
step's own matmul shape (NumPy, ``(32×784)·(784×128)``, best of several timings), it is the epoch time no
implementation on this core can beat. Writes ``benchmarks/results/training_epoch_<machine>.json`` and prints a
Markdown table::

    LQS_DATA_DIR=/path/to/keras/datasets python benchmarks/training_epoch.py [--backends tensorflow,jax] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

#: Multiply-accumulates per image of the thesis' MNIST MLP.
MACS_PER_IMAGE = 784 * 128 + 128 * 10
#: FLOP per image of one training step: forward, gradient by input and gradient by weight, 2 FLOP per MAC each.
FLOP_PER_IMAGE = 3 * 2 * MACS_PER_IMAGE


def matmul_gflops(repeats: int = 2000) -> float:
    """GFLOP/s of one thread on a ``(32×784)·(784×128)`` float32 matmul (best of 5 timings of ``repeats``)."""
    import numpy as np

    rng = np.random.default_rng(0)
    a = rng.standard_normal((32, 784), dtype=np.float32)
    b = rng.standard_normal((784, 128), dtype=np.float32)
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(repeats):
            a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * 32 * 784 * 128 * repeats / best / 1e9


def worker(backend: str, repeats: int) -> dict:
    from lqs_core.workflow import jobs

    jobs.setup(1, backend)
    import keras

    from lqs_core import models, training
    from step_overhead import _epoch_timer, mnist_or_digits

    x, y, source = mnist_or_digits(60000)
    x, y = (x * 255.0).astype("float32"), y.astype("int32")  # raw pixels, as the reproduction trains
    n_batches = -(-len(x) // 32)

    def build(quantized: bool, lqs_settings: bool):
        keras.utils.set_random_seed(42)
        model = (models.mnist_mlp("nested", granularity="rowwise", threshold=1e-10) if quantized
                 else models.mnist_mlp(None))
        settings = ({"steps_per_execution": training.steps_per_execution(n_batches),
                     "jit_compile": backend == "jax"} if lqs_settings else {})
        model.compile(optimizer=keras.optimizers.Adam(1e-4), loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"], **settings)
        return model

    variants = {"keras_default": build(False, False), "lqs_float": build(False, True),
                "lqs_quantized": build(True, True)}

    def epoch(model) -> float:
        timer = _epoch_timer()
        model.fit(x, y, batch_size=32, epochs=1, shuffle=False, verbose=0, callbacks=[timer])
        return timer.seconds

    warmup = {k: epoch(m) for k, m in variants.items()}
    times = {k: [] for k in variants}
    names = list(variants)
    for i in range(repeats):
        for k in (names if i % 2 == 0 else names[::-1]):
            times[k].append(epoch(variants[k]))
    return {"backend": backend, "keras": keras.__version__, "data": source, "images": int(len(x)),
            "warmup_s": warmup, "epoch_s": times, "median_s": {k: statistics.median(v) for k, v in times.items()}}


def run(backends, repeats: int) -> dict:
    from lqs_core import provenance

    env_one_thread = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    rate = float(subprocess.run([sys.executable, __file__, "--matmul"], env=env_one_thread, check=True,
                                capture_output=True, text=True).stdout.strip().splitlines()[-1])
    bound = FLOP_PER_IMAGE * 60000 / (rate * 1e9)
    results = []
    for backend in backends:
        out = subprocess.run([sys.executable, __file__, "--worker", backend, "--repeats", str(repeats)],
                             env={**os.environ, "KERAS_BACKEND": backend}, capture_output=True, text=True)
        if out.returncode:
            raise RuntimeError(f"{backend}: {out.stderr[-2000:]}")
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return {"machine": provenance.record(), "threads": 1, "matmul_gflops_1thread": rate,
            "flop_per_epoch": FLOP_PER_IMAGE * 60000, "flop_bound_s": bound, "results": results}


def markdown(report: dict) -> str:
    bound = report["flop_bound_s"]
    lines = ["| backend | plain Keras, default compile [s] | lqs' compile, float [s] | lqs quantized [s] | "
             "lqs quantized / plain Keras | lqs quantized / FLOP bound |", "|---|---|---|---|---|---|"]
    for r in report["results"]:
        m = r["median_s"]
        lines.append(f"| {r['backend']} | {m['keras_default']:.2f} | {m['lqs_float']:.2f} | {m['lqs_quantized']:.2f} "
                     f"| {m['lqs_quantized'] / m['keras_default']:.2f}× | {m['lqs_quantized'] / bound:.1f}× |")
    lines.append(f"\nFLOP bound: {report['flop_per_epoch']:.3g} FLOP per epoch at "
                 f"{report['matmul_gflops_1thread']:.0f} GFLOP/s (one thread) = {bound:.2f} s.")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="tensorflow,jax", help="comma-separated Keras backends")
    parser.add_argument("--repeats", type=int, default=3, help="timed epochs per variant (default 3)")
    parser.add_argument("--machine", default="2core_cpu", help="tag of the JSON file name")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--matmul", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats must be >= 1, got {args.repeats}")
    if args.matmul:
        print(matmul_gflops())
        return
    if args.worker:
        print(json.dumps(worker(args.worker, args.repeats)))
        return
    backends = [b for b in args.backends.split(",") if b]
    unknown = sorted(set(backends) - {"tensorflow", "jax", "torch"})
    if unknown:
        parser.error(f"--backends: unknown {unknown}; allowed: tensorflow, jax, torch")
    report = run(backends, args.repeats)
    out = HERE / "results" / f"training_epoch_{args.machine}.json"
    from lqs_core.atomic import write_text

    write_text(out, json.dumps(report, indent=2) + "\n")
    print(markdown(report))
    print(f"\nwritten: {out.relative_to(HERE.parent)}")


if __name__ == "__main__":
    main()
