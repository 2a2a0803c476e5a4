"""What one ``QuantizationLogger.on_epoch_end`` costs on ResNet50, and what its size keys say (issue #23).

``keras.applications.ResNet50(weights=None)`` (25.6 M weights) quantized with ``quantize_model(model, "nested",
granularity="outputwise", threshold=1e-9)``: 108 quantized tensors. Timed, median of ``--repeats`` calls each:

* ``epoch_stats``: ``QuantizationLogger(sizes=False)`` — :func:`lqs_core.metrics.epoch_stats` alone;
* ``sizes``: ``QuantizationLogger()`` — plus ``bits_unique``, ``packed_bytes``, ``shannon_bytes`` (histograms);
* ``file_size``: ``QuantizationLogger(file_size=True)`` — plus ``entropy_bytes``, the integer file (every tensor
  coded);
* ``before``: what ``QuantizationLogger(sizes=True)`` computed before issue #23: ``epoch_stats`` plus
  :func:`lqs_core.metrics.sizes` (per-tensor Huffman code lengths, then the integer file).

Prints the timings (wall and CPU time; ``load_average`` says how busy the machine was) and the three sizes (``packed_bytes``, ``shannon_bytes``, ``entropy_bytes``) and writes them to
``--json`` if given::

    python benchmarks/logger_sizes.py [--repeats 3] [--json benchmarks/results/logger_sizes_<machine>.json]

Recorded: ``benchmarks/results/logger_sizes_2core_cpu.json`` (2 cores, with another training running: compare
CPU times, the wall times there are 2-4x those of an idle machine).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def median_seconds(fn, repeats: int) -> dict:
    """Median wall time and CPU time (``time.process_time``: all threads of this process, less sensitive to other
    processes on the machine) of ``fn()`` over ``repeats`` calls, after one untimed call (tracing, caches)."""
    fn()
    wall, cpu = [], []
    for _ in range(repeats):
        w, c = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - w)
        cpu.append(time.process_time() - c)
    return {"wall": statistics.median(wall), "cpu": statistics.median(cpu)}


def quantized_resnet50():
    import keras

    import lqs_core

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return lqs_core.quantize_model(keras.applications.ResNet50(weights=None), "nested",
                                       granularity="outputwise", threshold=1e-9)


def logger_call(model, **options):
    """``() -> logs``: one ``on_epoch_end`` of a ``QuantizationLogger(**options)`` on ``model``."""
    from lqs_core.callbacks import QuantizationLogger

    logger = QuantizationLogger(**options)
    logger.set_model(model)

    def call():
        logs = {}
        logger.on_epoch_end(0, logs)
        return logs

    return call


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    from lqs_core import metrics

    model = quantized_resnet50()
    stats_only = logger_call(model, sizes=False)
    calls = {
        "epoch_stats": stats_only,
        "sizes": logger_call(model),
        "file_size": logger_call(model, file_size=True),
        "before": lambda: (stats_only(), metrics.sizes(model)),
    }
    seconds = {name: median_seconds(fn, args.repeats) for name, fn in calls.items()}
    logs = calls["file_size"]()
    out = {"model": "ResNet50(weights=None), nested outputwise λ=1e-9", "cpu_count": os.cpu_count(),
           "load_average": os.getloadavg(),
           "repeats": args.repeats, "seconds": seconds,
           "n_tensors": len(metrics.integer_tensors(model)), "unique_integers": logs["unique_integers"],
           **{k: logs[k] for k in ("packed_bytes", "shannon_bytes", "entropy_bytes")}}
    for name, s in seconds.items():
        print(f"{name:12s} wall {s['wall']:7.2f} s   cpu {s['cpu']:7.2f} s")
    print({k: v for k, v in out.items() if k != "seconds"})
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(out, f, indent=2)
    return out


if __name__ == "__main__":
    main()
