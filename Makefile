# pricebot: two commands on a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

UV_VERSION ?= 0.13.8
PYTHON_VERSION ?= 3.11
VENV := .venv
BIN := $(VENV)/bin
UV := $(shell command -v uv 2>/dev/null)
export PYTHONDONTWRITEBYTECODE := 1
export BENTOML_DO_NOT_TRACK := True
export MLFLOW_SERVER_ENABLE_JOB_EXECUTION := false

.PHONY: help setup system-deps python-deps demo test lint lint-workflows format unit bench bench-deps layers clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

setup: system-deps python-deps ## Install everything the demo and the tests need

system-deps: ## PostgreSQL server and Chromium from Debian, when missing
	@bash scripts/system-deps.sh

python-deps: $(BIN)/.synced

$(BIN)/.synced: pyproject.toml uv.lock
	@command -v uv >/dev/null 2>&1 || python3 -m pip install --quiet "uv==$(UV_VERSION)"
	uv sync --frozen --all-extras --compile-bytecode --python $(PYTHON_VERSION)
	@touch $@

demo: setup ## Run the whole stack on this machine with embedded defaults
	$(BIN)/pricebot up

test: setup lint ## Install what the tests need and run them all
	$(BIN)/pytest tests

unit: python-deps ## Only the fast tests that need no servers
	$(BIN)/pytest tests/unit -q

lint: python-deps ## ruff format --check and ruff check
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

lint-workflows: python-deps ## actionlint and zizmor (offline) over .github/workflows
	$(BIN)/actionlint
	$(BIN)/zizmor --offline .github/workflows

format: python-deps ## Format and fix what ruff can
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: setup bench-deps ## Benchmarks; figures as JSON under benchmarks/results/
	$(BIN)/python -m benchmarks

bench-deps: ## hey, the load generator the serving benchmark drives, when missing
	@command -v hey >/dev/null 2>&1 || bash scripts/system-deps.sh hey

layers: python-deps ## Lambda layer and function zips under layers/build/
	$(BIN)/python -m layers

clean: ## Remove build outputs and local state (keeps .venv)
	rm -rf layers/build .pricebot benchmarks/results/*.json test-output
