# The two commands of the README:
#   make reproduce   # set up .venv, run the reproduction workflow (demo profile, embedded digits data)
#   make test        # set up .venv, run the test suite (unit tests, smoke workflow, notebooks with nbval)
# Both create the virtual environment on first use; nothing but Python 3.11 and the package registries is needed.
# TF=gpu installs TensorFlow with CUDA instead of the CPU-only build: `make reproduce TF=gpu`.
# BACKEND=jax (or torch, tensorflow) runs the profile's training jobs on that Keras backend (`--config backend=...`):
# `make reproduce BACKEND=jax` trains into results/demo-jax/ and figures/demo-jax/, beside the TensorFlow results.

PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV   ?= .venv
TF     ?= cpu
PROFILE ?= profiles/local
CONFIG ?= config/demo.yaml
BACKEND ?=
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(TF)

.PHONY: reproduce test install figures campaign benchmark benchmark-backends clean

install: $(STAMP)

# One TensorFlow per venv: tensorflow-cpu (TF=cpu) and tensorflow (TF=gpu) install into the same `tensorflow`
# package, so a switch of TF first removes the installed build (both, where an older Makefile left both side by
# side) and then installs the chosen one whole; the other build's stamp goes, so switching back reinstalls too.
# `lqs` is the distribution's former name (now lqs-core): an old editable install of it is removed.
$(STAMP): pyproject.toml
	@case "$(TF)" in cpu|gpu) ;; *) echo "TF must be cpu or gpu, not '$(TF)'" >&2; exit 2;; esac
	$(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install --quiet --upgrade pip > $(VENV)/install.log 2>&1 || { cat $(VENV)/install.log; exit 1; }
	@if ls $(VENV)/.installed-* 2>/dev/null | grep -qv -- '-$(TF)$$' || \
	    { $(BIN)/python -m pip show tensorflow >/dev/null 2>&1 && $(BIN)/python -m pip show tensorflow-cpu >/dev/null 2>&1; }; then \
	  echo "TF=$(TF): removing the installed TensorFlow build first"; \
	  $(BIN)/python -m pip uninstall --quiet --yes tensorflow tensorflow-cpu; \
	fi
	@if $(BIN)/python -m pip show lqs >/dev/null 2>&1; then $(BIN)/python -m pip uninstall --quiet --yes lqs; fi
	@echo "Installing lqs-core[$(TF),jax,compare,export,workflow,test] into $(VENV) (pip's output: $(VENV)/install.log)"
	@$(BIN)/python -m pip install --quiet -e ".[$(TF),jax,compare,export,workflow,test]" >> $(VENV)/install.log 2>&1 || \
	  { cat $(VENV)/install.log; echo "pip install failed (log above, also in $(VENV)/install.log)" >&2; exit 1; }
	rm -f $(VENV)/.installed-*
	touch $@

# The demo's results and figures are committed (results/demo, figures/demo). The first `make reproduce` in a
# checkout removes the committed runs of the profile so that every run is retrained here; from then on the same
# command resumes an interrupted workflow and skips finished runs (Snakemake's own bookkeeping). The results table
# goes too: Snakemake does not redo the runs behind an existing results.csv just because they are missing.
# Resuming needs no flags, even after a `kill -9`: the runtime profiles set rerun-incomplete, and the Snakefile
# removes Snakemake's stale directory locks when no other Snakemake runs here (lqs_core/workflow/lock.py). The
# console shows progress and one line per finished run; each job's output is in logs/<name>/.
# The results folder's name comes from the profile (`python -m lqs_core.workflow.config output-name`): its `name`,
# `<name>-<backend>` on another backend than TensorFlow, so BACKEND=jax never removes or retrains the TensorFlow runs.
# That step reads the profile strictly and validates it first (no YAML anchors/aliases, Python tags or duplicate keys;
# the schema), so a bad file is refused with one message before Snakemake's own YAML loader ever sees it.
BACKEND_CONFIG := $(if $(BACKEND),--config backend=$(BACKEND))

reproduce: $(STAMP)
	@name=$$($(BIN)/python -m lqs_core.workflow.config output-name $(CONFIG) $(if $(BACKEND),--backend $(BACKEND))) \
	  || exit 2; \
	if [ ! -e .snakemake/lqs-reproduce-$$name.started ]; then \
	  echo "First reproduction of '$$name' in this checkout: retraining every run into results/$$name/"; \
	  rm -rf results/$$name/runs results/$$name/baselines results/$$name/results.csv; \
	  mkdir -p .snakemake; touch .snakemake/lqs-reproduce-$$name.started; \
	fi
	$(BIN)/snakemake --profile $(PROFILE) --configfile $(CONFIG) $(BACKEND_CONFIG)

# The suite on TensorFlow (the reference backend), then the tests marked `backends` again on JAX, and on PyTorch
# where it is installed (the `torch` extra is not part of the install above). Every part runs even when an earlier
# one fails; the last lines say which parts passed and which failed, and the exit status is 1 if any failed.
PYTEST_TF    := $(BIN)/python -m pytest tests notebooks --nbval-lax --sanitize-with tests/nbval_sanitize.cfg
PYTEST_JAX   := KERAS_BACKEND=jax $(BIN)/python -m pytest tests -m backends -q
PYTEST_TORCH := KERAS_BACKEND=torch $(BIN)/python -m pytest tests -m backends -q

test: $(STAMP)
	@failed=""; passed=""; \
	echo "== part 1: the suite on TensorFlow (unit tests, smoke workflow, notebooks under nbval)"; \
	if $(PYTEST_TF); then passed="$$passed tensorflow"; else failed="$$failed tensorflow"; fi; \
	if $(BIN)/python -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('torch') is None)"; then \
	  echo "== part 2: the backends tests on PyTorch"; \
	  if $(PYTEST_TORCH); then passed="$$passed torch"; else failed="$$failed torch"; fi; \
	else echo "== part 2: PyTorch not installed: the backends tests on torch are skipped"; fi; \
	echo "== part 3: the backends tests on JAX"; \
	if $(PYTEST_JAX); then passed="$$passed jax"; else failed="$$failed jax"; fi; \
	echo "== make test: passed:$${passed:- none}; failed:$${failed:- none}"; \
	test -z "$$failed"

