"""Grade a class: the course's trusted checks on every student submission.

``python main.py grade SUBMISSION... [--jobs N] [--out DIR]`` calls :func:`grade_class`.
Each submission (a zip made by ``prepare-submission``, or a folder) is graded by a
*worker*, a process of its own (forked from a server that imported the grading
modules once), in a session of its own, up to ``--jobs`` at a time. A worker

1. unpacks the submission into its own temporary folder (:mod:`nbtools.unpack`;
   a bad or unsafe zip is one "unreadable" row);
2. checks each notebook named by this project's question files as submitted, with
   this project's checker (:mod:`nbtools.check`): one column per question ("ok" or
   what is wrong with its answer), one per notebook for the notebook-wide rules;
3. executes each notebook headless on a fresh kernel (:func:`nbtools.runner.run`):
   the student's folder as working directory and first on ``sys.path``, a per-cell
   timeout, a memory limit on the kernel; "ok" or the first failing cell and its
   error;
4. tests the code answer ``part4_affine_backward`` in a process of its own
   (:mod:`nbtools.code_answer`);
5. ends every process the student's code started (:mod:`nbtools.procs`), removes
   its temporary folder and hands a JSON result to the parent.

Nothing from the submission is imported into a grading process: the question
files, checker and tests are this project's. The parent streams one CSV row per
submission ID to ``DIR/grades.csv`` as results arrive (sorted by ID at the end),
writes ``DIR/reports/ID.md``, shows a progress bar, and on Ctrl-C (or SIGTERM)
ends the workers and what they started, keeping every row already written.

Not a sandbox: the student's code runs as the grader's user, with the grader's
file-system rights and network. Grade as an unprivileged user, in a container or
a throw-away VM if that matters.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import csv
import dataclasses
import json
import multiprocessing
import multiprocessing.connection
import os
import re
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from nbtools import procs, questions
from nbtools.unpack import Limits, Unreadable, remove_tree, submission_id, unpack

CELL_TIMEOUT = 120  # seconds per notebook cell, and for the code answer
MEMORY_LIMIT = 4 * 2**30  # bytes of address space per kernel (the notebooks peak at ~1.8 GiB)
SUBMISSION_TIMEOUT = 1800  # seconds: a worker still running after this is ended
GRACE = 10  # seconds a worker gets to clean up after SIGTERM
CODE_COLUMN = "part4_affine_backward"
OK = "ok"
# Graded (a verdict exists) vs. a grader failure (rerun it: --resume retries these).
FINAL_STATUSES = ("graded", "unreadable")
# Environment passed to student code: no tokens or settings of the grader's shell.
PASSED_ENV = (
    "PATH", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "TZ", "OMP_NUM_THREADS",
    "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
)  # fmt: skip


class UsageError(Exception):
    """The grader's command line cannot be carried out (exit 2)."""


@dataclass(frozen=True)
class Options:
    timeout: float = CELL_TIMEOUT
    memory_limit: int = MEMORY_LIMIT
    max_files: int = Limits.max_files
    max_bytes: int = Limits.max_bytes
    threads: int | None = None  # torch/OpenMP threads per kernel (None: the grader's setting)

    @property
    def limits(self) -> Limits:
        return Limits(max_files=self.max_files, max_bytes=self.max_bytes)


def short(stem: str) -> str:
    """Column prefix of a notebook: Part3_SummaryQuestions -> Part3."""
    return stem.split("_")[0]


def stems() -> list[str]:
    return questions.available()


def columns() -> list[str]:
    """The CSV header: id, status, passed, per notebook (check, run, questions), code, note."""
    cols = ["id", "status", "passed"]
    for stem in stems():
        p = short(stem)
        cols += [f"{p} check", f"{p} run"]
        cols += [f"{p} {q.key}" for q in questions.load(stem).questions]
    return cols + [CODE_COLUMN, "note"]


def verdict_columns(cols: list[str]) -> list[str]:
    return [c for c in cols if c not in ("id", "status", "passed", "note")]


