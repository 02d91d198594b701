"""Shared test set-up, and THE place for known failures of the notebooks.

Each dict maps a notebook stem to the reason it is expected to fail. The marks
are strict: once a notebook passes, its entry makes the suite fail, so delete
the entry (one line) when the issue named in the reason is done.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from torch import nn

from nbtools import questions  # importable: pyproject.toml sets pytest's pythonpath

ROOT = Path(__file__).resolve().parent.parent

# A suite started in the background by a non-interactive shell (`make test &` in a script)
# inherits SIGINT ignored, and so does every command it runs: `main.py` then rightly keeps
# ignoring Ctrl-C, as under nohup. Tests that send SIGINT start their command with this
# prefix, which restores the default that a terminal's foreground job has, then execs.
WITH_DEFAULT_SIGINT = (
    sys.executable,
    "-c",
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
    "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])",
)

# tests/test_notebooks.py: executing the notebook top to bottom, then every code cell again in
# reverse order, fails.
XFAIL_EXECUTE: dict[str, str] = {}

# tests/test_check.py: `python main.py check` finds problems in the notebook.
XFAIL_CHECK: dict[str, str] = {}

# tests/test_budget.py: the notebook exceeds a length budget of nbtools/budget.py.
XFAIL_BUDGET: dict[str, str] = {}

# tests/test_browser.py (committed notebooks only; not for $HW4_BROWSER_NOTEBOOKS): opened
# untrusted in JupyterLab, the notebook shows a MathJax error or a hidden figure ...
XFAIL_BROWSER: dict[str, str] = {}
# ... and its HTML copy, opened offline, a formula that does not typeset.
XFAIL_HTML: dict[str, str] = {}

NOTEBOOK_STEMS = questions.available()


def notebook_params(xfail: dict[str, str]) -> list:
    """One pytest.param per notebook (id: its stem, so `-k Part3` works)."""
    unknown = set(xfail) - set(NOTEBOOK_STEMS)
    assert not unknown, f"xfail entries for unknown notebooks: {sorted(unknown)}"
    return [
        pytest.param(
            ROOT / f"{stem}.ipynb",
            id=stem,
            marks=[pytest.mark.xfail(reason=xfail[stem], strict=True)] if stem in xfail else [],
        )
        for stem in NOTEBOOK_STEMS
    ]


def notebook_cnn() -> nn.Sequential:
    """The CNN of the CNNs 3 question's given cell (both notebooks), freshly initialised."""
    return nn.Sequential(
        nn.Conv2d(3, 4, kernel_size=3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(4, 16, kernel_size=5, stride=2, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, kernel_size=7, dilation=2, padding=3), nn.ReLU(),
    )  # fmt: skip


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "slow: executes the real notebooks, ~10 s (deselect with -m 'not slow')"
    )
