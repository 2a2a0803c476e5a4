"""The workflow on every Keras backend: the profile's `backend` (and a dataset's own), `--config backend=jax` /
`make reproduce BACKEND=jax`, the separate results folder `results/<name>-<backend>/`, the `backend` column of the
results table, the job's guard against a run computed on the wrong backend; end to end, the smoke profile on JAX.

The fast tests need no training (the sweep, the table on made-up runs, `snakemake -n`); the end-to-end test is
marked slow and skipped where JAX is not installed.
"""

import importlib.util
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from lqs_core import spec
from lqs_core.workflow import config as wfconfig
from lqs_core.workflow import jobs, sweep, table

REPO = Path(__file__).resolve().parent.parent
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")
SMOKE = REPO / "config" / "smoke.yaml"
HAS_JAX = importlib.util.find_spec("jax") is not None


def smoke(**top):
    with open(SMOKE, encoding="utf-8") as f:
        config = yaml.safe_load(f)
    config.update(top)
    return config


def environment():
    return {k: v for k, v in os.environ.items() if k not in ("SNAKEMAKE_PROFILE", "KERAS_BACKEND")}


# ---------------------------------------------------------------------------------------------------------------
# The profile's backend and where its runs go


def test_backend_defaults_to_tensorflow_and_is_checked():
    config = wfconfig.validate_config(smoke())
    assert config["backend"] == "tensorflow" and wfconfig.output_name(config) == "smoke"
    assert all(r.backend == "tensorflow" for r in sweep.expand_runs(config))
    bad = smoke(backend="jaxx")
    bad["datasets"]["digits"]["backend"] = "theano"
    with pytest.raises(wfconfig.ConfigError) as info:
        wfconfig.validate_config(bad)
    message = str(info.value)
    assert "backend: 'jaxx' is not one of tensorflow, jax, torch" in message
    assert "datasets.digits.backend: 'theano' is not one of tensorflow, jax, torch" in message


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_another_backend_gets_its_own_folders(backend):
    config = wfconfig.validate_config(smoke(backend=backend))
    name = f"smoke-{backend}"
    assert wfconfig.output_name(config) == name
    assert wfconfig.report_output(config) == f"results/{name}/report.md"  # not over the TensorFlow profile's
    runs = sweep.expand_runs(config)
    assert {r.backend for r in runs} == {backend}
    # the same run ids, and a ptq run starts from the baseline trained on the same backend
    assert [r.run_id for r in runs] == [r.run_id for r in sweep.expand_runs(smoke())]
    ptq = next(r for r in runs if r.mode == "ptq")
    assert ptq.config["float_weights"].startswith(os.path.join("results", name, "baselines", ""))


def test_report_output_of_a_profile_with_a_top_level_report():
    config = wfconfig.validate_config(smoke(backend="jax", report={"template": "docs/RESULTS.template.md",
                                                                   "output": "RESULTS.md"}))
    assert wfconfig.report_output(config) == "results/smoke-jax/RESULTS.md"
    config = wfconfig.validate_config(smoke(report={"template": "docs/RESULTS.template.md", "output": "RESULTS.md"}))
    assert wfconfig.report_output(config) == "RESULTS.md"
    no_report = {k: v for k, v in smoke(backend="jax").items() if k != "report"}
    assert wfconfig.report_output(wfconfig.validate_config(no_report)) is None


def test_a_dataset_may_override_the_backend():
    raw = smoke()
    raw["datasets"]["digits"]["backend"] = "jax"
    config = wfconfig.validate_config(raw)
    assert wfconfig.dataset_backend(config, "digits") == "jax" and wfconfig.backends(config) == ["jax"]
    # any run off TensorFlow moves the profile out of results/<name>/: that folder holds TensorFlow runs only
    assert wfconfig.output_name(config) == "smoke-jax"
    assert {r.backend for r in sweep.expand_runs(config)} == {"jax"}
    # the dataset's own key wins over the profile's (and over --config backend=...)
    raw["backend"] = "torch"
    assert wfconfig.dataset_backend(wfconfig.validate_config(raw), "digits") == "jax"
    raw["datasets"]["digits"]["backend"] = "tensorflow"
    assert wfconfig.output_name(wfconfig.validate_config(raw)) == "smoke"


def test_output_name_command_line():
    def output_name(*args):
        proc = subprocess.run([sys.executable, "-m", "lqs_core.workflow.config", "output-name", *args],
                              capture_output=True, text=True)
        return proc.returncode, proc.stdout.strip(), proc.stderr

    assert output_name(str(REPO / "config" / "demo.yaml"))[:2] == (0, "demo")
    assert output_name(str(REPO / "config" / "demo.yaml"), "--backend", "jax")[:2] == (0, "demo-jax")
    assert output_name(str(REPO / "config" / "quick_cpu.yaml"), "--backend", "tensorflow")[:2] == (0, "quick_cpu")
    rc, out, err = output_name(str(REPO / "config" / "demo.yaml"), "--backend", "jx")
    assert rc != 0 and not out and "backend: 'jx' is not one of tensorflow, jax, torch" in err