# --------------------------------------------------------------------------------------
# One submission (runs in a worker process)
# --------------------------------------------------------------------------------------


@dataclass
class Result:
    id: str
    source: str
    status: str  # graded | unreadable | error
    cells: dict[str, str] = field(default_factory=dict)  # column -> verdict
    note: str = ""
    report: str = ""  # Markdown
    seconds: float = 0.0

    def row(self, cols: list[str]) -> dict[str, str]:
        verdicts = verdict_columns(cols)
        values = {c: self.cells.get(c, "") for c in verdicts}
        passed = sum(values[c] == OK for c in verdicts)
        row = {"id": self.id, "status": self.status, "note": self.note}
        row["passed"] = f"{passed}/{len(verdicts)}" if self.status == "graded" else ""
        row.update(values)
        return {c: row.get(c, "") for c in cols}


def _one_line(text: str, n: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 3] + "..."


def _run_summary(report: str) -> str:
    """'FAIL: code cell 2 (...) failed: ZeroDivisionError: ...' from a runner report."""
    lines = report.splitlines()
    head = lines[0].split(": ", 1)[-1] if lines else "failed"
    labels = {"source:", "traceback:", "kernel stderr:"}
    error = next(
        (
            ln.strip()
            for ln in lines[1:]
            if ln.startswith("  ") and not ln.startswith("   ") and ln.strip() not in labels
        ),
        "",
    )
    return _one_line(f"FAIL: {head}: {error}" if error else f"FAIL: {head}")


def _md_text(text: str) -> str:
    """Student-controlled text for a Markdown list item: no HTML, one line."""
    return _one_line(text, 500).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _fenced(text: str, max_lines: int = 40) -> str:
    lines = text.rstrip().splitlines()
    if len(lines) > max_lines:
        lines = lines[:max_lines] + [f"... ({len(lines) - max_lines} more lines)"]
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return "\n".join([fence, *lines, fence])


def static_verdicts(nb, qfile: questions.QuestionFile) -> tuple[dict[str, list[str]], list[str]]:
    """This project's ``check`` of a notebook, split: {question key: its problems}, the rest.

    A problem belongs to a question when ``check`` labels it with the question's key.
    """
    from nbtools import check

    try:
        problems = check.check_nb(nb, qfile)
    except Exception as e:  # the checker must not take the whole row down
        problems = [f"the checker failed: {type(e).__name__}: {e}"]
    by_question: dict[str, list[str]] = {q.key: [] for q in qfile.questions}
    general = []
    for prob in problems:
        key, _, rest = prob.partition(": ")
        if key in by_question and rest:
            by_question[key].append(rest)
        else:
            general.append(prob)
    return by_question, general


