"""End to end: the whole workflow on config/smoke.yaml in a temporary directory.

Runs `snakemake` (the repository's Snakefile, `--directory <tmp>`), checks every figure (PNG + PDF) and the results
table, then checks that a second invocation has nothing to do, and that re-running only the figure rules rewrites
byte-identical files. Takes 1-3 minutes on 2 cores.
"""

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from lqs_core import workflow as wf

REPO = Path(__file__).resolve().parent.parent
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")
CONFIG = REPO / "config" / "smoke.yaml"
# `make figures`: only the aggregation, figure and report rules may run, the results table is rebuilt
FIGURE_RULES = ["results", "fig_pareto", "fig_curves", "fig_histograms", "table_compression", "fig_comparison",
                "report", "all"]
MAKE_FIGURES = ["--allowed-rules", *FIGURE_RULES, "--forcerun", "results"]


def snakemake(workdir, *args, timeout=600):
    env = dict(os.environ)
    env.pop("SNAKEMAKE_PROFILE", None)
    # PATH is left alone: the jobs must find papermill through the Python running Snakemake, as in
    # `.venv/bin/snakemake ...` without an activated environment (what `make reproduce` runs)
    cmd = [SNAKEMAKE, "-s", str(REPO / "Snakefile"), "--directory", str(workdir), "--configfile", str(CONFIG),
           "--cores", "2", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    return proc, proc.stdout + proc.stderr


def hashes(paths):
    return {str(p): hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in paths}


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("smoke-workflow")
    proc, out = snakemake(workdir)
    assert proc.returncode == 0, out[-6000:]
    return workdir, out


@pytest.mark.slow
def test_smoke_workflow_outputs(smoke_run):
    workdir, out = smoke_run
    with open(CONFIG, encoding="utf-8") as f:
        config = wf.validate_config(yaml.safe_load(f))
    runs = wf.expand_runs(config)

    table = pd.read_csv(workdir / "results" / "smoke" / "results.csv")
    assert sorted(table["run_id"]) == sorted(r.run_id for r in runs)
    assert table["val_accuracy"].between(0, 1).all()
    quantized = table[table["kind"] == "run"]
    assert (quantized["unique_integers"] >= 1).all() and (quantized["zip_bytes"] > 0).all()
    assert quantized["integers"].notna().all() and table["history"].notna().all()
    # one readable report line per run on the console, the executed notebooks as logs
    assert out.count(" | val acc ") >= len(runs)
    for run in runs:
        sub = "baselines" if run.kind == "baseline" else "runs"
        assert (workdir / "logs" / "smoke" / sub / f"{run.run_id}.ipynb").is_file()
    # every figure, as PNG and PDF, plus the table's CSV / Markdown
    outputs = [Path(workdir, p) for files in wf.figure_outputs(config, "figures/smoke").values() for p in files]
    assert len(outputs) == 2 * (2 + 3 + 2 + 1) + 3 + 2 + 2  # + comparison figure (PNG, PDF) and Pareto table
    for path in outputs:
        assert path.is_file() and path.stat().st_size > 0, path
        if path.suffix == ".png":
            assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        if path.suffix == ".pdf":
            assert path.read_bytes()[:5] == b"%PDF-"
    compression = pd.read_csv(workdir / "figures" / "smoke" / "compression.csv")
    assert set(compression["family"]) == {"nested", "maxbin"}
    # every comparator ran once, on the same data and seed, and is in the table with its method
    assert sorted(table["method"]) == sorted(["float", "nested", "nested", "nested", "nested", "maxbin",
                                              *wf.COMPARATORS])
    comp = table[table["method"].isin(wf.COMPARATORS)].set_index("method")
    assert (comp["seed"] == 42).all() and comp["val_accuracy"].between(0, 1).all()
    assert (comp["packed_bytes"] > 0).all() and (comp["mean_bits_fixed"] > 0).all()
    assert comp.loc["ptq", "scheme"] == "ptq_eval" and comp.loc["ptq", "bits_fixed"] <= 4
    assert comp.loc["cgmq", "relative_bops"] <= 0.2 + 1e-9
    assert isinstance(comp.loc["layer_importance", "layer_bits"], str)
    points = pd.read_csv(workdir / "figures" / "smoke" / "pareto_points_digits.csv")
    assert len(points) >= 1 and set(points["method"]) <= set(wf.METHODS)
    assert (workdir / "figures" / "smoke" / "pareto_points_digits.md").read_text().startswith("| method |")
    assert not list(Path(workdir, "figures").rglob(".tmp-*"))
    # the profile's report, rendered from the results table
    report = (workdir / "results" / "smoke" / "report.md").read_text()
    assert report.startswith("# Smoke report") and f"{len(runs)} runs in the results table" in report
    assert "| digits |" in report and "{{" not in report


@pytest.mark.slow
def test_smoke_workflow_is_up_to_date_and_figures_reproduce(smoke_run):
    workdir, _ = smoke_run
    figures = sorted(p for p in (workdir / "figures" / "smoke").iterdir() if p.is_file())
    watched = figures + [workdir / "results" / "smoke" / "results.csv"] + sorted(
        (workdir / "results" / "smoke").rglob("metrics.json"))
    before = hashes(watched)
    mtimes = {p: p.stat().st_mtime_ns for p in watched}

    # nothing to do the second time
    proc, out = snakemake(workdir, "--dry-run")
    assert proc.returncode == 0, out[-3000:]
    assert "Nothing to be done" in out, out[-3000:]
    proc, out = snakemake(workdir)
    assert proc.returncode == 0, out[-3000:]
    assert {p: p.stat().st_mtime_ns for p in watched} == mtimes

    # `make figures`: the table, figures and report again from the stored runs, byte for byte, nothing retrained
    proc, out = snakemake(workdir, *MAKE_FIGURES)
    assert proc.returncode == 0, out[-3000:]
    assert all(p.stat().st_mtime_ns > mtimes[p] for p in figures)
    runs = [p for p in watched if p.name == "metrics.json"]
    assert {p: p.stat().st_mtime_ns for p in runs} == {p: mtimes[p] for p in runs}
    assert hashes(watched) == before

    # ... and with a run missing it stops instead of training it
    missing = runs[0]
    missing.unlink()
    proc, out = snakemake(workdir, *MAKE_FIGURES)
    assert proc.returncode != 0 and not missing.exists(), out[-3000:]
    assert "Missing input files for rule results" in out and str(missing.relative_to(workdir)) in out, out[-3000:]
