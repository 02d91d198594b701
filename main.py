"""Command line of the homework (the course's conventions).

python main.py run-nb [NB ...] [--html DIR] [--timeout SECONDS]   execute notebooks, save outputs
python main.py check [NB ...]                 static check of the notebooks' answers
python main.py prepare-submission --id ID [--id ID] [--skip-run] [--timeout S] [--allow-incomplete] [--out DIR]
python main.py grade SUBMISSION... [--jobs N] [--out DIR]   (graders: a class of submissions)
"""

from __future__ import annotations

import argparse
import fnmatch
import os
import re
import signal
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent
HW_NAME = "hw4"
SETUP_HINT = "set up the project's environment with `make run` (it creates .venv), then run "

# Never zipped, even when git tracks them: environments, VCS, caches, data, editor and
# Jupyter state, outputs of earlier runs (the homework's own HTML copies are added back).
LEFTOVER_DIRS = {
    ".git", ".venv", ".venv-lock", "venv", "env", "__pycache__", ".pytest_cache",
    ".ruff_cache", ".hypothesis", ".mypy_cache", ".ipynb_checkpoints", ".virtual_documents",
    ".idea", ".vscode", "data", "html",
}  # fmt: skip
LEFTOVER_FILES = (
    "*.zip", "*.part", "*.tmp", "*.pyc", "*.pyo", ".DS_Store", "._*", ".env", ".env.*",
    "*.swp", "*~", "Thumbs.db",
)  # fmt: skip
ID = re.compile(r"[A-Za-z0-9]+(?:-[A-Za-z0-9]+)*")
LARGE_NOTEBOOK_MB = 5  # a saved notebook larger than this gets a warning

# What the command is doing, for the one line printed when a signal ends it.
_progress: dict = {"notebook": None, "saved": False, "pending": [], "zip": None}


def homework_notebooks() -> list[Path]:
    """The notebooks the homework asks for: one per question file."""
    from nbtools import questions

    return [ROOT / f"{stem}.ipynb" for stem in questions.available()]


def other_notebooks() -> list[str]:
    """Notebooks beside the homework's that are not part of it (a JupyterLab copy, ...)."""
    homework = {p.name for p in homework_notebooks()}
    return sorted(p.name for p in ROOT.glob("*.ipynb") if p.name not in homework)


def _note_others(verb: str) -> None:
    others = other_notebooks()
    if others:
        print(f"note: {verb}: {', '.join(others)} (not homework notebooks)", file=sys.stderr)


def _html_problem(html_dir: Path, paths: list[Path]) -> str | None:
    from nbtools import runner

    try:
        html_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        return f"cannot create {html_dir}: {e.strerror or e}"
    for path in paths:
        reason = runner.unwritable(html_dir / f"{path.stem}.html")
        if reason:
            return reason
    return None


def run_notebooks(
    paths: list[Path], html_dir: Path | None = None, timeout: int | None = None
) -> int:
    from nbtools import html, runner

    failed = 0
    html_failed = False
    if html_dir is not None:
        problem = _html_problem(html_dir, paths)
        if problem:
            print(f"HTML copies not written: {problem}", file=sys.stderr)
            html_dir, html_failed = None, True
    for k, path in enumerate(paths):
        _progress.update(notebook=path.name, saved=False, pending=[p.name for p in paths[k + 1 :]])
        if not path.exists():
            print(f"{path.name}: not found", file=sys.stderr)
            failed += 1
            continue
        print(f"{path.name}: running ...", flush=True)
        try:
            # ROOT on the kernel's path: `import hw4` works for a notebook elsewhere too.
            ex = runner.run(
                path, save=True, pythonpath=[ROOT], timeout=timeout or runner.CELL_TIMEOUT
            )
        except runner.NotebookError as e:
            print(f"{e}\n{path.name}: FAILED (the notebook file was not changed)", file=sys.stderr)
            failed += 1
            continue
        _progress["saved"] = True
        print(f"{path.name}: OK in {ex.seconds:.1f} s, {len(ex.cells)} code cells; slowest:")
        for c in ex.slowest(3):
            print(f"  {c.seconds:7.2f} s  {c.label:<30}  {c.first_line[:60]}")
        _warn_if_large(ex)
        if html_dir is not None:
            dest = html.export_html(ex.nb, html_dir / f"{path.stem}.html")
            print(f"  HTML: {dest.relative_to(ROOT) if dest.is_relative_to(ROOT) else dest}")
    _progress.update(notebook=None, pending=[])
    if failed:
        print(f"{failed} of {len(paths)} notebook(s) failed", file=sys.stderr)
    return 1 if failed or html_failed else 0


