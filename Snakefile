# The reproduction workflow of lqs: sweeps of training runs -> results table -> the thesis' figures.
#
#   snakemake --cores 2                                   # demo profile (config/demo.yaml), embedded digits data
#   snakemake --cores 2 --configfile config/smoke.yaml    # another profile (replaces demo.yaml entirely)
#   snakemake --profile profiles/local                    # runtime settings from a profile (profiles/*/config.yaml)
#
# Every training run is one job: papermill executes notebooks/run.ipynb (baselines: notebooks/baseline.ipynb)
# and the executed notebook is the job's log (logs/<name>/...). The runs are aggregated into
# results/<name>/results.csv, the only input of the figure notebooks, which write figures/<name>/.
# The logic (config validation, sweep expansion, results table, figures) is lqs_core/workflow.py; see
# docs/workflow.md.

import importlib.util
import json
import os
import shlex
import sys

REPO = workflow.basedir


def _load_lqs_workflow():
    # lqs_core/workflow.py imports no TensorFlow; load it by path so that parsing this file does not pay for the
    # TensorFlow import that `import lqs_core` (its __init__) triggers.
    spec = importlib.util.spec_from_file_location("lqs_core_workflow", os.path.join(REPO, "lqs_core", "workflow.py"))
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


lqs = _load_lqs_workflow()

# The default profile, unless config files are given on the command line (they replace it instead of being merged
# into it, so `--configfile config/smoke.yaml` runs exactly the smoke sweep).
if not workflow.overwrite_configfiles:

    configfile: os.path.join(REPO, "config", "demo.yaml")


try:
    CFG = lqs.validate_config(config, source="workflow config (" + ", ".join(
        map(str, workflow.overwrite_configfiles or [os.path.join("config", "demo.yaml")])) + ")")
except lqs.ConfigError as error:
    raise WorkflowError(str(error)) from None

NAME = CFG["name"]
RESULTS = f"results/{NAME}"
FIGURES = f"figures/{NAME}"
LOGS = f"logs/{NAME}"
THREADS = int(CFG["threads"])
NOTEBOOKS = os.path.join(REPO, "notebooks")

RUNS = lqs.runs_by_id(lqs.expand_runs(CFG, results_dir=RESULTS))
BASELINES = sorted(r for r, run in RUNS.items() if run.kind == "baseline")
TRAIN_RUNS = sorted(r for r, run in RUNS.items() if run.kind == "run")
FIGURE_OUTPUTS = lqs.figure_outputs(CFG, FIGURES)
FETCH = lqs.needs_fetch(CFG)
FIG_PARAMS = CFG.get("figures") or {}

# GPUs: training jobs request no `gpu` resource here (the slurm executor would then ask every job for a GPU);
# profiles/gpu and profiles/slurm add it with `set-resources: {train: {gpu: 1}, baseline: {gpu: 1}}`.
#
# Environment of every training job: TensorFlow (and OpenMP) limited to the job's threads, so `--cores N` runs N
# single-threaded jobs side by side; quiet TensorFlow C++ logs; deterministic ops.
TF_ENV = (
    "OMP_NUM_THREADS={threads} TF_NUM_INTRAOP_THREADS={threads} TF_NUM_INTEROP_THREADS=1 "
    "TF_CPP_MIN_LOG_LEVEL=3 TF_DETERMINISTIC_OPS=1 PYTHONHASHSEED=0"
)
# The Python that runs Snakemake runs the jobs too (papermill, the fetch step), so a virtual environment works
# without being activated (`.venv/bin/snakemake ...`, as `make reproduce` calls it).
PYTHON = shlex.quote(sys.executable)
PAPERMILL = PYTHON + " -m papermill --kernel python3 --no-progress-bar --log-level WARNING"

wildcard_constraints:
    run="[A-Za-z0-9._+-]+",
    dataset="|".join(lqs.DATASETS),


localrules:
    all,
    results,
    fetch,


REPORT = CFG.get("report")


rule all:
    input:
        f"{RESULTS}/results.csv",
        [f for files in FIGURE_OUTPUTS.values() for f in files],
        [REPORT["output"]] if REPORT else [],


def _fetch_marker(dataset):
    # ancient(): stored runs are not redone because the marker is newer than them (e.g. after a git clone).
    return [ancient(f"{RESULTS}/data/{dataset}.json")] if dataset in FETCH else []