def _grade_notebook(stem: str, root: Path, options: Options, result: Result, md: list[str]):
    from nbtools import runner

    p = short(stem)
    qfile = questions.load(stem)
    keys = [q.key for q in qfile.questions]
    path = root / f"{stem}.ipynb"
    md.append(f"\n## {stem}.ipynb\n")
    if not path.is_file():
        for k in keys:
            result.cells[f"{p} {k}"] = "missing notebook"
        result.cells[f"{p} check"] = result.cells[f"{p} run"] = "missing notebook"
        md.append(f"- missing: the submission has no `{stem}.ipynb`")
        return
    try:
        nb = runner.read(path)
    except runner.NotebookError as e:
        for k in keys:
            result.cells[f"{p} {k}"] = "unreadable notebook"
        result.cells[f"{p} check"] = _one_line(f"FAIL: {e}")
        result.cells[f"{p} run"] = "not run (unreadable notebook)"
        md.append(f"- unreadable: {_md_text(str(e))}")
        return

    # Static check, as submitted.
    by_question, general = static_verdicts(nb, qfile)
    for k in keys:
        result.cells[f"{p} {k}"] = _one_line("; ".join(by_question[k])) if by_question[k] else OK
    n_problems = sum(map(len, by_question.values())) + len(general)
    result.cells[f"{p} check"] = OK if not n_problems else f"FAIL: {n_problems} problem(s)"
    answered = sum(not v for v in by_question.values())
    md.append(f"- questions answered: {answered} of {len(keys)}")
    for k in keys:
        for prob in by_question[k]:
            md.append(f"  - `{k}`: {_md_text(prob)}")
    if general:
        md.append(f"- other problems found by `check` ({len(general)}):")
        md += [f"  - {_md_text(prob)}" for prob in general[:20]]
        if len(general) > 20:
            md.append(f"  - ... and {len(general) - 20} more")

    # Execution on a fresh kernel.
    try:
        ex = runner.run(
            path,
            nb=nb,
            cwd=root,
            pythonpath=[root],
            timeout=max(1, round(options.timeout)),
            memory_limit=options.memory_limit,
        )
        result.cells[f"{p} run"] = OK
        md.append(f"- executed top to bottom: ok ({ex.seconds:.1f} s, {len(ex.cells)} code cells)")
    except runner.NotebookError as e:
        result.cells[f"{p} run"] = _run_summary(str(e))
        md.append("- executed top to bottom: FAILED\n")
        md.append(_fenced(str(e)))
    except Exception as e:
        result.cells[f"{p} run"] = _one_line(f"FAIL: grader error: {type(e).__name__}: {e}")
        md.append(f"- execution: grader error: {_md_text(f'{type(e).__name__}: {e}')}")
    finally:
        from nbtools import code_answer

        with code_answer.LOCK:  # the code answer's check runs on
            procs.end_descendants(keep=set(code_answer.ACTIVE))


def grade_submission(src: Path, work: Path, options: Options = Options()) -> Result:
    """Grade the submission at src, unpacked below the (new) folder work."""
    from nbtools import code_answer

    start = time.perf_counter()
    result = Result(id=submission_id(src), source=str(src), status="graded")
    md = [f"# {result.id}\n", f"Submission: {_md_text(src.name)}"]
    try:
        root = unpack(src, work / "submission", options.limits)
    except Unreadable as e:
        result.status, result.note = "unreadable", _one_line(str(e))
        md.append(f"\n**Not graded: unreadable.** {_md_text(str(e))}")
        result.report = "\n".join(md) + "\n"
        return result
    if root != work / "submission":
        md.append(f"(project folder inside it: {_md_text(root.name)}/)")
    expected = {f"{s}.ipynb" for s in stems()}
    others = sorted(p.name for p in root.glob("*.ipynb") if p.name not in expected)
    if others:
        result.note = _one_line(f"other notebooks, not graded: {', '.join(others)}")

    # The code answer's process runs while the notebooks execute (it mostly waits for torch).
    pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="code-answer")
    try:
        code = pool.submit(
            code_answer.check_affine_backward,
            root,
            timeout=options.timeout,
            memory_limit=options.memory_limit,
        )
        for stem in stems():
            try:
                _grade_notebook(stem, root, options, result, md)
            except Exception as e:  # e.g. a notebook nested too deep for json: still one row
                error = _one_line(f"FAIL: grader error: {type(e).__name__}: {e}")
                for col in columns():
                    if col.startswith(short(stem) + " "):
                        result.cells.setdefault(col, error)
                md.append(f"- grader error: {_md_text(error)}")
        md.append(f"\n## Code answer: `{CODE_COLUMN}` in `hw4/answers.py`\n")
        try:
            answer = code.result()
            result.cells[CODE_COLUMN] = _one_line(answer.summary)
            md.append("- passed" if answer.ok else "- failed:")
            md += [f"  - {_md_text(prob)}" for prob in answer.problems]
        except Exception as e:
            result.cells[CODE_COLUMN] = _one_line(f"FAIL: grader error: {type(e).__name__}: {e}")
            md.append(f"- grader error: {_md_text(str(e))}")
    finally:
        # Interrupted: do not wait for the check; the worker ends its process.
        pool.shutdown(wait=False, cancel_futures=True)
    procs.end_descendants()
    if result.note:
        md.append(f"\nNote: {_md_text(result.note)}")

    result.seconds = time.perf_counter() - start
    cols = columns()
    row = result.row(cols)
    md.insert(1, f"**{row['passed']} checks passed** (graded in {result.seconds:.0f} s)\n")
    result.report = "\n".join(md) + "\n"
    return result


