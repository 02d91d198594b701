"""Length budgets (nbtools/budget.py): on the committed notebooks, and on small ones."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from conftest import XFAIL_BUDGET, notebook_params

from nbtools import budget, questions, runner

PART3 = "Part3_SummaryQuestions"
md, code = nbformat.v4.new_markdown_cell, nbformat.v4.new_code_cell


@pytest.mark.parametrize("notebook", notebook_params(XFAIL_BUDGET))
def test_notebook_within_budget(notebook: Path):
    b = budget.measure(runner.read(notebook), questions.load(notebook.stem))
    assert not b.problems(), f"{notebook.name}: {b.summary()}\n  " + "\n  ".join(b.problems())


def _qfile():
    return questions.load(PART3)


def _given_code(template: bool) -> str:
    return next(
        b.source
        for q in _qfile().questions
        for b in q.blocks
        if b.kind == "code" and ("# TODO" in b.source) == template
    )


def _nb(*cells) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook(cells=list(cells))
    for n, c in enumerate((c for c in nb.cells if c.cell_type == "code"), start=1):
        c.execution_count = n
    return nb


def test_measure_counts_answer_words_and_evidence_lines():
    template = _given_code(True).replace("# grad_W =...", "grad_W = numerical(W)")
    nb = _nb(
        md("# Part 3"),
        code(_given_code(False)),  # given: not evidence
        md("**Answer:** one two three"),  # 4 words, "**Answer:**" included
        code("x = 1\n\ny = 2\nprint(x + y)"),  # evidence: 3 non-blank lines
        code(template),  # a completed given template: not evidence
        md("**Answer:**\n1. **True.** a b c d e"),  # 8 words
        code("assert True"),  # evidence: 1 line
        code("   \n"),  # empty: not evidence
        md("Not an answer: many words here that are not counted"),
    )
    b = budget.measure(nb, _qfile())
    assert (b.answer_words, b.longest_answer, b.longest_answer_cell) == (12, 8, 6)
    assert (b.evidence_cells, b.evidence_median_lines, b.evidence_longest_lines) == (2, 2, 3)
    assert (b.longest_evidence_cell, b.longest_evidence_count) == (4, 2)
    assert b.problems() == []
    assert b.summary() == (
        "12 answer words (longest 8, cell 6); 2 evidence cells, median 2 lines, longest 3 "
        "(cell 4 (execution count 2))"
    )


def test_problems_name_each_exceeded_budget_with_its_cell():
    long_answer = "**Answer:** " + "word " * budget.MAX_ANSWER_CELL_WORDS
    long_cell = "\n".join(f"x{i} = {i}" for i in range(budget.MAX_EVIDENCE_LINES + 1))
    answers = [md(long_answer) for _ in range(budget.MAX_ANSWER_WORDS // 320 + 1)]
    b = budget.measure(_nb(md("# Part 3"), code("y = 1"), code(long_cell), *answers), _qfile())
    words = (budget.MAX_ANSWER_CELL_WORDS + 1) * len(answers)
    assert b.problems() == [
        f"answers have {words} words (budget {budget.MAX_ANSWER_WORDS})",
        f"cell 4: answer of {budget.MAX_ANSWER_CELL_WORDS + 1} words "
        f"(budget {budget.MAX_ANSWER_CELL_WORDS})",
        f"evidence cells: median {(1 + budget.MAX_EVIDENCE_LINES + 1) / 2:g} lines "
        f"(budget {budget.MAX_EVIDENCE_MEDIAN_LINES})",
        f"cell 3 (execution count 2): evidence cell of {budget.MAX_EVIDENCE_LINES + 1} lines "
        f"(budget {budget.MAX_EVIDENCE_LINES})",
    ]


def test_a_notebook_without_answers_or_evidence():
    b = budget.measure(_nb(md("# Part 3"), code(_given_code(False))), _qfile())
    assert (b.answer_words, b.longest_answer_cell, b.evidence_cells) == (0, None, 0)
    assert b.problems() == []
    assert b.summary() == "0 answer words; 0 evidence cells"