def _run(wildcards):
    return RUNS[wildcards.run]


rule fetch:
    # Downloads (or finds and verifies) a dataset once, before any job trains on it. Not needed for digits.
    output:
        f"{RESULTS}/data/{{dataset}}.json",
    log:
        f"{LOGS}/fetch/{{dataset}}.log",
    params:
        data_dir=CFG.get("data_dir") or "-",  # "-": none ($LQS_DATA_DIR, else the Keras cache)
    shell:
        "TF_CPP_MIN_LOG_LEVEL=3 " + PYTHON + " -c \"import json, sys; from lqs_core import data; "
        "path = data.fetch(sys.argv[1], data_dir=None if sys.argv[2] == '-' else sys.argv[2]); "
        "json.dump({{'dataset': sys.argv[1], 'path': str(path)}}, open(sys.argv[3], 'w'))\" "
        "{wildcards.dataset} {params.data_dir:q} {output:q} > {log:q} 2>&1"


rule baseline:
    # The float twin of a dataset's network, trained once per seed; ptq runs start from its model.keras.
    input:
        lambda w: _fetch_marker(RUNS[w.run].dataset),
    output:
        metrics=f"{RESULTS}/baselines/{{run}}/metrics.json",
        history=f"{RESULTS}/baselines/{{run}}/history.csv",
        model=f"{RESULTS}/baselines/{{run}}/model.keras",
    log:
        notebook=f"{LOGS}/baselines/{{run}}.ipynb",
        report=f"{LOGS}/baselines/{{run}}.txt",
    params:
        config=lambda w: json.dumps(RUNS[w.run].config, sort_keys=True),
        out_dir=lambda w: f"{RESULTS}/baselines/{w.run}",
        notebook=os.path.join(NOTEBOOKS, "baseline.ipynb"),
    threads: THREADS
    message:
        "float baseline {wildcards.run}"
    shell:
        TF_ENV + " " + PAPERMILL + " {params.notebook:q} {log.notebook:q} "
        "-r config_json {params.config:q} -r out_dir {params.out_dir:q} -r report_file {log.report:q} "
        "-p threads {threads} && cat {log.report:q}"


def _train_inputs(wildcards):
    run = RUNS[wildcards.run]
    inputs = _fetch_marker(run.dataset)
    if run.baseline:
        # ancient(): a ptq run is not redone just because its baseline's file is newer (e.g. after a git clone);
        # it is redone when the baseline itself is retrained in the same invocation.
        inputs.append(ancient(f"{RESULTS}/baselines/{run.baseline}/model.keras"))
    return inputs


rule train:
    # One sweep point: dataset x scheme x lambda/gamma x granularity x mode x seed, or one comparator setting
    # (ptq_eval: the float baseline quantized, no training).
    input:
        _train_inputs,
    output:
        metrics=f"{RESULTS}/runs/{{run}}/metrics.json",
        history=f"{RESULTS}/runs/{{run}}/history.csv",
        integers=f"{RESULTS}/runs/{{run}}/integers.lqsint",
    log:
        notebook=f"{LOGS}/runs/{{run}}.ipynb",
        report=f"{LOGS}/runs/{{run}}.txt",
    params:
        config=lambda w: json.dumps(RUNS[w.run].config, sort_keys=True),
        out_dir=lambda w: f"{RESULTS}/runs/{w.run}",
        notebook=os.path.join(NOTEBOOKS, "run.ipynb"),
    threads: THREADS
    message:
        "train {wildcards.run}"
    shell:
        TF_ENV + " " + PAPERMILL + " {params.notebook:q} {log.notebook:q} "
        "-r config_json {params.config:q} -r out_dir {params.out_dir:q} -r report_file {log.report:q} "
        "-p threads {threads} && cat {log.report:q}"


rule results:
    # The tidy results table: one row per run (configuration + final metrics), the figures' only input.
    input:
        [f"{RESULTS}/baselines/{r}/metrics.json" for r in BASELINES],
        [f"{RESULTS}/runs/{r}/metrics.json" for r in TRAIN_RUNS],
    output:
        f"{RESULTS}/results.csv",
    message:
        f"results table {{output}} ({len(RUNS)} runs)"
    run:
        table = lqs.collect_results(list(RUNS.values()), RESULTS)
        lqs.write_table(table, output[0])


