# Two entry points for a fresh machine: `make demo` and `make test`.
# The first interpreter that really runs and is >= 3.11 (pyenv shims may exist but not run).
PYTHON ?= $(shell for p in python3.11 python3.12 python3.13 python3; do \
	$$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1 && { command -v $$p; break; }; done)
VENV ?= .venv
BIN := $(VENV)/bin
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home

.PHONY: setup demo test lint dev bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@test -n "$(PYTHON)" || { echo "corpusforge needs Python >= 3.11 (python3.11 or newer on PATH)"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[dev]"
	@touch $@

demo: setup  ## materialize the whole asset graph on the bundled sample corpus, then print a summary
	$(BIN)/corpusforge run --config sample_data/demo.yaml

test: lint  ## lint and type-check, then run the test suite
	$(BIN)/python -m pytest -q

lint: setup  ## ruff (lint + format) on everything, mypy on pipelines/ and training/
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy pipelines training

dev: setup  ## open the Dagster UI on http://127.0.0.1:3000 (same demo settings as make demo)
	$(BIN)/corpusforge home
	CORPUSFORGE_CONFIG=sample_data/demo.yaml $(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

clean:
	rm -rf data .dagster_home
