# Every command creates or reuses the virtualenv .venv inside the repo, installed from constraints.txt.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# Offline and no usage telemetry, for everything make runs.
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_HUB_DISABLE_TELEMETRY := 1
export GX_ANALYTICS_ENABLED := false
export BENTOML_DO_NOT_TRACK := true
export DO_NOT_TRACK := 1
export FEAST_USAGE := False
export TOKENIZERS_PARALLELISM := false

.PHONY: setup demo test test-integration test-slow lint format check clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# torch first, from the pinned CPU build; PIP_CONSTRAINT also reaches sdist build environments.
	PIP_CONSTRAINT=constraints.txt $(BIN)/python -m pip install -q torch==2.13.0
	PIP_CONSTRAINT=constraints.txt $(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

## The main job: the whole local pipeline on the bundled (synthetic, seeded) demo dataset.
demo: setup
	$(BIN)/hllm run --out runs/demo

## Lint + the default test tier (what CI runs).
test: setup lint
	$(BIN)/python -m pytest

# The replica tests need a real redis-server (Debian package); installed here if missing, never skipped.
test-integration: setup
	command -v redis-server >/dev/null || { S=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$S apt-get update && $$S apt-get install -y redis-server; } || \
		{ echo "redis-server is missing and could not be installed: apt-get install -y redis-server"; exit 1; }
	command -v prometheus >/dev/null || (apt-get update && apt-get install -y prometheus)
	command -v chromium >/dev/null || (apt-get update && apt-get install -y chromium)
	$(BIN)/python -m pytest -m integration

test-slow: setup
	$(BIN)/python -m pytest -m slow

lint: setup
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

check: test test-integration

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