# ---------------------------------------------------------------------------------------------------------------
# The results table's backend column, the job's guard


def write_run(run, results_dir, backend=None):
    d = Path(run.directory(results_dir))
    d.mkdir(parents=True)
    pd.DataFrame({"epoch": [1], "loss": [0.5], "val_loss": [0.6], "val_accuracy": [0.9]}).to_csv(
        d / spec.HISTORY_FILE, index=False)
    metrics = {"run_id": run.run_id, "config": dict(run.config), "report": {"val_accuracy": 0.9, "val_loss": 0.6}}
    if backend is not None:
        metrics["machine"] = {"backend": backend, "cpu": "x"}
    (d / spec.METRICS_FILE).write_text(json.dumps(metrics))
    return d / spec.METRICS_FILE


def test_backend_column_only_where_a_run_is_not_tensorflow(tmp_path):
    runs = sweep.expand_runs(wfconfig.validate_config(smoke()))[:3]
    # runs stored before the backend was recorded, and TensorFlow runs: the table has no backend column (the
    # committed tables of results/demo and results/quick_cpu stay byte for byte as they were)
    for run, backend in zip(runs, [None, "tensorflow", None]):
        write_run(run, tmp_path / "tf", backend)
    df = table.collect_results(runs, str(tmp_path / "tf"))
    assert table.BACKEND_COLUMN not in df.columns and table.backends(df) == ["tensorflow"]
    # JAX runs: the column, right after the identity columns
    for run in runs:
        write_run(run, tmp_path / "jax", "jax")
    df = table.collect_results(runs, str(tmp_path / "jax"))
    assert list(df.columns[: len(table.ID_COLUMNS) + 1]) == table.ID_COLUMNS + ["backend"]
    assert (df["backend"] == "jax").all() and table.backends(df) == ["jax"]
    table.write_table(df, tmp_path / "results.csv")
    assert table.backends(table.read_results(tmp_path)) == ["jax"]
    # mixed (a dataset's own backend, or old runs beside new ones): old runs count as TensorFlow
    write_run(runs[0], tmp_path / "mixed", None)
    write_run(runs[1], tmp_path / "mixed", "torch")
    df = table.collect_results(runs[:2], str(tmp_path / "mixed")).set_index("run_id")
    assert df.loc[runs[0].run_id, "backend"] == "tensorflow" and df.loc[runs[1].run_id, "backend"] == "torch"


def test_summary_fails_for_a_run_on_another_backend(tmp_path):
    run = sweep.expand_runs(wfconfig.validate_config(smoke()))[0]
    path = write_run(run, tmp_path, "jax")
    assert jobs.summary_line(path, "jax").endswith(" | jax")
    assert " | jax" not in jobs.summary_line(write_run(run, tmp_path / "tf", "tensorflow"), "tensorflow")
    with pytest.raises(jobs.BackendMismatch, match="computed on the Keras backend 'jax'.*started for 'tensorflow'"):
        jobs.summary_line(path, "tensorflow")
    proc = subprocess.run([sys.executable, "-m", "lqs_core.workflow.jobs", "summary", str(path), "--backend",
                           "torch"], capture_output=True, text=True)
    assert proc.returncode != 0 and "FAILED:" in proc.stderr and "'torch'" in proc.stderr


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_setup_chooses_the_backend_and_its_threads(backend):
    if importlib.util.find_spec(backend) is None:
        pytest.skip(f"{backend} is not installed")
    code = ("import os, sys\nfrom lqs_core.workflow import jobs\nassert 'keras' not in sys.modules\n"
            f"jobs.setup(1, {backend!r})\nimport keras\n"
            "print(keras.backend.backend(), os.environ['KERAS_BACKEND'], os.environ['OMP_NUM_THREADS'])\n"
            "if keras.backend.backend() == 'jax':\n    print(os.environ['XLA_FLAGS'])\n"
            "else:\n    import torch\n    print(torch.get_num_threads(), torch.get_num_interop_threads())\n")
    env = {k: v for k, v in environment().items() if k not in ("XLA_FLAGS", "OMP_NUM_THREADS", "TF_CPP_MIN_LOG_LEVEL")}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    first, second = proc.stdout.splitlines()[-2:]
    assert first.split() == [backend, backend, "1"]
    assert second == (jobs.XLA_SINGLE_THREAD_FLAGS if backend == "jax" else "1 1")
    assert "oneDNN" not in proc.stderr and "absl" not in proc.stderr, proc.stderr  # TensorFlow imported quietly


def test_setup_refuses_a_backend_other_than_the_imported_one():
    code = ("import os; os.environ['KERAS_BACKEND'] = 'jax'; import keras\n"
            "from lqs_core.workflow import jobs\n"
            "try:\n    jobs.setup(0, 'tensorflow')\nexcept RuntimeError as e:\n    print('refused:', e)\n")
    if not HAS_JAX:
        pytest.skip("jax is not installed")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env=environment())
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "refused: Keras was imported with the backend 'jax'" in proc.stdout


