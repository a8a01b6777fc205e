# Two commands set everything up on a fresh machine:
#   make run    installs into .venv, then runs every shipped hunt once against the
#               embedded sandbox and writes JSONL records under out/
#   make test   installs into .venv, then runs the test suite with pytest
PYTHON ?= python3
VENV ?= .venv
STAMP := $(VENV)/.installed

.PHONY: run daemon test lint

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/hunt-runner run --once

daemon: $(STAMP)
	$(VENV)/bin/hunt-runner run

test: $(STAMP)
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check runner tests benchmarks
	$(VENV)/bin/ruff format --check runner tests benchmarks
