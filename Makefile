# Set-up is automatic: `make run` and `make test` create .venv from the lock,
# requirements.txt, on first use (and again, from scratch, whenever the lock changes).
#   make run        execute both notebooks headless, save outputs, HTML copies in html/
#   make test       ruff + pytest (the notebooks run in temporary copies)
#   make check      static check of the notebooks' answers
#   make benchmark  notebook time/memory vs. floor (table for the README)
#   make lock       re-lock requirements.in -> requirements.txt (+ environment.yml)
#   make clean      remove .venv, html/, caches, checkpoints and submission zips

SHELL := /bin/bash
# Python 3.11 to create .venv with: python3.11, else python3 if it is 3.11.
PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3 2>/dev/null)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
LOCK_VENV := .venv-lock
PIP_TOOLS := pip-tools==7.6.2
# pytest-xdist: one worker per core (pytest itself runs without it, too); --dist loadscope
# keeps each module on one worker, so the browser tests share one JupyterLab and one browser
# (xdist 3.8's loadgroup groups nothing under pytest 9).
PYTEST_ARGS ?= -n auto --dist loadscope

.PHONY: all run test lint check benchmark lock clean python-3.11
all: test

run: $(STAMP)
	$(PY) main.py run-nb --html html

# Both always run (a lint error does not hide test results); fails if either fails.
test: $(STAMP)
	@status=0; \
	echo "$(PY) -m ruff check ."; $(PY) -m ruff check . || status=1; \
	echo "$(PY) -m pytest $(PYTEST_ARGS)"; $(PY) -m pytest $(PYTEST_ARGS) || status=$$?; \
	exit $$status

lint: $(STAMP)
	$(PY) -m ruff check .

check: $(STAMP)
	$(PY) main.py check

benchmark: $(STAMP)
	$(PY) benchmarks/notebooks.py

python-3.11:
	@if [ -z "$(PYTHON)" ] || ! command -v "$(PYTHON)" >/dev/null; then \
	  echo "error: Python 3.11 not found (PYTHON=$(PYTHON)). Install it, or name one: make PYTHON=/path/to/python3.11 $(MAKECMDGOALS)" >&2; exit 1; fi
	@if ! "$(PYTHON)" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then \
	  echo "error: $(PYTHON) is Python $$("$(PYTHON)" -c 'import platform; print(platform.python_version())'), this project needs 3.11: make PYTHON=/path/to/python3.11 $(MAKECMDGOALS)" >&2; exit 1; fi

# From scratch: a package dropped from the lock must not stay behind. --no-deps: exactly
# the lock, nothing resolved at install time; `pip check` proves the lock is complete.
$(STAMP): requirements.txt
	@$(MAKE) --no-print-directory python-3.11
	@echo "Creating $(VENV) with $(PYTHON) from requirements.txt (about a minute)"
	rm -rf $(VENV)
	"$(PYTHON)" -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -r requirements.txt
	$(PY) -m pip check --disable-pip-version-check
	@touch $@

lock: python-3.11
	@test -x $(LOCK_VENV)/bin/python || "$(PYTHON)" -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/python -m pip install --quiet --disable-pip-version-check $(PIP_TOOLS)
	$(LOCK_VENV)/bin/python tools/lock.py

clean:
	rm -rf $(VENV) $(LOCK_VENV) html .pytest_cache .ruff_cache .hypothesis
	rm -f hw4-*.zip hw4-*.zip.part
	find . -path ./.git -prune -o \( -name __pycache__ -o -name .ipynb_checkpoints \) -type d -prune -exec rm -rf {} +
