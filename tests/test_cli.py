"""main.py as students and graders use it (subprocesses; the repository is not written)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import nbformat
from conftest import ROOT


def main_py(*args: str, cwd: Path = ROOT, script: Path = ROOT / "main.py"):
    return subprocess.run(
        [sys.executable, str(script), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
        stdin=subprocess.DEVNULL,
    )


def test_run_nb_failure_exits_1_and_leaves_the_notebook(tmp_path: Path):
    nb = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell("x = 1"), nbformat.v4.new_code_cell("%notamagic")]
    )
    path = tmp_path / "Part9_Broken.ipynb"
    nbformat.write(nb, path)
    before = path.read_bytes()
    proc = main_py("run-nb", str(path))
    assert proc.returncode == 1
    assert "Part9_Broken.ipynb: code cell 2 (execution count 2) failed" in proc.stderr
    assert "UsageError: Line magic function `%notamagic` not found." in proc.stderr
    assert "FAILED (the notebook file was not changed)" in proc.stderr
    assert path.read_bytes() == before


def test_run_nb_saves_outputs_and_prints_slowest_cells(tmp_path: Path):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print(6 * 7)")])
    path = tmp_path / "Part9_Ok.ipynb"
    nbformat.write(nb, path)
    proc = main_py("run-nb", str(path), "--html", str(tmp_path / "html"))
    assert proc.returncode == 0, proc.stderr
    assert "Part9_Ok.ipynb: OK in" in proc.stdout and "code cell  1  print(6 * 7)" in proc.stdout
    saved = nbformat.read(path, as_version=4)
    assert saved.cells[0].outputs[0]["text"] == "42\n"
    assert "42" in (tmp_path / "html" / "Part9_Ok.html").read_text(encoding="utf-8")


def test_prepare_submission_zip_contents(tmp_path: Path):
    project = tmp_path / "project"
    for package in ("hw4", "nbtools"):
        shutil.copytree(ROOT / package, project / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "tests" / "questions", project / "tests" / "questions")
    shutil.copy(ROOT / "main.py", project)
    for nb in ROOT.glob("Part*_*.ipynb"):
        shutil.copy(nb, project)
    junk = [".venv/bin/python", "hw4/__pycache__/x.pyc", "data/big.bin", "hw4-1_2.zip",
            ".git/HEAD", ".pytest_cache/x", ".ipynb_checkpoints/x.ipynb"]  # fmt: skip
    for name in junk:
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text("junk")

    proc = main_py("prepare-submission", "--id", "123456789", "--id", "987654321", "--skip-run",
                   cwd=project, script=project / "main.py")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    out = project / "hw4-123456789_987654321.zip"
    assert f"Wrote {out}" in proc.stdout
    names = set(zipfile.ZipFile(out).namelist())
    assert {"main.py", "nbtools/questions.py", "Part3_SummaryQuestions.ipynb"} <= names
    assert {"html/Part3_SummaryQuestions.html", "html/Part4_SummaryQuestions.html"} <= names
    assert "html/mathjax/MathJax.js" in names  # the HTML copies read offline
    assert out.stat().st_size < 5 * 2**20, f"submission zip is {out.stat().st_size / 2**20:.1f} MiB"
    assert not names & set(junk)
    assert not any(n.endswith(".zip") for n in names)


def test_prepare_submission_rejects_bad_id():
    proc = main_py("prepare-submission", "--id", "../x", "--skip-run")
    assert proc.returncode == 2 and "invalid --id" in proc.stderr
