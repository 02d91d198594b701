"""Benchmark: headless execution time and peak kernel memory of each notebook,
next to its *floor*: a fresh kernel that imports torch and runs only the
notebook's given code cells (from the question file, in order, the Part 3
numerical-gradient template as given). Goal: each notebook <= 1.3x its floor.

    python benchmarks/notebooks.py [--repeat N] [STEM ...]

The repository is not written: notebooks run as copies in a temporary folder.
Peak memory is the kernel's ru_maxrss, read by an extra final cell.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import nbformat  # noqa: E402

from nbtools import questions, runner  # noqa: E402

GOAL = 1.3
PROBE = """\
import resource, sys
_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
print("PEAK_MB", _rss / (1024 * 1024 if sys.platform == "darwin" else 1024))"""


def floor_notebook(stem: str) -> nbformat.NotebookNode:
    """import torch + the given code cells of the notebook's questions, in order."""
    cells = [nbformat.v4.new_code_cell("import torch")]
    for q in questions.load(stem).questions:
        cells += [nbformat.v4.new_code_cell(b.source) for b in q.blocks if b.kind == "code"]
    return nbformat.v4.new_notebook(cells=cells)


def measure(nb: nbformat.NotebookNode, name: str) -> tuple[float, float]:
    """(seconds, peak MB) of one headless execution of nb, in a temporary folder."""
    nb = nbformat.from_dict(nb)  # a copy
    nb.cells.append(nbformat.v4.new_code_cell(PROBE))
    with tempfile.TemporaryDirectory(prefix="hw4-bench-") as tmp:
        path = Path(tmp) / name
        ex = runner.run(path, nb=nb, pythonpath=[ROOT])
    text = "".join(o.get("text", "") for o in ex.nb.cells[-1].outputs)
    peak = float(text.split("PEAK_MB")[1].split()[0])
    return ex.seconds, peak


def compare(stem: str, repeat: int) -> tuple[float, float, float, float]:
    """Best (minimum) time and memory of the notebook and of its floor.

    Runs alternate (notebook, floor, notebook, ...) so that a change in machine
    load affects both sides alike.
    """
    path = ROOT / f"{stem}.ipynb"
    nb, floor = runner.read(path), floor_notebook(stem)
    runs, floor_runs = [], []
    for _ in range(repeat):
        runs.append(measure(nb, path.name))
        floor_runs.append(measure(floor, f"{stem}_floor.ipynb"))
    return (
        min(t for t, _ in runs),
        min(t for t, _ in floor_runs),
        min(m for _, m in runs),
        min(m for _, m in floor_runs),
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("stems", nargs="*", help="notebook stems (default: all)")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each; the best counts")
    args = ap.parse_args(argv)

    rows = []
    for stem in args.stems or questions.available():
        print(f"{stem}: running notebook and floor ...", file=sys.stderr, flush=True)
        try:
            t, ft, m, fm = compare(stem, args.repeat)
        except runner.NotebookError as e:
            print(e, file=sys.stderr)
            return 1
        rows.append((f"{stem}.ipynb", t, ft, t / ft, m, fm, m / fm))

    print("| notebook | time s | floor s | ratio | peak MB | floor MB | ratio |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, t, ft, tr, m, fm, mr in rows:
        print(f"| {name} | {t:.1f} | {ft:.1f} | {tr:.2f}x | {m:.0f} | {fm:.0f} | {mr:.2f}x |")
    over = [r[0] for r in rows if r[3] > GOAL or r[6] > GOAL]
    print(f"\ngoal: each ratio <= {GOAL}x; " + (f"over: {', '.join(over)}" if over else "all met"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
