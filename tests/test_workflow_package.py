"""The package lqs_core.workflow: its layout rules, the jobs' helpers, the figures' code inputs, the directory lock.

Layout: one module per job, imports at the top of each module, no module importing one of a later layer (the table
below), no import inside a function to get around a cycle, and no TensorFlow/Keras at import time (the Snakefile
imports the package while it is parsed).
"""

import ast
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lqs_core.workflow import jobs, sources, sweep

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "lqs_core" / "workflow"
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")

#: The workflow modules each module may import: the layers below it, never one above.
ALLOWED = {
    "__init__": set(),
    "names": set(),
    "config": set(),
    "sweep": {"config", "names"},
    "table": {"names"},
    "aggregate": {"names", "table"},
    "figures.__init__": set(),
    "figures.style": set(),
    "figures.pareto": {"aggregate", "names", "figures.style"},
    "figures.curves": {"aggregate", "names", "figures.style"},
    "figures.histograms": {"figures.style"},
    "figures.compression": set(),
    "figures.comparison": {"aggregate", "names", "figures.style"},
    "figures.gradual": {"aggregate", "names", "figures.style"},
    "jobs": set(),
    "lock": set(),
    "sources": set(),
}
#: The modules the Snakefile imports while it is parsed: light (no pandas, matplotlib, TensorFlow).
SNAKEFILE_MODULES = ["config", "sweep", "jobs", "lock", "sources", "table"]


def modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        yield ".".join(path.relative_to(PACKAGE).with_suffix("").parts), path


def workflow_imports(tree):
    """``(name, inside a function)`` of every lqs_core.workflow module a module imports."""
    found = []
    functions = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    nested = {id(n) for f in functions for n in ast.walk(f) if n is not f}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("lqs_core.workflow"):
            base = node.module[len("lqs_core.workflow"):].lstrip(".")
            for alias in node.names:
                name = f"{base}.{alias.name}" if base else alias.name
                if base and (PACKAGE / Path(*base.split("."))).with_suffix(".py").exists():
                    name = base  # `from lqs_core.workflow.config import ConfigError`
                found.append((name, id(node) in nested))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("lqs_core.workflow."):
                    found.append((alias.name[len("lqs_core.workflow."):], id(node) in nested))
    return found


def test_every_module_has_a_layer():
    assert {name for name, _ in modules()} == set(ALLOWED)


