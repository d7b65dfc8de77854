# Quick start: `make demo` (the shipped model on built-in demo data; `make demo-train` trains one), `make test` (whole suite), `make test-quick`
# (no C++ build, no Triton server, no slow tests), `make lint`.
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

.PHONY: setup test test-quick lint format demo demo-train release-model bench fuzz clean report-check

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

# The edit-test loop: everything but the `slow`, `cpp` (C++ build) and `triton` (real Triton server) tests
# (markers in pyproject.toml, applied in tests/conftest.py). CI still runs `make test`.
test-quick: $(STAMP)
	$(PY) -m pytest -q tests -m "not slow and not cpp and not triton"

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

# The demo's training, also the shipped model's (release-model): 64 synthetic strips (seed 0), width 16,
# 6 epochs (default options otherwise; 14-20 minutes of training alone on 2 CPU cores with AMX).
# benchmarks/model_card.py reads these two lines.
DEMO_SYNTH := --n-train 64 --n-valid 24 --n-test 24 --seed 0
DEMO_TRAIN := --width 16 --epochs 6 --seed 0

# End to end on built-in demo data: data -> train -> build model.onnx (verified against PyTorch, operating
# point calibrated on the valid split) -> SDK on the test strips -> metrics vs the double-detection baseline
# (evaluation.json, report.html, 7-panel figures).
demo-train: $(STAMP)
	$(VENV)/bin/bgsdk synth $(DEMO_DATA) $(DEMO_SYNTH)
	$(VENV)/bin/bgsdk train $(DEMO_DATA) -o $(DEMO_OUT)/checkpoints $(DEMO_TRAIN)
	$(VENV)/bin/bgsdk build $(DEMO_OUT)/checkpoints/best.pt -o $(DEMO_OUT)/model.onnx --data $(DEMO_DATA)
	$(VENV)/bin/bgsdk inspect $(DEMO_OUT)/model.onnx
	$(VENV)/bin/bgsdk run $(DEMO_OUT)/model.onnx $(DEMO_DATA)/test/good $(DEMO_DATA)/test/bright_spots \
		-o $(DEMO_OUT)/heatmaps --png --exist-ok
	$(VENV)/bin/bgsdk evaluate $(DEMO_DATA) -m $(DEMO_OUT)/model.onnx -o $(DEMO_OUT)/evaluation --figures
	@echo "report: $(abspath $(DEMO_OUT))/evaluation/report.html"

# The shipped model on built-in demo data, no training: demo strips (the held-out test split of the data the
# shipped model was trained on) -> the model in sdk/bgsdk/models/ -> run -> evaluate next to double detection
# -> HTML report.
demo: $(STAMP)
	$(VENV)/bin/bgsdk synth $(DEMO_DATA) $(DEMO_SYNTH)
	$(VENV)/bin/bgsdk inspect
	$(VENV)/bin/bgsdk run $(DEMO_DATA)/test/good $(DEMO_DATA)/test/bright_spots -o $(DEMO_OUT)/run --png --exist-ok
	$(VENV)/bin/bgsdk evaluate $(DEMO_DATA) -o $(DEMO_OUT)/evaluation --figures
	@echo "report: $(abspath $(DEMO_OUT))/evaluation/report.html"

# The shipped default model (sdk/bgsdk/models/default.onnx + its model.json), reproducibly: demo-train's data
# and training, built INT8 and verified; its metadata records the recipe, the source commit and the data
# set's seed. docs/model-card.md has its numbers.
RELEASE_DATA ?= release_data
RELEASE_OUT  ?= release_out
release-model: $(STAMP)
	$(VENV)/bin/bgsdk synth $(RELEASE_DATA) $(DEMO_SYNTH)
	$(VENV)/bin/bgsdk train $(RELEASE_DATA) -o $(RELEASE_OUT) $(DEMO_TRAIN)
	$(VENV)/bin/bgsdk build $(RELEASE_OUT)/best.pt -o sdk/bgsdk/models/default.onnx --data $(RELEASE_DATA) --quantize
	$(VENV)/bin/bgsdk inspect sdk/bgsdk/models/default.onnx

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
	rm -rf $(VENV) $(TRITON_VENV) $(DEMO_DATA) $(DEMO_OUT) $(RELEASE_DATA) $(RELEASE_OUT) .pytest_cache