# ---------------------------------------------------------------------------------------------------------------
# The Snakefile


def dry_run(workdir, *args):
    proc = subprocess.run([SNAKEMAKE, "-s", str(REPO / "Snakefile"), "--directory", str(workdir), "--cores", "2",
                           "--dry-run", "--printshellcmds", "--configfile", str(SMOKE), *args],
                          capture_output=True, text=True, timeout=300, env={**environment(),
                                                                             "KERAS_BACKEND": "torch"})
    return proc, proc.stdout + proc.stderr


def test_snakemake_config_backend_sets_every_training_job(tmp_path):
    config = wfconfig.validate_config(smoke())
    n_runs = len(sweep.expand_runs(config))
    # the profile's backend wins over a KERAS_BACKEND of the calling shell (here: torch)
    proc, out = dry_run(tmp_path)
    assert proc.returncode == 0, out[-3000:]
    assert out.count("KERAS_BACKEND=tensorflow ") == n_runs and "KERAS_BACKEND=torch" not in out
    assert "results/smoke/results.csv" in out and "smoke-" not in out
    # --config backend=jax (make reproduce BACKEND=jax): every job on JAX, everything in the -jax folders
    proc, out = dry_run(tmp_path, "--config", "backend=jax")
    assert proc.returncode == 0, out[-3000:]
    assert out.count("KERAS_BACKEND=jax ") == n_runs and out.count("-r backend jax ") == n_runs
    assert out.count("summary results/smoke-jax/") == n_runs and out.count("--backend jax") == n_runs
    for folder in ("results/smoke-jax/results.csv", "figures/smoke-jax/", "logs/smoke-jax/",
                   "results/smoke-jax/report.md"):
        assert folder in out, folder
    paths = re.sub(r"--config-json '[^']*'", "", out)  # the report's profile names its template output
    assert "results/smoke/" not in paths and "figures/smoke/" not in paths and "logs/smoke/" not in paths
    proc, out = dry_run(tmp_path, "--config", "backend=tf")
    assert proc.returncode != 0 and "backend: 'tf' is not one of tensorflow, jax, torch" in out


# ---------------------------------------------------------------------------------------------------------------
# End to end on JAX


@pytest.mark.slow
@pytest.mark.skipif(not HAS_JAX, reason="jax is not installed")
def test_smoke_workflow_on_jax(tmp_path):
    """`make reproduce CONFIG=config/smoke.yaml BACKEND=jax` in a fresh working directory: every run trained on
    JAX into results/smoke-jax/, the table (with its backend column), the figures and the report there; nothing of
    the TensorFlow profile's folders is written."""
    config = wfconfig.validate_config(smoke(backend="jax"))
    runs = sweep.expand_runs(config)
    start = time.monotonic()
    proc = subprocess.run([SNAKEMAKE, "-s", str(REPO / "Snakefile"), "--directory", str(tmp_path), "--profile",
                           str(REPO / "profiles" / "local"), "--configfile", str(SMOKE), "--cores", "2",
                           "--config", "backend=jax"], capture_output=True, text=True, timeout=1500,
                          env=environment())
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    print(f"smoke workflow on JAX: {time.monotonic() - start:.0f} s")

    results_dir = tmp_path / "results" / "smoke-jax"
    results = pd.read_csv(results_dir / "results.csv")
    assert sorted(results["run_id"]) == sorted(r.run_id for r in runs)
    assert (results["backend"] == "jax").all()
    assert results["val_accuracy"].between(0, 1).all()
    quantized = results[results["kind"] == "run"]
    assert (quantized["unique_integers"] >= 1).all() and quantized["integers"].notna().all()
    for run in runs:
        with open(Path(run.directory(results_dir)) / spec.METRICS_FILE, encoding="utf-8") as f:
            machine = json.load(f)["machine"]
        assert machine["backend"] == "jax" and machine.get("jax"), run.run_id
        assert machine["pinning"].get("KERAS_BACKEND") == "jax"
        lines = [line for line in out.splitlines() if line.startswith(run.run_id + " | val acc ")]
        assert len(lines) == 1 and lines[0].endswith(" | jax"), (run.run_id, out[-3000:])
    outputs = [tmp_path / p for files in sweep.figure_outputs(config, "figures/smoke-jax").values() for p in files]
    for path in outputs:
        assert path.is_file() and path.stat().st_size > 0, path
    report = (results_dir / "report.md").read_text(encoding="utf-8")
    assert report.startswith("# Smoke report") and "Keras backend: jax" in report
    assert f"{len(runs)} runs in the results table" in report and "{{" not in report
    assert not (tmp_path / "results" / "smoke").exists() and not (tmp_path / "figures" / "smoke").exists()
