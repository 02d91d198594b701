"""Student submissions with known verdicts, generated at test time (nothing binary is kept).

Used by tests/test_grade.py and benchmarks/grade.py. A submission is a folder laid
out like the project (notebooks at the top, ``hw4/``), or a zip of one, as
``prepare-submission`` makes it.
"""

from __future__ import annotations

import shutil
import stat
import zipfile
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
PART3, PART4 = "Part3_SummaryQuestions", "Part4_SummaryQuestions"

# hw4/answers.py variants (the rest of hw4/ is the project's).
CORRECT = (ROOT / "hw4" / "answers.py").read_text(encoding="utf-8")
WRONG_DX = """\
def part4_affine_backward(ctx, grad_output):
    X, W, b = ctx.saved_tensors
    need = ctx.needs_input_grad
    dX = grad_output @ W if need[0] else None  # the 0.5 is missing
    dW = 0.5 * grad_output.T @ X if need[1] else None
    db = grad_output.sum(0) if need[2] else None
    return dX, dW, db
"""
IGNORES_UPSTREAM = """\
import torch


def part4_affine_backward(ctx, grad_output):
    # Right for l = sum(Y) only (the notebook's assert): grad_output is taken to be all ones.
    X, W, b = ctx.saved_tensors
    need = ctx.needs_input_grad
    ones = torch.ones(X.shape[0], W.shape[0], dtype=X.dtype)
    dX = 0.5 * ones @ W if need[0] else None
    dW = 0.5 * ones.T @ X if need[1] else None
    db = ones.sum(0) if need[2] else None
    return dX, dW, db
"""
FAILS_ON_IMPORT = """\
import torch

raise RuntimeError("student bug at import time")
"""
LOOPS_ON_IMPORT = """\
while True:
    pass
"""


def copy_project(dest: Path, *, notebooks: bool = True) -> Path:
    """A complete and correct submission folder: the project's notebooks, hw4/, tooling."""
    dest.mkdir(parents=True)
    if notebooks:
        for stem in (PART3, PART4):
            shutil.copy(ROOT / f"{stem}.ipynb", dest)
    ignore = shutil.ignore_patterns("__pycache__")
    for package in ("hw4", "nbtools"):
        shutil.copytree(ROOT / package, dest / package, ignore=ignore)
    shutil.copytree(ROOT / "tests" / "questions", dest / "tests" / "questions")
    shutil.copy(ROOT / "main.py", dest)
    return dest


def answers_only(dest: Path, answers: str) -> Path:
    """A submission with just hw4/ (answers.py replaced): its code answer is graded."""
    (dest / "hw4").mkdir(parents=True)
    (dest / "hw4" / "__init__.py").write_text("", encoding="utf-8")
    (dest / "hw4" / "answers.py").write_text(answers, encoding="utf-8")
    return dest


def tiny_notebook(path: Path, *sources: str) -> Path:
    """A python3 notebook of the given code cells."""
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


def edit_notebook(path: Path, edit) -> None:
    """Apply edit(nb) to the notebook file at path."""
    nb = nbformat.read(path, as_version=4)
    edit(nb)
    nbformat.write(nb, path)


def empty_first_answer(nb) -> None:
    """The first **Answer:** cell says nothing more (the notebook's first question)."""
    cell = next(c for c in nb.cells if c.cell_type == "markdown" and c.source.startswith("**Answer:**"))
    cell.source = "**Answer:**"


def change_given_line(old: str, new: str):
    """An edit that changes one line of a given code cell (the cell still runs)."""

    def edit(nb) -> None:
        cell = next(c for c in nb.cells if c.cell_type == "code" and old in c.source)
        cell.source = cell.source.replace(old, new)

    return edit


def zip_folder(folder: Path, dest: Path) -> Path:
    """Zip folder's files (paths relative to it), as prepare-submission does."""
    with zipfile.ZipFile(dest, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(folder).as_posix())
    return dest


def zip_with(dest: Path, entries: dict[str, bytes], symlinks: dict[str, str] | None = None) -> Path:
    """A zip of the given entries (any names, unsafe ones too) and symlink entries."""
    symlinks = symlinks or {}
    with zipfile.ZipFile(dest, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            zf.writestr(zipfile.ZipInfo(name), data)
        for name, target in symlinks.items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, target)
    return dest


def zip_bomb(dest: Path, mib: int = 300) -> Path:
    """mib MiB of zeros in one entry: ~1000:1, a few hundred KiB on disk."""
    with zipfile.ZipFile(dest, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        with zf.open("Part3_SummaryQuestions.ipynb", "w", force_zip64=True) as f:
            chunk = bytes(2**20)
            for _ in range(mib):
                f.write(chunk)
    return dest
