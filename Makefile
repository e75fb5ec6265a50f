# The two commands a newcomer needs: `make demo` and `make test`. Both set everything up first.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3

.PHONY: install services browser demo test lint format up down bench train screenshots clean

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
	$(VENV)/bin/mypy shared gateway scorer uploader sandbox

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

train: install
	$(PY) models/train.py

clean:
	rm -rf .run .pytest_cache .mypy_cache .ruff_cache
