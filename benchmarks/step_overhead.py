"""Training-step overhead of the nested quantizer: time per epoch of ``mnist_mlp``, quantized vs plain Keras.

Both networks (Flatten -> Dense(128) -> ReLU -> Dense(10) -> softmax) train on the same samples, batch 32, Adam.
The quantized one uses ``QDense`` with ``granularity="rowwise"`` and ``λ = 1e-10``; the float one is its twin of
plain Keras ``Dense`` layers (``mnist_mlp(quantizer=None)``). After one warm-up epoch each (tracing / XLA
compilation), epochs are timed in alternating order (float, quantized, quantized, float, ...) so drifts of the
machine hit both alike; the reported number is the median of the per-pair ratios quantized / float. Threads: the
backends' defaults (every core), as the measurements in the README were made; ``--threads N`` limits them.

Two modes:

* default (the Keras backend of the environment, TensorFlow unless ``KERAS_BACKEND`` says otherwise): 60 000
  MNIST-shaped samples (real MNIST when ``lqs_core.data`` finds it — e.g. ``LQS_DATA_DIR`` — else uniform random
  pixels), Adam(1e-4), with and without ``jit_compile``. Targets (issue #2): <= 1.15x with XLA, <= 1.4x without::

      python benchmarks/step_overhead.py [--repeats 5] [--samples 60000] [--json out.json]

* ``--backends``: the same comparison on every installed Keras backend (TensorFlow, JAX, PyTorch), each in its own
  Python process (``KERAS_BACKEND`` must be set before Keras is imported), with plain Keras defaults: batch 32,
  ``Adam()`` (learning rate 1e-3), ``jit_compile="auto"`` (what ``compile()`` does when not told: XLA on JAX; on
  TensorFlow XLA only with a GPU, off on a CPU-only machine; eager on PyTorch), raw pixels scaled to [0, 1]. Data:
  real MNIST (60 000 training images) from ``LQS_DATA_DIR``, the project's offline copy
  (``../shared/data/keras/datasets``, ``$LQS_SHARED_DATA``), the checkout's ``data/`` or the Keras cache; without
  it the 8x8 digits (1 437 images, noted in the output). Writes ``benchmarks/results/backends_<machine>.json``
  (``..._<N>thread.json`` with ``--threads N``) and prints a Markdown table::

      python benchmarks/step_overhead.py --backends [tensorflow,jax,torch] [--repeats 5] [--threads N]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lqs_core import provenance

# Before TensorFlow is imported: the CPU code path pinned (ONEDNN_MAX_CPU_ISA, as in every workflow job), quiet logs.
provenance.pin_cpu()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

#: The Keras backends and the package each needs.
BACKENDS = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}
HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS_DIR = HERE / "results"


def shared_data_dirs():
    """The project's offline dataset copies, where they are (as the tests find them): ``$LQS_SHARED_DATA`` and
    ``<checkout>/../shared/data`` (each as ``keras/datasets`` or itself)."""
    roots = [Path(os.environ["LQS_SHARED_DATA"])] if os.environ.get("LQS_SHARED_DATA") else []
    roots.append(REPO.parent / "shared" / "data")
    found = []
    for root in roots:
        for folder in (root / "keras" / "datasets", root):
            if (folder / "mnist.npz").is_file() and folder not in found:
                found.append(folder)
    return found


def mnist_places():
    """Where MNIST is looked for, in order: ``$LQS_DATA_DIR`` (``None``: the loader's own order, with the checkout's
    data/ and the Keras cache, downloading there when online), else the offline copy first."""
    if os.environ.get("LQS_DATA_DIR"):
        return [None, *shared_data_dirs()]
    return [*shared_data_dirs(), None]


def mnist_like(samples: int, seed: int = 0):
    """Real MNIST training images if available, else uniform random 0..255 pixels; returns (x, y, source)."""
    import numpy as np

    from lqs_core.data import load_arrays

    error = None
    for data_dir in mnist_places():
        try:
            (x, y), _ = load_arrays("mnist", data_dir=None if data_dir is None else str(data_dir))
            return x[:samples].astype("float32"), y[:samples].astype("int32"), "real MNIST"
        except Exception as problem:  # noqa: BLE001 - the next place
            error = problem
    # offline and no local copy: the timing does not depend on pixel values
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(samples, 28, 28)).astype("float32")
    y = rng.integers(0, 10, size=samples).astype("int32")
    return x, y, f"random (MNIST not found: {type(error).__name__})"


def mnist_or_digits(samples: int):
    """``(x, y, source)``: real MNIST training images scaled to [0, 1] (looked for as :func:`mnist_places` says),
    else scikit-learn's 8x8 digits (its training split)."""
    from lqs_core.data import load_arrays

    problems = []
    for data_dir in mnist_places():
        try:
            (x, y), _ = load_arrays("mnist", data_dir=None if data_dir is None else str(data_dir))
        except Exception as error:  # noqa: BLE001 - not there: the next place, else digits
            problems.append(f"{data_dir or 'LQS_DATA_DIR/data/Keras cache'}: {type(error).__name__}")
            continue
        where = "LQS_DATA_DIR, data/ or the Keras cache" if data_dir is None else f"the offline copy {data_dir}"
        return x[:samples] / 255.0, y[:samples], f"real MNIST ({min(samples, len(x))} training images, from {where})"
    (x, y), _ = load_arrays("digits")
    return x / 16.0, y, (f"digits ({len(x)} training images of 8x8; MNIST not found: {'; '.join(problems)}) — "
                         "NOT the MNIST timing: rerun with LQS_DATA_DIR set")


