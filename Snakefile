# The reproduction workflow of lqs: sweeps of training runs -> results table -> the thesis' figures.
#
#   snakemake --cores 2                                   # demo profile (config/demo.yaml), embedded digits data
#   snakemake --cores 2 --configfile config/smoke.yaml    # another profile (replaces demo.yaml entirely)
#   snakemake --profile profiles/local                    # runtime settings from a profile (profiles/*/config.yaml)
#   snakemake --cores 2 --config backend=jax              # the profile on JAX (or torch): results/demo-jax/, ...
#
# Every training run is one job: papermill executes notebooks/run.ipynb (baselines: notebooks/baseline.ipynb); the
# executed notebook and the job's stderr are its logs (logs/<name>/...), the console gets one line per finished run.
# The runs are aggregated into results/<name>/results.csv, the only input of the figure notebooks, which write
# figures/<name>/ (<name>: the profile's name; `<name>-<backend>` for runs on another Keras backend than TensorFlow).
# The rules are in workflow/rules/*.smk, the logic (config validation, sweep expansion, results
# table, figures, job set-up) in the package lqs_core/workflow/; see docs/workflow.md.

from lqs_core.provenance import pin_cpu

# Every job inherits the pinned CPU code path (ONEDNN_MAX_CPU_ISA) from this process, before any job imports
# TensorFlow: the same numbers on every x86-64 machine with AVX2.
pin_cpu()


include: "workflow/rules/common.smk"


rule all:
    input:
        f"{RESULTS}/results.csv",
        [f for files in FIGURE_OUTPUTS.values() for f in files],
        [REPORT_OUTPUT] if REPORT else [],


include: "workflow/rules/train.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/report.smk"
