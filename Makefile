# Quick start: `make demo` (end to end on built-in demo data) and `make test` (whole suite).
# Both create ./.venv on first use; torch is pinned to the local CPU wheel before the rest.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DEMO_DATA ?= demo_data
DEMO_OUT  ?= demo_out

.PHONY: setup test demo bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q tests

demo: $(STAMP)
	$(VENV)/bin/synth-dataset $(DEMO_DATA) --n-train 16 --n-valid 8 --n-test 8 --seed 0


bench: $(STAMP)
	$(PY) benchmarks/bench_data.py

clean:
	rm -rf $(VENV) $(DEMO_DATA) $(DEMO_OUT) .pytest_cache
