# Shared set-up of the rules: the work directory's lock, the profile (validated), its runs, the jobs' environment,
# and the helper functions of the rules.

import json
import os
import shlex
import sys

from snakemake_interface_executor_plugins.settings import ExecMode

from lqs_core import spec
from lqs_core.workflow import config as profile
from lqs_core.workflow import jobs, lock, sources, sweep, table

REPO = workflow.basedir
NOTEBOOKS = os.path.join(REPO, "notebooks")

# The profile files, read strictly before anything else uses them (lqs_core.workflow.config.read_yaml: no anchors
# or aliases, no Python or custom tags, no duplicate keys, no YTE template). The default profile, unless config files
# are given on the command line (they replace it instead of being merged into it, so `--configfile
# config/smoke.yaml` runs exactly the smoke sweep). Snakemake has read the command line's files already, with its
# own loader; see docs/workflow.md (Profiles are data).
CONFIG_FILES = workflow.overwrite_configfiles or [os.path.join(REPO, "config", "demo.yaml")]
try:
    for _path in CONFIG_FILES:
        profile.read_yaml(_path)
except profile.ConfigError as error:
    raise WorkflowError(str(error)) from None
if not workflow.overwrite_configfiles:

    configfile: CONFIG_FILES[0]


try:
    _files = ", ".join(map(str, workflow.overwrite_configfiles or [os.path.join("config", "demo.yaml")]))
    SOURCE = f"workflow config ({_files})"
    CFG = profile.validate_config(config, source=SOURCE)
    # The folder name of the results, figures and logs: the profile's name for TensorFlow runs, `<name>-<backend>`
    # where runs use another Keras backend (`--config backend=jax`: results/demo-jax/), so they never mix.
    NAME = profile.output_name(CFG)
    RESULTS = f"results/{NAME}"
    # Every run, each checked by lqs_core.spec.RunConfig: a run the library would refuse stops here, before any job.
    RUNS = sweep.runs_by_id(sweep.expand_runs(CFG, results_dir=RESULTS, source=SOURCE))
except profile.ConfigError as error:
    raise WorkflowError(str(error)) from None

# Resume after a hard kill without --unlock: the main Snakemake process holds the work directory's lock for its
# lifetime (lqs_core.workflow.lock, before Snakemake checks its own locks), writing its results folder into it;
# stale Snakemake locks (left by a killed run) are removed only while no other Snakemake runs here.
# WORKDIR_BUSY: another lqs workflow that holds it works on the same results folder (or did not say which): it
# still runs, even if `snakemake --unlock` removed its Snakemake locks, so the `onstart` handler below refuses to
# start any job beside it; --dry-run, --unlock, --list-rules still work (onstart runs only before jobs run).
_REMOVED = lock.hold_workdir(owner=RESULTS) if workflow.exec_mode == ExecMode.DEFAULT else []
WORKDIR_HOLDER = lock.holder() if _REMOVED is None else None
WORKDIR_BUSY = WORKDIR_HOLDER in ("", RESULTS)


onstart:
    if WORKDIR_BUSY:
        raise WorkflowError(
            f"Another lqs workflow is running in the working directory {os.getcwd()} for "
            f"{WORKDIR_HOLDER or 'an unnamed results folder'} (it holds .snakemake/{lock.LOCK_NAME}): no job for "
            f"{RESULTS}/ is started beside it. Wait for it to finish, or stop it; `snakemake --unlock` removes "
            "Snakemake's lock files but cannot stop the running workflow."
        )


# `--config partial=true` (make figures PARTIAL=1): the results table, figures and report of the runs finished so
# far, for a long profile that lands in parts; nothing is trained (use it with --allowed-rules, as `make figures`).
PARTIAL = str(CFG.get("partial", False)).lower() == "true"
if PARTIAL:
    RUNS = {i: r for i, r in RUNS.items() if os.path.exists(os.path.join(r.directory(RESULTS), spec.METRICS_FILE))}
    if not RUNS:
        raise WorkflowError(f"partial=true: no finished run in {RESULTS}/ yet.")

