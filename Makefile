# callbridge: the two commands a newcomer types (docs/contract.md).
#   make run   - create .venv, install, start the server (simulated model without OPENAI_API_KEY)
#                with the demo agent agents/demo.toml (CALLBRIDGE_AGENT=FILE to choose another)
#   make test  - create .venv if needed, install with dev extras, run the whole suite (4 processes)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test lint bench clean

$(BIN)/python:
	@echo ">> creating $(VENV) with $$($(PYTHON) --version)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	@echo ">> installing callbridge into $(VENV)"
	$(BIN)/pip install --quiet --progress-bar off -e .
	@touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	@echo ">> installing callbridge with dev extras into $(VENV)"
	$(BIN)/pip install --quiet --progress-bar off -e '.[dev]'
	@touch $(VENV)/.installed $@

CALLBRIDGE_AGENT ?= agents/demo.toml
# Test processes (pytest-xdist). Most integration tests wait on real-time pacing (20 ms frames, timers),
# not on the CPU, so 4 processes finish the suite in about half the time even on 2 cores. TEST_WORKERS=0
# runs everything in this process.
TEST_WORKERS ?= 4

run: $(VENV)/.installed
	$(BIN)/callbridge serve --agent $(CALLBRIDGE_AGENT)

test: $(VENV)/.installed-dev
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist worksteal $(PYTEST_ARGS)

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: $(VENV)/.installed-dev
	$(BIN)/python benchmarks/bridge.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
