# Two entry points for a fresh machine: `make demo` and `make test`.
PYTHON ?= $(shell command -v python3.12 || command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home

.PHONY: setup demo test lint dev bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[dev]"
	@touch $@

demo: setup  ## materialize the whole asset graph on the bundled sample corpus, then print a summary
	$(BIN)/corpusforge run --config sample_data/demo.yaml

test: setup  ## run the test suite
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

dev: setup  ## open the Dagster UI on http://127.0.0.1:3000 (same demo settings as make demo)
	CORPUSFORGE_CONFIG=sample_data/demo.yaml $(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

clean:
	rm -rf data .dagster_home
