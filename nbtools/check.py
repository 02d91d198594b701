"""Static check of the notebooks against the question files (no kernel needed).

For a notebook ``<stem>.ipynb`` and its question file ``tests/questions/<stem>.md``
(parsed by :mod:`nbtools.questions`), :func:`check_notebook` returns a list of
problems, one readable line each (empty: all good). It checks that

- the header cells, every ``### Section`` heading and every question's given
  blocks (markdown and code) appear verbatim and in order (trailing whitespace
  per line and blank edges are ignored); a given cell that was edited is named,
  with its first line that differs;
- the cell right after a question's last given block is a markdown cell that
  starts with ``**Answer:**`` and says something; a true/false question's answer
  has one verdict line (``**True.**`` / ``**False.**``) per statement;
- a given code block with ``# TODO`` lines (Part 3's numerical-gradient snippet)
  is completed: its code lines kept in order, its commented asserts live, no
  ``# TODO`` or commented placeholder (``# grad_W =...``) left;
- no placeholder is left anywhere (``YOUR ANSWER HERE``,
  ``raise NotImplementedError``), no error is stored in an output, and the code
  cells were executed once, top to bottom (execution counts 1..n), on the
  ``python3`` kernel.

Cells are named as JupyterLab numbers them (all cells from 1), a code cell with its
execution count beside: ``cell 7 (execution count 3)``.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path

import nbformat

from nbtools import budget
from nbtools import questions as Q
from nbtools.runner import (
    NotebookError,
    cell_label,
    first_line,
    is_usage_error,
    read,
    strip_ansi,
    validation_problem,
)

ANSWER_MARK = "**Answer:**"
PLACEHOLDERS = ("YOUR ANSWER HERE", "raise NotImplementedError")
# "# grad_W =...", "# autograd_b = ..."
_COMMENTED_PLACEHOLDER = re.compile(r"^\s*#\s*[A-Za-z_]\w*\s*=\s*\.\.\.\s*$")
_COMMENTED_ASSERT = re.compile(r"^\s*#\s*(assert\b.*)$")
_TODO = re.compile(r"^\s*#\s*TODO\b")
# A verdict line: optional "**Answer:**", optional list marker, then the verdict.
_VERDICT = re.compile(
    r"^\s*(?:\*\*Answer:\*\*\s*)?(?:(?:\d+|[A-Za-z])[.)]\s+|[-*+]\s+)?\*\*(?:True|False)\.\*\*"
)
_ADDRESS = re.compile(r"\bat 0x[0-9a-fA-F]{6,}")
RUN_HINT = "run `python main.py run-nb` to execute it top to bottom on python3"
SIMILAR = 0.6  # difflib ratio above which a cell counts as an edited given cell


def _norm(source: str) -> str:
    return "\n".join(ln.rstrip() for ln in source.splitlines()).strip("\n")


def _short(text: str, n: int = 60) -> str:
    line = first_line(text)
    return line if len(line) <= n else line[: n - 3] + "..."


def _is_template(block: Q.Block) -> bool:
    return block.kind == "code" and any(_TODO.match(ln) for ln in block.source.splitlines())


def _code_lines(source: str) -> list[str]:
    """Non-blank, non-comment lines, trailing whitespace stripped."""
    return [
        ln.rstrip() for ln in source.splitlines() if ln.strip() and not ln.lstrip().startswith("#")
    ]


def _is_subsequence(needles: list[str], haystack: list[str]) -> bool:
    it = iter(haystack)
    return all(any(n == h for h in it) for n in needles)


def _matches(block: Q.Block, cell) -> bool:
    if cell.get("cell_type") != block.kind:
        return False
    source = cell.get("source", "")
    if _is_template(block):
        lines = [ln.rstrip() for ln in source.splitlines()]
        return _is_subsequence(_code_lines(block.source), lines)
    return _norm(source) == _norm(block.source)


def _template_problems(key: str, block: Q.Block, source: str) -> list[str]:
    """Problems of a completed template cell (its code lines are known present)."""
    problems = []
    lines = [ln.rstrip() for ln in source.splitlines()]
    left = [ln.strip() for ln in lines if _TODO.match(ln) or _COMMENTED_PLACEHOLDER.match(ln)]
    left += [ln.strip() for ln in lines if _COMMENTED_ASSERT.match(ln)]
    if left:
        shown = ", ".join(f'"{ln}"' for ln in left[:3]) + (", ..." if len(left) > 3 else "")
        problems.append(f"{key}: the given code cell still has placeholder lines: {shown}")
    stripped = {ln.strip() for ln in lines}
    for ln in block.source.splitlines():
        m = _COMMENTED_ASSERT.match(ln)
        if m and m.group(1).strip() not in stripped:
            problems.append(f'{key}: the given code cell must run "{m.group(1).strip()}"')
    return problems


def _answer_problems(q: Q.Question, cells: list, j: int) -> list[str]:
    """Problems of the answer that must follow q's last given block (cells[j-1])."""
    if j >= len(cells):
        return [f"{q.key}: no {ANSWER_MARK} cell after the question (the notebook ends)"]
    cell = cells[j]
    source = cell.get("source", "")
    if cell.get("cell_type") != "markdown" or not source.lstrip().startswith(ANSWER_MARK):
        return [
            f"{q.key}: no {ANSWER_MARK} cell right after the question "
            f'({cell_label({"cells": cells}, j)} is {cell.get("cell_type")}: "{_short(source, 40)}")'
        ]
    if not source.lstrip()[len(ANSWER_MARK) :].strip():
        return [f"{q.key}: empty answer (cell {j + 1} has only {ANSWER_MARK})"]
    if q.n_verdicts:
        found = sum(1 for ln in source.splitlines() if _VERDICT.match(ln))
        if found != q.n_verdicts:
            return [
                f"{q.key}: true/false answer in cell {j + 1}: expected {q.n_verdicts} "
                f"verdict{'s' if q.n_verdicts > 1 else ''}, found {found} (one line per "
                "statement, in order, starting with **True.** or **False.**)"
            ]
    return []


