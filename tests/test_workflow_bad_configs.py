"""A corpus of bad workflow configs: each is refused with a message naming the key, the bad value and what is allowed.

Every entry is a change of config/smoke.yaml written to a YAML file (so NaN and infinities arrive as YAML's ``.nan``
/ ``.inf``, as a user would write them); an entry may also return the file's text (YAML the loader refuses: aliases,
tags, duplicate keys, ...). Checked three times: by ``lqs_core.workflow`` (``load_config`` + ``expand_runs``: what
the Snakefile runs while it is parsed), by ``python -m lqs_core.workflow.config output-name`` (what ``make
reproduce`` and ``make figures`` run before Snakemake starts), and by ``snakemake`` itself in a working directory
that holds an earlier run's results, which must come out unchanged: the error comes before any job.

Then the shell commands of the rules (every value quoted) and the working directory's lock (a second workflow beside
a running one is refused, also after ``snakemake --unlock``).
"""

import hashlib
import json
import os
import re
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from string import Formatter

import pytest
import yaml

from lqs_core.workflow import config as wfconfig
from lqs_core.workflow import sweep

REPO = Path(__file__).resolve().parent.parent
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")
NAN, INF = float("nan"), float("inf")
#: A file that a shell command hidden in a config would create (it must never exist).
MARKER = Path(tempfile.gettempdir()) / "lqs-test-PWNED"
#: Address space of every subprocess here: an expanding YAML bomb fails fast instead of eating the machine.
MEMORY_LIMIT = 4 << 30


def digits(c):
    return c["datasets"]["digits"]


class _PlainDumper(yaml.SafeDumper):
    """Writes a value shared by two keys out twice (SafeDumper would write an anchor and an alias)."""

    def ignore_aliases(self, data):
        return True


def dump(config) -> str:
    return yaml.dump(config, Dumper=_PlainDumper)


def replace(old, new):
    """A text change of the dumped smoke config (``old`` must occur)."""
    def change(c):
        text = dump(c)
        assert old in text, old
        return text.replace(old, new, 1)
    return change


def prepend(lines, drop=None):
    """``lines`` on top of the dumped smoke config (so their line numbers are known), without its key ``drop``."""
    def change(c):
        c.pop(drop, None)
        return lines + dump(c)
    return change


