"""Headless execution: each notebook runs top to bottom, and the runner behaves.

The notebooks are executed as copies in a temporary folder (the repository is
never written); the kernel finds ``hw4`` through PYTHONPATH.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import psutil
import pytest
from conftest import ROOT, WITH_DEFAULT_SIGINT, XFAIL_EXECUTE, notebook_params

from nbtools import html as nbhtml
from nbtools import runner


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _notebook(tmp_path: Path, *sources: str, kernel: str = "python3", name="nb.ipynb") -> Path:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# A test notebook")])
    nb.cells += [nbformat.v4.new_code_cell(s) for s in sources]
    nb.metadata["kernelspec"] = {"name": kernel, "display_name": kernel, "language": "python"}
    path = tmp_path / name
    nbformat.write(nb, path)
    return path


@pytest.mark.parametrize("notebook", notebook_params(XFAIL_EXECUTE))
def test_notebook_runs(notebook: Path, tmp_path: Path):
    copy = tmp_path / notebook.name
    shutil.copy(notebook, copy)
    before = _sha(notebook)
    # Top to bottom, then every code cell once more in reverse order (a student re-running
    # cells out of order after a full run); the report says which of the two failed.
    ex = run_or_fail(copy, pythonpath=[ROOT], rerun_reversed=True)
    assert _sha(notebook) == before, "the repository's notebook was modified"
    counts = [c.execution_count for c in ex.nb.cells if c.cell_type == "code" and c.source.strip()]
    assert counts == list(range(1, len(counts) + 1)), "execution counts of one clean run"


def run_or_fail(path: Path, **kw) -> runner.Execution:
    """runner.run, or a test failure whose message is the report, shown once."""
    try:
        return runner.run(path, **kw)
    except runner.NotebookError as e:
        report = str(e)
    # Outside the except block: no "During handling of the above exception" and a second copy.
    pytest.fail(report, pytrace=False)


def test_a_failing_notebook_test_shows_its_report_once(tmp_path: Path):
    path = _notebook(tmp_path, "x = 1", "assert x == 2")
    with pytest.raises(pytest.fail.Exception) as err:
        run_or_fail(path)
    failure = err.value
    assert failure.__context__ is None and failure.__cause__ is None, "the report is chained"
    report = str(failure)
    assert report.startswith("nb.ipynb: cell 3 (execution count 2) failed"), report
    # A bare assert in a notebook: the report names the line that failed.
    assert "\n  AssertionError: (no message) line 1: assert x == 2\n" in report, report
    assert report.count("assert x == 2") == 3, report  # the source, the error, the traceback


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_kernel_runs_this_interpreter_whatever_the_notebook_names(tmp_path: Path):
    # A student's notebook names their own kernel; it must run on ours all the same.
    path = _notebook(
        tmp_path,
        "import os, sys\nprint(sys.executable)\nprint(sys.prefix)\nprint(os.getcwd())",
        # Processes a cell leaves running (one in the kernel's process group, one not) end
        # with the run.
        "import subprocess\nchild = subprocess.Popen(['sleep', '600'])\n"
        "orphan = subprocess.Popen(['sleep', '600'], start_new_session=True)\n"
        "print(child.pid, orphan.pid)",
        kernel="hw-venv",
    )
    before = _sha(path)
    ex = runner.run(path)
    pids = [int(p) for p in ex.nb.cells[2].outputs[0]["text"].split()]
    try:
        assert not [p for p in pids if _running(p)], "the run left processes of a cell running"
    finally:
        for pid in pids:  # the test's own processes, by their ids
            with contextlib.suppress(psutil.NoSuchProcess):
                psutil.Process(pid).kill()
    executable, prefix, cwd = ex.nb.cells[1].outputs[0]["text"].splitlines()
    assert executable == sys.executable  # the very same path, not just the same file
    assert os.path.realpath(executable) == os.path.realpath(sys.executable)
    assert prefix == sys.prefix  # same virtual environment
    assert os.path.realpath(cwd) == os.path.realpath(tmp_path)  # the notebook's folder
    assert ex.nb.metadata["kernelspec"]["name"] == "python3"
    assert _sha(path) == before, "run() without save=True must not write the notebook"


def test_failure_report(tmp_path: Path):
    path = _notebook(
        tmp_path,
        "x = 1",
        "def f():\n    return 1 / 0\n\n\nprint('before')\nf()\nmore = 1\nand_more = 2\nlast = 3",
        "print('never runs')",
    )
    before = _sha(path)
    with pytest.raises(runner.NotebookError) as err:
        runner.run(path, save=True)
    report = str(err.value)
    print(report)
    # JupyterLab's numbering: the markdown cell is cell 1.
    assert report.startswith("nb.ipynb: cell 3 (execution count 2) failed\n  source:\n")
    assert "    def f():\n        return 1 / 0" in report
    assert "... (3 more lines)" in report  # the first lines of the source only
    assert "\n  ZeroDivisionError: division by zero\n" in report
    assert "\n  traceback:\n" in report and "----> 6 f()" in report
    assert "\x1b[" not in report  # no ANSI colour codes
    assert _sha(path) == before, "a failed run must leave the notebook as it was"


def test_bad_magic_fails(tmp_path: Path):
    # IPython reports an unknown magic as a UsageError on stderr: still a failure.
    path = _notebook(tmp_path, "x = 1", "%notamagic\nprint('after')")
    with pytest.raises(runner.NotebookError) as err:
        runner.run(path)
    report = str(err.value)
    assert "cell 3 (execution count 2) failed" in report
    assert "UsageError: Line magic function `%notamagic` not found." in report


def test_cell_timeout(tmp_path: Path):
    path = _notebook(tmp_path, "import time\ntime.sleep(30)")
    with pytest.raises(runner.NotebookError) as err:
        runner.run(path, timeout=1)
    assert "nb.ipynb: cell 2 (execution count 1) timed out" in str(err.value)
    assert "CellTimeoutError: the cell ran longer than 1 s" in str(err.value)


def test_dead_kernel(tmp_path: Path):
    path = _notebook(
        tmp_path,
        "x = 1",
        "import os, sys\nprint('last words', file=sys.__stderr__, flush=True)\nos._exit(3)",
    )
    with pytest.raises(runner.NotebookError) as err:
        runner.run(path)
    report = str(err.value)
    # The kernel may die before it has announced the cell's execution count: then "-".
    assert re.search(r"cell 3 \(execution count (2|-)\) killed the kernel", report), report
    assert "DeadKernelError" in report
    assert "\n  kernel stderr:\n    last words" in report


def test_rerun_writes_identical_bytes(tmp_path: Path):
    path = _notebook(
        tmp_path,
        "import matplotlib.pyplot as plt\nimport random\nrandom.seed(0)\n"
        "print({'set': {'b', 'a', 'c'}}, random.random())",
        "plt.plot([1, 3, 2]);",
        kernel="hw-venv",
    )
    runner.run(path, save=True)
    first = path.read_bytes()
    runner.run(path, save=True)
    assert path.read_bytes() == first
    nb = nbformat.reads(first.decode(), as_version=4)
    assert nb.metadata["kernelspec"] == runner.PYTHON3_KERNELSPEC
    assert "version" not in nb.metadata["language_info"]  # not machine-specific
    assert all("execution" not in c.metadata for c in nb.cells)  # no timing metadata
    assert "image/png" in nb.cells[2].outputs[0]["data"]
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temp files left


def test_split_printouts_are_saved_as_one_stream(tmp_path: Path):
    # Each flush sends a separate stream message; how a print-out is cut into
    # messages varies from run to run, so the saved file must not depend on it.
    path = _notebook(
        tmp_path,
        "import sys\nprint('a', end='')\nsys.stdout.flush()\nprint('b')\nsys.stdout.flush()\nprint('c')",
    )
    runner.run(path, save=True)
    outputs = nbformat.read(path, as_version=4).cells[1].outputs
    assert [(o.output_type, o.name, o.text) for o in outputs] == [("stream", "stdout", "ab\nc\n")]


def test_read_malformed_json_is_one_clear_line(tmp_path: Path):
    path = tmp_path / "broken.ipynb"
    path.write_text('{"cells": [', encoding="utf-8")
    with pytest.raises(runner.NotebookError) as err:
        runner.read(path)
    assert str(err.value).startswith(
        "broken.ipynb: malformed JSON: Expecting value (line 1, column 12)"
    )
    assert "\n" not in str(err.value)


def test_saving_keeps_the_file_mode(tmp_path: Path):
    path = _notebook(tmp_path, "x = 1")
    path.chmod(0o664)
    runner.run(path, save=True)
    assert path.stat().st_mode & 0o777 == 0o664
    html = nbhtml.export_html(nbformat.read(path, as_version=4), tmp_path / "out" / "nb.html")
    assert html.stat().st_mode & 0o777 == 0o644  # a new file: readable, not private


def test_reverse_rerun_reports_the_original_cell(tmp_path: Path):
    # Cell 2 rebinds x, which cell 1 reads: fine top to bottom, fails when re-run backwards.
    path = _notebook(tmp_path, "x = 1.5\nprint(x)", "y = x.real\nx = 'text'")
    runner.run(path)  # top to bottom is fine
    with pytest.raises(runner.NotebookError) as err:
        runner.run(path, rerun_reversed=True)
    report = str(err.value)
    assert "nb.ipynb: cell 3 (execution count 3) failed when re-run in reverse order" in report, report
    assert "AttributeError" in report and "y = x.real" in report, report
    with pytest.raises(ValueError, match="cannot be saved"):
        runner.run(path, save=True, rerun_reversed=True)


# --------------------------------------------------------------------------------------
# Files it must not write, and files that are not notebooks (no kernel is started)
# --------------------------------------------------------------------------------------


def test_write_protected_notebook_is_not_run_and_not_replaced(tmp_path: Path):
    path = _notebook(tmp_path, "x = 1")
    path.chmod(0o444)  # root too: the missing write bits are the user's decision
    before = _sha(path)
    with pytest.raises(runner.NotebookError) as err:
        runner.run(path, save=True)
    assert str(err.value) == (
        "nb.ipynb: not run: it could not be saved: nb.ipynb is write-protected (no write permission)"
    )
    assert _sha(path) == before and path.stat().st_mode & 0o777 == 0o444
    with pytest.raises(PermissionError, match="write-protected"):  # HTML copies alike
        runner._replace_atomically(path, lambda f: f.write("overwritten"))
    assert _sha(path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nb.ipynb"]


def test_notebook_in_a_read_only_folder_is_not_run(tmp_path: Path):
    path = _notebook(tmp_path, "x = 1")
    tmp_path.chmod(0o555)
    try:
        with pytest.raises(runner.NotebookError, match=r"not run: .* folder .* is read-only"):
            runner.run(path, save=True)
    finally:
        tmp_path.chmod(0o755)


def _raw_notebook(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "nb.ipynb"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def _v4(*cells) -> dict:
    return {"cells": list(cells), "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


CODE = {"cell_type": "code", "id": "c2", "metadata": {}, "source": "x = 1", "outputs": [],
        "execution_count": None}  # fmt: skip
MARKDOWN = {"cell_type": "markdown", "id": "c1", "metadata": {}, "source": "# title"}


@pytest.mark.parametrize(
    "data, message",
    [
        (_v4(MARKDOWN, {**CODE, "source": 5}),
         "nb.ipynb: not a valid notebook: cell 2: 'source' is int, not text (a string or a list "
         "of strings)"),
        (_v4(MARKDOWN, {k: v for k, v in CODE.items() if k != "metadata"}),
         "nb.ipynb: not a valid notebook: cell 2 has no 'metadata' object (every cell needs one)"),
        ({"cells": [MARKDOWN], "nbformat": 4, "nbformat_minor": 5},
         "nb.ipynb: not a valid notebook: the notebook has no 'metadata' object"),
        ({"metadata": {}, "nbformat": 3, "nbformat_minor": 0, "worksheets": [{"cells": []}]},
         "nb.ipynb: nbformat 3 notebook, not version 4: convert it: jupyter nbconvert --to "
         "notebook --nbformat 4 --inplace nb.ipynb"),
        (_v4(MARKDOWN, {**CODE, "outputs": [{"output_type": "stream"}]}),
         "nb.ipynb: not a valid notebook: cell 2: outputs/0: 'name' is a required property"),
    ],
    ids=["int-source", "no-cell-metadata", "no-notebook-metadata", "nbformat-3", "bad-output"],
)  # fmt: skip
def test_malformed_notebook_is_one_line_naming_the_cell(tmp_path: Path, data, message):
    path = _raw_notebook(tmp_path, data)
    with pytest.raises(runner.NotebookError) as err:
        runner.run(path, save=True)
    assert str(err.value) == message


SIGNAL_TO_THE_WORKER = """\
import pathlib, signal, sys, threading, time
sys.path.insert(0, sys.argv[3])
from nbtools import runner