def _edited(block: Q.Block, cells: list, start: int, intact: set[int]) -> tuple[int, str] | None:
    """(index, first difference) of the cell from ``start`` on most like ``block``, if one is
    close enough to be the given cell, edited (not an intact given cell, not an answer)."""
    want = _norm(block.source).splitlines()
    best, best_ratio = None, SIMILAR
    for i in range(start, len(cells)):
        cell = cells[i]
        source = cell.get("source", "")
        if cell.get("cell_type") != block.kind or i in intact or not isinstance(source, str):
            continue
        if source.lstrip().startswith(ANSWER_MARK):
            continue
        ratio = difflib.SequenceMatcher(None, want, _norm(source).splitlines()).ratio()
        if ratio > best_ratio:
            best, best_ratio = i, ratio
    if best is None:
        return None
    return best, _first_difference(block, cells[best].get("source", ""))


def _first_difference(block: Q.Block, source: str) -> str:
    if _is_template(block):  # its code lines must be there, in order, among others
        lines = [ln.rstrip() for ln in source.splitlines()]
        it = iter(lines)
        for needle in _code_lines(block.source):
            if not any(needle == h for h in it):
                return f'the given line "{_short(needle, 70)}" is missing'
        return "its given lines are out of order"
    want, got = _norm(block.source).splitlines(), _norm(source).splitlines()
    for n, (w, g) in enumerate(zip(want, got), start=1):
        if w.rstrip() != g.rstrip():
            return f'line {n} is "{_short(g, 70)}", given "{_short(w, 70)}"'
    if len(got) < len(want):
        return f'line {len(got) + 1} "{_short(want[len(got)], 70)}" is missing (the cell ends)'
    return f'line {len(want) + 1} "{_short(got[len(want)], 70)}" was added'


def _structure_problems(nb, qfile: Q.QuestionFile) -> list[str]:
    cells = nb.cells
    problems: list[str] = []
    pos = 0  # cells before pos are consumed
    given = list(qfile.header) + [
        b for it in qfile.items for b in (it.blocks if isinstance(it, Q.Question) else [it])
    ]
    # Cells that are some given block, unchanged: never taken for an edited one.
    intact = {i for i, c in enumerate(cells) if any(_matches(b, c) for b in given)}

    def find(block: Q.Block, label: str) -> int | None:
        """Index of the next cell matching block (advancing pos), or None."""
        nonlocal pos
        for i in range(pos, len(cells)):
            if _matches(block, cells[i]):
                pos = i + 1
                return i
        earlier = next((i for i in range(pos) if _matches(block, cells[i])), None)
        what = f'given {block.kind} cell "{_short(block.source)}"'
        if earlier is not None:
            problems.append(
                f"{label}: {what} is out of order (found at {cell_label(nb, earlier)})"
            )
            return None
        edited = _edited(block, cells, pos, intact)
        if edited is not None:
            i, difference = edited
            problems.append(f"{label}: {what} was changed ({cell_label(nb, i)}): {difference}")
            pos = i + 1
            return i
        problems.append(f"{label}: missing {what}")
        return None

    for block in qfile.header:
        find(block, "header")
    for item in qfile.items:
        if isinstance(item, Q.Block):
            find(item, f'section "{item.source}"')
            continue
        last = None
        for block in item.blocks:
            i = find(block, item.key)
            if i is not None and _is_template(block):
                problems += _template_problems(item.key, block, cells[i].get("source", ""))
            last = i
        if last is not None:
            problems += _answer_problems(item, cells, last + 1)
    return problems


