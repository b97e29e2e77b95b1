# make demo  - set up (first time) and run the whole pipeline on the built-in dataset
# make test  - set up (first time) and run the test suite
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test test-fast repro bench scheduler lock clean help

help:
	@echo "make demo | make test | make test-fast | make repro | make bench | make scheduler | make lock | make clean"

$(STAMP): pyproject.toml requirements.lock scripts/bootstrap.sh
	VENV=$(VENV) bash scripts/bootstrap.sh

setup: $(STAMP)

# the pipeline, then an unchanged rerun; their timings and metrics go to bench/demo.json and the README
demo: $(STAMP)
	$(BIN)/python -m bench.demo

test: $(STAMP)
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q

test-fast: $(STAMP)
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q -m "not slow"

repro: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc repro

bench: $(STAMP)
	$(BIN)/python -m bench

# Prefect server (unless PREFECT_API_URL is set) + work pool + deployments + worker; Ctrl-C stops them
scheduler: $(STAMP)
	$(BIN)/mmops schedule

# Re-pin requirements.lock (versions + sha256) to what .venv holds, after changing dependencies
lock:
	$(BIN)/python scripts/lock.py

clean:  # all project state; keeps .dvc/config (only DVC's cache goes)
	rm -rf .mmops artifacts reports data mlruns mlartifacts .dvc/cache dvc_plots predictions.csv