def alias_bomb(kind, levels):
    """A small file whose aliases expand to ``9**levels`` list items (``kind`` lists) or ``2**levels`` mappings."""
    if kind == "lists":
        lines = ['x0: &x0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
        lines += [f"x{i}: &x{i} [{', '.join([f'*x{i - 1}'] * 9)}]" for i in range(1, levels)]
    else:
        lines = ["x0: &x0 {a: lol, b: lol}"] + [f"x{i}: &x{i} {{a: *x{i - 1}, b: *x{i - 1}}}" for i in range(1, levels)]
    return prepend("\n".join(lines) + "\n")


def bigger_grid(c):
    c["seeds"] = list(range(250))
    digits(c).update(granularities=["scalar", "rowwise", "columnwise", "outputwise"])
    digits(c)["nested"]["thresholds"] = [i * 1e-12 for i in range(100)]


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
    ("yte-template", prepend("__use_yte__: true\n"),  # Snakemake would evaluate `?...` in it
     ["__use_yte__: True", "YTE template", "allowed: plain YAML data"]),
    # Seeds: NumPy's are below 2**32, checked by the schema (not deep inside a training job).
    ("seed-2-to-the-32", lambda c: c.update(seeds=[42, 2**32]),
     ["seeds[1]", "4294967296", "must be <= 4294967295", "allowed: an integer in [0, 4294967295]"]),
    ("dataset-seed-huge", lambda c: digits(c).update(seeds=[2**40]),
     ["datasets.digits.seeds[0]", "1099511627776", "must be <= 4294967295"]),
    ("histogram-seed-huge", lambda c: c["figures"]["histograms"].update(seed=2**32),
     ["figures.histograms.seed", "4294967296", "must be <= 4294967295"]),
    # The sweep's size: refused when counted, before any run is built or job planned.
    ("grid-too-large", bigger_grid,
     ["the sweep expands to 202500 runs", "allowed: at most max_runs = 5000", "set max_runs in the profile",
      "datasets.digits.nested: 200000 runs", "seeds (250)", "datasets.digits.granularities (4)",
      "datasets.digits.nested.thresholds (100)"]),
    ("max-runs-below-the-grid", lambda c: c.update(max_runs=5),
     ["the sweep expands to 11 runs", "allowed: at most max_runs = 5"]),
    ("max-runs-zero", lambda c: c.update(max_runs=0),
     ["max_runs: 0 must be >= 1", "allowed: an integer in [1, 1000000]"]),
    # Paths: a safe set of characters; the report only under results/ (or RESULTS.md).
    ("report-output-shell-injection", lambda c: c["report"].update(output=f"results/$(touch {MARKER}).md"),
     ["report.output", f"'results/$(touch {MARKER}).md' has characters outside the safe set",
      "allowed: a relative path inside the working directory", "of letters, digits and . _ + - /"]),
    ("report-output-backticks", lambda c: c["report"].update(output=f"results/`touch {MARKER}`.md"),
     ["report.output", "has characters outside the safe set", "letters, digits and . _ + - /"]),
    ("report-output-space", lambda c: c["report"].update(output="results/my report.md"),
     ["report.output", "'results/my report.md' has characters outside the safe set"]),
    ("report-output-source-file", lambda c: c["report"].update(output="lqs_core/__init__.py"),
     ["report.output", "'lqs_core/__init__.py' is not a report file of the workflow",
      "allowed: a Markdown file under results/ (e.g. 'results/smoke/report.md') or RESULTS.md"]),
    ("report-output-results-table", lambda c: c["report"].update(output="results/smoke/results.csv"),
     ["report.output", "'results/smoke/results.csv' is not a report file", "allowed: a Markdown file under results/"]),
    ("report-template-semicolon", lambda c: c["report"].update(template=f"docs/x;touch {MARKER}.md"),
     ["report.template", "has characters outside the safe set", "allowed: a relative path inside the repository"]),
    ("data-dir-injection", lambda c: c.update(data_dir=f"/data/$(touch {MARKER})"),
     ["data_dir", f"'/data/$(touch {MARKER})' is not a folder path of letters, digits and . _ + - /",
      "allowed: such a path (absolute, relative, or ~/...), or null"]),
    # YAML: one strict loader (lqs_core.workflow.config.read_yaml), every problem with its line and column.
    ("alias-bomb-lists", alias_bomb("lists", 10),
     ["line 1, column 5: anchor '&x0'", "allowed: plain values written out"]),
    ("alias-bomb-mappings", alias_bomb("mappings", 40),
     ["line 1, column 5: anchor '&x0'", "anchors and aliases are refused"]),
    ("anchor-for-repetition", replace("        maxbin:\n        - 1.0e-06\n",
                                      "        maxbin: &gammas [1.0e-06]\n        inverse: *gammas\n"),
     ["column 17: anchor '&gammas'", "allowed: plain values written out"]),
    ("duplicate-key-epochs", replace("      epochs: 2\n", "      epochs: 2\n      epochs: 200\n"),
     ["column 7: key 'epochs' appears twice in one mapping (first on line",
      "allowed: each key once (YAML would keep only the last value, silently)"]),
    ("duplicate-key-seeds", prepend("seeds: [7]\n"),
     ["column 1: key 'seeds' appears twice in one mapping (first on line 1)"]),
    ("merge-key", prepend("<<: {threads: 2}\n"),
     ["line 1, column 1: merge key '<<'", "allowed: each key written out"]),
    ("python-tuple-tag", prepend("description: !!python/tuple [a, b]\n", drop="description"),
     ["line 1, column 14: tag '!!python/tuple'", "allowed: untagged values, or the standard tags !!bool, !!float"]),
    ("python-apply-tag", prepend(f"description: !!python/object/apply:os.system ['touch {MARKER}']\n",
                                 drop="description"),
     ["line 1, column 14: tag '!!python/object/apply:os.system'", "allowed: untagged values"]),
    ("binary-tag", prepend("description: !!binary aGVsbG8=\n", drop="description"),
     ["line 1, column 14: tag '!!binary'"]),
    ("custom-tag", prepend("description: !include other.yaml\n", drop="description"),
     ["line 1, column 14: tag '!include'"]),
    ("deep-nesting", prepend("description: " + "[" * 40 + "]" * 40 + "\n", drop="description"),
     ["line 1, column 45: lists and mappings nested more than 32 deep", "allowed: at most 32 levels"]),
    ("two-documents", prepend("name: other\n---\n"),
     ["line 2, column 1: expected a single document", "allowed: plain YAML (or JSON) data, one document"]),
    ("tab-indentation", prepend("\tthreads: 1\n", drop="threads"),
     ["line 1, column 1:", "found character '\\t' that cannot start any token", "allowed: plain YAML"]),
    ("not-utf8", lambda c: dump(c).replace("Tiny", "Tiny \xe9").encode("latin-1"),
     ["is not UTF-8 text", "allowed: a UTF-8 YAML (or JSON) file"]),
]
IDS = [entry[0] for entry in CORPUS]
#: Refused by Snakemake's own config loader before the Snakefile runs: what it says (not ours; see docs/workflow.md).
_NOT_YAML = "Config file is not valid JSON or YAML"
SNAKEMAKE_REFUSES_FIRST = {"python-apply-tag": _NOT_YAML, "custom-tag": _NOT_YAML, "two-documents": _NOT_YAML,
                           "tab-indentation": _NOT_YAML, "not-utf8": "UnicodeDecodeError"}
