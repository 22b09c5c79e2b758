# rdp-controller build tooling. `make run` and `make test` work on a fresh Debian machine with Python 3.11.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: help venv run test test-unit test-integration test-e2e lint bench clean

help:
	@echo "make run               - the service on :8092 with the embedded MongoDB-compatible server and Redis"
	@echo "make test              - lint, then the whole test suite (unit, integration, e2e)"
	@echo "make lint              - ruff and mypy"
	@echo "make test-unit | test-integration | test-e2e - one tier"
	@echo "make bench             - benchmark scripts (print figures)"

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $(STAMP)

run: $(STAMP)
	$(BIN)/python -m common.devstack --port 8092 -- \
		$(BIN)/python -m uvicorn rdp_controller.main:create_app --factory --host 127.0.0.1 --port 8092

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	@mkdir -p .build/typecheck && ln -sfn ../../rdp-controller .build/typecheck/rdp_controller
	MYPYPATH=.build/typecheck $(BIN)/mypy -p rdp_controller -p common -p security -p protocol

test: lint
	$(BIN)/pytest

test-unit: $(STAMP)
	$(BIN)/pytest tests/unit

test-integration: $(STAMP)
	$(BIN)/pytest tests/integration

test-e2e: $(STAMP)
	$(BIN)/pytest tests/e2e

bench: $(STAMP)
	@for script in tests/performance/bench_*.py; do echo "== $$script"; $(BIN)/python $$script || exit 1; done

clean:
	rm -rf $(VENV) .build .pytest_cache .mypy_cache .ruff_cache *.egg-info

# --- container image and compose deployment (issue 7) ---
