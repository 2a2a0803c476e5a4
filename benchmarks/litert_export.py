"""LiteRT files of quantized models against TFLite's own conversions of the same float model: latency and size.

Per network, five ``.tflite`` files of the same computation:

* ``tflite_float``: TFLite's conversion of the float twin (every weight ``P_r``, the values the quantized model
  computes with), float32 weights;
* ``tflite_dynamic``: the same with ``converter.optimizations = [tf.lite.Optimize.DEFAULT]`` and no representative
  dataset (dynamic-range int8: the **baseline** of issue #23);
* ``lqs_float``: ``export_litert(q)`` (default ``mode="float"``: the learned integers as int8, DEQUANTIZE before
  float kernels);
* ``lqs_dynamic``: ``export_litert(q, mode="dynamic")`` (the learned integers in TFLite's hybrid kernels);
* ``lqs_previous`` (``--previous``): the export of lqs before issue #23 (commit 6272aad: weights traced as inputs).

Latency: the ``ai-edge-litert`` interpreter (XNNPACK, its default), 1 thread, batch 1, one fixed input; after a
warm-up, ``--rounds`` rounds in which every file runs one block of invocations (as many as last about 1 ms, at least
one), in an order that rotates from round to round so drifts of the machine hit all alike; the number is the median
over rounds of a block's time per invocation, as thread CPU time (the measure of the ratios: robust to other
processes on the machine) and wall-clock time. Size: the file's bytes. Ratios are to ``tflite_dynamic``. Also the
largest difference of each file's predictions from the Keras model's on 8 random inputs, relative to the largest
prediction (MobileNetV2: logits).

Networks: MobileNetV2 (``keras.applications``, ``weights=None``, 224x224, 1000 classes; LSQ 8 bit per output channel
calibrated on its weights, BatchNorm folded by the converter) and the thesis' networks (``lqs_core.models.build``)
with the integers of committed runs (``results/quick_cpu/runs/*/integers.lqsint``): MNIST MLP nested row-wise
λ=1e-10 and LSQ 4 bit output-wise, CIFAR-10 CNN nested channel-wise λ=1e-10. Writes
``benchmarks/results/litert_export_<machine>.json`` and prints a Markdown table::

    python benchmarks/litert_export.py [--rounds 200] [--size 224] [--previous] [--machine 2core_cpu]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
import types
import warnings
from collections import Counter
from pathlib import Path

from lqs_core import provenance

provenance.pin_cpu()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from ai_edge_litert.interpreter import Interpreter  # noqa: E402

from lqs_core import export, litert, models  # noqa: E402
from lqs_core.convert import quantize_model  # noqa: E402
from lqs_core.layers import QuantizedLayer  # noqa: E402

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RUNS = REPO / "results" / "quick_cpu" / "runs"
PREVIOUS_COMMIT = "6272aad"
BASELINE = "tflite_dynamic"


def mobilenet_v2(size: int):
    """``(quantized model, float model)``: MobileNetV2 with LSQ 8 bit per output channel (calibrated)."""
    keras.utils.set_random_seed(0)
    model = keras.applications.MobileNetV2(input_shape=(size, size, 3), weights=None, classifier_activation=None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # BatchNorm stays float (folded by the converter)
        q = quantize_model(model, {"method": "lsq", "bits": 8, "granularity": "outputwise"})
    return q, model


def thesis(dataset: str, spec: dict, run: str):
    """``(quantized model, float twin)``: ``models.build(dataset, spec)`` with the integers of a committed run."""
    q = models.build(dataset, spec, seed=42)
    export.load_integers(q, RUNS / run / "integers.lqsint")
    return q, models.build(dataset, None, seed=42)


def float_twin(q, twin):
    """``twin`` with the weights ``q`` computes with: ``P_r`` for every quantized parameter, the others copied."""
    for layer in q.layers:
        if isinstance(layer, QuantizedLayer):
            twin.get_layer(layer.name).set_weights(
                [keras.ops.convert_to_numpy(quantizer(v)) for _, v, quantizer in layer.quantized_params()])
        elif layer.weights:
            twin.get_layer(layer.name).set_weights(layer.get_weights())
    return twin


def tflite(model, dynamic: bool) -> bytes:
    """TFLite's conversion of a float Keras model (``dynamic``: ``Optimize.DEFAULT``, no representative data)."""
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if dynamic:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    return bytes(converter.convert())