def _warn_if_large(ex) -> None:
    from nbtools import runner

    if not ex.saved_bytes or ex.saved_bytes <= LARGE_NOTEBOOK_MB * 2**20:
        return
    index = max(range(len(ex.nb.cells)), key=lambda i: runner.output_bytes(ex.nb.cells[i]))
    print(
        f"{ex.path.name}: warning: the saved notebook is {ex.saved_bytes / 2**20:.1f} MB; "
        f"{runner.cell_label(ex.nb, index)} holds "
        f"{runner.output_bytes(ex.nb.cells[index]) / 2**20:.1f} MB of output (print less?)",
        file=sys.stderr,
    )


def export_html(paths: list[Path], html_dir: Path) -> int:
    from nbtools import html, runner

    for path in paths:
        try:
            html.export_html(runner.read(path), html_dir / f"{path.stem}.html")
        except runner.NotebookError as e:
            print(e, file=sys.stderr)
            return 1
    return 0


def cmd_run_nb(args) -> int:
    if args.notebooks:
        paths = [Path(p).resolve() for p in args.notebooks]
    else:
        paths = homework_notebooks()
        _note_others("not run")
    if not paths:
        print(f"no homework notebooks in {ROOT}", file=sys.stderr)
        return 1
    return run_notebooks(paths, Path(args.html).resolve() if args.html else None, args.timeout)


def cmd_check(args) -> int:
    from nbtools import check

    if args.notebooks:  # e.g. a copy of one, checked against the questions of its name
        results, budgets = check.check_paths(args.notebooks)
        print(check.format_report(results, budgets))
        return 1 if any(results.values()) else 0
    results = check.check_project(ROOT)
    print(check.format_report(results, check.project_budgets(ROOT)))
    _note_others("not checked")
    return 1 if any(results.values()) else 0


# --------------------------------------------------------------------------------------
# Submission
# --------------------------------------------------------------------------------------