class _Stop(BaseException):
    """Raised in a worker by SIGTERM/SIGINT: unwind, clean up, exit."""


THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def _worker_env(work: Path, threads: int | None = None) -> None:
    """Replace this worker's environment (inherited by the kernel and the code check).

    threads: OMP_NUM_THREADS for torch, unless the grader set one of THREAD_ENV (more
    threads than cores make OpenMP's spinning threads slow everything down).
    """
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    env = {k: os.environ[k] for k in PASSED_ENV if k in os.environ}
    if threads and not any(k in env for k in THREAD_ENV):
        env["OMP_NUM_THREADS"] = str(threads)
    for name in ("home", "tmp", "runtime"):
        (work / name).mkdir(parents=True, exist_ok=True)
    env.update(
        HOME=str(work / "home"),  # no ~/.ipython startup files of the grader
        TMPDIR=str(work / "tmp"),
        JUPYTER_RUNTIME_DIR=str(work / "runtime"),  # the kernel's connection file
        MPLCONFIGDIR=os.environ.get("MPLCONFIGDIR", str(cache / "matplotlib")),  # font cache
        PYTHONDONTWRITEBYTECODE="1",
    )
    os.environ.clear()
    os.environ.update(env)
    tempfile.tempdir = None


def _worker(src: Path, work: Path, out: Path, log: Path, options: Options) -> None:
    """Grade one submission in this process (forked for it); the result goes to out (JSON)."""
    os.setsid()  # a session of its own: the terminal's Ctrl-C goes to the parent only
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    procs.become_subreaper()

    def stop(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        raise _Stop

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    code = 0
    try:
        work.mkdir(parents=True, exist_ok=True)
        _worker_env(work, options.threads)
        result = grade_submission(src, work, options)
        tmp = out.with_name(out.name + ".part")
        tmp.write_text(json.dumps(asdict(result)), encoding="utf-8")
        os.replace(tmp, out)
    except _Stop:
        code = 143
    finally:
        procs.end_descendants()
        remove_tree(work)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # no atexit handlers of the libraries: the work is done


# --------------------------------------------------------------------------------------
# A class (the parent process)
# --------------------------------------------------------------------------------------


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(value: str) -> str:
    """A spreadsheet must not run a cell: values starting like a formula get a quote."""
    value = str(value).replace("\r", " ").replace("\n", " ")
    return "'" + value if value.startswith(_FORMULA_START) else value


@dataclass
class Summary:
    total: int  # submissions asked for
    graded: int  # rows with a verdict (graded or unreadable), this run
    skipped: int  # already in grades.csv (--resume)
    errors: list[str]  # IDs the grader failed on
    interrupted: int = 0  # signal number, 0 if not interrupted

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return 128 + self.interrupted
        return 1 if self.errors else 0


@dataclass
class _Job:
    id: str
    src: Path
    result: Path
    work: Path
    log: Path
    proc: multiprocessing.process.BaseProcess | None = None
    started: float = 0.0
    ended_by: str = ""


def _read_rows(path: Path, cols: list[str]) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames != cols:
            raise UsageError(
                f"{path} has other columns than this grader writes (another question "
                "file version?): choose another --out"
            )
        return list(reader)


def _write_sorted(path: Path, cols: list[str]) -> int:
    """Rewrite grades.csv sorted by ID, one row per ID (the last one written wins)."""
    rows = {r["id"]: r for r in _read_rows(path, cols)}
    tmp = path.with_name(path.name + ".part")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        for key in sorted(rows):
            w.writerow(rows[key])
    os.replace(tmp, path)
    return len(rows)


def _jobs(sources: list[Path], tmp: Path) -> list[_Job]:
    ids: dict[str, Path] = {}
    out = []
    for i, src in enumerate(sources):
        if not src.exists():
            raise UsageError(f"{src}: no such file or folder")
        sid = submission_id(src)
        if sid in ids:
            if ids[sid].resolve() == src.resolve():
                continue
            raise UsageError(f"{ids[sid]} and {src} are both submission {sid!r}: rename one")
        ids[sid] = src
        d = tmp / f"{i:05d}"
        out.append(_Job(sid, src, d / "result.json", d / "work", d / "worker.log"))
    return out


# A Unix socket's path has at most 107 bytes; the fork server's lies in a folder of
# multiprocessing's under the temp folder ("pymp-XXXXXXXX/listener-XXXXXXXX", 32 more).
_SOCKET_PATH_MAX = 107


def _short_mp_tempdir() -> None:
    """Put multiprocessing's temp folder (the fork server's socket) under /tmp when the
    temp folder's path (TMPDIR) is too long for a Unix socket; it is chosen once per process."""
    import multiprocessing.util

    if len(os.fsencode(tempfile.gettempdir())) + 32 <= _SOCKET_PATH_MAX:
        return
    if not os.access("/tmp", os.W_OK | os.X_OK):
        return  # nothing shorter to offer: multiprocessing's own error follows
    saved, tempfile.tempdir = tempfile.tempdir, "/tmp"
    try:
        multiprocessing.util.get_temp_dir()  # created now, under /tmp; removed at exit
    finally:
        tempfile.tempdir = saved


def _context():
    """Workers are forked from a server that imported the grading modules once (~1 s each)."""
    _short_mp_tempdir()
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["nbtools.grade", "nbtools.runner", "nbtools.check",
                                "nbtools.code_answer"])  # fmt: skip
    return ctx


