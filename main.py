"""Command line of the homework (the course's conventions).

python main.py run-nb [NB ...] [--html DIR]   execute notebooks, save outputs in place
python main.py check                          static check of the notebooks' answers
python main.py prepare-submission --id ID [--id ID] [--skip-run]
python main.py grade SUBMISSION... [--jobs N] [--out DIR]   (graders: a class of submissions)
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent
HW_NAME = "hw4"

# Never zipped: environments, VCS, caches, data, outputs of earlier submissions.
EXCLUDED_DIRS = {
    ".venv", "venv", ".git", "__pycache__", ".pytest_cache", ".ruff_cache",
    ".hypothesis", ".ipynb_checkpoints", ".mypy_cache", "data", ".idea", ".vscode",
}  # fmt: skip
EXCLUDED_SUFFIXES = (".zip", ".pyc", ".pyo")


def default_notebooks() -> list[Path]:
    return sorted(ROOT.glob("Part*_*.ipynb"))


def run_notebooks(paths: list[Path], html_dir: Path | None = None) -> int:
    from nbtools import runner

    failed = 0
    for path in paths:
        if not path.exists():
            print(f"{path.name}: not found", file=sys.stderr)
            failed += 1
            continue
        print(f"{path.name}: running ...", flush=True)
        try:
            # ROOT on the kernel's path: `import hw4` works for a notebook elsewhere too.
            ex = runner.run(path, save=True, pythonpath=[ROOT])
        except runner.NotebookError as e:
            print(f"{e}\n{path.name}: FAILED (the notebook file was not changed)", file=sys.stderr)
            failed += 1
            continue
        print(f"{path.name}: OK in {ex.seconds:.1f} s, {len(ex.cells)} code cells; slowest:")
        for c in ex.slowest(3):
            print(f"  {c.seconds:7.2f} s  code cell {c.number:2d}  {c.first_line[:60]}")
        if html_dir is not None:
            dest = runner.export_html(ex.nb, html_dir / f"{path.stem}.html")
            print(f"  HTML: {dest.relative_to(ROOT) if dest.is_relative_to(ROOT) else dest}")
    if failed:
        print(f"{failed} of {len(paths)} notebook(s) failed", file=sys.stderr)
    return 1 if failed else 0


def export_html(paths: list[Path], html_dir: Path) -> int:
    from nbtools import runner

    for path in paths:
        try:
            runner.export_html(runner.read(path), html_dir / f"{path.stem}.html")
        except runner.NotebookError as e:
            print(e, file=sys.stderr)
            return 1
    return 0


def cmd_run_nb(args) -> int:
    paths = [Path(p).resolve() for p in args.notebooks] or default_notebooks()
    if not paths:
        print(f"no Part*_*.ipynb notebooks in {ROOT}", file=sys.stderr)
        return 1
    return run_notebooks(paths, Path(args.html).resolve() if args.html else None)


def cmd_check(args) -> int:
    from nbtools import check

    results = check.check_project(ROOT)
    print(check.format_report(results))
    return 1 if any(results.values()) else 0


def _zip_members(root: Path, out: Path):
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in EXCLUDED_DIRS)
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if name.endswith(EXCLUDED_SUFFIXES) or path == out:
                continue
            yield path


def cmd_prepare_submission(args) -> int:
    from nbtools import check

    bad = [i for i in args.ids if not re.fullmatch(r"[A-Za-z0-9-]+", i)]
    if bad:
        print(f"invalid --id {bad[0]!r}: letters, digits and '-' only", file=sys.stderr)
        return 2
    paths = default_notebooks()
    html_dir = ROOT / "html"
    if args.skip_run:
        print("Skipping notebook execution (--skip-run)")
        if export_html(paths, html_dir):
            return 1
    elif run_notebooks(paths, html_dir):
        print("Not creating a submission: fix the failing notebook first.", file=sys.stderr)
        return 1

    results = check.check_project(ROOT)
    if any(results.values()):
        print("Warning: `python main.py check` finds problems:\n" + check.format_report(results))

    out_dir = Path(args.out).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"{HW_NAME}-{'_'.join(args.ids)}.zip"
    tmp = out.with_name(out.name + ".part")
    n = 0
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for path in _zip_members(ROOT, tmp):
            zf.write(path, path.relative_to(ROOT).as_posix())
            n += 1
    os.replace(tmp, out)
    print(f"Wrote {out} ({n} files, {out.stat().st_size / 1024:.0f} KiB)")
    return 0


def cmd_grade(args) -> int:
    from nbtools import grade

    return grade.cmd_grade(args)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="main.py", description=f"{HW_NAME} helper commands")
    sub = ap.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run-nb", help="execute notebooks headless and save their outputs")
    p.add_argument("notebooks", nargs="*", help="default: all Part*_*.ipynb")
    p.add_argument("--html", metavar="DIR", help="also write an HTML copy of each into DIR")
    p.set_defaults(func=cmd_run_nb)

    p = sub.add_parser("check", help="static check of the notebooks against the questions")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("prepare-submission", help="run notebooks, export HTML, zip the project")
    p.add_argument("--id", "-i", dest="ids", action="append", required=True,
                   help="submitter ID (repeat for a pair)")  # fmt: skip
    p.add_argument("--skip-run", action="store_true", help="do not execute the notebooks")
    p.add_argument("--out", "-o", default=str(ROOT), help="folder for the zip (default: here)")
    p.set_defaults(func=cmd_prepare_submission)

    p = sub.add_parser("grade", help="graders: run the trusted checks on student submissions")
    from nbtools.grade import add_arguments

    add_arguments(p)
    p.set_defaults(func=cmd_grade)

    args = ap.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