def _cell_problems(nb) -> list[str]:
    problems: list[str] = []
    counts: list[tuple[int, int | None]] = []  # (cell number, execution count)
    for n, cell in enumerate(nb.cells, start=1):
        kind, source = cell.get("cell_type"), cell.get("source", "")
        where = cell_label(nb, n - 1)
        for ph in PLACEHOLDERS:
            if ph in source:
                problems.append(f'{where}: placeholder "{ph}" left')
        if kind != "code":
            continue
        for ln in source.splitlines():
            if _COMMENTED_PLACEHOLDER.match(ln):
                problems.append(f'{where}: placeholder "{ln.strip()}" left')
        if not source.strip():
            problems.append(f"{where}: empty code cell (delete it)")
            continue
        counts.append((n, cell.get("execution_count")))
        for out in cell.get("outputs", []):
            otype = out.get("output_type")
            if otype == "error":
                problems.append(
                    f"{where}: stored error output: "
                    f"{out.get('ename', '?')}: {strip_ansi(str(out.get('evalue', '')))}"
                )
            elif is_usage_error(out):
                problems.append(f"{where}: stored error output: {_short(''.join(out['text']), 100)}")
            text = out.get("text", "") or out.get("data", {}).get("text/plain", "")
            if isinstance(text, list):
                text = "".join(text)
            address = _ADDRESS.search(text)
            if address:
                problems.append(
                    f"{where}: output shows a memory address ({address.group()}): "
                    "it changes on every run"
                )
    if counts and all(c is None for _, c in counts):
        problems.append(f"code cells have no outputs (never executed): {RUN_HINT}")
    else:
        for expected, (n, count) in enumerate(counts, start=1):
            if count != expected:
                got = "none (not executed)" if count is None else count
                problems.append(
                    f"cell {n}: execution count {got}, expected {expected}: outputs must "
                    f"come from one clean top-to-bottom run; {RUN_HINT}"
                )
                break
    return problems


def check_nb(nb: nbformat.NotebookNode, qfile: Q.QuestionFile) -> list[str]:
    """Problems of an in-memory notebook against its question file."""
    problems: list[str] = []
    invalid = validation_problem(nb)
    if invalid:
        return [invalid]
    name = nb.get("metadata", {}).get("kernelspec", {}).get("name")
    if name != "python3":
        problems.append(
            f"kernel is {name!r}, expected 'python3' (the graders' kernel): {RUN_HINT} "
            "(it also fixes the metadata)"
        )
    problems += _structure_problems(nb, qfile)
    problems += _cell_problems(nb)
    return problems


def check_notebook(path: str | Path, qfile: Q.QuestionFile | None = None) -> list[str]:
    """Problems of the notebook file at ``path`` (question file: by its stem)."""
    path = Path(path)
    if qfile is None:
        qfile = Q.load(path.stem)
    if not path.exists():
        return [f"{path.name} not found"]
    try:
        nb = read(path)
    except NotebookError as e:
        return [str(e).removeprefix(f"{path.name}: ")]
    return check_nb(nb, qfile)


def check_project(root: str | Path) -> dict[str, list[str]]:
    """Problems per notebook (``<stem>.ipynb``) for every question file."""
    root = Path(root)
    return {f"{stem}.ipynb": check_notebook(root / f"{stem}.ipynb") for stem in Q.available()}


def question_stem(path: str | Path) -> str | None:
    """The question file a notebook answers: its stem, or the longest stem its name starts
    with (a JupyterLab copy, ``Part3_SummaryQuestions-Copy1``); None if there is none."""
    name = Path(path).stem
    stems = [s for s in Q.available() if name == s or name.startswith(s)]
    return max(stems, key=len) if stems else None


def check_paths(paths: list[str | Path]) -> tuple[dict[str, list[str]], dict]:
    """(problems, budgets) per named notebook, each against the question file of its name."""
    results, budgets = {}, {}
    for path in map(Path, paths):
        stem = question_stem(path)
        if stem is None:
            results[path.name] = [
                f"no question file for it: its name must start with one of {', '.join(Q.available())}"
            ]
            continue
        qfile = Q.load(stem)
        results[path.name] = check_notebook(path, qfile)
        budgets[path.name] = _budget(path, qfile)
    return results, budgets


def _budget(path: Path, qfile: Q.QuestionFile) -> budget.Budget | None:
    """The length budget of the notebook at path; None if it cannot be read."""
    try:
        return budget.measure(read(path), qfile)
    except NotebookError:
        return None


def project_budgets(root: str | Path) -> dict[str, budget.Budget | None]:
    """The length budgets (:mod:`nbtools.budget`) per notebook; None if it cannot be read."""
    return {f"{stem}.ipynb": _budget(Path(root) / f"{stem}.ipynb", Q.load(stem)) for stem in Q.available()}


def format_report(
    results: dict[str, list[str]], budgets: dict[str, budget.Budget | None] | None = None
) -> str:
    """Problems per notebook; with ``budgets``, each notebook's length figures too (for
    information: they are no problems)."""
    lines = []
    for name, problems in results.items():
        if problems:
            lines.append(f"{name}: {len(problems)} problem{'s' if len(problems) > 1 else ''}")
            lines += [f"  - {p}" for p in problems]
        else:
            lines.append(f"{name}: OK")
        b = (budgets or {}).get(name)
        if b is not None:
            lines.append(f"  budget (information): {b.summary()}")
            lines += [f"    over budget: {p}" for p in b.problems()]
    return "\n".join(lines)
