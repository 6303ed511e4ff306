# Two commands from a fresh clone: `make demo`, then `make test`.
# The virtual environment is created once and reinstalled only when pyproject.toml changes.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
RAY_STAMP := $(VENV)/.installed-ray

.PHONY: demo test lint compare bench clean-results

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --disable-pip-version-check -q -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/vidbench run suites/smoke.yaml

# The tests also run the Ray executor: `make test` adds the [ray] extra; `make demo` does not need it.
$(RAY_STAMP): $(STAMP)
	$(BIN)/python -m pip install --disable-pip-version-check -q -e '.[dev,ray]'
	touch $(RAY_STAMP)

# The layering contracts of pyproject.toml ([tool.importlinter]) first: a broken layer fails fast. Then the tests
# on two workers (a suite run leaves about half of 2 cores idle: waits on children, I/O), then alone the tests
# marked serial (a wall-clock bound, or their own CPU load), which another test's load would break.
test: $(RAY_STAMP)
	$(BIN)/lint-imports --no-cache
	$(BIN)/python -m pytest -m 'not serial' -n 2 --dist loadfile
	$(BIN)/python -m pytest -m serial

lint: $(STAMP)
	$(BIN)/ruff check vidbench plugins tests benchmarks
	$(BIN)/ruff format --check vidbench plugins tests benchmarks
	$(BIN)/lint-imports --no-cache

compare: $(STAMP)
	$(BIN)/vidbench run suites/compare_all.yaml

clean-results:
	rm -rf results