def _epoch_timer():
    import keras

    class EpochTimer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds = time.perf_counter() - self.start

    return EpochTimer()


def compiled(quantized: bool, jit="auto", learning_rate: float = 1e-4, input_shape=(28, 28)):
    """``mnist_mlp``, quantized (nested, row-wise, λ = 1e-10) or its float twin of plain Keras layers, compiled."""
    import keras

    from lqs_core import models

    keras.utils.set_random_seed(42)
    if quantized:
        model = models.mnist_mlp("nested", granularity="rowwise", threshold=1e-10, input_shape=input_shape)
    else:
        model = models.mnist_mlp(None, input_shape=input_shape)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        jit_compile=jit,
    )
    return model


def epoch_seconds(model, x, y) -> float:
    timer = _epoch_timer()
    model.fit(x, y, batch_size=32, epochs=1, shuffle=False, verbose=0, callbacks=[timer])
    return timer.seconds


def timed_pairs(plain, quant, x, y, repeats: int) -> dict:
    """One warm-up epoch each, then ``repeats`` pairs of epochs in alternating order; medians and ratios."""
    warmup = {"float": epoch_seconds(plain, x, y), "quantized": epoch_seconds(quant, x, y)}
    pairs = []
    for i in range(repeats):
        order = (plain, quant) if i % 2 == 0 else (quant, plain)
        times = {id(m): epoch_seconds(m, x, y) for m in order}
        pairs.append((times[id(plain)], times[id(quant)]))
    ratios = [q / f for f, q in pairs]
    return {
        "float_epoch_s_median": statistics.median(f for f, _ in pairs),
        "quantized_epoch_s_median": statistics.median(q for _, q in pairs),
        "ratio_median": statistics.median(ratios),
        "ratios": ratios,
        "float_epoch_s": [f for f, _ in pairs],
        "quantized_epoch_s": [q for _, q in pairs],
        "warmup_epoch_s": warmup,
    }


def measure(x, y, jit: bool, repeats: int) -> dict:
    return {"jit_compile": jit, **timed_pairs(compiled(False, jit), compiled(True, jit), x, y, repeats)}