#: Refused by the Snakefile when it expands the sweep (python -m lqs_core.workflow.config checks the profile alone).
SWEEP_LEVEL = {"channelwise-on-dense", "layer-importance-budget", "grid-too-large", "max-runs-below-the-grid"}
#: Hangs Snakemake's own config loader (snakemake.utils.update_config expands it) before the Snakefile runs: only the
#: check before Snakemake (make reproduce / make figures) refuses it; see test_snakemake_own_loader_expands_...
SNAKEMAKE_HANGS = {"alias-bomb-mappings"}


def write_bad_config(directory: Path, entry) -> Path:
    name, mutate, _ = entry
    with open(REPO / "config" / "smoke.yaml", encoding="utf-8") as f:
        config = yaml.safe_load(f)
    path = directory / f"bad-{name}.yaml"
    text = mutate(config)  # the file's text, or None: the config was changed in place
    if text is None:
        text = dump(config)
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return path


def limited_memory():
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def test_the_corpus_is_large_enough():
    assert len(CORPUS) >= 45 and len(set(IDS)) == len(IDS)
    assert (set(SNAKEMAKE_REFUSES_FIRST) | SNAKEMAKE_HANGS | SWEEP_LEVEL) <= set(IDS)


@pytest.mark.parametrize("entry", CORPUS, ids=IDS)
def test_bad_config_is_refused_with_a_clear_message(tmp_path, entry):
    path = write_bad_config(tmp_path, entry)
    start = time.monotonic()
    with pytest.raises(wfconfig.ConfigError) as info:
        source = f"workflow config ({path})"  # what the Snakefile does while it is parsed
        sweep.expand_runs(wfconfig.load_config(path), source=source)
    assert time.monotonic() - start < 20
    message = str(info.value)
    assert message.startswith(f"Invalid workflow config ({path})"), message
    for expected in entry[2]:
        assert expected in message, message


@pytest.mark.parametrize("entry", [e for e in CORPUS if e[0] not in SWEEP_LEVEL],
                         ids=[i for i in IDS if i not in SWEEP_LEVEL])
def test_make_refuses_bad_config_before_snakemake(tmp_path, entry):
    """`make reproduce` and `make figures` run this first: one message, within seconds, in bounded memory."""
    path = write_bad_config(tmp_path, entry)
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "lqs_core.workflow.config", "output-name", str(path)],
                          capture_output=True, text=True, timeout=60, preexec_fn=limited_memory)
    assert time.monotonic() - start < 30
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.startswith(f"Invalid workflow config ({path})"), proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    for expected in entry[2]:
        assert expected in proc.stderr, proc.stderr[-3000:]
    assert not MARKER.exists()


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
                      ("logs/smoke/runs/digits-nested-rowwise-lam0-qat-s42.log", "log"),
                      ("lqs_core/__init__.py", "# a source file a report.output must never name")]:
        (work / rel).parent.mkdir(parents=True, exist_ok=True)
        (work / rel).write_text(text)
    return work


def snakemake(workdir: Path, *args, timeout=300) -> subprocess.CompletedProcess:
    """``snakemake -s Snakefile --directory workdir --cores 1 *args`` without a runtime profile, memory bounded."""
    env = {k: v for k, v in os.environ.items() if k != "SNAKEMAKE_PROFILE"}
    return subprocess.run([SNAKEMAKE, "-s", str(REPO / "Snakefile"), "--directory", str(workdir), "--cores", "1",
                           *map(str, args)], capture_output=True, text=True, timeout=timeout, env=env,
                          preexec_fn=limited_memory)