def poke():  # the signal goes to the worker thread, as the OS may choose to do
    while not pathlib.Path(sys.argv[2]).exists():
        time.sleep(0.05)
    worker = next(t for t in threading.enumerate() if t.name == "nbtools-kernel")
    signal.pthread_kill(worker.ident, signal.SIGINT)

threading.Thread(target=poke, daemon=True).start()
try:
    with runner.interruptible():
        runner.run(sys.argv[1])
except runner.Interrupted as e:
    print("interrupted", e.signum)
"""


def test_a_signal_delivered_to_another_thread_still_interrupts(tmp_path: Path):
    """A process-directed signal may land on any thread that does not block it; with an
    untimed join, the main thread slept until the cell (600 s) ended."""
    started = tmp_path / "started"
    cell = f"import pathlib, time\npathlib.Path({str(started)!r}).touch()\ntime.sleep(600)"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(cell)]),
                   tmp_path / "sleep.ipynb")  # fmt: skip
    script = tmp_path / "poke.py"
    script.write_text(SIGNAL_TO_THE_WORKER)
    proc = subprocess.run(
        [*WITH_DEFAULT_SIGINT, str(script), str(tmp_path / "sleep.ipynb"), str(started), str(ROOT)],
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.stdout.split() == ["interrupted", "2"], proc.stderr[-2000:]
