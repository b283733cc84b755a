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

# The integration tier needs real servers (Debian packages): installed here when missing, never skipped.
# $(call need,COMMAND,PACKAGE): fail saying what to install when the command is missing and cannot be installed.
need = command -v $(1) >/dev/null || { S=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	{ $$S apt-get update -qq && $$S apt-get install -y -qq $(2); } >/dev/null && command -v $(1) >/dev/null; } || \
	{ echo "$(1) is missing and could not be installed: apt-get install -y $(2)"; exit 1; }

test-integration: setup
	@$(call need,redis-server,redis-server)
	@$(call need,prometheus,prometheus)
	@$(call need,chromium,chromium)
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
