"""End to end: the whole workflow on config/smoke.yaml in a temporary directory, as `make reproduce` runs it.

Runs `snakemake --profile profiles/local` (the repository's Snakefile, `--directory <tmp>`, 2 cores), checks the
quiet console (progress and one summary line per run; everything else in logs/), every figure (PNG + PDF) and the
results table, then that a second invocation has nothing to do, that re-running only the figure rules rewrites
byte-identical files, and that a workflow killed with SIGKILL after its first finished job resumes with the same
command (no --unlock, no --rerun-incomplete) to the same numbers. Takes 5-10 minutes on 2 busy cores.
"""

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from lqs_core import spec
from lqs_core.workflow import config as wfconfig
from lqs_core.workflow import names, sweep, table

REPO = Path(__file__).resolve().parent.parent
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")
CONFIG = REPO / "config" / "smoke.yaml"
# `make figures`: only the aggregation, figure and report rules may run, the results table is rebuilt
FIGURE_RULES = ["results", *sweep.FIGURE_NOTEBOOKS, "report", "all"]
MAKE_FIGURES = ["--allowed-rules", *FIGURE_RULES, "--forcerun", "results"]


def command(workdir, *args):
    # `make reproduce`: the local runtime profile (quiet console, rerun-incomplete), here on 2 cores. PATH is left
    # alone: the jobs must find papermill through the Python running Snakemake, as in `.venv/bin/snakemake ...`
    # without an activated environment.
    return [SNAKEMAKE, "-s", str(REPO / "Snakefile"), "--directory", str(workdir), "--profile",
            str(REPO / "profiles" / "local"), "--configfile", str(CONFIG), "--cores", "2", *args]


def environment():
    return {k: v for k, v in os.environ.items() if k != "SNAKEMAKE_PROFILE"}


def snakemake(workdir, *args, timeout=900):
    proc = subprocess.run(command(workdir, *args), capture_output=True, text=True, timeout=timeout,
                          env=environment())
    return proc, proc.stdout + proc.stderr


def hashes(paths):
    return {str(p): hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in paths}


def metric_columns(results_csv):
    df = pd.read_csv(results_csv).set_index("run_id").sort_index()
    return df[[c for c in table.METRIC_COLUMNS if c in df.columns]]


@pytest.fixture(scope="module")
def config():
    return wfconfig.load_config(CONFIG)


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("smoke-workflow")
    start = time.monotonic()
    proc, out = snakemake(workdir)
    assert proc.returncode == 0, out[-6000:]
    print(f"smoke workflow: {time.monotonic() - start:.0f} s")
    return workdir, out


@pytest.mark.slow
def test_smoke_workflow_outputs(smoke_run, config):
    workdir, out = smoke_run
    runs = sweep.expand_runs(config)

    results = pd.read_csv(workdir / "results" / "smoke" / "results.csv")
    assert sorted(results["run_id"]) == sorted(r.run_id for r in runs)
    assert results["val_accuracy"].between(0, 1).all()
    quantized = results[results["kind"] == "run"]
    assert (quantized["unique_integers"] >= 1).all() and (quantized["zip_bytes"] > 0).all()
    assert quantized["integers"].notna().all() and results["history"].notna().all()
    # the executed notebook and the stderr of every job are its logs
    for run in runs:
        assert (workdir / "logs" / "smoke" / run.folder / f"{run.run_id}.ipynb").is_file()
        assert (workdir / "logs" / "smoke" / run.folder / f"{run.run_id}.log").is_file()
    # every figure, as PNG and PDF, plus the table's CSV / Markdown
    outputs = [Path(workdir, p) for files in sweep.figure_outputs(config, "figures/smoke").values() for p in files]
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
    assert sorted(results["method"]) == sorted(["float", "nested", "nested", "nested", "nested", "maxbin",
                                                *(c for c in spec.COMPARATORS if c not in spec.EXTERNAL_METHODS)])
    comp = results[results["method"].isin(spec.COMPARATORS)].set_index("method")
    assert (comp["seed"] == 42).all() and comp["val_accuracy"].between(0, 1).all()
    assert (comp["packed_bytes"] > 0).all() and (comp["mean_bits_fixed"] > 0).all()
    assert comp.loc["ptq", "scheme"] == "ptq_eval" and comp.loc["ptq", "bits_fixed"] <= 4
    assert comp.loc["cgmq", "relative_bops"] <= 0.2 + 1e-9
    assert isinstance(comp.loc["layer_importance", "layer_bits"], str)
    points = pd.read_csv(workdir / "figures" / "smoke" / "pareto_points_digits.csv")
    assert len(points) >= 1 and set(points["method"]) <= set(names.FAMILIES)
    assert (workdir / "figures" / "smoke" / "pareto_points_digits.md").read_text().startswith("| method |")
    assert not list(Path(workdir, "figures").rglob(".tmp-*"))
    # the profile's report, rendered from the results table
    report = (workdir / "results" / "smoke" / "report.md").read_text()
    assert report.startswith("# Smoke report") and f"{len(runs)} runs in the results table" in report
    assert "| digits |" in report and "{{" not in report


