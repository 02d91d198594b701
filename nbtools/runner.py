"""Headless notebook execution, shared by ``main.py`` and the tests.

One entry point, :func:`run`, executes a notebook top to bottom with nbconvert's
``ExecutePreprocessor`` and returns an :class:`Execution` (the executed notebook,
the wall time, per-cell times). What it guarantees:

- the kernel is a fresh ``python3`` kernel of *this* interpreter
  (``sys.executable``), whatever kernel the notebook's metadata names (a
  student's ``hw-venv`` kernel runs here too) and whatever ``python3`` kernelspec
  is installed elsewhere on the machine;
- the working directory is the notebook's folder (so ``import hw4`` works), and
  extra import paths can be given (the tests run a copy in a temporary folder);
- every cell has a timeout (:data:`CELL_TIMEOUT` unless given), and so has kernel start-up;
- a failing cell, including one that fails through an IPython ``UsageError``
  (a bad ``%magic``), raises :class:`NotebookError` whose message is the failure
  report (notebook, cell number as in JupyterLab, execution count, source,
  ``ename: evalue``, traceback without ANSI colours);
- a file that is not a version-4 notebook, or an invalid one, is a one-line
  :class:`NotebookError` that names the cell;
- the source file is written only with ``save=True``, only on success, only if it
  and its folder may be written (a file without write bits is never replaced, not
  even by root), and atomically; the saved file carries no timing metadata and no
  interpreter patch version, so executing an unchanged (seeded) notebook again
  writes the same bytes;
- nothing is left behind: when the run ends, however it ends (an error, Ctrl-C,
  SIGTERM, SIGHUP), the kernel and every process it started are ended and the
  kernel's files (connection file with its key, stderr log) are removed. SIGTERM
  and SIGHUP raise :class:`Interrupted` (a ``KeyboardInterrupt``) during a run.

Cells are numbered as JupyterLab's status bar numbers them: all cells, from 1; a
code cell's execution count is shown beside its number (:func:`cell_label`).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import errno
import json
import os
import re
import resource
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import psutil
from jupyter_client.kernelspec import KernelSpec
from jupyter_client.manager import AsyncKernelManager
from nbclient.exceptions import (
    CellControlSignal,
    CellExecutionError,
    CellTimeoutError,
    DeadKernelError,
)
from nbconvert.preprocessors import CoalesceStreamsPreprocessor, ExecutePreprocessor

CELL_TIMEOUT = 300  # seconds per cell (nbclient's default is no limit at all)
STARTUP_TIMEOUT = 60  # seconds for the kernel to start and answer
SOURCE_LINES = 6  # lines of a failing cell's source shown in the report
RERUN_KEY = "nbtools_rerun_of"  # metadata of a cell copy run by run(rerun_reversed=True)
SIGNAL_POLL = 0.1  # seconds: how soon a signal to another thread is handled
END_GRACE = 1.0  # seconds between SIGTERM and SIGKILL when ending the kernel's processes

PYTHON3_KERNELSPEC = {
    "display_name": "Python 3 (ipykernel)",
    "language": "python",
    "name": "python3",
}

# Kernel environment: reproducible hashing, inline figures, no debugger chatter.
KERNEL_ENV = {
    "PYTHONHASHSEED": "0",
    "MPLBACKEND": "module://matplotlib_inline.backend_inline",
    "PYDEVD_DISABLE_FILE_VALIDATION": "1",
}

_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
# Kernel stderr lines that are noise, not diagnosis.
_KERNEL_NOISE = re.compile(r"Kernel is running over TCP without encryption|^\s*$")
_CELL_TYPES = ("code", "markdown", "raw")
# IPython's traceback marks the failing line: "----> 3 assert x == 2".
_ARROW = re.compile(r"^-+> *(\d+) (.*)$", re.M)


class NotebookError(Exception):
    """A notebook could not be read, executed or saved; ``str(err)`` is the report."""


def strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)


@dataclass
class CellTime:
    number: int  # 1-based position among all cells (JupyterLab's numbering)
    execution_count: int | None
    seconds: float
    first_line: str

    @property
    def label(self) -> str:
        return _label(self.number, "code", self.execution_count)


@dataclass
class Execution:
    path: Path
    nb: nbformat.NotebookNode
    seconds: float
    cells: list[CellTime] = field(default_factory=list)
    saved_bytes: int | None = None  # size of the file written by save=True

    def slowest(self, n: int = 3) -> list[CellTime]:
        return sorted(self.cells, key=lambda c: c.seconds, reverse=True)[:n]


def _label(number: int, cell_type: str | None, count) -> str:
    if cell_type != "code":
        return f"cell {number}"
    return f"cell {number} (execution count {count if count is not None else '-'})"


def cell_label(nb, index: int) -> str:
    """``"cell 7 (execution count 3)"``: JupyterLab's number of ``nb.cells[index]`` (all cells
    from 1) and, for a code cell, its execution count (``-`` if it has none)."""
    cell = nb["cells"][index]
    return _label(index + 1, cell.get("cell_type"), cell.get("execution_count"))


# --------------------------------------------------------------------------------------
# Reading and writing
# --------------------------------------------------------------------------------------


def read(path: str | os.PathLike) -> nbformat.NotebookNode:
    """Read a version-4 notebook; a clear one-line NotebookError if it is not one."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise NotebookError(f"{path.name}: cannot read: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise NotebookError(f"{path.name}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise NotebookError(
            f"{path.name}: malformed JSON: {e.msg} (line {e.lineno}, column {e.colno})"
        ) from None
    problem = structure_problem(data, path.name)
    if problem:
        raise NotebookError(f"{path.name}: {problem}")
    try:
        nb = nbformat.reads(text, as_version=4)
    except Exception as e:  # nbformat's NBFormatError, ValidationError, KeyError, ...
        raise NotebookError(f"{path.name}: not a valid notebook: {_one_line(e)}") from None
    problem = validation_problem(nb)
    if problem:
        raise NotebookError(f"{path.name}: {problem}")
    return nb


