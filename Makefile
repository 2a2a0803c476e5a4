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

# One TensorFlow per venv: tensorflow-cpu (TF=cpu) and tensorflow (TF=gpu) install into the same `tensorflow`
# package, so a switch of TF first removes the installed build (both, where an older Makefile left both side by
# side) and then installs the chosen one whole; the other build's stamp goes, so switching back reinstalls too.
# `lqs` is the distribution's former name (now lqs-core): an old editable install of it is removed.
$(STAMP): pyproject.toml
	@case "$(TF)" in cpu|gpu) ;; *) echo "TF must be cpu or gpu, not '$(TF)'" >&2; exit 2;; esac
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	@if ls $(VENV)/.installed-* 2>/dev/null | grep -qv -- '-$(TF)$$' || \
	    { $(BIN)/python -m pip show tensorflow >/dev/null 2>&1 && $(BIN)/python -m pip show tensorflow-cpu >/dev/null 2>&1; }; then \
	  echo "TF=$(TF): removing the installed TensorFlow build first"; \
	  $(BIN)/python -m pip uninstall --quiet --yes tensorflow tensorflow-cpu; \
	fi
	@if $(BIN)/python -m pip show lqs >/dev/null 2>&1; then $(BIN)/python -m pip uninstall --quiet --yes lqs; fi
	$(BIN)/python -m pip install --quiet -e ".[$(TF),workflow,test]"
	rm -f $(VENV)/.installed-*
	touch $@

# The demo's results and figures are committed (results/demo, figures/demo). The first `make reproduce` in a
# checkout removes the committed runs of the profile so that every run is retrained here; from then on the same
# command resumes an interrupted workflow and skips finished runs (Snakemake's own bookkeeping). The results table
# goes too: Snakemake does not redo the runs behind an existing results.csv just because they are missing.
# Resuming needs no flags, even after a `kill -9`: the runtime profiles set rerun-incomplete, and the Snakefile
# removes Snakemake's stale directory locks when no other Snakemake runs here (lqs_core/workflow/lock.py). The
# console shows progress and one line per finished run; each job's output is in logs/$(NAME)/.
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
	$(BIN)/snakemake --cores 2 --quiet host rules --configfile $(CONFIG) --allowed-rules $(FIGURE_RULES) \
	  --forcerun results

benchmark: $(STAMP)
	$(BIN)/python benchmarks/step_overhead.py

clean:
	rm -rf $(VENV) .snakemake .pytest_cache