@pytest.mark.slow
def test_the_console_is_quiet(smoke_run, config):
    """Progress and one summary line per run; commands, kernel warnings, TensorFlow lines go to the logs."""
    _, out = smoke_run
    runs = sweep.expand_runs(config)
    for run in runs:
        lines = [line for line in out.splitlines() if line.startswith(run.run_id + " | val acc ")]
        assert len(lines) == 1, (run.run_id, out[-3000:])
    assert f"{len(runs) + 1 + len(sweep.FIGURE_NOTEBOOKS) + 2} of " in out  # Snakemake's done/total progress
    for noise in ("papermill", "IPKernelApp", "Event loop is closed", "oneDNN", "absl", "TF_CPP_MIN_LOG_LEVEL",
                  "Traceback", "rule train:"):
        assert noise not in out, noise


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
    proc, out = snakemake(workdir, "--quiet", "host", *MAKE_FIGURES)
    assert proc.returncode != 0 and not missing.exists(), out[-3000:]
    assert "Missing input files for rule results" in out and str(missing.relative_to(workdir)) in out, out[-3000:]


@pytest.mark.slow
def test_killed_workflow_resumes_with_the_same_command(smoke_run, tmp_path):
    """SIGKILL to Snakemake and its jobs after the first finished run; the same command then finishes the work (no
    --unlock, no --rerun-incomplete), and the numbers are those of the uninterrupted run."""
    reference_dir, _ = smoke_run
    workdir = tmp_path / "killed"
    workdir.mkdir()
    log = workdir.parent / "first.out"
    with open(log, "w") as out:  # its own session: the kill takes Snakemake, its shells and papermill at once
        proc = subprocess.Popen(command(workdir), stdout=out, stderr=subprocess.STDOUT, env=environment(),
                                start_new_session=True)
        try:
            deadline = time.monotonic() + 600
            while " | val acc " not in log.read_text() and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.5)
            assert proc.poll() is None, log.read_text()[-3000:]
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    finished = list((workdir / "results" / "smoke").rglob("metrics.json"))
    assert 1 <= len(finished) < len(sweep.expand_runs(wfconfig.load_config(CONFIG))), "killed mid-run"
    assert list((workdir / ".snakemake" / "locks").glob("*.lock")), "the kill left Snakemake's locks behind"
    assert not (workdir / "results" / "smoke" / "results.csv").exists()
    time.sleep(2)  # the orphaned kernels notice their parent is gone and exit

    proc, out = snakemake(workdir)  # the same command
    assert proc.returncode == 0, out[-6000:]
    assert "cannot be locked" not in out and "--rerun-incomplete" not in out
    assert len(list((workdir / "results" / "smoke").rglob("metrics.json"))) > len(finished)
    resumed = metric_columns(workdir / "results" / "smoke" / "results.csv")
    reference = metric_columns(reference_dir / "results" / "smoke" / "results.csv")
    pd.testing.assert_frame_equal(resumed, reference, check_exact=True)