def _start(ctx, job: _Job, options: Options) -> None:
    job.log.parent.mkdir(parents=True, exist_ok=True)
    job.proc = ctx.Process(
        target=_worker,
        args=(job.src.resolve(), job.work, job.result, job.log, options),
        name=f"grade {job.id}",
    )
    job.proc.start()
    job.started = time.monotonic()


def _collect(job: _Job) -> Result:
    try:
        data = json.loads(job.result.read_text(encoding="utf-8"))
        return Result(**data)
    except (OSError, ValueError, TypeError):
        pass
    try:
        log = job.log.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    except OSError:
        log = []
    code = job.proc.exitcode if job.proc else None
    why = job.ended_by or f"the grading process ended with code {code}"
    last = f": {log[-1]}" if log else ""
    return Result(
        id=job.id,
        source=str(job.src),
        status="error",
        note=_one_line(f"grader error: {why}{last}"),
        report=f"# {job.id}\n\n**Not graded: grader error.** {_md_text(why + last)}\n\n"
        + (_fenced("\n".join(log[-30:])) if log else ""),
    )


def _end_job(job: _Job) -> None:
    """SIGKILL a worker; what it started comes back to us (subreaper), ended at the end."""
    if job.proc is not None and job.proc.is_alive():
        job.proc.kill()
    if job.proc is not None:
        job.proc.join()


class _Interrupted(BaseException):
    def __init__(self, signum: int):
        self.signum = signum


