# The two commands a newcomer needs: `make run` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: run test lint bench schema clean

$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "nightshift needs Python 3.11+"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)  ## start the daemon on the embedded default (SQLite, bundled automations)
	$(BIN)/nightshift run

test: $(STAMP) lint  ## the whole suite: lint, types, tests (starts local PostgreSQL if needed)
	scripts/ensure-test-services
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/nightshift validate

bench: $(STAMP)  ## the benchmarks of docs/benchmarks.md (installs wrk for the intake one)
	scripts/ensure-test-services
	scripts/ensure-bench-tools
	$(BIN)/python -m bench

schema: $(STAMP)  ## regenerate schema/*.json from the models
	$(BIN)/nightshift schema --out schema

clean:
	rm -rf $(VENV) .nightshift .pytest_cache .mypy_cache .ruff_cache
