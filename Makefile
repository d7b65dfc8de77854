# Quick start: `make demo` (end to end on built-in demo data), `make test` (whole suite), `make lint`.
# Each creates ./.venv on first use; torch is pinned to the local CPU wheel before the rest.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# A real Triton server for the serving tests (PyTriton pins numpy<2, so it gets its own venv).
TRITON_VENV  ?= .venv-pytriton
TRITON_STAMP := $(TRITON_VENV)/.installed
DEMO_DATA ?= demo_data
DEMO_OUT  ?= demo_out

.PHONY: setup test lint format demo bench fuzz clean report-check

setup: $(STAMP) $(TRITON_STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

$(TRITON_STAMP): pyproject.toml
	$(PYTHON) -m venv $(TRITON_VENV)
	$(TRITON_VENV)/bin/python -m pip install --quiet -e '.[pytriton]'
	touch $(TRITON_STAMP)

test: $(STAMP) $(TRITON_STAMP)
	$(PY) -m pytest -q tests

# Lint rules, formatting and types (settings in pyproject.toml): what CI runs before the tests.
# `ruff format` wraps at [tool.ruff] line-length (120); `make format` fixes what the check reports.
lint: $(STAMP)
	@# no merge-conflict markers left in any tracked file (docs included: ruff does not read them)
	@! git grep -nE '^(<<<<<<< |>>>>>>> )' -- . ':!Makefile' || { echo "lint: merge-conflict markers above"; exit 1; }
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# Long fuzzing of the readers, to_chw and Segmenter.run (docs/reliability.md): FUZZ_RUNS inputs per
# target with atheris (installed here; falls back to hypothesis where it does not install).
FUZZ_RUNS ?= 10000
fuzz: $(STAMP)
	$(PY) -m pip install --quiet -e '.[fuzz]' || echo "atheris did not install: tests/fuzz/run.py uses hypothesis"
	$(PY) tests/fuzz/run.py --runs $(FUZZ_RUNS)

# Rewrites files: import order and fixable lint first, then the formatter.
format: $(STAMP)
	$(VENV)/bin/ruff check --fix --select I .
	$(VENV)/bin/ruff format .

# End to end on built-in demo data: data -> train (width 16, short budget) -> build model.onnx
# (verified against PyTorch) -> SDK on the test strips -> metrics vs the double-detection baseline.
demo: $(STAMP)
	$(VENV)/bin/synth-dataset $(DEMO_DATA) --n-train 64 --n-valid 24 --n-test 24 --seed 0
	$(VENV)/bin/train-model --training_dataset_path $(DEMO_DATA) --checkpoint_path $(DEMO_OUT)/checkpoints \
		--width 16 --epochs 10 --seed 0
	$(VENV)/bin/build-model $(DEMO_OUT)/checkpoints/best.pt -o $(DEMO_OUT)/model.onnx --verify-data $(DEMO_DATA)
	$(VENV)/bin/bgsdk inspect $(DEMO_OUT)/model.onnx
	$(VENV)/bin/bgsdk run $(DEMO_OUT)/model.onnx $(DEMO_DATA)/test/good $(DEMO_DATA)/test/bright_spots \
		--out $(DEMO_OUT)/heatmaps --png
	$(VENV)/bin/score-heatmaps $(DEMO_DATA) $(DEMO_OUT)/heatmaps --split test --figures $(DEMO_OUT)/figures \
		--json-out $(DEMO_OUT)/test_metrics.json
	$(VENV)/bin/bgsdk evaluate $(DEMO_OUT)/model.onnx $(DEMO_DATA) --json $(DEMO_OUT)/evaluation.json \
		--html $(DEMO_OUT)/report.html
	@echo "report: $(abspath $(DEMO_OUT))/report.html"

# Installs Debian's chromium (root or sudo) if missing, then renders an evaluation report in it.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
report-check: $(STAMP)
	command -v chromium >/dev/null 2>&1 || { $(SUDO) apt-get update && $(SUDO) apt-get install -y chromium; }
	$(PY) -m pytest -q -rs tests/sdk/evaluate/test_report_render.py

# Quick benchmarks only; bench_build.py, bench_int8.py and bench_cpp.py take several minutes each.
bench: $(STAMP)
	$(PY) benchmarks/bench_data.py
	$(PY) benchmarks/bench_sdk.py

clean:
	rm -rf $(VENV) $(TRITON_VENV) $(DEMO_DATA) $(DEMO_OUT) .pytest_cache