def structure_problem(data, name: str = "the notebook") -> str | None:
    """What makes parsed JSON ``data`` unreadable as a version-4 notebook (None: nothing).

    Checked before nbformat sees it, so that the message names the cell and the field.
    """
    if not isinstance(data, dict) or "cells" not in data and "worksheets" not in data:
        return "not a notebook: no 'cells' and 'nbformat' keys"
    version = data.get("nbformat")
    if not isinstance(version, int):
        return "not a notebook: no 'nbformat' version number"
    if version != 4:
        hint = (
            f"convert it: jupyter nbconvert --to notebook --nbformat 4 --inplace {name}"
            if version < 4
            else "this tool reads version 4"
        )
        return f"nbformat {version} notebook, not version 4: {hint}"
    if not isinstance(data.get("metadata"), dict):
        return "not a valid notebook: the notebook has no 'metadata' object"
    cells = data["cells"]
    if not isinstance(cells, list):
        return "not a valid notebook: 'cells' is not a list"
    for i, cell in enumerate(cells, start=1):
        if not isinstance(cell, dict):
            return f"not a valid notebook: cell {i} is not an object"
        kind = cell.get("cell_type")
        if kind not in _CELL_TYPES:
            return f"not a valid notebook: cell {i} has cell_type {kind!r} (code, markdown or raw)"
        if not isinstance(cell.get("metadata"), dict):
            return f"not a valid notebook: cell {i} has no 'metadata' object (every cell needs one)"
        source = cell.get("source")
        if not (
            isinstance(source, str)
            or isinstance(source, list)
            and all(isinstance(s, str) for s in source)
        ):
            return (
                f"not a valid notebook: cell {i}: 'source' is {type(source).__name__}, "
                "not text (a string or a list of strings)"
            )
    return None


def validation_problem(nb) -> str | None:
    """nbformat's schema check of ``nb``, one line naming the cell (None: valid)."""
    try:
        nbformat.validate(nb)
    except nbformat.ValidationError as e:
        where = list(getattr(e, "absolute_path", []) or [])
        prefix = ""
        if len(where) >= 2 and where[0] == "cells" and isinstance(where[1], int):
            prefix = f"cell {where[1] + 1}: "
            where = where[2:]
        if where:
            prefix += "/".join(str(w) for w in where) + ": "
        return f"not a valid notebook: {prefix}{_one_line(e, 120)}"
    except Exception as e:  # a structure nbformat cannot even validate
        return f"not a valid notebook: {_one_line(e, 120)}"
    return None