def machine_description() -> str:
    cpu = provenance.record().get("cpu", "")
    return f"{platform.machine()}, {os.cpu_count()} CPU cores ({cpu}), {platform.system()} {platform.release()}"


def main_jit(args) -> None:
    import keras

    x, y, source = mnist_like(args.samples)
    pinning = provenance.pin_cpu()
    print(f"data: {source}, {len(x)} samples, batch 32; machine: {machine_description()}; keras "
          f"{keras.__version__} ({keras.backend.backend()}); pinning: {pinning}")
    results = []
    for jit in (False, True):
        r = measure(x, y, jit, args.repeats)
        results.append(r)
        target = 1.15 if jit else 1.4
        verdict = "meets" if r["ratio_median"] <= target else "MISSES"
        print(
            f"jit_compile={str(jit):5}  float {r['float_epoch_s_median']:.2f} s/epoch  "
            f"quantized {r['quantized_epoch_s_median']:.2f} s/epoch  "
            f"ratio median {r['ratio_median']:.3f}x  ({verdict} target <= {target}x; "
            f"pairs: {', '.join(f'{v:.3f}' for v in r['ratios'])})"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"data": source, "machine": machine_description(), "pinning": pinning, "results": results}, f,
                      indent=2)


# ---------------------------------------------------------------------------------------------------------------
# Every backend, each in its own process


def worker(backend: str, repeats: int, samples: int, threads: int) -> dict:
    """The measurement of one backend, in this process (started with ``KERAS_BACKEND=backend``)."""
    from lqs_core.workflow import jobs

    jobs.setup(threads, backend)  # as a workflow job: the backend, the threads, TensorFlow's start-up lines captured
    import keras

    if keras.backend.backend() != backend:
        raise RuntimeError(f"Keras runs on {keras.backend.backend()!r}, not {backend!r}")
    x, y, source = mnist_or_digits(samples)
    x, y = x.astype("float32"), y.astype("int32")
    plain = compiled(False, "auto", learning_rate=1e-3, input_shape=x.shape[1:])
    quant = compiled(True, "auto", learning_rate=1e-3, input_shape=x.shape[1:])
    result = timed_pairs(plain, quant, x, y, repeats)
    machine = provenance.record()
    return {
        "backend": backend,
        "version": machine.get(backend),
        "keras": keras.__version__,
        "jit_compile": {"float": bool(plain.jit_compile), "quantized": bool(quant.jit_compile)},
        "data": source,
        "samples": int(len(x)),
        "threads": threads or "backend default",
        **result,
        "machine": machine,
    }


def installed_backends():
    return [b for b, package in BACKENDS.items() if importlib.util.find_spec(package) is not None]


def run_backends(backends, repeats: int, samples: int, threads: int, timeout: float) -> list:
    """One subprocess per backend (``KERAS_BACKEND`` set before it starts); their results, in order."""
    results = []
    for backend in backends:
        env = {**os.environ, "KERAS_BACKEND": backend}
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "result.json"
            command = [sys.executable, str(Path(__file__).resolve()), "--worker", backend, "--repeats",
                       str(repeats), "--samples", str(samples), "--threads", str(threads), "--json", str(out)]
            start = time.monotonic()
            proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
            if proc.returncode != 0 or not out.exists():
                print(f"{backend}: FAILED (exit {proc.returncode})\n{proc.stdout[-2000:]}{proc.stderr[-4000:]}",
                      file=sys.stderr)
                results.append({"backend": backend, "error": (proc.stdout + proc.stderr)[-4000:]})
                continue
            result = json.loads(out.read_text())
        result["process_s"] = time.monotonic() - start
        print(f"{backend}: float {result['float_epoch_s_median']:.2f} s/epoch, quantized "
              f"{result['quantized_epoch_s_median']:.2f} s/epoch, ratio {result['ratio_median']:.3f}x "
              f"({result['process_s']:.0f} s)", flush=True)
        results.append(result)
    return results