def _git_files(root: Path) -> list[str] | None:
    """Tracked plus untracked-but-not-ignored files under root (None: not in a git work tree)."""
    try:
        proc = subprocess.run(
            ["git", "-C", str(root), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if proc.returncode != 0:
        return None
    return [p for p in proc.stdout.split("\0") if p]


def _gitignore_rules(root: Path) -> list[tuple[str, bool, bool, bool]]:
    """(pattern, directories only, anchored, negated) of root/.gitignore."""
    try:
        lines = (root / ".gitignore").read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    rules = []
    for line in lines:
        line = line.rstrip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        line = line.lstrip("!")
        dir_only = line.endswith("/")
        line = line.rstrip("/")
        anchored = "/" in line
        rules.append((line.lstrip("/"), dir_only, anchored, negated))
    return rules


def _ignored(rel: str, is_dir: bool, rules) -> bool:
    ignored = False
    for pattern, dir_only, anchored, negated in rules:
        if dir_only and not is_dir:
            continue
        target = rel if anchored else rel.rsplit("/", 1)[-1]
        if fnmatch.fnmatchcase(target, pattern):
            ignored = not negated
    return ignored


def _walk_files(root: Path) -> list[str]:
    """Files under root that root/.gitignore does not ignore (no git repository)."""
    rules, files = _gitignore_rules(root), []
    for dirpath, dirnames, filenames in os.walk(root):
        base = Path(dirpath).relative_to(root).as_posix()
        prefix = "" if base == "." else base + "/"
        dirnames[:] = sorted(
            d for d in dirnames if not _ignored(prefix + d, True, rules) and not _leftover_dir(d)
        )
        files += [prefix + f for f in sorted(filenames) if not _ignored(prefix + f, False, rules)]
    return files


def _leftover_dir(name: str) -> bool:
    return name in LEFTOVER_DIRS


def _leftover(root: Path, rel: str) -> bool:
    parts = rel.split("/")
    if any(_leftover_dir(d) for d in parts[:-1]):
        return True
    # A virtual environment under any name.
    if any((root.joinpath(*parts[: i + 1]) / "pyvenv.cfg").exists() for i in range(len(parts) - 1)):
        return True
    return any(fnmatch.fnmatchcase(parts[-1], pattern) for pattern in LEFTOVER_FILES)


def submission_files(root: Path = ROOT) -> tuple[list[str], list[str]]:
    """(files to zip, notebooks left out), paths relative to root.

    In a git work tree: the tracked files and the untracked ones git does not ignore;
    elsewhere: the files root/.gitignore does not ignore. Never leftovers (caches,
    environments, temp files, zips, .env, ...), never a notebook the homework does not
    ask for; always the HTML copies of the homework notebooks and the MathJax they load
    (html/ is ignored).
    """
    from nbtools import html, questions

    listed = _git_files(root)
    if listed is None:
        listed = _walk_files(root)
    homework = {f"{stem}.ipynb" for stem in questions.available()}
    members, left_out = [], []
    for rel in sorted(set(listed)):
        path = root / rel
        if path.is_symlink() or not path.is_file() or _leftover(root, rel):
            continue
        if rel.endswith(".ipynb") and rel not in homework:
            left_out.append(rel)
            continue
        members.append(rel)
    copies = [f"html/{Path(name).stem}.html" for name in sorted(homework)]
    copies = [rel for rel in copies if (root / rel).is_file()]
    members += copies
    if copies:  # the MathJax the HTML copies load, so they read offline
        mathjax = root / "html" / html.MATHJAX_DIR
        members += sorted(
            p.relative_to(root).as_posix()
            for p in mathjax.rglob("*")
            if p.is_file() and not p.is_symlink()
        )
    return members, left_out


def _submission_out(args) -> tuple[Path | None, str | None]:
    """The zip's path, or the reason it cannot be written there (checked before any work)."""
    from nbtools import runner

    out_dir = Path(args.out).resolve()
    out = out_dir / f"{HW_NAME}-{'_'.join(args.ids)}.zip"
    if out_dir.exists() and not out_dir.is_dir():
        return None, f"--out {args.out}: not a folder"
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        return None, f"--out {args.out}: cannot create the folder: {e.strerror or e}"
    reason = runner.unwritable(out)
    return (None, f"--out {args.out}: {reason}") if reason else (out, None)


def _refuse_incomplete(results, allow: bool) -> bool:
    from nbtools import check

    if not any(results.values()):
        return False
    print(check.format_report(results), file=sys.stderr)
    if allow:
        print("Warning: the submission is incomplete (--allow-incomplete)", file=sys.stderr)
        return False
    print(
        "Not creating a submission: `python main.py check` finds the problems above. Fix them, "
        "or pass --allow-incomplete to submit as it is.",
        file=sys.stderr,
    )
    return True


def cmd_prepare_submission(args) -> int:
    from nbtools import check

    bad = [i for i in args.ids if not ID.fullmatch(i)]
    if bad:
        print(f"invalid --id {bad[0]!r}: letters and digits, '-' only between them", file=sys.stderr)
        return 2
    if len(set(args.ids)) != len(args.ids):
        print(f"--id given twice: {' '.join(args.ids)}", file=sys.stderr)
        return 2
    out, problem = _submission_out(args)
    if problem:
        print(problem, file=sys.stderr)
        return 1
    paths = homework_notebooks()
    html_dir = ROOT / "html"
    if args.skip_run:
        print("Skipping notebook execution (--skip-run)")
        if _refuse_incomplete(check.check_project(ROOT), args.allow_incomplete):
            return 1
        if export_html(paths, html_dir):
            return 1
    else:
        if run_notebooks(paths, html_dir, timeout=args.timeout):
            print(
                "Not creating a submission: fix the failing notebook first (or zip it as it is, "
                "with its last saved outputs: --skip-run --allow-incomplete).",
                file=sys.stderr,
            )
            return 1
        if _refuse_incomplete(check.check_project(ROOT), args.allow_incomplete):
            return 1

    members, left_out = submission_files(ROOT)
    if left_out:
        print(f"Left out (not homework notebooks): {', '.join(left_out)}", file=sys.stderr)
    _progress["zip"] = out.name
    replaced = out.exists()
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".part", dir=out.parent)
    os.close(fd)
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for rel in members:
                zf.write(ROOT / rel, rel)
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _progress["zip"] = None
    note = ", replacing the earlier one" if replaced else ""
    print(f"Wrote {out} ({len(members)} files, {out.stat().st_size / 1024:.0f} KiB{note})")
    return 0


def cmd_grade(args) -> int:
    from nbtools import grade

    return grade.cmd_grade(args)


# --------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------


def _interrupted(e: KeyboardInterrupt) -> int:
    signum = getattr(e, "signum", signal.SIGINT)
    what = f"interrupted ({signal.Signals(signum).name})"
    nb, pending = _progress["notebook"], _progress["pending"]
    if _progress["zip"]:
        what += f": {_progress['zip']} not written"
    elif nb and _progress["saved"]:
        what += f": {nb} saved, its HTML copy not written"
    elif nb:
        what += f": {nb} unchanged"
    if pending and not _progress["zip"]:
        what += f"; not run: {', '.join(pending)}"
    print(what, file=sys.stderr)
    return 128 + signum


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of seconds >= 1, got {text!r}")
    return value


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="main.py", description=f"{HW_NAME} helper commands")
    sub = ap.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run-nb", help="execute notebooks headless and save their outputs")
    p.add_argument("notebooks", nargs="*", help="default: the homework's notebooks")
    p.add_argument("--html", metavar="DIR", help="also write an HTML copy of each into DIR")
    p.add_argument("--timeout", type=_positive_int, metavar="SECONDS",
                   help="limit per cell (default: 300)")  # fmt: skip
    p.set_defaults(func=cmd_run_nb)

    p = sub.add_parser("check", help="static check of the notebooks against the questions")
    p.add_argument("notebooks", nargs="*",
                   help="default: the homework's notebooks; a copy is checked against the "
                        "questions its name starts with")  # fmt: skip
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("prepare-submission", help="run notebooks, export HTML, zip the project")
    p.add_argument("--id", "-i", dest="ids", action="append", required=True,
                   help="submitter ID (repeat for a pair)")  # fmt: skip
    p.add_argument("--skip-run", action="store_true", help="do not execute the notebooks")
    p.add_argument("--timeout", type=_positive_int, metavar="SECONDS",
                   help="limit per cell when running them (default: 300)")  # fmt: skip
    p.add_argument("--allow-incomplete", action="store_true",
                   help="zip even if `check` finds problems")  # fmt: skip
    p.add_argument("--out", "-o", default=str(ROOT), help="folder for the zip (default: here)")
    p.set_defaults(func=cmd_prepare_submission)

    p = sub.add_parser("grade", help="graders: run the trusted checks on student submissions")
    from nbtools.grade import add_arguments

    add_arguments(p)
    p.set_defaults(func=cmd_grade)

    args = ap.parse_args(argv)
    try:
        from nbtools import runner
    except ModuleNotFoundError as e:
        print(
            f"main.py: Python module '{e.name}' is missing: {sys.executable} is not the "
            f"project's environment;\n  {SETUP_HINT}`.venv/bin/python main.py {args.command}`.",
            file=sys.stderr,
        )
        return 1
    _progress.update(notebook=None, saved=False, pending=[], zip=None)
    try:
        with runner.interruptible():
            return args.func(args)
    except KeyboardInterrupt as e:  # runner.Interrupted too (SIGTERM, SIGHUP)
        return _interrupted(e)
    except OSError as e:  # a last resort: one line, not a traceback
        where = f": {e.filename}" if getattr(e, "filename", None) else ""
        print(f"main.py {args.command}: {e.strerror or e}{where}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
