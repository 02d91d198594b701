"""Length budgets of a notebook's answers: what a grader reads in one sitting.

Measured on the saved notebook against its question file:

- answer words: whitespace-separated words of the markdown cells that start
  with ``**Answer:**`` (their total per notebook, and the longest cell);
- evidence cells: code cells that are not given by the question file (a
  completed given template counts as given); their non-blank lines.

Cells are named as JupyterLab numbers them (all cells from 1), a code cell with its
execution count beside. ``python main.py check`` prints the figures, for information.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from nbtools import questions as Q

ANSWER_MARK = "**Answer:**"

# The goals, per notebook.
MAX_ANSWER_WORDS = 4000
MAX_ANSWER_CELL_WORDS = 320
MAX_EVIDENCE_MEDIAN_LINES = 10
MAX_EVIDENCE_LINES = 20


@dataclass(frozen=True)
class Budget:
    answer_words: int
    longest_answer: int  # words
    longest_answer_cell: int | None  # 1-based cell number (JupyterLab's), None if no answer
    evidence_cells: int
    evidence_median_lines: float
    evidence_longest_lines: int
    longest_evidence_cell: int | None  # 1-based cell number
    longest_evidence_count: int | None = None  # its execution count

    @property
    def answer_cell_label(self) -> str:
        return f"cell {self.longest_answer_cell}"

    @property
    def evidence_cell_label(self) -> str:
        count = self.longest_evidence_count
        return (
            f"cell {self.longest_evidence_cell} "
            f"(execution count {count if count is not None else '-'})"
        )

    def problems(self) -> list[str]:
        """The budgets this notebook exceeds, one line each."""
        out = []
        if self.answer_words > MAX_ANSWER_WORDS:
            out.append(f"answers have {self.answer_words} words (budget {MAX_ANSWER_WORDS})")
        if self.longest_answer > MAX_ANSWER_CELL_WORDS:
            out.append(
                f"{self.answer_cell_label}: answer of {self.longest_answer} words "
                f"(budget {MAX_ANSWER_CELL_WORDS})"
            )
        if self.evidence_median_lines > MAX_EVIDENCE_MEDIAN_LINES:
            out.append(
                f"evidence cells: median {self.evidence_median_lines:g} lines "
                f"(budget {MAX_EVIDENCE_MEDIAN_LINES})"
            )
        if self.evidence_longest_lines > MAX_EVIDENCE_LINES:
            out.append(
                f"{self.evidence_cell_label}: evidence cell of "
                f"{self.evidence_longest_lines} lines (budget {MAX_EVIDENCE_LINES})"
            )
        return out

    def summary(self) -> str:
        answers = f"{self.answer_words} answer words"
        if self.longest_answer_cell is not None:
            answers += f" (longest {self.longest_answer}, {self.answer_cell_label})"
        evidence = f"{self.evidence_cells} evidence cells"
        if self.longest_evidence_cell is not None:
            evidence += (
                f", median {self.evidence_median_lines:g} lines, longest "
                f"{self.evidence_longest_lines} ({self.evidence_cell_label})"
            )
        return f"{answers}; {evidence}"


def _norm(source: str) -> str:
    return "\n".join(ln.rstrip() for ln in source.splitlines()).strip("\n")


def _given_code(qfile: Q.QuestionFile) -> list[Q.Block]:
    return [b for q in qfile.questions for b in q.blocks if b.kind == "code"]


def _is_given(source: str, given: list[Q.Block]) -> bool:
    """Source is a given code block, or a completed given template (all its code lines kept)."""
    norm = _norm(source)
    lines = [ln.rstrip() for ln in source.splitlines()]
    for block in given:
        if norm == _norm(block.source):
            return True
        code = [
            ln.rstrip()
            for ln in block.source.splitlines()
            if ln.strip() and not ln.lstrip().startswith("#")
        ]
        if "# TODO" in block.source and code and _subsequence(code, lines):
            return True
    return False


def _subsequence(needles: list[str], haystack: list[str]) -> bool:
    it = iter(haystack)
    return all(any(n == h for h in it) for n in needles)


def measure(nb, qfile: Q.QuestionFile) -> Budget:
    """The budget figures of notebook ``nb`` (an nbformat node or a dict)."""
    given = _given_code(qfile)
    answers: list[tuple[int, int]] = []  # (words, cell number)
    evidence: list[tuple[int, int, int | None]] = []  # (lines, cell number, execution count)
    for n, cell in enumerate(nb["cells"], start=1):
        source = cell.get("source", "")
        if isinstance(source, list):
            source = "".join(source)
        if not isinstance(source, str):
            continue
        if cell.get("cell_type") == "markdown" and source.lstrip().startswith(ANSWER_MARK):
            answers.append((len(source.split()), n))
        elif cell.get("cell_type") == "code" and source.strip() and not _is_given(source, given):
            lines = sum(1 for ln in source.splitlines() if ln.strip())
            evidence.append((lines, n, cell.get("execution_count")))
    longest = max(answers, key=lambda a: a[0], default=(0, None))
    # The first of the longest (max() of tuples would prefer the last cell).
    longest_ev = max(evidence, key=lambda e: e[0], default=(0, None, None))
    return Budget(
        answer_words=sum(w for w, _ in answers),
        longest_answer=longest[0],
        longest_answer_cell=longest[1],
        evidence_cells=len(evidence),
        evidence_median_lines=statistics.median([e[0] for e in evidence]) if evidence else 0,
        evidence_longest_lines=longest_ev[0],
        longest_evidence_cell=longest_ev[1],
        longest_evidence_count=longest_ev[2],
    )