def _one_line(e: BaseException, n: int = 150) -> str:
    lines = strip_ansi(str(getattr(e, "message", None) or e)).strip().splitlines()
    line = lines[0] if lines else type(e).__name__
    return line if len(line) <= n else line[: n - 3] + "..."


def unwritable(path: str | os.PathLike) -> str | None:
    """Why ``path`` must not be (re)written, or None.

    A file without any write bit (``chmod a-w``) is write-protected, and a folder
    without any write bit is read-only, for root too (root's permission to ignore
    the bits is no reason to overwrite what a user protected).
    """
    path = Path(path)
    folder = path.parent
    if path.is_dir():
        return f"{path} is a folder"
    if path.exists():
        mode = path.stat().st_mode
        if not mode & 0o222:
            return f"{path.name} is write-protected (no write permission)"
        if not os.access(path, os.W_OK):
            return f"no permission to write {path.name}"
    if not folder.exists():
        return f"folder {folder} does not exist"
    if not folder.is_dir():
        return f"{folder} is not a folder"
    if not folder.stat().st_mode & 0o222 or not os.access(folder, os.W_OK | os.X_OK):
        return f"folder {folder} is read-only"
    return None


def _replace_atomically(path: Path, write_to) -> None:
    """Call write_to(text file) on a temp file beside path, then move it over path.

    A crash never leaves a half-written file behind, concurrent writers never share
    a temp file, and a write-protected file or read-only folder is left alone
    (PermissionError). Signals are held back until the file is complete or removed.
    """
    reason = unwritable(path)
    if reason:
        raise PermissionError(errno.EACCES, reason, str(path))
    with deferred_signals():
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            # mkstemp makes the file private (0600): keep the old file's mode, else 0644.
            os.chmod(tmp, path.stat().st_mode & 0o7777 if path.exists() else 0o644)
            with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
                write_to(f)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def write(nb: nbformat.NotebookNode, path: str | os.PathLike) -> int:
    """Write the notebook atomically; returns its size in bytes. NotebookError if it cannot."""
    path = Path(path)
    text = nbformat.writes(nb)
    text += "" if text.endswith("\n") else "\n"  # as nbformat.write
    try:
        _replace_atomically(path, lambda f: f.write(text))
    except OSError as e:
        raise NotebookError(f"{path.name}: not saved: {e.strerror or e}") from None
    return len(text.encode("utf-8"))


def output_bytes(cell) -> int:
    """Size of a cell's outputs as saved (JSON)."""
    return len(json.dumps(cell.get("outputs", []), ensure_ascii=False).encode("utf-8"))


def is_usage_error(output: dict) -> bool:
    """A stderr stream output with an IPython UsageError (e.g. an unknown %magic).

    IPython reports these as a bare stderr line, not as an error output.
    """
    if output.get("output_type") != "stream" or output.get("name") != "stderr":
        return False
    text = output.get("text", "")
    return "".join(text).lstrip().startswith("UsageError:")


def normalize(nb: nbformat.NotebookNode) -> None:
    """Make the saved file depend on the notebook's content only.

    Kernelspec -> python3; drop machine-specific details (interpreter version,
    timing). Merge consecutive stream outputs: the kernel flushes stdout at
    arbitrary points, so one print-out arrives in a varying number of pieces.
    """
    CoalesceStreamsPreprocessor().preprocess(nb, {})
    nb.metadata["kernelspec"] = dict(PYTHON3_KERNELSPEC)
    info = nb.metadata.get("language_info")
    if isinstance(info, dict):
        info.pop("version", None)
    for cell in nb.cells:
        cell.get("metadata", {}).pop("execution", None)


# --------------------------------------------------------------------------------------
# Signals
# --------------------------------------------------------------------------------------

SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)
_deferring = 0
_pending: int | None = None


class Interrupted(KeyboardInterrupt):
    """SIGINT, SIGTERM or SIGHUP arrived (raised by the handlers of :func:`interruptible`)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_status(self) -> int:
        return 128 + self.signum  # the shell's convention: 130 for SIGINT, 143 for SIGTERM


def _raise_interrupted(signum, frame):
    global _pending
    if _deferring:
        _pending = _pending or signum
        return
    raise Interrupted(signum)


@contextlib.contextmanager
def interruptible():
    """SIGINT, SIGTERM and SIGHUP raise :class:`Interrupted` inside the block.

    Only signals whose handler is the default one are taken over (a caller's own
    handlers are kept), and only in the main thread (the only one signals reach).
    """
    taken = {}
    if threading.current_thread() is threading.main_thread():
        for s in SIGNALS:
            if signal.getsignal(s) in (signal.SIG_DFL, signal.default_int_handler):
                taken[s] = signal.signal(s, _raise_interrupted)
    try:
        yield
    finally:
        for s, handler in taken.items():
            signal.signal(s, handler)


@contextlib.contextmanager
def deferred_signals():
    """Hold back Interrupted inside the block (an atomic save, a clean-up); raise it after."""
    global _deferring, _pending
    _deferring += 1
    try:
        yield
    finally:
        _deferring -= 1
        if not _deferring and _pending is not None:
            signum, _pending = _pending, None
            raise Interrupted(signum)


# --------------------------------------------------------------------------------------
# Execution
# --------------------------------------------------------------------------------------


class _KernelProcesses:
    """The kernel's process, its process group, and the processes seen under it."""

    def __init__(self):
        self.pid: int | None = None
        self.pgid: int | None = None
        self.seen: dict[int, psutil.Process] = {}
        self.stopping = False  # set when the run is interrupted: run no further cell

    def launched(self, pid: int | None, pgid: int | None) -> None:
        self.pid, self.pgid = pid, pgid
        if pid is not None:
            self._remember(pid)

    def _remember(self, pid: int) -> None:
        with contextlib.suppress(psutil.Error):
            self.seen.setdefault(pid, psutil.Process(pid))

    def snapshot(self) -> None:
        """Remember the kernel's descendants (they outlive it if it exits first)."""
        if self.pid is None:
            return
        with contextlib.suppress(psutil.Error):
            for child in psutil.Process(self.pid).children(recursive=True):
                self.seen.setdefault(child.pid, child)

    def _group(self, sig: int) -> None:
        if self.pgid is not None and self.pgid > 1 and self.pgid != os.getpgrp():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pgid, sig)

    def end(self, grace: float = END_GRACE) -> None:
        """End the kernel and everything it started: SIGTERM, then SIGKILL after ``grace`` s."""
        self.snapshot()
        alive = [p for p in self.seen.values() if _running(p)]
        self._group(signal.SIGTERM)
        for p in alive:
            with contextlib.suppress(psutil.Error):
                p.terminate()
        _, alive = psutil.wait_procs(alive, timeout=grace)
        self._group(signal.SIGKILL)
        for p in alive:
            with contextlib.suppress(psutil.Error):
                p.kill()
        psutil.wait_procs(alive, timeout=grace)


