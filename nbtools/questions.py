"""Parse the question files (``tests/questions/*.md``) into notebook cells.

A question file is markdown: a LaTeX macro block, an introduction, then
``### Section`` headings with top-level numbered questions. Fenced ``python``
blocks are the given code cells. This module turns a file into an ordered
list of :class:`Block` objects (the cells a notebook must contain, verbatim)
grouped into :class:`Question` objects, each of which must be followed in the
notebook by an ``**Answer:**`` cell.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

QUESTIONS_DIR = Path(__file__).resolve().parent.parent / "tests" / "questions"

# Fenced blocks that belong to the question's markdown, not to a code cell.
INLINE_FENCES = frozenset({"nn.Dropout(p=q)"})

_QUESTION_START = re.compile(r"^\d+\.\s")
_SUB_ITEM = re.compile(r"^\s+(?:\d+|[A-Z])\.\s")
_TRUE_FALSE = re.compile(r"true or false", re.IGNORECASE)


@dataclass(frozen=True)
class Block:
    """One notebook cell's worth of given content."""

    kind: str  # "markdown" or "code"
    source: str

    @property
    def first_line(self) -> str:
        return self.source.strip().splitlines()[0]


@dataclass
class Question:
    section: str
    ordinal: int  # 1-based position inside its section
    blocks: list[Block] = field(default_factory=list)

    @property
    def key(self) -> str:
        """Stable name, e.g. ``"CNNs/3"`` (numbers in the files repeat)."""
        return f"{self.section}/{self.ordinal}"

    @property
    def text(self) -> str:
        return "\n".join(b.source for b in self.blocks if b.kind == "markdown")

    @property
    def is_true_false(self) -> bool:
        return bool(_TRUE_FALSE.search(self.text))

    @property
    def n_verdicts(self) -> int:
        """How many **True.**/**False.** verdicts a true/false answer needs."""
        if not self.is_true_false:
            return 0
        items = [ln for ln in self.text.splitlines() if _SUB_ITEM.match(ln)]
        return max(1, len(items))


@dataclass
class QuestionFile:
    name: str  # notebook stem, e.g. "Part3_SummaryQuestions"
    header: list[Block]
    # In notebook order: section headings (Block) and questions (Question).
    items: list[Block | Question]

    @property
    def questions(self) -> list[Question]:
        return [it for it in self.items if isinstance(it, Question)]


def _split_fences(text: str) -> list[Block]:
    """Split a question's text into markdown and given-code blocks."""
    blocks: list[Block] = []
    md: list[str] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].strip() == "```python":
            end = next(
                (j for j in range(i + 1, len(lines)) if lines[j].strip() == "```"), None
            )
            if end is None:
                raise ValueError(f"unclosed ```python fence: {lines[i + 1:i + 2]}")
            code = "\n".join(lines[i + 1 : end])
            if code.strip() in INLINE_FENCES:
                md.extend(lines[i : end + 1])
            else:
                if "\n".join(md).strip():
                    blocks.append(Block("markdown", "\n".join(md).strip()))
                md = []
                blocks.append(Block("code", code.strip("\n")))
            i = end + 1
            continue
        md.append(lines[i])
        i += 1
    if "\n".join(md).strip():
        blocks.append(Block("markdown", "\n".join(md).strip()))
    return blocks


def parse(text: str, name: str) -> QuestionFile:
    """Parse one question file's text."""
    lines = text.splitlines()
    if not lines or lines[0].strip() != "$$":
        raise ValueError(f"{name}: expected the LaTeX macro block ($$) on line 1")
    macro_end = next(i for i in range(1, len(lines)) if lines[i].strip() == "$$")
    header = [Block("markdown", "\n".join(lines[: macro_end + 1]))]

    # Chunks start at "### " headings and at top-level numbered lines.
    starts = [
        i
        for i in range(macro_end + 1, len(lines))
        if lines[i].startswith("### ") or _QUESTION_START.match(lines[i])
    ]
    # Numbered lines inside code fences are not question starts.
    in_fence, fenced = False, set()
    for i, ln in enumerate(lines):
        if ln.strip().startswith("```"):
            in_fence = not in_fence
        elif in_fence:
            fenced.add(i)
    starts = [i for i in starts if i not in fenced]

    intro = "\n".join(lines[macro_end + 1 : starts[0]]).strip()
    header.append(Block("markdown", intro))

    items: list[Block | Question] = []
    section, ordinal = None, 0
    for s, e in zip(starts, starts[1:] + [len(lines)]):
        chunk = "\n".join(lines[s:e])
        if lines[s].startswith("### "):
            section, ordinal = lines[s][4:].strip(), 0
            items.append(Block("markdown", lines[s].strip()))
            rest = "\n".join(lines[s + 1 : e]).strip()
            if rest:
                raise ValueError(f"{name}: unexpected text after {lines[s]!r}: {rest[:60]!r}")
            continue
        if section is None:
            raise ValueError(f"{name}: question before any ### section: {lines[s]!r}")
        ordinal += 1
        items.append(Question(section, ordinal, _split_fences(chunk)))
    return QuestionFile(name, header, items)


def load(name: str, directory: Path = QUESTIONS_DIR) -> QuestionFile:
    """Load ``<directory>/<name>.md`` (name: notebook stem)."""
    path = Path(directory) / f"{name}.md"
    return parse(path.read_text(encoding="utf-8"), name)


def available(directory: Path = QUESTIONS_DIR) -> list[str]:
    """Notebook stems that have a question file."""
    return sorted(p.stem for p in Path(directory).glob("Part*_*.md"))
