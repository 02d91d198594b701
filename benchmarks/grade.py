"""Benchmark: ``main.py grade`` on a generated class, in submissions per minute, beside the floor.

    python benchmarks/grade.py [--n 40] [--jobs 1 2] [--repeat 2]

The class is N copies of a complete and correct submission (zips as
``prepare-submission`` makes them: the project's notebooks, ``hw4/``, the
tooling). Each ``--jobs`` value grades the whole class once, through the command
line, into a temporary folder; every row must pass every check. The *floor* is
executing the two notebooks of one submission alone (unpacked, the kernel in its
folder, as graded), one after the other: 60 / (its seconds) submissions per minute
for one job; it is measured right before each grading run, so that both see the
same machine load (printed: the 1-minute load average at the end of the run).
Grading adds the unpacking, the static check, the code answer's process and the
bookkeeping. The repository is not written.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import submissions as S  # noqa: E402

from nbtools import grade, runner  # noqa: E402


def make_class(folder: Path, n: int) -> list[Path]:
    one = S.zip_folder(S.copy_project(folder / "project"), folder / "one.zip")
    subs = folder / "class"
    subs.mkdir()
    out = []
    for i in range(n):
        dest = subs / f"hw4-{100000000 + i}.zip"
        shutil.copy(one, dest)
        out.append(dest)
    return out


def floor_seconds(project: Path, repeat: int) -> float:
    """Best time to execute the submission's two notebooks, one after the other."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for stem in (S.PART3, S.PART4):
            runner.run(project / f"{stem}.ipynb", cwd=project, pythonpath=[project])
        best = min(best, time.perf_counter() - start)
    return best


def grade_seconds(subs: list[Path], jobs: int, out: Path) -> float:
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, str(ROOT / "main.py"), "grade", *map(str, subs), "--jobs", str(jobs),
         "--out", str(out)],
        capture_output=True, text=True, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"grade --jobs {jobs} failed:\n{proc.stderr}")
    with open(out / "grades.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    n_checks = len(grade.verdict_columns(grade.columns()))
    bad = [r["id"] for r in rows if r["passed"] != f"{n_checks}/{n_checks}"]
    if len(rows) != len(subs) or bad:
        raise SystemExit(f"grade --jobs {jobs}: {len(rows)} rows, not all checks passed: {bad[:5]}")
    return seconds


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=40, help="submissions in the class (default 40)")
    ap.add_argument("--jobs", type=int, nargs="+", default=[1, 2], help="default: 1 2")
    ap.add_argument("--repeat", type=int, default=2, help="floor runs; the best counts")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="hw4-bench-grade-") as tmp:
        tmp = Path(tmp)
        subs = make_class(tmp, args.n)
        rows = []
        for jobs in args.jobs:
            print(f"floor ({args.repeat} runs), then {args.n} submissions with --jobs {jobs} ...",
                  file=sys.stderr, flush=True)  # fmt: skip
            floor = floor_seconds(tmp / "project", args.repeat)
            seconds = grade_seconds(subs, jobs, tmp / f"out-{jobs}")
            rows.append((jobs, seconds, floor, os.getloadavg()[0]))

    cores = os.cpu_count()
    print(f"floor: one submission's two notebooks executed alone, one after the other; "
          f"{cores} cores\n")  # fmt: skip
    print("| --jobs | submissions | wall s | s per submission | per min | floor s | floor per min "
          "| vs floor | 200 take | load avg |")  # fmt: skip
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for jobs, seconds, floor, load in rows:
        rate, floor_rate = args.n / seconds * 60, 60 / floor
        print(f"| {jobs} | {args.n} | {seconds:.0f} | {seconds / args.n:.1f} | {rate:.1f} | "
              f"{floor:.1f} | {floor_rate:.1f} | {rate / floor_rate:.2f}x | {200 / rate:.0f} min | "
              f"{load:.1f} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