def grade_class(
    sources: list[Path],
    out_dir: Path,
    *,
    jobs: int | None = None,
    options: Options = Options(),
    resume: bool = False,
    stream=None,
) -> Summary:
    """Grade every submission in sources into out_dir (grades.csv, reports/ID.md)."""
    from tqdm import tqdm

    stream = stream or sys.stderr
    jobs = max(1, jobs or default_jobs())
    if options.threads is None:  # share the cores out among the kernels running at once
        options = dataclasses.replace(options, threads=max(1, default_jobs() // jobs))
    cols = columns()
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"--out {out_dir}: not a folder")
    csv_path, reports = out_dir / "grades.csv", out_dir / "reports"
    procs.become_subreaper()  # a killed worker's orphans come back to us, to be ended
    tmp = Path(tempfile.mkdtemp(prefix="hw4-grade-"))
    try:
        todo = _jobs(sources, tmp)
        done: set[str] = set()
        if csv_path.exists():
            if not resume:
                raise UsageError(
                    f"{csv_path} exists: --resume to continue it (graded IDs are skipped), "
                    "or choose another --out"
                )
            done = {r["id"] for r in _read_rows(csv_path, cols) if r["status"] in FINAL_STATUSES}
        skipped = sum(j.id in done for j in todo)
        todo = [j for j in todo if j.id not in done]
        reports.mkdir(parents=True, exist_ok=True)
        new_file = not csv_path.exists()
        summary = Summary(total=len(todo) + skipped, graded=0, skipped=skipped, errors=[])
        with open(csv_path, "a", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=cols)
            if new_file:
                writer.writeheader()
                f.flush()
            _loop(todo, jobs, options, cols, writer, f, reports, summary, stream, tqdm)
        _write_sorted(csv_path, cols)
        return summary
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def default_jobs() -> int:
    """The cores this process may use (a batch scheduler's CPU set, else all of them)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _loop(todo, jobs, options, cols, writer, f, reports, summary, stream, tqdm) -> None:
    pending, running = list(todo), []
    interactive = hasattr(stream, "isatty") and stream.isatty()
    bar = tqdm(
        total=summary.total,
        initial=summary.skipped,
        unit="submission",
        file=stream,
        disable=not interactive,
    )

    def on_signal(signum, frame):
        raise _Interrupted(signum)

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    counts = {"graded": 0, "unreadable": 0, "error": 0}
    ctx = _context()
    try:
        while pending or running:
            while pending and len(running) < jobs:
                job = pending.pop(0)
                _start(ctx, job, options)
                running.append(job)
            multiprocessing.connection.wait([j.proc.sentinel for j in running], timeout=1)
            finished = [j for j in running if not j.proc.is_alive()]
            for j in running:
                if j not in finished and time.monotonic() - j.started > SUBMISSION_TIMEOUT:
                    j.ended_by = f"grading took longer than {SUBMISSION_TIMEOUT} s"
                    _end_job(j)
                    finished.append(j)
            for j in finished:
                j.proc.join()
                running.remove(j)
                result = _collect(j)
                _write_result(result, cols, writer, f, reports)
                counts[result.status] = counts.get(result.status, 0) + 1
                if result.status in FINAL_STATUSES:
                    summary.graded += 1
                else:
                    summary.errors.append(result.id)
                bar.update(1)
                errors = f", {counts['error']} grader errors" if counts["error"] else ""
                bar.set_postfix_str(
                    f"{counts['graded']} graded, {counts['unreadable']} unreadable{errors}",
                    refresh=True,
                )
                done = summary.skipped + summary.graded + len(summary.errors)
                line = f"[{done}/{summary.total}] {result.id}: {_progress_text(result, cols)}"
                if interactive:
                    tqdm.write(line, file=stream)
                else:
                    print(line, file=stream, flush=True)
    except (KeyboardInterrupt, _Interrupted) as e:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not stop the cleanup
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        summary.interrupted = getattr(e, "signum", signal.SIGINT)
        _stop_workers(running)
    finally:
        bar.close()
        procs.end_descendants(keep=_fork_server_pids())
        for s, handler in old.items():
            signal.signal(s, handler)


def _fork_server_pids() -> set[int]:
    """The fork server's PID (multiprocessing keeps it; it may be reused by another run)."""
    from multiprocessing import forkserver

    pid = getattr(getattr(forkserver, "_forkserver", None), "_forkserver_pid", None)
    return {pid} if pid else set()


def _stop_workers(running: list[_Job]) -> None:
    """SIGTERM every worker (it ends its kernel and cleans up), SIGKILL what is left."""
    for j in running:
        if j.proc.is_alive():
            j.proc.terminate()
    deadline = time.monotonic() + GRACE
    for j in running:
        j.proc.join(max(0.1, deadline - time.monotonic()))
        _end_job(j)


def _progress_text(result: Result, cols: list[str]) -> str:
    if result.status == "graded":
        row = result.row(cols)
        return f"{row['passed']} checks passed"
    return f"{result.status}: {result.note}"


def _write_result(result: Result, cols, writer, f, reports: Path) -> None:
    report = reports / f"{result.id}.md"
    tmp = report.with_name(report.name + ".part")
    tmp.write_text(result.report or f"# {result.id}\n", encoding="utf-8")
    os.replace(tmp, report)
    writer.writerow({k: csv_safe(v) for k, v in result.row(cols).items()})
    f.flush()


# --------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------


def memory_size(text: str) -> int:
    """'4G', '512M', '4096' (MiB) -> bytes."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMG]?)i?B?\s*", text, re.IGNORECASE)
    if not m:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 4G, 512M)")
    scale = {"K": 2**10, "M": 2**20, "G": 2**30, "": 2**20}[m.group(2).upper()]
    return int(float(m.group(1)) * scale)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``main.py grade``."""
    p.add_argument("submissions", nargs="+", type=Path, metavar="SUBMISSION",
                   help="zip made by prepare-submission, or a folder")  # fmt: skip
    p.add_argument("--jobs", "-j", type=int, default=None, metavar="N",
                   help="submissions graded at once (default: number of cores)")  # fmt: skip
    p.add_argument("--out", "-o", type=Path, default=Path("grades"), metavar="DIR",
                   help="folder for grades.csv and reports/ (default: ./grades)")  # fmt: skip
    p.add_argument("--resume", action="store_true",
                   help="continue an existing grades.csv: skip IDs graded there")  # fmt: skip
    p.add_argument("--timeout", type=float, default=CELL_TIMEOUT, metavar="SECONDS",
                   help=f"seconds per notebook cell and for the code answer (default {CELL_TIMEOUT})")  # fmt: skip
    p.add_argument("--memory-limit", type=memory_size, default=MEMORY_LIMIT, metavar="SIZE",
                   help="address space per kernel, e.g. 4G (default 4G)")  # fmt: skip
    p.add_argument("--max-files", type=int, default=Limits.max_files, metavar="N",
                   help=f"files per submission (default {Limits.max_files})")  # fmt: skip
    p.add_argument("--max-bytes", type=memory_size, default=Limits.max_bytes, metavar="SIZE",
                   help="uncompressed size per submission, e.g. 200M (default 200M)")  # fmt: skip


def cmd_grade(args) -> int:
    """``main.py grade``: grade, then one line of totals; the exit code."""
    options = Options(
        timeout=args.timeout,
        memory_limit=args.memory_limit,
        max_files=args.max_files,
        max_bytes=args.max_bytes,
    )
    if args.jobs is not None and args.jobs < 1:
        print("--jobs must be at least 1", file=sys.stderr)
        return 2
    start = time.monotonic()
    try:
        s = grade_class(
            args.submissions, args.out, jobs=args.jobs, options=options, resume=args.resume
        )
    except UsageError as e:
        print(f"grade: {e}", file=sys.stderr)
        return 2
    minutes = (time.monotonic() - start) / 60
    csv_path = args.out / "grades.csv"
    done = f"{s.graded} of {s.total - s.skipped} graded in {minutes:.1f} min"
    if s.skipped:
        done += f" ({s.skipped} already in {csv_path})"
    if s.interrupted:
        name = signal.Signals(s.interrupted).name
        print(f"interrupted ({name}): {done}; rows kept in {csv_path}; "
              "rerun with --resume to grade the rest", file=sys.stderr)  # fmt: skip
    elif s.errors:
        print(f"{done}; grader errors (see the note column) for: {', '.join(s.errors)}; "
              "rerun with --resume to retry them", file=sys.stderr)  # fmt: skip
    else:
        print(f"{done}: {csv_path}, reports in {args.out / 'reports'}", file=sys.stderr)
    return s.exit_code
