"""One CIFAR-10 training epoch of the thesis' network per Keras backend: which backend the CIFAR-10 profile runs on.

The thesis' CIFAR-10 CNN (:func:`lqs_core.models.cifar10_cnn`), float and with the channel-wise nested quantizer
(λ = 1e-11), compiled exactly as :func:`lqs_core.training.train` compiles it (Adam 1e-4, batch 128; TensorFlow: an
epoch per execution, op determinism; JAX: ``jax.jit``), on real CIFAR-10 images, ``threads`` intra-op threads, each
backend in its own process. Every variant trains ``warmup`` epochs of ``steps`` batches (compilation), then
``repeats`` timed epochs of ``steps`` batches; the median seconds per batch times 391 (the batches of one epoch of
50 000 images) is the epoch time. Backends alternate, so a change of machine load hits both alike. Writes
``benchmarks/results/cifar10_epoch_<machine>.json`` and prints a Markdown table::

    LQS_DATA_DIR=/path/to/keras/datasets python benchmarks/cifar10_epoch.py [--backends tensorflow,jax]
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
#: Batches of one epoch at the thesis' settings (50 000 images, batch 128).
EPOCH_BATCHES = -(-50_000 // 128)
VARIANTS = {"float": None, "nested_channelwise_1e-11": {"method": "nested", "granularity": "channelwise",
                                                        "threshold": 1e-11}}


def worker(backend: str, steps: int, warmup: int, repeats: int) -> dict:
    """Seconds per batch of each variant on this process' backend (KERAS_BACKEND set by the parent)."""
    import keras

    from lqs_core import data, models
    from lqs_core.training import _jit_compile, make_deterministic, steps_per_execution
    from lqs_core.spec import RunConfig

    assert keras.backend.backend() == backend, keras.backend.backend()
    out = {}
    for name, spec in VARIANTS.items():
        keras.utils.set_random_seed(42)
        config = RunConfig(dataset="cifar10", scheme="float" if spec is None else "nested",
                           granularity="channelwise", threshold=1e-11, seed=42, max_train=steps * 128, max_val=128)
        make_deterministic(config.jit_compile)
        splits = data.load("cifar10", batch_size=128, seed=42, max_train=steps * 128, max_val=128)
        model = models.build("cifar10", spec, seed=42)
        model.compile(optimizer=keras.optimizers.Adam(1e-4), loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"], jit_compile=_jit_compile(config),
                      steps_per_execution=steps_per_execution(steps))
        times = []

        class Timer(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                self.start = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                times.append(time.perf_counter() - self.start)

        model.fit(splits.train, epochs=warmup + repeats, callbacks=[Timer()], verbose=0, shuffle=False)
        per_batch = [t / steps for t in times[warmup:]]
        out[name] = {"seconds_per_batch": per_batch, "epoch_seconds": statistics.median(per_batch) * EPOCH_BATCHES}
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="tensorflow,jax")
    parser.add_argument("--steps", type=int, default=40, help="batches per timed epoch (default 40)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds over the backends")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--machine", default="2core_cpu")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker, args.steps, args.warmup, args.repeats)))
        return
    results = {}
    for _ in range(args.rounds):
        for backend in args.backends.split(","):
            env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3",
                       OMP_NUM_THREADS=str(args.threads), TF_NUM_INTRAOP_THREADS=str(args.threads),
                       TF_NUM_INTEROP_THREADS="1", XLA_FLAGS=os.environ.get("XLA_FLAGS", ""))
            done = subprocess.run([sys.executable, __file__, "--worker", backend, "--steps", str(args.steps),
                                   "--warmup", str(args.warmup), "--repeats", str(args.repeats)],
                                  env=env, capture_output=True, text=True, check=True)
            for name, value in json.loads(done.stdout.strip().splitlines()[-1]).items():
                results.setdefault(backend, {}).setdefault(name, []).extend(value["seconds_per_batch"])
    table = {b: {n: statistics.median(v) * EPOCH_BATCHES for n, v in r.items()} for b, r in results.items()}
    record = {"what": __doc__.splitlines()[0], "steps": args.steps, "threads": args.threads,
              "epoch_batches": EPOCH_BATCHES, "seconds_per_batch": results, "epoch_seconds_median": table}
    path = HERE / "results" / f"cifar10_epoch_{args.machine}.json"
    path.write_text(json.dumps(record, indent=2) + "\n")
    print("| backend | " + " | ".join(VARIANTS) + " |\n|---|" + "---|" * len(VARIANTS))
    for backend, row in table.items():
        print(f"| {backend} | " + " | ".join(f"{row[n]:.0f} s" for n in VARIANTS) + " |")
    ref = args.backends.split(",")[0]
    for backend in table:
        if backend != ref:
            print(f"{backend} / {ref}: " + ", ".join(f"{n} {table[backend][n] / table[ref][n]:.2f}x" for n in VARIANTS))
    print(f"written: {path}")


if __name__ == "__main__":
    sys.path.insert(0, str(HERE.parent))
    main()
