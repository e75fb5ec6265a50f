# The two commands a newcomer needs: `make demo` and `make test`. Both set everything up first.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3

.PHONY: install services browser demo test lint format up down bench bench-e2e bench-scorers bench-bulk compose-check train calibrate screenshots clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -m venv $(VENV) 2>/dev/null || { apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null && $(PYTHON) -m venv $(VENV); }
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[dev]'
	@touch $@

services:
	@bash scripts/services.sh

browser:
	@bash scripts/browser.sh

demo: install services
	$(PY) -m scripts.demo

test: install services browser
	$(VENV)/bin/pytest -q

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy shared gateway scorer uploader scheduler sandbox

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

up: install services
	@bash scripts/stack.sh up

down:
	@bash scripts/stack.sh down

screenshots: install services browser
	$(PY) -m scripts.screenshots

bench: install
	$(PY) bench/scoring.py

# README "Performance": each needs PostgreSQL and RabbitMQ (make services) and starts its own processes
bench-e2e: install services
	$(PY) bench/e2e.py

bench-scorers: install services
	$(PY) bench/scorers.py

bench-bulk: install services
	$(PY) bench/bulk.py

# docker-compose.yml resolved by Compose v2 (`docker compose config`, fetched from Debian if absent)
compose-check: install
	@bash scripts/compose_check.sh

# `make train` rebuilds models/ (deterministic). With LABELS=labels.tsv LOGS_DIR=dir it then re-chooses the
# thresholds in models/ for that counter (see `make calibrate`).
train: install
	$(PY) models/train.py
ifdef LABELS
	$(MAKE) calibrate OUT=models
endif

# Re-choose the thresholds from labelled visits: LABELS=labels.tsv (visitID<TAB>level) LOGS_DIR=dir of
# visits*.tsv/hits*.tsv [TARGET_PRECISION=0.9] [OUT=models_calibrated]
OUT ?= models_calibrated
TARGET_PRECISION ?= 0.9
calibrate: install
	@test -n "$(LABELS)" -a -n "$(LOGS_DIR)" || { echo "usage: make calibrate LABELS=labels.tsv LOGS_DIR=dir [TARGET_PRECISION=0.9] [OUT=dir]"; exit 2; }
	$(PY) -m scorer.cli calibrate --logs-dir "$(LOGS_DIR)" --labels "$(LABELS)" --models-dir models --target-precision $(TARGET_PRECISION) --out "$(OUT)"

clean:
	rm -rf .run .pytest_cache .mypy_cache .ruff_cache
