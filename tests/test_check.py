"""The static checker (`python main.py check`): on the real notebooks, and on
small broken notebooks made from the question files (no kernel needed)."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest
from conftest import ROOT, XFAIL_CHECK, notebook_params

from nbtools import check, questions, runner

PART3 = "Part3_SummaryQuestions"


@pytest.mark.parametrize("notebook", notebook_params(XFAIL_CHECK))
def test_notebook_is_complete(notebook: Path):
    problems = check.check_notebook(notebook)
    assert not problems, check.format_report({notebook.name: problems})


# --------------------------------------------------------------------------------------
# A complete notebook, built the way the real ones are, then broken on purpose
# --------------------------------------------------------------------------------------


def _complete_template(source: str) -> str:
    out = []
    for ln in source.splitlines():
        if re.match(r"^\s*#\s*TODO", ln):
            continue
        m = re.match(r"^(\s*)#\s*(\w+)\s*=\s*\.\.\.\s*$", ln)
        if m:
            out.append(f"{m.group(1)}{m.group(2)} = torch.zeros(5)")
            continue
        m = re.match(r"^(\s*)#\s*(assert .*)$", ln)
        out.append(f"{m.group(1)}{m.group(2)}" if m else ln)
    return "\n".join(out)


def _answer(q: questions.Question) -> str:
    if q.n_verdicts:
        items = [
            f"{i}. **{'True' if i % 2 else 'False'}.** Because." for i in range(1, 1 + q.n_verdicts)
        ]
        return "**Answer:**\n\n" + "\n".join(items)
    return "**Answer:** Because."


def complete_notebook(stem: str = PART3) -> nbformat.NotebookNode:
    qf = questions.load(stem)
    md, code = nbformat.v4.new_markdown_cell, nbformat.v4.new_code_cell
    cells = [md(b.source) for b in qf.header] + [code("import torch")]
    for item in qf.items:
        if isinstance(item, questions.Block):
            cells.append(md(item.source))
            continue
        for b in item.blocks:
            if b.kind == "markdown":
                cells.append(md(b.source))
            else:
                cells.append(
                    code(_complete_template(b.source) if "# TODO" in b.source else b.source)
                )
        cells.append(md(_answer(item)))
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = dict(runner.PYTHON3_KERNELSPEC)
    for n, c in enumerate((c for c in nb.cells if c.cell_type == "code"), start=1):
        c.execution_count = n
    return nb


def problems_of(nb, stem: str = PART3) -> list[str]:
    return check.check_nb(nb, questions.load(stem))


def _cell(nb, start: str):
    return next(i for i, c in enumerate(nb.cells) if c.source.startswith(start))


@pytest.mark.parametrize("stem", questions.available())
def test_complete_notebook_has_no_problems(stem):
    assert problems_of(complete_notebook(stem), stem) == []


def test_missing_answer():
    nb = complete_notebook()
    i = _cell(nb, '1. Explain the meaning of the term "receptive field"')
    del nb.cells[i + 1]
    assert problems_of(nb) == [
        'CNNs/1: no **Answer:** cell right after the question (cell 6 is markdown: "2. Explain and '
        'elaborate about three ...")'
    ]


def test_empty_answer_and_placeholders():
    nb = complete_notebook()
    i = _cell(nb, "1. Explain the meaning")
    nb.cells[i + 1].source = "**Answer:**  \n"
    nb.cells.insert(i + 2, nbformat.v4.new_code_cell("raise NotImplementedError()"))
    nb.cells.insert(i + 3, nbformat.v4.new_markdown_cell("More.\n\nYOUR ANSWER HERE"))
    assert problems_of(nb) == [
        f"CNNs/1: empty answer (cell {i + 2} has only **Answer:**)",
        f'cell {i + 3} (execution count -): placeholder "raise NotImplementedError" left',
        f'cell {i + 4}: placeholder "YOUR ANSWER HERE" left',
        f"cell {i + 3}: execution count none (not executed), expected 2: outputs must come from "
        f"one clean top-to-bottom run; {check.RUN_HINT}",
    ]


def test_true_false_verdict_count():
    nb = complete_notebook()
    i = _cell(nb, "4. Regarding the ReLU activation")
    nb.cells[i + 1].source = "**Answer:**\n1. **True.** Yes.\n2. **False.** No.\n3. Maybe."
    assert problems_of(nb) == [
        f"Losses and Activation functions/4: true/false answer in cell {i + 2}: expected 3 "
        "verdicts, found 2 (one line per statement, in order, starting with **True.** or **False.**)"
    ]


def test_single_verdict_on_the_answer_line():
    nb = complete_notebook()
    i = _cell(nb, "2. **True or false**: dropout")
    nb.cells[i + 1].source = "**Answer:** **False.** It commutes with ReLU."
    assert problems_of(nb) == []


def test_given_code_changed():
    nb = complete_notebook()
    i = _cell(nb, "import torch.nn as nn\n\np1, p2")
    nb.cells[i].source = nb.cells[i].source.replace("0.1", "0.3")
    count = nb.cells[i].execution_count
    assert problems_of(nb) == [
        f'Dropout/1: given code cell "import torch.nn as nn" was changed (cell {i + 1} '
        f'(execution count {count})): line 3 is "p1, p2 = 0.3, 0.2", given "p1, p2 = 0.1, 0.2"'
    ]


def test_given_code_with_a_line_deleted_is_named_as_changed():
    # Several given cells start with "import torch": name the cell and the line, not "missing".
    nb = complete_notebook()
    given = [
        b
        for q in questions.load(PART3).questions
        for b in q.blocks
        if b.kind == "code" and b.source.startswith("import torch\n")
    ]
    assert len(given) > 1, "the test needs several given cells that start alike"
    block = next(b for b in given if "# TODO" not in b.source)
    i = next(i for i, c in enumerate(nb.cells) if c.source == block.source)
    lines = block.source.splitlines()
    k = 1 + next(n for n, ln in enumerate(lines[1:]) if ln.strip())  # the first one after line 1
    nb.cells[i].source = "\n".join(lines[:k] + lines[k + 1 :])
    count = nb.cells[i].execution_count
    assert problems_of(nb) == [
        f'CNNs/3: given code cell "import torch" was changed (cell {i + 1} (execution count '
        f'{count})): line {k + 1} is "{lines[k + 1].strip()}", given "{lines[k].strip()}"'
    ]


def test_questions_out_of_order():
    nb = complete_notebook()
    j, k = _cell(nb, "2. **True or false**: dropout"), _cell(nb, "3. After applying dropout")
    # Swap Dropout/2 and Dropout/3, each with its answer.
    nb.cells[j : k + 2] = nb.cells[k : k + 2] + nb.cells[j:k]
    assert problems_of(nb) == [
        'Dropout/3: given markdown cell "3. After applying dropout with a drop-probability of $p$,..." '
        f"is out of order (found at cell {j + 1})"
    ]


def test_template_cell_left_as_given():
    nb = complete_notebook()
    i = _cell(nb, "import torch\n\nN, d = 100, 5")
    given = next(
        b for q in questions.load(PART3).questions for b in q.blocks if "# TODO" in b.source
    )
    nb.cells[i].source = given.source
    label = f"cell {i + 1} (execution count {nb.cells[i].execution_count})"
    assert problems_of(nb) == [
        'Backpropagation/3: the given code cell still has placeholder lines: "# TODO: Calculate '
        'gradients numerically for W and b", "# grad_W =...", "# grad_b =...", ...',
        'Backpropagation/3: the given code cell must run "assert torch.allclose(grad_W, autograd_W)"',
        'Backpropagation/3: the given code cell must run "assert torch.allclose(grad_b, autograd_b)"',
        f'{label}: placeholder "# grad_W =..." left',
        f'{label}: placeholder "# grad_b =..." left',
        f'{label}: placeholder "# autograd_W = ..." left',
        f'{label}: placeholder "# autograd_b = ..." left',
    ]


def test_template_cell_with_given_code_removed():
    nb = complete_notebook()
    i = _cell(nb, "import torch\n\nN, d = 100, 5")
    nb.cells[i].source = nb.cells[i].source.replace('print(f"{loss=}")\n', "")
    count = nb.cells[i].execution_count
    assert problems_of(nb)[0] == (
        f'Backpropagation/3: given code cell "import torch" was changed (cell {i + 1} '
        f'(execution count {count})): the given line "print(f"{{loss=}}")" is missing'
    )


def test_error_outputs_and_bad_magic():
    nb = complete_notebook()
    codes = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    nb.cells[codes[1]].outputs = [
        nbformat.v4.new_output("error", ename="ZeroDivisionError", evalue="division by zero",
                               traceback=["\x1b[0;31mZeroDivisionError\x1b[0m"]),
    ]  # fmt: skip
    nb.cells[codes[2]].outputs = [
        nbformat.v4.new_output(
            "stream",
            name="stderr",
            text="UsageError: Line magic function `%notamagic` not found.\n",
        )
    ]
    assert problems_of(nb) == [
        f"cell {codes[1] + 1} (execution count 2): stored error output: ZeroDivisionError: "
        "division by zero",
        f"cell {codes[2] + 1} (execution count 3): stored error output: UsageError: Line magic "
        "function `%notamagic` not found.",
    ]


def test_out_of_order_execution():
    nb = complete_notebook()
    codes = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    nb.cells[codes[2]].execution_count = 7
    assert problems_of(nb) == [
        f"cell {codes[2] + 1}: execution count 7, expected 3: outputs must come from one clean "
        f"top-to-bottom run; {check.RUN_HINT}"
    ]


def test_never_executed():
    nb = complete_notebook()
    for c in nb.cells:
        if c.cell_type == "code":
            c.execution_count = None
    assert problems_of(nb) == [f"code cells have no outputs (never executed): {check.RUN_HINT}"]


def test_memory_address_in_output():
    nb = complete_notebook()
    i = next(i for i, c in enumerate(nb.cells) if c.cell_type == "code")
    nb.cells[i].outputs = [
        nbformat.v4.new_output("stream", name="stdout", text="<object at 0x7f3a2c1b9d60>\n")
    ]
    (problem,) = problems_of(nb)
    assert problem.startswith(
        f"cell {i + 1} (execution count 1): output shows a memory address (at 0x7f3a2c1b9d60)"
    )


def test_foreign_kernel_name():
    nb = complete_notebook()
    nb.metadata["kernelspec"] = {"name": "hw-venv", "display_name": "hw", "language": "python"}
    assert problems_of(nb) == [
        "kernel is 'hw-venv', expected 'python3' (the graders' kernel): run `python main.py "
        "run-nb` to execute it top to bottom on python3 (it also fixes the metadata)"
    ]


@pytest.mark.parametrize(
    "text, expected",
    [
        ('{"cells": [', "malformed JSON: "),
        ("", "malformed JSON: "),
        ('{"hello": "world"}', "not a notebook: "),
        ('{"cells": [{"cell_type": "code"}], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}',
         "not a valid notebook: "),
        ("[1, 2]", "not a notebook: "),
    ],
    ids=["truncated", "empty", "not-a-notebook", "invalid-cell", "json-list"],
)  # fmt: skip
def test_malformed_notebook_is_one_clear_line(tmp_path: Path, text: str, expected: str):
    path = tmp_path / f"{PART3}.ipynb"
    path.write_text(text, encoding="utf-8")
    (problem,) = check.check_notebook(path)
    assert problem.startswith(expected), problem
    assert "\n" not in problem and "Traceback" not in problem


def test_missing_notebook(tmp_path: Path):
    assert check.check_notebook(tmp_path / f"{PART3}.ipynb") == [f"{PART3}.ipynb not found"]


# --------------------------------------------------------------------------------------
# The command line
# --------------------------------------------------------------------------------------


def test_main_check_reports_per_notebook_with_its_budget(capsys):
    import main

    code = main.main(["check"])
    results = check.check_project(ROOT)
    out = capsys.readouterr().out
    assert out.strip() == check.format_report(results, check.project_budgets(ROOT))
    assert code == (1 if any(results.values()) else 0)  # completeness only, not the budget
    for name in results:
        assert re.search(rf"^{re.escape(name)}: (OK|\d+ problems?)$", out, re.M)
    # Issue 9's figures, per notebook, for information.
    assert len(re.findall(r"^  budget \(information\): \d+ answer words \(longest \d+, cell \d+\); "
                          r"\d+ evidence cells, median [\d.]+ lines, longest \d+ \(cell \d+ "
                          r"\(execution count \d+\)\)$", out, re.M)) == len(results), out


def test_check_names_a_copy_and_checks_it_against_the_questions_of_its_name(tmp_path, capsys):
    import main

    copy = tmp_path / "Part4_SummaryQuestions-Copy1.ipynb"
    nb = nbformat.read(ROOT / "Part4_SummaryQuestions.ipynb", as_version=4)
    i = next(i for i, c in enumerate(nb.cells) if c.source.startswith("**Answer:**"))
    nb.cells[i].source = "**Answer:**"
    nbformat.write(nb, copy)
    assert check.question_stem(copy) == "Part4_SummaryQuestions"
    assert main.main(["check", str(copy), str(tmp_path / "notes.ipynb")]) == 1
    out = capsys.readouterr().out
    assert "Part4_SummaryQuestions-Copy1.ipynb: 1 problem\n  - CNNs/1: " in out, out
    assert "notes.ipynb: 1 problem\n  - no question file for it" in out
    nbformat.write(nbformat.read(ROOT / "Part4_SummaryQuestions.ipynb", as_version=4), copy)
    assert main.main(["check", str(copy)]) == 0