@pytest.mark.slow
@pytest.mark.parametrize("entry", [e for e in CORPUS if e[0] not in SNAKEMAKE_HANGS],
                         ids=[i for i in IDS if i not in SNAKEMAKE_HANGS])
def test_snakemake_refuses_bad_config_before_any_job(tmp_path, earlier_run, entry):
    path = write_bad_config(tmp_path, entry)
    MARKER.unlink(missing_ok=True)
    before = tree(earlier_run)
    start = time.monotonic()
    proc = snakemake(earlier_run, "--configfile", path)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-3000:]
    assert time.monotonic() - start < 120
    if entry[0] in SNAKEMAKE_REFUSES_FIRST:  # Snakemake's own loader, before the Snakefile: its message
        assert SNAKEMAKE_REFUSES_FIRST[entry[0]] in out, out[-3000:]
    else:
        assert "Invalid workflow config" in out, out[-3000:]
        for expected in entry[2]:
            assert expected in out, out[-3000:]
    assert "Building DAG of jobs" not in out  # refused while the Snakefile was read, before any job was planned
    assert tree(earlier_run) == before  # nothing stored before was changed (and nothing new written)
    assert not MARKER.exists()  # and nothing in the file was run


@pytest.mark.slow
def test_snakemake_own_loader_expands_a_mapping_bomb(tmp_path):
    """What docs/workflow.md says of a direct `snakemake --configfile`: Snakemake's own loader (before the Snakefile)
    does not finish an alias bomb of mappings; `make` refuses it first (test_make_refuses_bad_config_...)."""
    path = tmp_path / "bomb.yaml"
    path.write_text(alias_bomb("mappings", 40)({"name": "bomb"}))
    code = ("import sys\nfrom pathlib import Path\nfrom snakemake.settings.types import ConfigSettings\n"
            "ConfigSettings(configfiles=[Path(sys.argv[1])])\nprint('loaded')")
    try:
        proc = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=8,
                              preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30)))
    except subprocess.TimeoutExpired:
        return  # still expanding after 8 s
    assert "loaded" not in proc.stdout and "MemoryError" in proc.stderr, proc.stderr[-2000:]


# ---------------------------------------------------------------------------------------------------------------
# Shell commands: every value quoted


SHELL_COMMANDS = """import json, sys
from pathlib import Path
from snakemake.api import SnakemakeApi
from snakemake.settings.types import ConfigSettings, OutputSettings, ResourceSettings
with SnakemakeApi(OutputSettings()) as api:
    wf = api.workflow(resource_settings=ResourceSettings(cores=1), snakefile=Path(sys.argv[1]),
                      workdir=Path(sys.argv[3]), config_settings=ConfigSettings(configfiles=[Path(sys.argv[2])]))
    print(json.dumps({rule.name: rule.shellcmd for rule in wf._workflow.rules if rule.shellcmd}))
"""