def _params(notebook, key):
    """papermill options for the notebook's entry in the config's `figures` section: `-p name value` for numbers,
    booleans and None (papermill reads 1e-10, True, None back as such), `-y` with JSON for lists."""
    opts = []
    for name, value in sorted((FIG_PARAMS.get(key) or {}).items()):
        if isinstance(value, (list, dict)):
            opts.append("-y " + shlex.quote(json.dumps({name: value})))
        elif isinstance(value, str):
            opts.append(f"-r {name} {shlex.quote(value)}")
        else:
            opts.append(f"-p {name} {shlex.quote(repr(value))}")
    return " ".join(opts)


# The figure rules redo their figures when the results table, the notebook or the plotting code changes.
FIGURE_CODE = os.path.join(REPO, "lqs_core", "workflow.py")
FIGURE_SHELL = (
    "MPLBACKEND=agg TF_CPP_MIN_LOG_LEVEL=3 OMP_NUM_THREADS=1 " + PAPERMILL + " {input.notebook:q} {log:q} "
    "-r profile " + NAME + " -r results_dir " + RESULTS + " -r figures_dir " + FIGURES + " {params.extra}"
)


rule fig_pareto:
    input:
        results=f"{RESULTS}/results.csv",
        code=FIGURE_CODE,
        notebook=os.path.join(NOTEBOOKS, "fig_pareto.ipynb"),
    output:
        FIGURE_OUTPUTS["fig_pareto"],
    log:
        f"{LOGS}/figures/fig_pareto.ipynb",
    params:
        extra=_params("fig_pareto", "pareto"),
    message:
        "figures: Pareto fronts"
    shell:
        FIGURE_SHELL


rule fig_curves:
    input:
        results=f"{RESULTS}/results.csv",
        code=FIGURE_CODE,
        notebook=os.path.join(NOTEBOOKS, "fig_curves.ipynb"),
    output:
        FIGURE_OUTPUTS["fig_curves"],
    log:
        f"{LOGS}/figures/fig_curves.ipynb",
    params:
        extra=_params("fig_curves", "curves"),
    message:
        "figures: training curves"
    shell:
        FIGURE_SHELL


rule fig_histograms:
    input:
        results=f"{RESULTS}/results.csv",
        code=FIGURE_CODE,
        notebook=os.path.join(NOTEBOOKS, "fig_histograms.ipynb"),
    output:
        FIGURE_OUTPUTS["fig_histograms"],
    log:
        f"{LOGS}/figures/fig_histograms.ipynb",
    params:
        extra=_params("fig_histograms", "histograms"),
    message:
        "figures: integer histograms"
    shell:
        FIGURE_SHELL


rule fig_comparison:
    # Every method (thesis schemes and comparators) per dataset on the same axes + the Pareto-optimal points.
    input:
        results=f"{RESULTS}/results.csv",
        code=FIGURE_CODE,
        notebook=os.path.join(NOTEBOOKS, "fig_comparison.ipynb"),
    output:
        FIGURE_OUTPUTS["fig_comparison"],
    log:
        f"{LOGS}/figures/fig_comparison.ipynb",
    params:
        extra=_params("fig_comparison", "comparison"),
    message:
        "figures: comparison of all methods"
    shell:
        FIGURE_SHELL


rule table_compression:
    input:
        results=f"{RESULTS}/results.csv",
        code=FIGURE_CODE,
        notebook=os.path.join(NOTEBOOKS, "table_compression.ipynb"),
    output:
        FIGURE_OUTPUTS["table_compression"],
    log:
        f"{LOGS}/figures/table_compression.ipynb",
    params:
        extra=_params("table_compression", "compression"),
    message:
        "figures: compression table"
    shell:
        FIGURE_SHELL


if REPORT:

    rule report:
        # The profile's report (e.g. RESULTS.md): the thesis' numbers beside ours, rendered from the results table
        # and the runs' integer files by lqs_core/report.py; no training.
        input:
            results=f"{RESULTS}/results.csv",
            template=os.path.join(REPO, REPORT["template"]),
            code=[os.path.join(REPO, "lqs_core", "report.py"), FIGURE_CODE],
        output:
            REPORT["output"],
        log:
            f"{LOGS}/report.log",
        params:
            config=json.dumps(CFG, sort_keys=True),
        message:
            "report {output}"
        shell:
            "TF_CPP_MIN_LOG_LEVEL=3 " + PYTHON + " -m lqs_core.report --config-json {params.config:q} > {log:q} 2>&1"