@pytest.mark.parametrize("name,path", list(modules()), ids=[n for n, _ in modules()])
def test_module_layout(name, path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    # imports first: after the docstring, no import follows other code at module level
    body = tree.body[1:] if tree.body and isinstance(tree.body[0], ast.Expr) else tree.body
    kinds = [isinstance(node, (ast.Import, ast.ImportFrom)) for node in body]
    assert kinds == sorted(kinds, reverse=True), f"{name}: a module-level import after code"
    # nothing upward, and no function-level import of a workflow module (a dodged cycle)
    for imported, in_function in workflow_imports(tree):
        assert imported in ALLOWED[name], f"{name} imports {imported} (allowed: {sorted(ALLOWED[name])})"
        assert not in_function, f"{name} imports {imported} inside a function"


def test_package_imports_no_tensorflow():
    code = ("import sys, importlib\n"
            f"for m in {[n for n in ALLOWED if not n.endswith('__init__')]!r}:\n"
            "    importlib.import_module('lqs_core.workflow.' + m)\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'tensorflow', 'keras', 'jax', 'torch'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_snakefile_modules_are_light():
    code = ("import sys\n"
            f"from lqs_core.workflow import {', '.join(SNAKEFILE_MODULES)}\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'tensorflow', 'keras', 'pandas', 'matplotlib'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_package_init_is_light():
    code = "import lqs_core.workflow as p, sys; print([k for k in vars(p) if not k.startswith('__')])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", "the package re-exports nothing"


# ---------------------------------------------------------------------------------------------------------------
# The Snakefile


def test_snakefile_rules():
    """One train rule (baselines too), one figure rule definition, the rules in workflow/rules/*.smk."""
    proc = subprocess.run([SNAKEMAKE, "-s", str(REPO / "Snakefile"), "--list-rules", "--configfile",
                           str(REPO / "config" / "smoke.yaml")], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rules = set(proc.stdout.split())
    assert rules == {"all", "fetch", "train", "results", "report", *sweep.FIGURE_NOTEBOOKS}
    snakefile = (REPO / "Snakefile").read_text()
    assert "importlib.util" not in snakefile and "pin_cpu()" in snakefile
    assert {p.name for p in (REPO / "workflow" / "rules").glob("*.smk")} == {
        "common.smk", "train.smk", "figures.smk", "report.smk"}
    figures = (REPO / "workflow" / "rules" / "figures.smk").read_text()
    assert figures.count("rule:") == 1 and "python -c" not in (REPO / "workflow" / "rules" / "train.smk").read_text()


# ---------------------------------------------------------------------------------------------------------------
# Code inputs of the figure rules


def test_figures_depend_only_on_the_code_they_run():
    rel = {nb: {str(Path(p).relative_to(REPO)) for p in sources.notebook_sources(REPO / "notebooks" / f"{nb}.ipynb")}
           for nb in sweep.FIGURE_NOTEBOOKS}
    for notebook, files in rel.items():
        assert "lqs_core/workflow/figures/style.py" in files and "lqs_core/workflow/table.py" in files
        # GPU locking, the config checks, the sweep, the lock: no figure is redrawn for them
        for other in ("jobs", "lock", "config", "sweep", "sources"):
            assert f"lqs_core/workflow/{other}.py" not in files, (notebook, other)
    assert "lqs_core/workflow/figures/pareto.py" in rel["fig_pareto"]
    assert "lqs_core/workflow/figures/pareto.py" not in rel["fig_curves"]
    assert "lqs_core/export.py" in rel["fig_histograms"]  # it reads the integer files
    assert "lqs_core/spec.py" in rel["fig_comparison"]
    run = {str(Path(p).relative_to(REPO)) for p in sources.notebook_sources(REPO / "notebooks" / "run.ipynb")}
    assert "lqs_core/workflow/jobs.py" in run
    report = {str(Path(p).relative_to(REPO)) for p in sources.module_sources(["lqs_core.report"])}
    assert {"lqs_core/report.py", "lqs_core/workflow/aggregate.py", "lqs_core/export.py"} <= report


# ---------------------------------------------------------------------------------------------------------------
# Jobs


def test_summary_line(tmp_path):
    run_dir = tmp_path / "digits-nested-rowwise-lam1e-10-qat-s42"
    run_dir.mkdir()
    report = {"val_accuracy": 0.95555, "unique_integers": 47, "int_min": -25, "int_max": 24, "train_seconds": 6.54}
    (run_dir / "metrics.json").write_text(json.dumps({"run_id": "digits-nested-rowwise-lam1e-10-qat-s42-e2",
                                                      "report": report}))
    line = jobs.summary_line(run_dir / "metrics.json")
    assert line == "digits-nested-rowwise-lam1e-10-qat-s42 | val acc 95.56% | unique 47 | range -25..24 | 6.5 s"
    out = subprocess.run([sys.executable, "-m", "lqs_core.workflow.jobs", "summary", str(run_dir / "metrics.json")],
                         capture_output=True, text=True, check=True).stdout
    assert out == line + "\n"


def test_papermill_options():
    assert jobs.papermill_options(None) == ""
    opts = jobs.papermill_options({"threshold": 1e-10, "modes": ["qat"], "granularity": "row wise", "seed": None,
                                   "label_points": True})
    assert opts == ("-r granularity 'row wise' -p label_points True -y '{\"modes\": [\"qat\"]}' -p seed None "
                    "-p threshold 1e-10")


def test_stderr_captured_keeps_c_level_lines_out():
    code = ("import os, sys\nfrom lqs_core.workflow import jobs\n"
            "with jobs.stderr_captured() as text:\n    os.write(2, b'C++ log line\\n'); print('py', file=sys.stderr)\n"
            "print(repr(text[0]))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stderr == "" and proc.stdout.strip() == repr("C++ log line\npy\n")


def test_fetch_command_writes_its_marker(tmp_path):
    marker = tmp_path / "data" / "digits.json"
    proc = subprocess.run([sys.executable, "-m", "lqs_core.workflow.jobs", "fetch", "digits", "--marker",
                           str(marker)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(marker.read_text())["dataset"] == "digits"


@pytest.mark.slow
def test_setup_pins_the_cpu_before_tensorflow_and_keeps_its_start_up_lines_out():
    code = ("import os, sys\nfrom lqs_core.workflow import jobs\nassert 'tensorflow' not in sys.modules\n"
            "gpu = jobs.setup(1)\nimport tensorflow as tf\n"
            "print(gpu, os.environ['ONEDNN_MAX_CPU_ISA'], os.environ['TF_NUM_INTRAOP_THREADS'],"
            " tf.config.threading.get_intra_op_parallelism_threads())")
    env = {k: v for k, v in os.environ.items() if k not in ("ONEDNN_MAX_CPU_ISA", "LQS_GPUS", "TF_CPP_MIN_LOG_LEVEL")}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["None", "AVX2", "1", "1"]
    assert "oneDNN" not in proc.stderr and "absl" not in proc.stderr, proc.stderr


# ---------------------------------------------------------------------------------------------------------------
# The work directory's lock


def _hold(directory, seconds):
    code = ("import sys, time\nfrom lqs_core.workflow import lock\n"
            "print(lock.hold_workdir(sys.argv[1]), flush=True)\ntime.sleep(float(sys.argv[2]))")
    return subprocess.Popen([sys.executable, "-c", code, str(directory), str(seconds)], stdout=subprocess.PIPE,
                            text=True)


def test_stale_snakemake_locks_are_removed_only_when_no_other_snakemake_runs(tmp_path):
    locks = tmp_path / ".snakemake" / "locks"
    locks.mkdir(parents=True)
    holder = _hold(tmp_path / ".snakemake", 60)  # a Snakemake still running here
    try:
        assert holder.stdout.readline().strip() == "[]"
        (locks / "0.input.lock").write_text("results/x\n")  # its own lock
        other = _hold(tmp_path / ".snakemake", 0)
        assert other.stdout.readline().strip() == "None"  # another one: touches nothing
        other.wait()
        assert (locks / "0.input.lock").exists()
    finally:
        holder.send_signal(signal.SIGKILL)  # killed hard: its lock file stays behind, stale
        holder.wait()
    time.sleep(0.1)
    after = _hold(tmp_path / ".snakemake", 0)
    assert after.stdout.readline().strip() == f"[{str(locks / '0.input.lock')!r}]"
    after.wait()
    assert not list(locks.iterdir())
