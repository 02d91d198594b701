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
- every cell has a timeout (:data:`CELL_TIMEOUT`), and so has kernel start-up;
- a failing cell, including one that fails through an IPython ``UsageError``
  (a bad ``%magic``), raises :class:`NotebookError` whose message is the failure
  report (notebook, code-cell number, execution count, source, ``ename: evalue``,
  traceback without ANSI colours);
- the source file is written only with ``save=True``, only on success, and
  atomically; the saved file carries no timing metadata and no interpreter patch
  version, so executing an unchanged (seeded) notebook again writes the same bytes.
"""

from __future__ import annotations

import copy
import json
import os
import re
import resource
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
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


class NotebookError(Exception):
    """A notebook could not be read or executed; ``str(err)`` is the report."""


def strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)


@dataclass
class CellTime:
    number: int  # 1-based position among the notebook's code cells
    execution_count: int | None
    seconds: float
    first_line: str


@dataclass
class Execution:
    path: Path
    nb: nbformat.NotebookNode
    seconds: float
    cells: list[CellTime] = field(default_factory=list)

    def slowest(self, n: int = 3) -> list[CellTime]:
        return sorted(self.cells, key=lambda c: c.seconds, reverse=True)[:n]


# --------------------------------------------------------------------------------------
# Reading and writing
# --------------------------------------------------------------------------------------


def read(path: str | os.PathLike) -> nbformat.NotebookNode:
    """Read a notebook; a clear NotebookError (one line) if it is not one."""
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
    if not isinstance(data, dict) or "cells" not in data or "nbformat" not in data:
        raise NotebookError(f"{path.name}: not a notebook: no 'cells' and 'nbformat' keys")
    try:
        nb = nbformat.reads(text, as_version=4)
    except Exception as e:  # nbformat's NBFormatError, ValidationError, KeyError, ...
        raise NotebookError(f"{path.name}: not a valid notebook: {_one_line(e)}") from None
    return nb


def _one_line(e: BaseException, n: int = 150) -> str:
    lines = strip_ansi(str(getattr(e, "message", None) or e)).strip().splitlines()
    line = lines[0] if lines else type(e).__name__
    return line if len(line) <= n else line[: n - 3] + "..."


def _replace_atomically(path: Path, write_to) -> None:
    """Call write_to(text file) on a temp file beside path, then move it over path.

    A crash never leaves a half-written file behind, and concurrent writers never
    share a temp file.
    """
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


def write(nb: nbformat.NotebookNode, path: str | os.PathLike) -> None:
    """Write the notebook atomically."""
    _replace_atomically(Path(path), lambda f: nbformat.write(nb, f))


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
# Execution
# --------------------------------------------------------------------------------------


class _ThisInterpreterKernelManager(AsyncKernelManager):
    """A ``python3`` ipykernel of ``sys.executable``, ignoring installed kernelspecs.

    Its stderr goes to a file (``stderr_path``): ipykernel's start-up warnings
    stay off the terminal, and a dying kernel's last words go into the report.
    """

    extra_env: dict[str, str] = {}
    stderr_path: str | None = None
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
    """ExecutePreprocessor that times code cells and catches UsageErrors."""

    def __init__(
        self,
        *,
        kernel_env: dict[str, str],
        stderr_path: str,
        memory_limit: int | None = None,
        **kw,
    ):
        super().__init__(**kw)
        self._kernel_env = kernel_env
        self._stderr_path = stderr_path
        self._memory_limit = memory_limit
        self.cell_times: list[CellTime] = []
        self.failure: tuple[int, dict] | None = None  # (cell index, execute_reply content)
        self.current: int | None = None

    def create_kernel_manager(self):
        km = _ThisInterpreterKernelManager(kernel_name="python3", config=self.config)
        km.extra_env = self._kernel_env
        km.stderr_path = self._stderr_path
        km.memory_limit = self._memory_limit
        self.km = km
        return km

    def preprocess_cell(self, cell, resources, index):
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
                number=_code_number(self.nb, cell.metadata.get(RERUN_KEY, index)),
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


def _code_number(nb, index: int) -> int:
    return sum(1 for c in nb.cells[: index + 1] if c.cell_type == "code")


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
    if index is None or not 0 <= index < len(nb.cells):
        parts = [f"{name}: {headline}", f"  {ename}: {evalue}".rstrip()]
    else:
        cell = nb.cells[index]
        count = cell.get("execution_count")
        number = _code_number(nb, index)
        rerun_of = cell.get("metadata", {}).get(RERUN_KEY)
        if rerun_of is not None:  # a copy appended by run(rerun_reversed=True)
            number = _code_number(nb, rerun_of)
            headline = f"{headline} when re-run in reverse order after a full run"
        parts = [
            f"{name}: code cell {number} "
            f"(execution count {count if count is not None else '-'}) {headline}",
            "  source:",
            _source_excerpt(cell.source),
            f"  {ename}: {evalue}".rstrip(),
        ]
    tb = strip_ansi("\n".join(traceback)).strip("\n")
    if tb:
        parts += [f"  {traceback_label}:", _indent(tb)]
    return "\n".join(parts)


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
    save: write the executed notebook back to ``path`` (only on success).
    cwd: the kernel's working directory, by default the notebook's folder.
    pythonpath: folders put first on the kernel's PYTHONPATH.
    rerun_reversed: after the full run, execute every code cell once more, last to
        first, in the same kernel (a student re-running cells out of order); the extra
        executions are not kept in the returned notebook, and cannot be saved.
    memory_limit: bytes of address space for the kernel and every process it starts
        (RLIMIT_AS; None: no limit); beyond it allocations fail with MemoryError.
    Returns an Execution; raises NotebookError with the failure report.
    """
    path = Path(path).resolve()
    if nb is None:
        nb = read(path)
    if rerun_reversed:
        if save:
            raise ValueError("rerun_reversed=True cannot be saved: it is a test of the notebook")
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

    with tempfile.TemporaryDirectory(prefix="hw4-kernel-") as tmp:
        stderr_path = os.path.join(tmp, "kernel-stderr.log")
        ep = _Executor(
            kernel_name="python3",
            timeout=timeout,
            startup_timeout=startup_timeout,
            record_timing=False,
            allow_errors=False,
            kernel_env=env,
            stderr_path=stderr_path,
            memory_limit=memory_limit,
        )

        def on_cell_error(cell, cell_index, execute_reply):
            ep.failure = (cell_index, execute_reply["content"])

        ep.on_cell_error = on_cell_error
        start = time.perf_counter()
        try:
            ep.preprocess(nb, {"metadata": {"path": str(cwd)}})
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
                    f"the cell ran longer than {timeout} s (nbtools.runner.CELL_TIMEOUT)",
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
                    [_kernel_stderr(stderr_path)],
                    headline="killed the kernel",
                    traceback_label="kernel stderr",
                )
            ) from None
        except (RuntimeError, TimeoutError, CellControlSignal) as e:
            # Kernel start-up failures (e.g. ipykernel missing) and the like.
            detail = strip_ansi(str(e)).strip() or type(e).__name__
            raise NotebookError(
                f"{path.name}: the kernel could not run: {detail}\n"
                + _indent(_kernel_stderr(stderr_path))
            ) from None
        seconds = time.perf_counter() - start

    if rerun_reversed:
        del nb.cells[n_cells:]
    normalize(nb)
    if save:
        write(nb, path)
    return Execution(path=path, nb=nb, seconds=seconds, cells=ep.cell_times)


# --------------------------------------------------------------------------------------
# HTML
# --------------------------------------------------------------------------------------


def export_html(nb: nbformat.NotebookNode, dest: str | os.PathLike) -> Path:
    """Write an HTML copy of ``nb`` (math rendered by MathJax in the browser)."""
    from nbconvert import HTMLExporter

    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    body, _ = HTMLExporter().from_notebook_node(nb)
    _replace_atomically(dest, lambda f: f.write(body))
    return dest
