"""A corpus of bad workflow configs: each is refused with a message naming the key, the bad value and what is allowed.

Every entry is a change of config/smoke.yaml written to a YAML file (so NaN and infinities arrive as YAML's ``.nan``
/ ``.inf``, as a user would write them). Checked twice: by ``lqs_core.workflow`` (``load_config`` + ``expand_runs``:
what the Snakefile runs while it is parsed), and by ``snakemake`` itself in a working directory that holds an
earlier run's results, which must come out unchanged: the error comes before any job.
"""

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from lqs_core.workflow import config as wfconfig
from lqs_core.workflow import sweep

REPO = Path(__file__).resolve().parent.parent
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")
NAN, INF = float("nan"), float("inf")


def digits(c):
    return c["datasets"]["digits"]


# (id, change of the smoke config, substrings of the error: where, the bad value, what is allowed)
CORPUS = [
    ("threshold-nan", lambda c: digits(c)["nested"].update(thresholds=[0, NAN]),
     ["datasets.digits.nested.thresholds[1]", "nan is not a finite number", "allowed: a finite number >= 0"]),
    ("threshold-negative", lambda c: digits(c)["nested"].update(thresholds=[-1e-10]),
     ["datasets.digits.nested.thresholds[0]", "-1e-10", "must be >= 0"]),
    ("gamma-inf", lambda c: digits(c)["loss_terms"]["terms"].update(maxbin=[INF]),
     ["datasets.digits.loss_terms.terms.maxbin[0]", "inf is not a finite number", "allowed: a finite number >= 0"]),
    ("learning-rate-nan", lambda c: digits(c)["train"].update(learning_rate=NAN),
     ["datasets.digits.train.learning_rate", "nan is not a finite number", "allowed: a finite number > 0"]),
    ("learning-rate-zero", lambda c: digits(c)["train"].update(learning_rate=0),
     ["datasets.digits.train.learning_rate", "0", "must be > 0"]),
    ("epochs-inf", lambda c: digits(c)["train"].update(epochs=INF),
     ["datasets.digits.train.epochs", "inf is not a finite number", "allowed: an integer >= 1"]),
    ("schedule-factor-inf", lambda c: digits(c)["train"].update(lr_schedule=[[1, INF]]),
     ["datasets.digits.train.lr_schedule[0][1]", "inf is not a finite number", "allowed: a finite number > 0"]),
    ("schedule-epoch-twice", lambda c: digits(c)["train"].update(lr_schedule=[[1, 0.5], [1, 0.2]]),
     ["datasets.digits.train.lr_schedule", "epoch 1 appears 2 times in [[1, 0.5], [1, 0.2]]",
      "allowed: each epoch once"]),
    ("cgmq-budget-nan", lambda c: digits(c)["comparators"]["cgmq"].update(budgets=[NAN]),
     ["datasets.digits.comparators.cgmq.budgets[0]", "nan is not a finite number",
      "allowed: a finite number in [0.0625, 1]"]),
    ("cgmq-budget-above-1", lambda c: digits(c)["comparators"]["cgmq"].update(budgets=[1.5]),
     ["datasets.digits.comparators.cgmq.budgets[0]", "1.5", "must be <= 1"]),
    ("cgmq-gate-init-nan", lambda c: digits(c)["comparators"]["cgmq"].update(gate_init=NAN),
     ["datasets.digits.comparators.cgmq.gate_init", "nan is not a finite number", "allowed: a finite number >= 0.5"]),
    ("cgmq-gate-init-low", lambda c: digits(c)["comparators"]["cgmq"].update(gate_init=0.1),
     ["datasets.digits.comparators.cgmq.gate_init", "0.1", "must be >= 0.5"]),
    ("cgmq-gate-lr-minus-inf", lambda c: digits(c)["comparators"]["cgmq"].update(gate_lr=-INF),
     ["datasets.digits.comparators.cgmq.gate_lr", "-inf is not a finite number", "allowed: a finite number > 0"]),
    ("tolerance-nan", lambda c: c["figures"]["compression"].update(accuracy_tolerance=NAN),
     ["figures.compression.accuracy_tolerance", "nan is not a finite number", "allowed: a finite number in [0, 1]"]),
    ("histogram-threshold-inf", lambda c: c["figures"]["histograms"].update(threshold=INF),
     ["figures.histograms.threshold", "inf is not a finite number", "allowed: a finite number >= 0 or null"]),
    ("report-output-absolute", lambda c: c["report"].update(output="/tmp/lqs-report.md"),
     ["report.output", "'/tmp/lqs-report.md' is an absolute path", "allowed: a relative path inside the working "
                                                                     "directory"]),
    ("report-output-escapes", lambda c: c["report"].update(output="results/../../outside.md"),
     ["report.output", "'results/../../outside.md' leaves the working directory", "allowed: a relative path"]),
    ("report-template-escapes", lambda c: c["report"].update(template="../../etc/passwd"),
     ["report.template", "'../../etc/passwd' leaves the repository", "allowed: a relative path inside the repository"]),
    ("channelwise-on-dense", lambda c: digits(c).update(granularities=["channelwise"]),
     ["datasets.digits.nested", "'channelwise' is defined only for Conv2D kernels",
      "allowed there: 'scalar', 'rowwise', 'columnwise', 'outputwise'"]),
    ("layer-importance-budget", lambda c: digits(c)["comparators"]["layer_importance"].update(bits=[4], budgets=[6]),
     ["datasets.digits.comparators.layer_importance", "got 6.0", "must be in 2..4"]),
    ("unknown-dataset", lambda c: c["datasets"].update(mnistt=c["datasets"]["digits"]),
     ["datasets: unknown key 'mnistt'", "allowed: cifar10, digits, imagenette, mnist"]),
    ("seed-negative", lambda c: c.update(seeds=[-1]),
     ["seeds[0]", "-1", "must be >= 0"]),
    ("yte-template", None,
     ["__use_yte__: True", "YTE template", "allowed: plain YAML data"]),
]
IDS = [entry[0] for entry in CORPUS]


