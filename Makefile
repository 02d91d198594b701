# Set-up is automatic: `make run` and `make test` create .venv from the pinned
# requirements.txt on first use (and again whenever requirements.txt changes).
#   make run        execute both notebooks headless, save outputs, HTML copies in html/
#   make test       ruff + pytest (the notebooks run in temporary copies)
#   make check      static check of the notebooks' answers
#   make benchmark  notebook time/memory vs. floor (table for the README)
#   make clean      remove .venv, html/ and caches

SHELL := /bin/bash
# Python 3.11 to create .venv with: python3.11, else python3 if it is 3.11.
PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3 2>/dev/null)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: all run test lint check benchmark clean
all: test

run: $(STAMP)
	$(PY) main.py run-nb --html html

# Both always run (a lint error does not hide test results); fails if either fails.
test: $(STAMP)
	@status=0; \
	echo "$(PY) -m ruff check ."; $(PY) -m ruff check . || status=1; \
	echo "$(PY) -m pytest"; $(PY) -m pytest || status=$$?; \
	exit $$status

lint: $(STAMP)
	$(PY) -m ruff check .

check: $(STAMP)
	$(PY) main.py check

benchmark: $(STAMP)
	$(PY) benchmarks/notebooks.py

$(STAMP): requirements.txt
	@if [ -z "$(PYTHON)" ] || ! command -v "$(PYTHON)" >/dev/null; then \
	  echo "error: Python 3.11 not found (PYTHON=$(PYTHON)). Install it, or name one: make PYTHON=/path/to/python3.11 $(MAKECMDGOALS)" >&2; exit 1; fi
	@if ! "$(PYTHON)" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then \
	  echo "error: $(PYTHON) is Python $$("$(PYTHON)" -c 'import platform; print(platform.python_version())'), this project needs 3.11: make PYTHON=/path/to/python3.11 $(MAKECMDGOALS)" >&2; exit 1; fi
	@if ! $(PY) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then \
	  echo "Creating $(VENV) with $(PYTHON)"; rm -rf $(VENV); "$(PYTHON)" -m venv $(VENV); fi
	$(PY) -m pip install --disable-pip-version-check -r requirements.txt
	@touch $@

clean:
	rm -rf $(VENV) html .pytest_cache .ruff_cache .hypothesis
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
