# One entry point for every check; CI runs `make test` through .ci/run.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install wheelhouse test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

install: $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"

# Wheels of the runtime dependencies (and pytest, for the downstream example), so that
# tests can install the built promptlib wheel into fresh virtual environments without a
# network (pip install --no-index).
wheelhouse: install
	$(BIN)/python -m pip wheel --quiet --wheel-dir .wheelhouse . pytest
	rm -f .wheelhouse/promptlib-*.whl

lint: install
	$(BIN)/ruff check src tests bench evals examples
	$(BIN)/ruff format --check src tests bench evals examples
	$(BIN)/mypy

test: wheelhouse
	$(BIN)/python -m pytest
	@if [ -f test-artifacts/report.png ]; then echo "HTML report screenshot: test-artifacts/report.png"; fi
	$(MAKE) --no-print-directory lint

bench: install
	for script in bench/bench_*.py; do $(BIN)/python $$script || exit 1; done

clean:
	rm -rf .wheelhouse dist build .pytest_cache .mypy_cache .ruff_cache test-artifacts