def previous_litert():
    """``lqs_core/litert.py`` of commit :data:`PREVIOUS_COMMIT` as a module."""
    source = subprocess.run(["git", "show", f"{PREVIOUS_COMMIT}:lqs_core/litert.py"], cwd=REPO, check=True,
                            capture_output=True, text=True).stdout
    module = types.ModuleType("lqs_litert_previous")
    exec(compile(source, "lqs_litert_previous.py", "exec"), module.__dict__)  # noqa: S102 - the repository's own code
    return module


def files(q, twin, folder: Path, previous) -> dict:
    """``{variant: (path, export seconds)}`` of the five files (module docstring)."""
    out = {}
    for name, make in [("tflite_float", lambda p: p.write_bytes(tflite(twin, False))),
                       ("tflite_dynamic", lambda p: p.write_bytes(tflite(twin, True))),
                       ("lqs_float", lambda p: litert.export_litert(q, p)),
                       ("lqs_dynamic", lambda p: litert.export_litert(q, p, mode="dynamic")),
                       *([("lqs_previous", lambda p: previous.export_litert(q, p))] if previous else [])]:
        path = folder / f"{name}.tflite"
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            make(path)
        out[name] = (path, time.perf_counter() - start)
    return out


def interpreter(path, x):
    it = Interpreter(model_path=str(path), num_threads=1)
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], x)
    return it


def block(it, n: int):
    """``(thread CPU seconds, wall seconds)`` per invocation over ``n`` invocations."""
    cpu, wall = time.thread_time(), time.perf_counter()
    for _ in range(n):
        it.invoke()
    return (time.thread_time() - cpu) / n, (time.perf_counter() - wall) / n


def latencies(paths: dict, x, rounds: int) -> dict:
    """``{variant: (median CPU ms, median wall ms) per invocation}`` (module docstring: blocks of about 1 ms,
    rotating order). The interpreter runs on the calling thread (1 thread), so its CPU time is the inference's
    time without the moments other processes hold the core."""
    its = {name: interpreter(path, x) for name, path in paths.items()}
    sizes = {}
    for name, it in its.items():
        block(it, 10)  # warm-up (XNNPACK packs the weights at the first invocation)
        sizes[name] = max(1, int(1e-3 / block(it, 10)[1]))
    times = {name: [] for name in its}
    names = list(its)
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            times[name].append(block(its[name], sizes[name]))
    return {name: tuple(1e3 * float(np.median(column)) for column in zip(*t)) for name, t in times.items()}


