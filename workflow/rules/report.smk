# The profile's report (e.g. RESULTS.md), if its config has a `report` section.

if REPORT:

    rule report:
        # The thesis' numbers beside ours, rendered from the results table and the runs' integer files by
        # lqs_core/report.py; no training. The template is read from the repository, the report written into the
        # working directory: under results/, or RESULTS.md (both paths checked when the config is validated: safe
        # characters, inside their folders; Snakemake deletes the output before the job runs).
        input:
            results=f"{RESULTS}/results.csv",
            template=os.path.join(REPO, REPORT["template"]),
            code=sources.module_sources(["lqs_core.report"]),
        output:
            REPORT_OUTPUT,
        log:
            f"{LOGS}/report.log",
        params:
            config=json.dumps(CFG, sort_keys=True),
            repo=REPO,
        message:
            "report {output}"
        shell:
            quiet(f"{JOB_ENV} {PYTHON} -m lqs_core.report --config-json {{params.config:q}} --repo {{params.repo:q}}",
                  "report {output:q}")
