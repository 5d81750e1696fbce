# GeneXfer. Two commands do all set-up on a fresh machine:
#   make serve   install the service and run it on http://127.0.0.1:8000 with the demo models
#   make test    install everything, bring up PostgreSQL + Redis, run the test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip install --quiet --disable-pip-version-check
DEMO   := models/pbmc68k-encoder/1/model.json models/pbmc68k-celltype/1/model.json

.PHONY: serve test test-fast check lint format typecheck services models bench bench-gpu bench-pretrain clean

$(BIN)/python:
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "GeneXfer needs Python >= 3.11"'
	$(PYTHON) -m venv $(VENV)

# the service alone: no torch
$(VENV)/.serve: pyproject.toml | $(BIN)/python
	$(PIP) -e ".[cpu]"
	touch $@

# everything: service, training stack (torch 2.13 CPU), test and lint tools
$(VENV)/.dev: pyproject.toml | $(BIN)/python
	$(PIP) -e ".[cpu,train,dev]"
	touch $@ $(VENV)/.serve

serve: $(VENV)/.serve
	@for f in $(DEMO); do [ -f $$f ] || { echo "demo models missing: training them"; \
	  $(MAKE) --no-print-directory models; break; }; done
	$(BIN)/genexfer serve

models: $(VENV)/.dev
	$(BIN)/genexfer train demo --models-dir models

services:
	bash .ci/services.sh

test: $(VENV)/.dev services
	$(BIN)/pytest -q

# everything but the tests marked slow (training runs, real servers): minutes, for the edit loop
test-fast: $(VENV)/.dev services
	$(BIN)/pytest -q -m "not slow"

format: $(VENV)/.dev
	$(BIN)/ruff format $(CODE)

CODE := app contract training tests tools

lint: $(VENV)/.dev
	$(BIN)/ruff format --check $(CODE)
	$(BIN)/ruff check $(CODE)
	$(BIN)/lint-imports

typecheck: $(VENV)/.dev
	$(BIN)/mypy --strict app contract training tools

check: lint typecheck test

# benchmarks (not collected by pytest); results and commands in tests/perf/RESULTS.md. The peer
# servers (Triton through PyTriton, KServe) get venvs of their own under .peers/ (git-ignored)
bench: $(VENV)/.dev
	GENEXFER_PYTHON=$(BIN)/python bash tests/perf/peers/setup.sh
	$(BIN)/python -m tests.perf.bench
	$(BIN)/python -m tests.perf.bench_parsers
	$(BIN)/python tests/perf/bench_finetune.py --repeats 3
	$(BIN)/python tests/perf/bench_upload.py --repeats 3
	$(BIN)/python tests/perf/bench_read_csv.py

# the GPU run in one step (one NVIDIA GPU, ≤ 5 min): onnxruntime-gpu in .peers/gpu, then serving,
# pretraining and a fine-tuning job on it; results in tests/perf/RESULTS-gpu.md.
# `make bench-gpu DRY_RUN=1` runs the same script on the CPU, short, without its GPU parts
bench-gpu: $(VENV)/.dev
	bash tests/perf/gpu/setup.sh $(BIN)/python
	.peers/gpu/bin/python -m tests.perf.bench_gpu $(if $(DRY_RUN),--dry-run)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache data/

# streaming pretraining throughput and peak RSS (writes an 8 GB synthetic .npy under data/bench)
bench-pretrain: $(VENV)/.dev
	$(BIN)/python tests/perf/bench_pretrain.py --dir data/bench --steps 200
bench: bench-pretrain
