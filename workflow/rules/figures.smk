# The results table, and the figures drawn from it alone.


rule results:
    # The tidy results table: one row per run (configuration + final metrics), the figures' only input.
    input:
        [os.path.join(run.directory(RESULTS), spec.METRICS_FILE) for run in RUNS.values()],
    output:
        f"{RESULTS}/results.csv",
    message:
        f"results table {{output}} ({len(RUNS)} runs)"
    run:
        table.write_table(table.collect_results(list(RUNS.values()), RESULTS), output[0])


# One rule per figure notebook (fig_pareto, fig_curves, fig_histograms, table_compression, fig_comparison), all of
# this one definition: the notebook draws its figures from the results table with the profile's `figures`
# parameters. A figure is redrawn when the table, its notebook or the lqs_core code that notebook imports changes
# (found statically by lqs_core.workflow.sources; e.g. editing the GPU locking redraws nothing).
FIGURE_SHELL = quiet(
    f"MPLBACKEND=agg OMP_NUM_THREADS=1 {JOB_ENV} {PAPERMILL} {{input.notebook:q}} {{params.executed:q}} "
    "-r profile {params.profile:q} -r results_dir {params.results_dir:q} -r figures_dir {params.figures_dir:q} "
    "{params.extra:q}",
    "{params.notebook:q}",
)

for _notebook, _files in FIGURE_OUTPUTS.items():

    rule:
        name:
            _notebook
        input:
            results=f"{RESULTS}/results.csv",
            notebook=os.path.join(NOTEBOOKS, f"{_notebook}.ipynb"),
            code=sources.notebook_sources(os.path.join(NOTEBOOKS, f"{_notebook}.ipynb")),
        output:
            _files,
        log:
            f"{LOGS}/figures/{_notebook}.log",
        params:
            notebook=_notebook,
            executed=f"{LOGS}/figures/{_notebook}.ipynb",
            profile=NAME,
            results_dir=RESULTS,
            figures_dir=FIGURES,
            extra=jobs.papermill_args(FIG_PARAMS.get(sweep.FIGURE_NOTEBOOKS[_notebook])),
        message:
            f"figures: {_notebook}"
        shell:
            FIGURE_SHELL