def write_bad_config(directory: Path, entry) -> Path:
    name, mutate, _ = entry
    with open(REPO / "config" / "smoke.yaml", encoding="utf-8") as f:
        config = yaml.safe_load(f)
    path = directory / f"bad-{name}.yaml"
    if mutate is None:  # a YTE template (Snakemake would evaluate `?...` expressions in it)
        path.write_text("__use_yte__: true\n" + yaml.safe_dump(config), encoding="utf-8")
    else:
        mutate(config)
        path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def test_the_corpus_is_large_enough():
    assert len(CORPUS) >= 15 and len(set(IDS)) == len(IDS)


@pytest.mark.parametrize("entry", CORPUS, ids=IDS)
def test_bad_config_is_refused_with_a_clear_message(tmp_path, entry):
    path = write_bad_config(tmp_path, entry)
    with pytest.raises(wfconfig.ConfigError) as info:
        sweep.expand_runs(wfconfig.load_config(path))  # what the Snakefile does while it is parsed
    message = str(info.value)
    for expected in entry[2]:
        assert expected in message, message


def tree(root: Path) -> dict:
    """Every file under ``root`` (but Snakemake's own folder) with its bytes' hash and mtime."""
    out = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and ".snakemake" not in path.relative_to(root).parts:
            out[str(path.relative_to(root))] = (hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns)
    return out


@pytest.fixture
def earlier_run(tmp_path):
    """A working directory with the stored outputs of an earlier smoke run (made-up content)."""
    work = tmp_path / "work"
    for rel, text in [("results/smoke/baselines/digits-float-s42/metrics.json", '{"run_id": "digits-float-s42"}'),
                      ("results/smoke/runs/digits-nested-rowwise-lam0-qat-s42/metrics.json", "{}"),
                      ("results/smoke/results.csv", "run_id\ndigits-float-s42\n"),
                      ("figures/smoke/pareto_digits_nested.png", "png"),
                      ("logs/smoke/runs/digits-nested-rowwise-lam0-qat-s42.log", "log")]:
        (work / rel).parent.mkdir(parents=True, exist_ok=True)
        (work / rel).write_text(text)
    return work


@pytest.mark.slow
@pytest.mark.parametrize("entry", CORPUS, ids=IDS)
def test_snakemake_refuses_bad_config_before_any_job(tmp_path, earlier_run, entry):
    path = write_bad_config(tmp_path, entry)
    before = tree(earlier_run)
    env = {k: v for k, v in os.environ.items() if k != "SNAKEMAKE_PROFILE"}
    proc = subprocess.run([SNAKEMAKE, "-s", str(REPO / "Snakefile"), "--directory", str(earlier_run), "--configfile",
                           str(path), "--cores", "1"], capture_output=True, text=True, timeout=300, env=env)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-3000:]
    assert "Invalid workflow config" in out, out[-3000:]
    for expected in entry[2]:
        assert expected in out, out[-3000:]
    assert "Building DAG of jobs" not in out  # refused while the Snakefile was read, before any job was planned
    assert tree(earlier_run) == before  # nothing stored before was changed (and nothing new written)