# Tables, figures and the profile's report (RESULTS.md for quick_cpu) again from the stored results, without
# training: only the aggregation, figure and report rules may run (a missing run is an error, not a retraining).
# The profile is checked strictly first, as for `make reproduce`.
FIGURE_RULES := results fig_pareto fig_curves fig_histograms table_compression fig_comparison report all

# PARTIAL=1: from the runs finished so far (a long profile such as config/mnist.yaml lands in parts). One --config
# flag carries every override (a second --config flag would replace the first).
FIGURE_CONFIG := $(if $(BACKEND)$(PARTIAL),--config $(if $(BACKEND),backend=$(BACKEND)) $(if $(PARTIAL),partial=true))

figures: $(STAMP)
	@$(BIN)/python -m lqs_core.workflow.config check $(CONFIG) || exit 2
	$(BIN)/snakemake --cores 2 --quiet host rules --configfile $(CONFIG) $(FIGURE_CONFIG) \
	  --allowed-rules $(FIGURE_RULES) --forcerun results

# The CIFAR-10 campaign (config/cifar10.yaml, issue #22): about 18 hours of a 2-core CPU, in parts. Start it at the
# beginning of every sitting; it resumes: finished runs are kept, the interrupted run continues from its last
# finished epoch (lqs_core.checkpoint). `nice` keeps the machine responsive for other work; its console output goes
# to logs/cifar10/campaign.log. `--rerun-triggers mtime`: a finished run is never redone because the code or the
# rule's text changed between sittings (hours of training each), only when its files are missing.
CAMPAIGN_CONFIG ?= config/cifar10.yaml
LQS_DATA_DIR ?= $(abspath ../shared/data/keras/datasets)

campaign: $(STAMP)
	@$(BIN)/python -m lqs_core.workflow.config check $(CAMPAIGN_CONFIG) || exit 2
	@mkdir -p logs/cifar10
	LQS_DATA_DIR=$(LQS_DATA_DIR) nice -n 19 $(BIN)/snakemake --profile $(PROFILE) --configfile $(CAMPAIGN_CONFIG) \
	  --rerun-triggers mtime \
	  >> logs/cifar10/campaign.log 2>&1

benchmark: $(STAMP)
	$(BIN)/python benchmarks/step_overhead.py

# One epoch of mnist_mlp, float and quantized, on every installed Keras backend (each in its own process).
benchmark-backends: $(STAMP)
	$(BIN)/python benchmarks/step_overhead.py --backends

clean:
	rm -rf $(VENV) .snakemake .pytest_cache
