"""Training-step overhead of the nested quantizer: time per epoch of ``mnist_mlp``, quantized vs plain Keras.

Both networks (Flatten -> Dense(128) -> ReLU -> Dense(10) -> softmax) train on the same 60 000 MNIST-shaped
samples (real MNIST when ``lqs_core.data`` finds it — e.g. ``LQS_DATA_DIR`` — else uniform random pixels), batch 32,
Adam. The quantized one uses ``QDense`` with ``granularity="rowwise"`` and ``λ = 1e-10``. After one warm-up epoch each
(tracing / XLA compilation), epochs are timed in alternating order (float, quantized, float, ...) so drifts of the
machine hit both alike; the reported number is the median of the per-pair ratios quantized / float.
Run with and without ``jit_compile``. Targets (issue #2): <= 1.15x with XLA, <= 1.4x without.

    python benchmarks/step_overhead.py [--repeats 5] [--samples 60000] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

from lqs_core import provenance

# Before TensorFlow is imported: the CPU code path pinned (ONEDNN_MAX_CPU_ISA, as in every workflow job), quiet logs.
provenance.pin_cpu()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from lqs_core import models  # noqa: E402


def mnist_like(samples: int, seed: int = 0):
    """Real MNIST training images if available, else uniform random 0..255 pixels; returns (x, y, source)."""
    try:
        from lqs_core.data import load_arrays

        (x, y), _ = load_arrays("mnist")
        return x[:samples].astype("float32"), y[:samples].astype("int32"), "real MNIST"
    except Exception as error:  # offline and no local copy: the timing does not depend on pixel values
        rng = np.random.default_rng(seed)
        x = rng.integers(0, 256, size=(samples, 28, 28)).astype("float32")
        y = rng.integers(0, 10, size=samples).astype("int32")
        return x, y, f"random (MNIST not found: {type(error).__name__})"


class EpochTimer(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds = time.perf_counter() - self.start


def compiled(quantized: bool, jit: bool):
    keras.utils.set_random_seed(42)
    if quantized:
        model = models.mnist_mlp(quantized=True, granularity="rowwise", threshold=1e-10)
    else:
        model = models.mnist_mlp(quantized=False)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-4),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        jit_compile=jit,
    )
    return model


def epoch_seconds(model, x, y) -> float:
    timer = EpochTimer()
    model.fit(x, y, batch_size=32, epochs=1, shuffle=False, verbose=0, callbacks=[timer])
    return timer.seconds


def measure(x, y, jit: bool, repeats: int) -> dict:
    plain, quant = compiled(False, jit), compiled(True, jit)
    epoch_seconds(plain, x, y)  # warm-up: tracing and (with jit) XLA compilation
    epoch_seconds(quant, x, y)
    pairs = []
    for i in range(repeats):
        order = (plain, quant) if i % 2 == 0 else (quant, plain)
        times = {id(m): epoch_seconds(m, x, y) for m in order}
        pairs.append((times[id(plain)], times[id(quant)]))
    ratios = [q / f for f, q in pairs]
    return {
        "jit_compile": jit,
        "float_epoch_s_median": statistics.median(f for f, _ in pairs),
        "quantized_epoch_s_median": statistics.median(q for _, q in pairs),
        "ratio_median": statistics.median(ratios),
        "ratios": ratios,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed epochs per variant (default 5)")
    parser.add_argument("--samples", type=int, default=60000, help="training samples per epoch (default 60000)")
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args(argv)

    x, y, source = mnist_like(args.samples)
    machine = f"{platform.machine()}, {os.cpu_count()} CPU cores, {platform.system()} {platform.release()}"
    pinning = provenance.pin_cpu()
    print(f"data: {source}, {len(x)} samples, batch 32; machine: {machine}; keras {keras.__version__}; "
          f"pinning: {pinning}")
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
            json.dump({"data": source, "machine": machine, "pinning": pinning, "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