FIGURES = f"figures/{NAME}"
LOGS = f"logs/{NAME}"
THREADS = int(CFG["threads"])
FIGURE_OUTPUTS = sweep.figure_outputs(CFG, FIGURES, runs=list(RUNS.values()))
FETCH = sweep.needs_fetch(CFG)
FIG_PARAMS = CFG.get("figures") or {}
REPORT = CFG.get("report")
REPORT_OUTPUT = profile.report_output(CFG)  # report.output; in results/<name>-<backend>/ for another backend
# The notebook that trains a run of each kind (results/<name>/<folder>/<run id>/).
NOTEBOOK = {sweep.FOLDERS["baseline"]: "baseline.ipynb", sweep.FOLDERS["run"]: "run.ipynb"}

# The Python that runs Snakemake runs the jobs too (papermill, the fetch and summary steps), so a virtual
# environment works without being activated (`.venv/bin/snakemake ...`, as `make reproduce` calls it). Quoted for
# the shell, braces doubled for Snakemake's formatting of the command templates.
PYTHON = shlex.quote(sys.executable).replace("{", "{{").replace("}", "}}")
# Quiet jobs: their stderr (papermill, the kernel's start-up warnings, TensorFlow's C++ log lines) goes to the job's
# log file, the console gets Snakemake's progress and one summary line per finished run.
JOB_ENV = "JUPYTER_PLATFORM_DIRS=1 TF_CPP_MIN_LOG_LEVEL=3 PYTHONHASHSEED=0"
PAPERMILL = f"{PYTHON} -m papermill --kernel python3 --no-progress-bar --log-level WARNING"
# Training jobs: the run's Keras backend (KERAS_BACKEND, in the job's environment before Python starts: the
# profile's `backend` or the dataset's own; it overrides a KERAS_BACKEND of the calling shell), TensorFlow (and
# OpenMP) limited to the job's threads, so `--cores N` runs N single-threaded jobs side by side; deterministic ops.
TF_ENV = (f"{JOB_ENV} KERAS_BACKEND={{params.backend:q}} OMP_NUM_THREADS={{threads:q}} "
          "TF_NUM_INTRAOP_THREADS={threads:q} TF_NUM_INTEROP_THREADS=1 TF_DETERMINISTIC_OPS=1")


wildcard_constraints:
    run="[A-Za-z0-9._+-]+",
    dataset="|".join(spec.DATASETS),
    folder="|".join(sweep.FOLDERS.values()),


localrules:
    all,
    results,
    fetch,


def quiet(command, what):
    """`command` (a shell command template) with its output in the job's log; if it fails, the console gets one line
    naming the failed step and its log, then the log's last lines (the profiles hide Snakemake's own error blocks).
    `what` names the step in shell words, each value quoted (`"report {output:q}"`): nothing of a config or a
    file name is ever run by the shell."""
    return (f"{command} > {{log:q}} 2>&1 || {{{{ status=$?; echo FAILED: {what} \"(exit $status): log:\" {{log:q}} "
            ">&2; tail -n 25 {log:q} >&2; exit $status; }}")


def fetch_marker(dataset):
    # ancient(): stored runs are not redone because the marker is newer than them (e.g. after a git clone).
    return [ancient(f"{RESULTS}/data/{dataset}.json")] if dataset in FETCH else []


_RUN_ORDER = {run_id: index for index, run_id in enumerate(RUNS)}


def run_priority(run_id):
    """Higher for runs earlier in the profile (Snakemake starts the ready job of highest priority first)."""
    return len(_RUN_ORDER) - _RUN_ORDER.get(run_id, len(_RUN_ORDER))


def run_of(wildcards):
    run = RUNS[wildcards.run]
    if run.folder != wildcards.folder:
        raise WorkflowError(f"Run {run.run_id} is a {run.kind}: its folder is {RESULTS}/{run.folder}/.")
    return run


def train_inputs(wildcards):
    run = run_of(wildcards)
    inputs = fetch_marker(run.dataset)
    if run.baseline:
        # A ptq run (and a ptq_eval comparator) starts from its baseline's model.keras, written before its
        # metrics.json. ancient(): not redone just because the baseline's files are newer (e.g. after a git clone);
        # redone when the baseline itself is retrained in the same invocation.
        inputs.append(ancient(f"{RESULTS}/{sweep.FOLDERS['baseline']}/{run.baseline}/{spec.METRICS_FILE}"))
    return inputs
