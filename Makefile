# One entry point for a fresh machine: every target creates the environment it needs.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_WORKSPACE ?= demo-workspace
DEMO_ARGS ?=
PYTEST_ARGS ?=
PYTEST_WORKERS ?= 2
NAMESPACE := build/namespace

.PHONY: env demo test lint format bench clean

env: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "clv needs Python 3.11 (set PYTHON=...)")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.lock
	$(BIN)/pip install --quiet --no-deps -e .
	@touch $(STAMP)

## The whole lifecycle on generated data in a fresh ./$(DEMO_WORKSPACE) (SQLite, DuckDB, local files);
## DEMO_ARGS go to `clv demo`, e.g. DEMO_ARGS="--world saas_mixed" for a subscription business.
demo: $(STAMP)
	rm -rf $(DEMO_WORKSPACE)
	$(BIN)/clv --workspace $(DEMO_WORKSPACE) demo $(DEMO_ARGS)

## Every test, on $(PYTEST_WORKERS) pytest-xdist workers (a file's tests on one worker, the tests on the
## real services on one worker in order: tests/conftest.py). Integration tests need the servers
## that .ci/run starts (Postgres, Redis, Chromium); without them they are skipped, and pytest
## says so.
test: $(STAMP)
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadscope --no-loadscope-reorder $(PYTEST_ARGS)

## mypy and the import contracts read the folders as the one `clv` tree a wheel installs:
## $(NAMESPACE)/clv links each subpackage folder (clv.SUBPACKAGES) under its name.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	rm -rf $(NAMESPACE) && mkdir -p $(NAMESPACE)/clv
	ln -s $(CURDIR)/clv/*.py $(NAMESPACE)/clv/
	for pkg in $$($(BIN)/python -c 'import clv; print(*clv.SUBPACKAGES)'); do ln -s $(CURDIR)/$$pkg $(NAMESPACE)/clv/$$pkg; done
	$(BIN)/mypy
	cd $(NAMESPACE) && $(CURDIR)/$(BIN)/lint-imports $(CURDIR)/pyproject.toml --no-cache

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run

clean:
	rm -rf $(VENV) $(DEMO_WORKSPACE) build .mypy_cache .ruff_cache .pytest_cache
