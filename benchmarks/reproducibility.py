"""How much a run's numbers move with the seed and with the CPU code path, per method (README: reproducibility).

For three committed demo runs (CGMQ at budget 0.1, LSQ at 2 bits, nested λ = 1e-10), trains the same config with
seeds 42..46 under the pinned code path (``ONEDNN_MAX_CPU_ISA=AVX2``), and seed 42 once more with oneDNN's own
choice of instruction set (unpinned; AVX-512 where the CPU has it). Each run is a fresh subprocess, so the
environment variable takes effect. Writes ``benchmarks/results/reproducibility_<isa>.json``.

    python benchmarks/reproducibility.py [--seeds 42 43 44 45 46]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUNS = ("digits-cgmq-scalar-bud0.1-qat-s42", "digits-lsq-outputwise-b2-qat-s42",
        "digits-nested-rowwise-lam1e-10-qat-s42")
CHILD = """
import json, sys
from lqs_core.spec import RunConfig
from lqs_core.training import train
config = RunConfig.from_dict(json.loads(sys.argv[1]))
r = train(config, out_dir=sys.argv[2], verbose=0)
print("RESULT " + json.dumps({k: r.report.get(k) for k in ("val_accuracy", "unique_integers", "packed_bytes")}))
"""


def run(config: dict, pinned: bool) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "ONEDNN_MAX_CPU_ISA"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    if pinned:
        env["ONEDNN_MAX_CPU_ISA"] = "AVX2"
    with tempfile.TemporaryDirectory() as out:
        text = subprocess.run([sys.executable, "-c", CHILD, json.dumps(config), out], env=env, check=True,
                              capture_output=True, text=True, cwd=ROOT).stdout
    return json.loads(text.split("RESULT ", 1)[1])


def main():
    sys.path.insert(0, ROOT)
    from lqs_core.provenance import instruction_set

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44, 45, 46])
    args = parser.parse_args()
    table = {"cpu_instruction_set": instruction_set(), "seeds": args.seeds, "runs": {}}
    for run_id in RUNS:
        with open(os.path.join(ROOT, "results", "demo", "runs", run_id, "metrics.json")) as f:
            stored = json.load(f)
        config = stored["config"]
        pinned = [run({**config, "seed": s}, pinned=True) for s in args.seeds]
        unpinned = run({**config, "seed": args.seeds[0]}, pinned=False)
        accs = [100 * p["val_accuracy"] for p in pinned]
        table["runs"][run_id] = {
            "committed_val_accuracy": 100 * stored["report"]["val_accuracy"],
            "pinned": pinned,
            "val_accuracy_mean": statistics.mean(accs),
            "val_accuracy_sd": statistics.stdev(accs) if len(accs) > 1 else 0.0,
            "val_accuracy_min": min(accs),
            "val_accuracy_max": max(accs),
            "unpinned_seed42": unpinned,
        }
        print(f"{run_id}: committed {table['runs'][run_id]['committed_val_accuracy']:.1f} %, pinned seed "
              f"{args.seeds[0]} {accs[0]:.1f} %, seeds {min(accs):.1f}..{max(accs):.1f} % "
              f"(mean {statistics.mean(accs):.1f}), unpinned seed {args.seeds[0]} "
              f"{100 * unpinned['val_accuracy']:.1f} %", flush=True)
    path = os.path.join(ROOT, "benchmarks", "results", f"reproducibility_{instruction_set().lower()}.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(table, f, indent=2)
        f.write("\n")
    print("wrote", os.path.relpath(path, ROOT))


if __name__ == "__main__":
    main()