def markdown_table(results) -> str:
    lines = ["| backend | version | jit_compile (float / quantized) | float s/epoch | quantized s/epoch | "
             "median ratio | per-pair ratios |",
             "|---|---|---|---|---|---|---|"]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['backend']} | – | – | failed | failed | – | – |")
            continue
        jit = r["jit_compile"]
        lines.append(
            f"| {r['backend']} | {r['version']} (Keras {r['keras']}) | {jit['float']} / {jit['quantized']} | "
            f"{r['float_epoch_s_median']:.2f} | {r['quantized_epoch_s_median']:.2f} | **{r['ratio_median']:.2f}×** | "
            f"{min(r['ratios']):.2f} – {max(r['ratios']):.2f} |")
    return "\n".join(lines)


def main_backends(args) -> None:
    available = installed_backends()
    wanted = [b.strip() for b in args.backends.split(",") if b.strip()] if args.backends else available
    unknown = [b for b in wanted if b not in BACKENDS]
    if unknown:
        raise SystemExit(f"unknown backend(s) {unknown}; allowed: {', '.join(BACKENDS)}")
    missing = [b for b in wanted if b not in available]
    backends = [b for b in wanted if b in available]
    machine_tag = args.machine or f"{os.cpu_count()}core_cpu"
    threads = f"{args.threads} thread(s) per process" if args.threads else \
        f"the backends' defaults (all {os.cpu_count()} cores; not pinned to one thread, as the existing benchmark)"
    print(f"backends: {', '.join(backends)}" + (f" (not installed: {', '.join(missing)})" if missing else ""))
    print(f"machine: {machine_description()}; threads: {threads}; batch 32, Adam() defaults, jit_compile='auto'; "
          f"{args.repeats} timed pairs after one warm-up epoch each; pinning: {provenance.pin_cpu()}", flush=True)
    results = run_backends(backends, args.repeats, args.samples, args.threads, args.timeout)
    data = sorted({r["data"] for r in results if "data" in r})
    out = {
        "benchmark": "one epoch of mnist_mlp, float (plain Keras Dense) vs quantized (QDense, nested, row-wise, "
                     "lambda=1e-10), per Keras backend, each in its own process",
        "data": data[0] if len(data) == 1 else data,
        "batch_size": 32,
        "optimizer": "keras.optimizers.Adam() (defaults: learning rate 1e-3)",
        "jit_compile": "auto (Keras' default)",
        "repeats": args.repeats,
        "threads": args.threads or "backend defaults",
        "machine": machine_description(),
        "not_installed": missing,
        "results": results,
    }
    suffix = f"_{args.threads}thread" if args.threads else ""
    path = Path(args.json) if args.json else RESULTS_DIR / f"backends_{machine_tag}{suffix}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n")
    print()
    print(f"data: {out['data']}")
    print()
    print(markdown_table(results))
    print()
    print(f"written: {path}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed epochs per variant (default 5)")
    parser.add_argument("--samples", type=int, default=60000, help="training samples per epoch (default 60000)")
    parser.add_argument("--json", help="also write the results to this JSON file (--backends: instead of "
                        "benchmarks/results/backends_<machine>.json)")
    parser.add_argument("--backends", nargs="?", const="", default=None, metavar="LIST",
                        help="per-backend mode: comma-separated backends (default: every installed one)")
    parser.add_argument("--threads", type=int, default=0, help="--backends: threads per process (0: the backends' "
                        "defaults)")
    parser.add_argument("--machine", default="", help="--backends: the machine's tag in the JSON file name "
                        "(default <cores>core_cpu)")
    parser.add_argument("--timeout", type=float, default=3600, help="--backends: seconds per backend")
    parser.add_argument("--worker", choices=sorted(BACKENDS), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        result = worker(args.worker, args.repeats, args.samples, args.threads)
        Path(args.json).write_text(json.dumps(result))
    elif args.backends is not None:
        main_backends(args)
    else:
        main_jit(args)


if __name__ == "__main__":
    main()