def op_counts(path) -> dict:
    """``{"CONV_2D": n, ...}`` of a file's main graph."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(str(path))
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    codes = [names[max(c.builtinCode, c.deprecatedBuiltinCode)] for c in model.operatorCodes]
    return dict(Counter(codes[op.opcodeIndex] for op in model.subgraphs[0].operators))


def max_difference(path, q, x) -> float:
    """Largest ``|file - Keras|`` of the predictions on the batch ``x``, relative to the largest ``|Keras|``."""
    expected = keras.ops.convert_to_numpy(q(x, training=False))
    return float(np.abs(litert.predict_litert(path, x) - expected).max() / np.abs(expected).max())


def inputs(name: str, shape, n: int, rng) -> np.ndarray:
    """MobileNetV2: uniform in [-1, 1] (its preprocessing's range); the thesis' networks: raw pixels (0..255), 20 %
    of them lit, like a digit (uniform noise everywhere drives the MNIST MLP's hidden units below zero)."""
    if name == "mobilenet_v2":
        return rng.uniform(-1, 1, size=(n, *shape)).astype("float32")
    return (255 * rng.uniform(size=(n, *shape)) * (rng.uniform(size=(n, *shape)) < 0.2)).astype("float32")


def measure(name: str, q, twin, rounds: int, previous) -> dict:
    twin = float_twin(q, twin)
    shape = tuple(q.inputs[0].shape[1:])
    rng = np.random.default_rng(0)
    x, batch = inputs(name, shape, 1, rng), inputs(name, shape, 8, rng)
    with tempfile.TemporaryDirectory() as folder:
        made = files(q, twin, Path(folder), previous)
        paths = {k: p for k, (p, _) in made.items()}
        ms = latencies(paths, x, rounds)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            report = litert.export_litert(q, Path(folder) / "report.tflite")
        variants = {k: {"latency_cpu_ms": ms[k][0], "latency_wall_ms": ms[k][1], "file_bytes": p.stat().st_size,
                        "latency_ratio": ms[k][0] / ms[BASELINE][0], "wall_ratio": ms[k][1] / ms[BASELINE][1],
                        "size_ratio": p.stat().st_size / paths[BASELINE].stat().st_size,
                        "max_rel_diff_vs_keras": max_difference(p, q, batch), "ops": op_counts(p),
                        "convert_s": made[k][1]} for k, p in paths.items()}
    storage = Counter(t["storage"] for t in report["tensors"])
    return {"network": name, "input_shape": list(shape), "parameters": int(q.count_params()),
            "lqs_storage": dict(storage), "lqs_float_tensors": {t["name"]: t["reason"] for t in report["tensors"]
                                                                if t["storage"] == "float32"},
            "variants": variants}


NETWORKS = {
    "mobilenet_v2": lambda size: mobilenet_v2(size),
    "mnist_nested_rowwise_1e-10": lambda size: thesis(
        "mnist", {"method": "nested", "granularity": "rowwise", "threshold": 1e-10},
        "mnist-nested-rowwise-lam1e-10-qat-s42"),
    "mnist_lsq4_outputwise": lambda size: thesis(
        "mnist", {"method": "lsq", "bits": 4, "granularity": "outputwise"}, "mnist-lsq-outputwise-b4-qat-s42"),
    "cifar10_nested_channelwise_1e-10": lambda size: thesis(
        "cifar10", {"method": "nested", "granularity": "channelwise", "threshold": 1e-10},
        "cifar10-nested-channelwise-lam1e-10-qat-s42"),
}


def markdown(report: dict) -> str:
    lines = ["| network | file | CPU ms | x dynamic-range | (wall) | bytes | x dynamic-range | max diff vs Keras |",
             "|---|---|---|---|---|---|---|---|"]
    for net in report["networks"]:
        for k, v in net["variants"].items():
            lines.append(f"| {net['network']} | {k} | {v['latency_cpu_ms']:.4f} | {v['latency_ratio']:.2f} | "
                         f"{v['wall_ratio']:.2f} | {v['file_bytes']} | {v['size_ratio']:.3f} | "
                         f"{v['max_rel_diff_vs_keras']:.1e} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--size", type=int, default=224, help="MobileNetV2's input size")
    parser.add_argument("--networks", default=",".join(NETWORKS))
    parser.add_argument("--previous", action="store_true", help=f"also lqs' export of commit {PREVIOUS_COMMIT}")
    parser.add_argument("--machine", default="2core_cpu", help="tag of the JSON file name")
    args = parser.parse_args(argv)
    previous = previous_litert() if args.previous else None
    results = []
    for name in args.networks.split(","):
        q, twin = NETWORKS[name](args.size)
        results.append(measure(name, q, twin, args.rounds, previous))
        print(f"{name}: done", file=sys.stderr, flush=True)
    report = {"machine": provenance.record(), "threads": 1, "batch": 1, "rounds": args.rounds,
              "baseline": BASELINE, "litert": importlib.util.find_spec("ai_edge_litert") is not None
              and __import__("ai_edge_litert").__version__, "tensorflow": tf.__version__,
              "load_average_at_end": os.getloadavg(), "networks": results}
    out = HERE / "results" / f"litert_export_{args.machine}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(markdown(report))
    print(f"written: {out}")


if __name__ == "__main__":
    main()
