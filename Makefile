# Two commands from a fresh clone: `make demo`, then `make test`.
# The virtual environment is created once and reinstalled only when pyproject.toml changes.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint compare bench clean-results

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --disable-pip-version-check -q -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/vidbench run suites/smoke.yaml

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check vidbench plugins tests benchmarks
	$(BIN)/ruff format --check vidbench plugins tests benchmarks

compare: $(STAMP)
	$(BIN)/vidbench run suites/compare_all.yaml

clean-results:
	rm -rf results
