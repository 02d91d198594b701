"""main.py as students and graders use it. The repository is not written: notebooks and
projects are copies in temporary folders. In-process (main.main) where that is the same,
subprocesses where the process itself is under test (signals, a Python without the
environment, the whole submission)."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import nbformat
import psutil
import pytest
from conftest import ROOT, WITH_DEFAULT_SIGINT

import main

code, md = nbformat.v4.new_code_cell, nbformat.v4.new_markdown_cell


def main_py(*args: str, cwd: Path = ROOT, script: Path = ROOT / "main.py", python=(sys.executable,)):
    return subprocess.run(
        [*python, str(script), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
        stdin=subprocess.DEVNULL,
    )


def _write(path: Path, *cells) -> Path:
    nbformat.write(nbformat.v4.new_notebook(cells=list(cells)), path)
    return path


def _stderr_lines(capsys) -> list[str]:
    return capsys.readouterr().err.strip().splitlines()


# --------------------------------------------------------------------------------------
# run-nb
# --------------------------------------------------------------------------------------


def test_run_nb_failure_exits_1_and_leaves_the_notebook(tmp_path: Path, capsys):
    path = _write(tmp_path / "Part9_Broken.ipynb", code("x = 1"), code("%notamagic"))
    before = path.read_bytes()
    assert main.main(["run-nb", str(path)]) == 1
    err = capsys.readouterr().err
    assert "Part9_Broken.ipynb: cell 2 (execution count 2) failed" in err
    assert "UsageError: Line magic function `%notamagic` not found." in err
    assert "FAILED (the notebook file was not changed)" in err
    assert path.read_bytes() == before


def test_run_nb_saves_outputs_and_prints_slowest_cells(tmp_path: Path):
    path = _write(tmp_path / "Part9_Ok.ipynb", md("# Title"), code("print(6 * 7)"))
    proc = main_py("run-nb", str(path), "--html", str(tmp_path / "html"))
    assert proc.returncode == 0, proc.stderr
    assert "Part9_Ok.ipynb: OK in" in proc.stdout
    assert re.search(r"^ +\d+\.\d\d s  cell 2 \(execution count 1\) +print\(6 \* 7\)$", proc.stdout, re.M)
    saved = nbformat.read(path, as_version=4)
    assert saved.cells[1].outputs[0]["text"] == "42\n"
    assert "42" in (tmp_path / "html" / "Part9_Ok.html").read_text(encoding="utf-8")


def test_run_nb_leaves_a_write_protected_notebook_alone(tmp_path: Path, capsys):
    path = _write(tmp_path / "Part9_Ro.ipynb", code("x = 1"))
    path.chmod(0o444)
    before = path.read_bytes()
    assert main.main(["run-nb", str(path)]) == 1
    assert _stderr_lines(capsys) == [
        "Part9_Ro.ipynb: not run: it could not be saved: Part9_Ro.ipynb is write-protected "
        "(no write permission)",
        "Part9_Ro.ipynb: FAILED (the notebook file was not changed)",
        "1 of 1 notebook(s) failed",
    ]
    assert path.read_bytes() == before and path.stat().st_mode & 0o777 == 0o444


def test_run_nb_unwritable_outputs_are_one_line_each_and_the_rest_runs(tmp_path: Path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    ro = _write(locked / "Part9_A.ipynb", code("x = 1"))
    ok = _write(tmp_path / "Part9_B.ipynb", code("print('B ran')"))
    not_a_folder = tmp_path / "html"
    not_a_folder.write_text("a file where --html wants a folder")
    locked.chmod(0o555)
    try:
        status = main.main(["run-nb", str(ro), str(ok), "--html", str(not_a_folder)])
    finally:
        locked.chmod(0o755)
    err = _stderr_lines(capsys)
    assert status == 1
    assert err[0].startswith(f"HTML copies not written: cannot create {not_a_folder}: ")
    assert err[1] == (
        f"Part9_A.ipynb: not run: it could not be saved: folder {locked} is read-only"
    )
    assert err[2:] == ["Part9_A.ipynb: FAILED (the notebook file was not changed)",
                       "1 of 2 notebook(s) failed"]  # fmt: skip
    assert nbformat.read(ok, as_version=4).cells[0].outputs[0]["text"] == "B ran\n"
    assert not any("Traceback" in line for line in err)


def test_run_nb_malformed_notebook_is_one_line(tmp_path: Path, capsys):
    path = tmp_path / "Part9_Bad.ipynb"
    path.write_text('{"cells": [{"cell_type": "code", "metadata": {}, "source": 5, "outputs": [],'
                    ' "execution_count": null}], "metadata": {}, "nbformat": 4, '
                    '"nbformat_minor": 4}')  # fmt: skip
    assert main.main(["run-nb", str(path)]) == 1
    assert _stderr_lines(capsys)[0] == (
        "Part9_Bad.ipynb: not a valid notebook: cell 1: 'source' is int, not text (a string or "
        "a list of strings)"
    )


def test_run_nb_timeout_option_and_large_notebook_warning(tmp_path: Path, capsys):
    big = _write(tmp_path / "Part9_Big.ipynb", md("# Big"), code("print('x' * 6_000_000)"))
    slow = _write(tmp_path / "Part9_Slow.ipynb", code("import time\ntime.sleep(30)"))
    start = time.monotonic()
    assert main.main(["run-nb", str(big), str(slow), "--timeout", "2"]) == 1
    assert time.monotonic() - start < 25, "--timeout 2 did not end the 30 s cell"
    err = capsys.readouterr().err
    assert "Part9_Big.ipynb: warning: the saved notebook is 5.7 MB; cell 2 (execution count 1) " \
           "holds 5.7 MB of output (print less?)" in err  # fmt: skip
    assert "Part9_Slow.ipynb: cell 1 (execution count 1) timed out" in err
    assert "the cell ran longer than 2 s (the limit per cell: --timeout SECONDS)" in err
    with pytest.raises(SystemExit):
        main.main(["run-nb", "--timeout", "0"])
    assert "expected a whole number of seconds >= 1, got '0'" in capsys.readouterr().err


SLEEPER = """\
import os, pathlib, subprocess, time
child = subprocess.Popen(['sleep', '600'])
orphan = subprocess.Popen(['sleep', '600'], start_new_session=True)  # out of the kernel's group
pathlib.Path({tmp!r}).write_text(f'{{os.getpid()}} {{child.pid}} {{orphan.pid}}')
os.replace({tmp!r}, {pids!r})
time.sleep(600)"""


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_ends_the_kernel_and_everything_it_started(tmp_path: Path, sig):
    tmpdir, pids_file = tmp_path / "tmp", tmp_path / "pids"
    tmpdir.mkdir()
    sleeper = SLEEPER.format(tmp=str(pids_file) + ".tmp", pids=str(pids_file))
    path = _write(tmp_path / "Part9_Sleep.ipynb", code("x = 1"), code(sleeper))
    before = path.read_bytes()
    proc = subprocess.Popen(
        [*WITH_DEFAULT_SIGINT, str(ROOT / "main.py"), "run-nb", str(path)],
        env={**os.environ, "TMPDIR": str(tmpdir)},  # the kernel's files are made here
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    procs: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 120
        while not pids_file.exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the sleeping cell never started"
            time.sleep(0.05)
        procs = [psutil.Process(int(p)) for p in pids_file.read_text().split()]
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 128 + sig, err
        assert err.strip().splitlines() == [f"interrupted ({sig.name}): Part9_Sleep.ipynb unchanged"]
        _, alive = psutil.wait_procs(procs, timeout=5)
        alive = [p for p in alive if p.status() != psutil.STATUS_ZOMBIE]
        assert not alive, f"still running after {sig.name}: {alive}"
        assert path.read_bytes() == before
        assert list(tmpdir.iterdir()) == [], "temp files (kernel connection file, log) left"
    finally:  # ended by their own handles
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for p in procs:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.kill()


def test_main_outside_the_environment_says_how_to_set_up(tmp_path: Path):
    # -S: no site-packages, as a Python without the project's environment.
    proc = main_py("check", python=(sys.executable, "-S"))
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert lines[0].startswith("main.py: Python module '") and "is missing" in lines[0], lines
    assert "`make run`" in lines[1] and "`.venv/bin/python main.py check`" in lines[1], lines
    assert "Traceback" not in proc.stderr


# --------------------------------------------------------------------------------------
# prepare-submission
# --------------------------------------------------------------------------------------

# What an interrupted run, an editor, JupyterLab or a student leaves lying around.
JUNK = [".venv/bin/python", "hw4/__pycache__/x.pyc", "data/big.bin", "hw4-1_2.zip",
        "hw4-1_2.zip.part", ".hw4-1_2.zip.abc.part", ".Part3_SummaryQuestions.ipynb.x1y2.tmp",
        ".git/HEAD", ".pytest_cache/x", ".ipynb_checkpoints/x.ipynb", ".env", ".DS_Store",
        "env/pyvenv.cfg", "env/lib/site.py", "myenv/pyvenv.cfg", "myenv/lib/x.py",
        ".virtual_documents/Part3_SummaryQuestions.ipynb", "Part3_SummaryQuestions-Copy1.ipynb",
        "html/old.html", "notes/scratch.log"]  # fmt: skip


def _project(tmp_path: Path) -> Path:
    project = tmp_path / "project"
    for package in ("hw4", "nbtools"):
        shutil.copytree(ROOT / package, project / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "tests" / "questions", project / "tests" / "questions")
    for name in ("main.py", ".gitignore", "Part3_SummaryQuestions.ipynb",
                 "Part4_SummaryQuestions.ipynb"):  # fmt: skip
        shutil.copy(ROOT / name, project)
    with open(project / ".gitignore", "a") as f:
        f.write("*.log\n")  # the project's own rule
    for name in JUNK + ["html/Part3_SummaryQuestions.html", "README.md"]:
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text("x")
    return project


EXPECTED = {".gitignore", "README.md", "main.py", "Part3_SummaryQuestions.ipynb",
            "Part4_SummaryQuestions.ipynb", "html/Part3_SummaryQuestions.html"}  # fmt: skip


def _code_files(project: Path) -> set[str]:
    files = [p for d in ("hw4", "nbtools", "tests") for p in (project / d).rglob("*")]
    return {p.relative_to(project).as_posix() for p in files
            if p.is_file() and "__pycache__" not in p.parts}  # fmt: skip


def test_submission_files_without_git(tmp_path: Path):
    project = _project(tmp_path)
    members, left_out = main.submission_files(project)
    assert set(members) == EXPECTED | _code_files(project)
    assert left_out == ["Part3_SummaryQuestions-Copy1.ipynb"]


def test_submission_files_from_git(tmp_path: Path):
    project = _project(tmp_path)
    shutil.rmtree(project / ".git")
    git = ["git", "-C", str(project)]
    subprocess.run([*git, "init", "-q"], check=True)
    # Tracked (even a leftover, .env), untracked, ignored by git.
    subprocess.run([*git, "add", "main.py", "hw4", ".env"], check=True)
    (project / "build.cache").write_text("x")
    with open(project / ".gitignore", "a") as f:
        f.write("*.cache\n")
    members, left_out = main.submission_files(project)
    assert set(members) == EXPECTED | _code_files(project)
    assert left_out == ["Part3_SummaryQuestions-Copy1.ipynb"]


def test_prepare_submission_zip_contents(tmp_path: Path):
    project = _project(tmp_path)
    proc = main_py("prepare-submission", "--id", "123456789", "--id", "987654321", "--skip-run",
                   cwd=project, script=project / "main.py")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    out = project / "hw4-123456789_987654321.zip"
    assert f"Wrote {out}" in proc.stdout
    assert "Left out (not homework notebooks): Part3_SummaryQuestions-Copy1.ipynb" in proc.stderr
    names = set(zipfile.ZipFile(out).namelist())
    assert {"main.py", "nbtools/questions.py", "Part3_SummaryQuestions.ipynb"} <= names
    assert {"html/Part3_SummaryQuestions.html", "html/Part4_SummaryQuestions.html"} <= names
    assert not names & set(JUNK)
    assert not any(n.endswith((".zip", ".part", ".tmp")) for n in names)
    parts = {p.name for p in project.iterdir() if p.name.endswith(".part")}
    assert parts == {".hw4-1_2.zip.abc.part", "hw4-1_2.zip.part"}, "a temp file was left"
    assert "html/mathjax/MathJax.js" in names  # the HTML copies read offline
    assert out.stat().st_size < 5 * 2**20, f"submission zip is {out.stat().st_size / 2**20:.1f} MiB"


def _incomplete_project(tmp_path: Path, monkeypatch) -> Path:
    project = _project(tmp_path)
    nb = nbformat.read(project / "Part4_SummaryQuestions.ipynb", as_version=4)
    i = next(i for i, c in enumerate(nb.cells) if c.source.startswith("**Answer:**"))
    del nb.cells[i]
    nbformat.write(nb, project / "Part4_SummaryQuestions.ipynb")
    monkeypatch.setattr(main, "ROOT", project)
    # HTML export is tested above; here it would only cost time.
    monkeypatch.setattr(main, "export_html", lambda paths, html_dir: 0)
    return project


def test_prepare_submission_refuses_an_incomplete_submission(tmp_path, monkeypatch, capsys):
    project = _incomplete_project(tmp_path, monkeypatch)
    assert main.main(["prepare-submission", "--id", "1", "--skip-run"]) == 1
    err = capsys.readouterr().err
    assert "Part4_SummaryQuestions.ipynb: 1 problem\n  - " in err
    assert "Not creating a submission: `python main.py check` finds the problems above" in err
    assert not list(project.glob("*hw4-1.zip*"))
    assert main.main(["prepare-submission", "--id", "1", "--skip-run", "--allow-incomplete"]) == 0
    assert "the submission is incomplete (--allow-incomplete)" in capsys.readouterr().err
    assert (project / "hw4-1.zip").is_file()
    assert main.main(["prepare-submission", "--id", "1", "--skip-run", "--allow-incomplete"]) == 0
    assert "KiB, replacing the earlier one)" in capsys.readouterr().out


def test_prepare_submission_passes_the_timeout_and_says_how_to_zip_a_failing_run(
    tmp_path, monkeypatch, capsys
):
    project = _incomplete_project(tmp_path, monkeypatch)
    calls = []
    fail = lambda paths, html_dir, timeout=None: calls.append(timeout) or 1  # noqa: E731
    monkeypatch.setattr(main, "run_notebooks", fail)
    assert main.main(["prepare-submission", "--id", "1", "--timeout", "7"]) == 1
    assert calls == [7], "--timeout reaches the run"
    err = capsys.readouterr().err
    assert ("fix the failing notebook first (or zip it as it is, with its last saved outputs: "
            "--skip-run --allow-incomplete)") in err
    assert not list(project.glob("*hw4-1.zip*"))


@pytest.mark.parametrize("bad", ["-", "../x", "-5", "a--", ""])
def test_prepare_submission_rejects_bad_id(bad, capsys):
    assert main.main(["prepare-submission", f"--id={bad}", "--skip-run"]) == 2
    assert f"invalid --id {bad!r}" in capsys.readouterr().err


def test_prepare_submission_out_naming_a_file_is_one_line(tmp_path, capsys):
    out = tmp_path / "file"
    out.write_text("x")
    assert main.main(["prepare-submission", "--id", "1", "--skip-run", "--out", str(out)]) == 1
    assert _stderr_lines(capsys) == [f"--out {out}: not a folder"]


def test_check_and_run_nb_name_notebooks_that_are_not_the_homework(tmp_path, monkeypatch, capsys):
    project = _project(tmp_path)  # with a JupyterLab duplicate, Part3_SummaryQuestions-Copy1
    monkeypatch.setattr(main, "ROOT", project)
    assert main.main(["check"]) == 0
    note = "(not homework notebooks)"
    assert f"note: not checked: Part3_SummaryQuestions-Copy1.ipynb {note}" in capsys.readouterr().err
    ran = []
    monkeypatch.setattr(main, "run_notebooks", lambda paths, *a: ran.append(paths) or 0)
    assert main.main(["run-nb"]) == 0
    assert [p.name for p in ran[0]] == ["Part3_SummaryQuestions.ipynb", "Part4_SummaryQuestions.ipynb"]
    assert f"note: not run: Part3_SummaryQuestions-Copy1.ipynb {note}" in capsys.readouterr().err
