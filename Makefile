# The two commands of the README:
#   make reproduce   # set up .venv, run the reproduction workflow (demo profile, embedded digits data)
#   make test        # set up .venv, run the test suite (unit tests, smoke workflow, notebooks with nbval)
# Both create the virtual environment on first use; nothing but Python 3.11 and the package registries is needed.
# TF=gpu installs TensorFlow with CUDA instead of the CPU-only build: `make reproduce TF=gpu`.

PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV   ?= .venv
TF     ?= cpu
PROFILE ?= profiles/local
CONFIG ?= config/demo.yaml
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(TF)

.PHONY: reproduce test install figures benchmark clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[$(TF),workflow,test]"
	touch $@

# The demo's results and figures are committed (results/demo, figures/demo). The first `make reproduce` in a
# checkout removes the committed runs of the profile so that every run is retrained here; from then on the same
# command resumes an interrupted workflow and skips finished runs (Snakemake's own bookkeeping). The results table
# goes too: Snakemake does not redo the runs behind an existing results.csv just because they are missing.
NAME   := $(basename $(notdir $(CONFIG)))
STARTED := .snakemake/lqs-reproduce-$(NAME).started

reproduce: $(STAMP)
	@if [ ! -e $(STARTED) ]; then \
	  echo "First reproduction of '$(NAME)' in this checkout: retraining every run into results/$(NAME)/"; \
	  rm -rf results/$(NAME)/runs results/$(NAME)/baselines results/$(NAME)/results.csv; \
	  mkdir -p .snakemake; touch $(STARTED); \
	fi
	$(BIN)/snakemake --profile $(PROFILE) --configfile $(CONFIG)

test: $(STAMP)
	$(BIN)/python -m pytest tests notebooks --nbval-lax --sanitize-with tests/nbval_sanitize.cfg

# Tables, figures and the profile's report (RESULTS.md for quick_cpu) again from the stored results, without
# training: only the aggregation, figure and report rules may run (a missing run is an error, not a retraining).
FIGURE_RULES := results fig_pareto fig_curves fig_histograms table_compression fig_comparison report all

figures: $(STAMP)
	$(BIN)/snakemake --cores 2 --configfile $(CONFIG) --allowed-rules $(FIGURE_RULES) --forcerun results

benchmark: $(STAMP)
	$(BIN)/python benchmarks/step_overhead.py

clean:
	rm -rf $(VENV) .snakemake .pytest_cache