def test_every_value_of_every_shell_command_is_quoted(tmp_path):
    """Each replacement field of each rule's shell command ends in `:q` (Snakemake quotes it for the shell)."""
    profile = tmp_path / "profile.yaml"
    config = yaml.safe_load((REPO / "config" / "smoke.yaml").read_text())
    config["datasets"]["mnist"] = config["datasets"]["digits"]  # the fetch rule too
    config["data_dir"] = "data"
    profile.write_text(dump(config))
    proc = subprocess.run([sys.executable, "-c", SHELL_COMMANDS, str(REPO / "Snakefile"), str(profile), str(tmp_path)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    commands = json.loads(proc.stdout.strip().splitlines()[-1])
    assert {"train", "fetch", "report", "fig_pareto"} <= set(commands)
    for rule, command in commands.items():
        fields = [(name, spec) for _, name, spec, _ in Formatter().parse(command) if name is not None]
        assert fields, rule
        assert [(name, spec) for name, spec in fields if not spec.endswith("q")] == [], (rule, command)


def quiet():
    """The rules' quiet() (workflow/rules/common.smk), compiled on its own."""
    text = (REPO / "workflow" / "rules" / "common.smk").read_text()
    namespace = {}
    exec(re.search(r"^def quiet\(.*?(?=^\S)", text, re.S | re.M).group(0), namespace)
    return namespace["quiet"]


def test_a_failed_job_never_runs_its_file_names(tmp_path):
    """The line a failed job prints names its output and log: quoted, a `$(...)` in a name is only printed."""
    from snakemake.utils import format as snakemake_format

    marker = tmp_path / "PWNED"
    output, log = f"results/$(touch {marker}).md", f"logs/`touch {marker}`.log"
    (tmp_path / "logs").mkdir()
    command = snakemake_format(quiet()("false", "report {output:q}"), output=[output], log=[log])
    proc = subprocess.run(["bash", "-c", "set -euo pipefail; " + command], cwd=tmp_path, capture_output=True,
                          text=True)
    assert proc.returncode == 1
    assert not marker.exists()
    assert f"FAILED: report {output} (exit 1): log: {log}" in proc.stderr


# ---------------------------------------------------------------------------------------------------------------
# One lqs workflow per working directory


def hold_workdir(workdir: Path, seconds: float, owner: str) -> subprocess.Popen:
    """Another lqs workflow in ``workdir`` working on ``owner``: a process holding its lock (lqs_core.workflow.lock)."""
    code = ("import sys, time\nfrom lqs_core.workflow import lock\n"
            "print(lock.hold_workdir(sys.argv[1], owner=sys.argv[3]), flush=True)\ntime.sleep(float(sys.argv[2]))")
    holder = subprocess.Popen([sys.executable, "-c", code, str(workdir / ".snakemake"), str(seconds), owner],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "[]"
    return holder


@pytest.mark.slow
@pytest.mark.parametrize("owner", ["results/smoke", ""])  # the same results folder; an older lqs that names none
def test_a_second_workflow_beside_a_running_one_is_refused(tmp_path, earlier_run, owner):
    """Also after `snakemake --unlock` (Snakemake's own advice when its lock files are in the way); a dry run,
    --unlock and --list-rules still work."""
    config = REPO / "config" / "smoke.yaml"
    holder = hold_workdir(earlier_run, 600, owner)
    try:
        (earlier_run / ".snakemake" / "locks").mkdir(parents=True, exist_ok=True)
        (earlier_run / ".snakemake" / "locks" / "0.input.lock").write_text("results/smoke/results.csv\n")
        before = tree(earlier_run)
        for args in (["--unlock"], ["-n"], ["--list-rules"]):
            proc = snakemake(earlier_run, "--configfile", config, *args)
            assert proc.returncode == 0, (args, proc.stderr[-3000:])
        assert not list((earlier_run / ".snakemake" / "locks").iterdir())  # --unlock removed the running one's locks
        for args in (["--touch"], []):
            start = time.monotonic()
            proc = snakemake(earlier_run, "--configfile", config, *args)
            out = proc.stdout + proc.stderr
            assert proc.returncode != 0, out[-3000:]
            assert time.monotonic() - start < 120
            assert f"Another lqs workflow is running in the working directory {earlier_run} for " in out, out[-3000:]
            assert "lqs-workdir.lock" in out and "no job for results/smoke/ is started beside it" in out
            assert (owner or "an unnamed results folder") in out
            assert tree(earlier_run) == before  # no job ran, nothing was touched
            assert not (earlier_run / "logs" / "smoke" / "baselines").exists()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()


@pytest.mark.slow
def test_a_workflow_of_another_profile_may_run_beside(tmp_path, earlier_run):
    """Another results folder: Snakemake's own file locks guard it (here: --touch runs, nothing is refused)."""
    holder = hold_workdir(earlier_run, 600, "results/demo")
    try:
        proc = snakemake(earlier_run, "--configfile", REPO / "config" / "smoke.yaml", "--touch")
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "Another lqs workflow" not in proc.stdout + proc.stderr
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()


@pytest.mark.slow
def test_stale_snakemake_locks_are_still_removed(tmp_path, earlier_run):
    """No lqs workflow holds the directory (its Snakemake was killed): its stale lock files go, the run proceeds."""
    locks = earlier_run / ".snakemake" / "locks"
    locks.mkdir(parents=True)
    (locks / "0.input.lock").write_text("results/smoke/results.csv\n")
    (locks / "0.output.lock").write_text("results/smoke/results.csv\n")
    proc = snakemake(earlier_run, "--configfile", REPO / "config" / "smoke.yaml", "-n")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Another lqs workflow" not in proc.stdout + proc.stderr
    assert not list(locks.iterdir())
    assert (earlier_run / ".snakemake" / "lqs-workdir.lock").read_text() == "results/smoke"  # what it worked on
