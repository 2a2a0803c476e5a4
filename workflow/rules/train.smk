# Training: the datasets fetched once, then one job per run (float baselines and sweep points alike).
# (GPUs: the rule requests no GPU resource here, since the slurm executor would then ask every job for one;
# profiles/gpu adds `gpu: 1` and profiles/slurm `gres: "gpu:1"` to the train rule with `set-resources`.)


rule fetch:
    # Downloads (or finds and verifies) a dataset once, before any job trains on it. Not needed for digits.
    output:
        f"{RESULTS}/data/{{dataset}}.json",
    log:
        f"{LOGS}/fetch/{{dataset}}.log",
    params:
        data_dir=["--data-dir", CFG["data_dir"]] if CFG.get("data_dir") else [],
    message:
        "fetch {wildcards.dataset}"
    shell:
        quiet(f"{JOB_ENV} {PYTHON} -m lqs_core.workflow.jobs fetch {{wildcards.dataset:q}} {{params.data_dir:q}} "
              "--marker {output:q}", "fetch {wildcards.dataset:q}")


rule train:
    # One run: a float baseline (notebooks/baseline.ipynb, once per dataset and seed; its model.keras is where the
    # ptq runs start) or a sweep point / comparator setting (notebooks/run.ipynb; ptq_eval: the float baseline
    # quantized, no training). The job runs on the run's Keras backend (KERAS_BACKEND in its environment, and the
    # notebook's `backend` parameter); the summary step fails the job (and Snakemake removes its files) if the run
    # records another backend. The console gets the run's summary line; its logs are the .log (stderr) and the
    # executed notebook beside it.
    input:
        train_inputs,
    output:
        metrics=f"{RESULTS}/{{folder}}/{{run}}/{spec.METRICS_FILE}",
        history=f"{RESULTS}/{{folder}}/{{run}}/{spec.HISTORY_FILE}",
    log:
        f"{LOGS}/{{folder}}/{{run}}.log",
    params:
        config=lambda w: json.dumps(run_of(w).config, sort_keys=True),
        out_dir=lambda w: f"{RESULTS}/{w.folder}/{w.run}",
        notebook=lambda w: os.path.join(NOTEBOOKS, NOTEBOOK[w.folder]),
        executed=lambda w: f"{LOGS}/{w.folder}/{w.run}.ipynb",
        backend=lambda w: run_of(w).backend,
    threads: THREADS
    # The profile's order (lqs_core.workflow.sweep.expand_runs: baselines, the nested grid, loss terms, gradual,
    # comparators): of the jobs ready to run, the earliest in the profile starts first.
    priority: lambda w: run_priority(w.run)
    message:
        "train {wildcards.run}"
    shell:
        quiet(f"{TF_ENV} {PAPERMILL} {{params.notebook:q}} {{params.executed:q}} -r config_json {{params.config:q}} "
              "-r out_dir {params.out_dir:q} -p threads {threads:q} -r backend {params.backend:q}", "{wildcards.run:q}")
        + f" && {PYTHON} -m lqs_core.workflow.jobs summary {{output.metrics:q}} --backend {{params.backend:q}}"