def _running(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


class _Stopped(Exception):
    """The run was interrupted: the executor runs no further cell."""


class _ThisInterpreterKernelManager(AsyncKernelManager):
    """A ``python3`` ipykernel of ``sys.executable``, ignoring installed kernelspecs.

    Its stderr goes to a file (``stderr_path``): ipykernel's start-up warnings
    stay off the terminal, and a dying kernel's last words go into the report.
    ``on_launch(pid, pgid)`` is told the kernel's process once it is started.
    """

    extra_env: dict[str, str] = {}
    stderr_path: str | None = None
    on_launch = None
    memory_limit: int | None = None  # bytes of address space (RLIMIT_AS), None: no limit

    @property
    def kernel_spec(self) -> KernelSpec:
        if self._kernel_spec is None:
            self._kernel_spec = KernelSpec(
                argv=[sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                display_name=PYTHON3_KERNELSPEC["display_name"],
                language="python",
                env=dict(self.extra_env),
                resource_dir="",
            )
        return self._kernel_spec

    async def _async_launch_kernel(self, kernel_cmd, **kw):
        limit = self.memory_limit
        if limit is not None and not hasattr(resource, "prlimit"):
            kw["preexec_fn"] = _address_space_limit(limit)  # macOS: set in the child
        if self.stderr_path is not None:
            # Opened for the Popen call only; the child keeps its own descriptor.
            with open(self.stderr_path, "ab") as err:
                kw["stderr"] = err
                info = await super()._async_launch_kernel(kernel_cmd, **kw)
        else:
            info = await super()._async_launch_kernel(kernel_cmd, **kw)
        pid = getattr(self.provisioner, "pid", None)
        if limit is not None and hasattr(resource, "prlimit") and pid is not None:
            # Linux: set from here, before the kernel has run any cell (thread-safe, unlike
            # a preexec_fn); what the kernel starts later inherits it.
            resource.prlimit(pid, resource.RLIMIT_AS, (limit, limit))
        if self.on_launch is not None:
            self.on_launch(pid, getattr(self.provisioner, "pgid", None))
        return info


def _address_space_limit(nbytes: int):
    """A Popen preexec_fn: the child (and all it starts) gets at most nbytes of address space.

    An allocation beyond it raises MemoryError in the kernel instead of driving the
    machine into swap or the OOM killer.
    """

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (nbytes, nbytes))

    return limit


class _Executor(ExecutePreprocessor):
    """ExecutePreprocessor that times code cells, catches UsageErrors, and keeps its kernel's
    files in ``workdir`` and its processes in ``processes``."""

    def __init__(
        self, *, kernel_env: dict[str, str], workdir: str, memory_limit: int | None = None, **kw
    ):
        super().__init__(**kw)
        self._kernel_env = kernel_env
        self._workdir = workdir
        self._memory_limit = memory_limit
        self.stderr_path = os.path.join(workdir, "kernel-stderr.log")
        self.processes = _KernelProcesses()
        self.cell_times: list[CellTime] = []
        self.failure: tuple[int, dict] | None = None  # (cell index, execute_reply content)
        self.current: int | None = None

    def create_kernel_manager(self):
        km = _ThisInterpreterKernelManager(kernel_name="python3", config=self.config)
        km.extra_env = self._kernel_env
        km.stderr_path = self.stderr_path
        # The connection file holds the kernel's key: in our folder, removed with it.
        km.connection_file = os.path.join(self._workdir, "kernel-connection.json")
        km.on_launch = self.processes.launched
        km.memory_limit = self._memory_limit
        self.km = km
        return km

    def _cleanup_kernel(self):
        # Before the kernel is shut down: what it started may outlive it.
        self.processes.snapshot()
        if self.processes.stopping:
            self.shutdown_kernel = "immediate"
        return super()._cleanup_kernel()

    def preprocess_cell(self, cell, resources, index):
        if self.processes.stopping:
            raise _Stopped()
        self.current = index
        if cell.cell_type != "code":
            return super().preprocess_cell(cell, resources, index)
        start = time.perf_counter()
        result = super().preprocess_cell(cell, resources, index)
        seconds = time.perf_counter() - start
        for out in cell.get("outputs", []):
            if is_usage_error(out):
                ename, _, evalue = out["text"].strip().partition(": ")
                self.failure = (index, {"ename": ename, "evalue": evalue, "traceback": []})
                raise CellExecutionError("", ename, evalue)
        self.cell_times.append(
            CellTime(
                number=cell.metadata.get(RERUN_KEY, index) + 1,
                execution_count=cell.get("execution_count"),
                seconds=seconds,
                first_line=first_line(cell.source),
            )
        )
        return result


def first_line(source: str) -> str:
    """The first non-blank line of source, stripped ("" if there is none)."""
    lines = [ln for ln in source.strip().splitlines() if ln.strip()]
    return lines[0].strip() if lines else ""


def _indent(text: str, prefix: str = "    ") -> str:
    return "\n".join(prefix + ln if ln.strip() else "" for ln in text.splitlines())


def _source_excerpt(source: str) -> str:
    lines = source.rstrip().splitlines()
    shown = lines[:SOURCE_LINES]
    if len(lines) > SOURCE_LINES:
        shown.append(f"... ({len(lines) - SOURCE_LINES} more lines)")
    return _indent("\n".join(shown))


def _kernel_stderr(path: str, n: int = 15) -> str:
    try:
        lines = Path(path).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return ""
    lines = [strip_ansi(ln) for ln in lines if not _KERNEL_NOISE.search(ln)]
    return "\n".join(lines[-n:])


def failure_report(
    name: str,
    nb: nbformat.NotebookNode,
    index: int | None,
    ename: str,
    evalue: str,
    traceback: Iterable[str] = (),
    headline: str = "failed",
    traceback_label: str = "traceback",
) -> str:
    """The report for a failed cell (``index``: position in ``nb.cells``)."""
    traceback = list(traceback)
    tb = strip_ansi("\n".join(traceback)).strip("\n")
    if ename == "AssertionError" and not str(evalue).strip():
        # A bare `assert` says nothing: name the line that failed.
        arrows = _ARROW.findall(tb)
        if arrows:
            evalue = f"(no message) line {arrows[-1][0]}: {arrows[-1][1].strip()}"
    if index is None or not 0 <= index < len(nb.cells):
        parts = [f"{name}: {headline}", f"  {ename}: {evalue}".rstrip()]
    else:
        cell = nb.cells[index]
        rerun_of = cell.get("metadata", {}).get(RERUN_KEY)
        number = index + 1
        if rerun_of is not None:  # a copy appended by run(rerun_reversed=True)
            number = rerun_of + 1
            headline = f"{headline} when re-run in reverse order after a full run"
        parts = [
            f"{name}: {_label(number, 'code', cell.get('execution_count'))} {headline}",
            "  source:",
            _source_excerpt(cell.source),
            f"  {ename}: {evalue}".rstrip(),
        ]
    if tb:
        parts += [f"  {traceback_label}:", _indent(tb)]
    return "\n".join(parts)


def _execute(ep: _Executor, nb, resources) -> None:
    """ep.preprocess in a worker thread; the calling thread waits and takes the signals.

    On any exception in the caller (Interrupted, KeyboardInterrupt, ...), the kernel
    and everything it started are ended, the worker is let finish, and the exception
    goes on. The worker's own exception is raised in the caller.
    """
    box: dict[str, BaseException] = {}

    def work():
        try:
            ep.preprocess(nb, resources)
        except BaseException as e:  # handed to the caller
            box["error"] = e
        finally:  # the event loop nbclient made for this thread
            with contextlib.suppress(Exception):
                asyncio.get_event_loop_policy().get_event_loop().close()

    worker = threading.Thread(target=work, name="nbtools-kernel", daemon=True)
    worker.start()
    try:
        # Timed joins: the OS may deliver SIGINT/SIGTERM to another thread of this process
        # (the worker, a zmq thread); its Python handler runs only in this thread, and only
        # when this thread wakes up, which an untimed join would not do until the cell ends.
        while worker.is_alive():
            worker.join(SIGNAL_POLL)
    except BaseException:
        with deferred_signals():
            ep.processes.stopping = True
            ep.processes.end()
            worker.join(timeout=30)
            ep.processes.end()  # a kernel that was still starting up
        raise
    if "error" in box:
        raise box["error"]


def run(
    path: str | os.PathLike,
    *,
    save: bool = False,
    cwd: str | os.PathLike | None = None,
    pythonpath: Iterable[str | os.PathLike] = (),
    timeout: int = CELL_TIMEOUT,
    startup_timeout: int = STARTUP_TIMEOUT,
    nb: nbformat.NotebookNode | None = None,
    rerun_reversed: bool = False,
    memory_limit: int | None = None,
) -> Execution:
    """Execute the notebook at ``path`` on a fresh kernel of this interpreter.

    path: the notebook (read unless ``nb`` is given; its name labels the report).
    save: write the executed notebook back to ``path`` (only on success; checked
        before anything runs: a write-protected file or read-only folder is an error).
    cwd: the kernel's working directory, by default the notebook's folder.
    pythonpath: folders put first on the kernel's PYTHONPATH.
    timeout: seconds per cell.
    rerun_reversed: after the full run, execute every code cell once more, last to
        first, in the same kernel (a student re-running cells out of order); the extra
        executions are not kept in the returned notebook, and cannot be saved.
    memory_limit: bytes of address space for the kernel and every process it starts
        (RLIMIT_AS; None: no limit); beyond it allocations fail with MemoryError.
    Returns an Execution; raises NotebookError with the failure report, and
    Interrupted (or KeyboardInterrupt) after ending the kernel's processes.
    """
    path = Path(path).resolve()
    if rerun_reversed and save:
        raise ValueError("rerun_reversed=True cannot be saved: it is a test of the notebook")
    if save:
        reason = unwritable(path)
        if reason:
            raise NotebookError(f"{path.name}: not run: it could not be saved: {reason}")
    if nb is None:
        nb = read(path)
    if rerun_reversed:
        n_cells = len(nb.cells)
        nb = copy.deepcopy(nb)
        code = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"]
        for i in reversed(code):
            again = copy.deepcopy(nb.cells[i])
            again.metadata[RERUN_KEY] = i
            nb.cells.append(again)
    cwd = Path(cwd) if cwd is not None else path.parent
    env = dict(KERNEL_ENV)
    paths = [str(Path(p).resolve()) for p in pythonpath]
    if os.environ.get("PYTHONPATH"):
        paths.append(os.environ["PYTHONPATH"])
    if paths:
        env["PYTHONPATH"] = os.pathsep.join(paths)

    with interruptible(), tempfile.TemporaryDirectory(prefix="hw4-kernel-") as tmp:
        ep = _Executor(
            kernel_name="python3",
            timeout=timeout,
            startup_timeout=startup_timeout,
            record_timing=False,
            allow_errors=False,
            kernel_env=env,
            workdir=tmp,
            memory_limit=memory_limit,
        )

        def on_cell_error(cell, cell_index, execute_reply):
            ep.failure = (cell_index, execute_reply["content"])

        ep.on_cell_error = on_cell_error
        start = time.perf_counter()
        try:
            _execute(ep, nb, {"metadata": {"path": str(cwd)}})
        except CellExecutionError as e:
            index, content = ep.failure if ep.failure else (ep.current, {})
            raise NotebookError(
                failure_report(
                    path.name,
                    nb,
                    index,
                    content.get("ename", e.ename),
                    content.get("evalue", e.evalue),
                    content.get("traceback", []),
                )
            ) from None
        except CellTimeoutError:
            raise NotebookError(
                failure_report(
                    path.name,
                    nb,
                    ep.current,
                    "CellTimeoutError",
                    f"the cell ran longer than {timeout} s (the limit per cell: "
                    "--timeout SECONDS)",
                    headline="timed out",
                )
            ) from None
        except DeadKernelError:
            raise NotebookError(
                failure_report(
                    path.name,
                    nb,
                    ep.current,
                    "DeadKernelError",
                    "the kernel died (out of memory? a crash in native code?)",
                    [_kernel_stderr(ep.stderr_path)],
                    headline="killed the kernel",
                    traceback_label="kernel stderr",
                )
            ) from None
        except (RuntimeError, TimeoutError, CellControlSignal) as e:
            # Kernel start-up failures (e.g. ipykernel missing) and the like.
            detail = strip_ansi(str(e)).strip() or type(e).__name__
            raise NotebookError(
                f"{path.name}: the kernel could not run: {detail}\n"
                + _indent(_kernel_stderr(ep.stderr_path))
            ) from None
        finally:
            with deferred_signals():
                ep.processes.end()  # what the cells started and left running
        seconds = time.perf_counter() - start

        if rerun_reversed:
            del nb.cells[n_cells:]
        normalize(nb)
        saved = write(nb, path) if save else None
    return Execution(path=path, nb=nb, seconds=seconds, cells=ep.cell_times, saved_bytes=saved)

