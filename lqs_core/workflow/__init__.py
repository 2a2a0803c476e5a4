"""The reproduction workflow's logic, one module per job; the ``Snakefile`` and ``notebooks/`` stay thin.

====================  ==========================================================================================
``config``            read a profile (``config/*.yaml``), check it against ``schema.yaml``: :class:`ConfigError`
``sweep``             every run of a profile (:class:`~sweep.Run`, :func:`~sweep.expand_runs`), its figure files
``table``             the results table: rows of finished runs, written and read back; the runs' histories
``aggregate``         means over seeds, operating points, compression and Pareto tables, Markdown
``names``             display names, plotting orders, λ/γ labels, figure file stems
``figures.*``         ``style`` (fixed rcParams, byte-identical files) and one module per figure kind
``jobs``              inside a job: the notebooks' :func:`~jobs.setup`, GPU claiming, fetch, one-line summaries
``sources``           which ``lqs_core`` files a notebook really runs (the figure rules' code inputs)
``lock``              a working directory's workflow lock: stale Snakemake locks removed after a hard kill
====================  ==========================================================================================

The vocabulary (datasets, schemes, loss terms, granularities, modes, comparators, run ids, file names) is
:mod:`lqs_core.spec`. Nothing here imports TensorFlow or Keras at import time (the Snakefile imports the package
while it is parsed); import the module you need, e.g. ``from lqs_core.workflow import sweep``.
"""
