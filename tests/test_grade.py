"""``main.py grade``: generated submissions with known verdicts.

Most tests run in-process in milliseconds (unpacking, the static verdicts, the code
answer's verifier). One class of small generated submissions is graded once by the
command line (``graded``, a few seconds); Ctrl-C is tested on a run of its own. The
only test that executes the real notebooks is marked ``slow`` (``-m "not slow"``).
"""

from __future__ import annotations

import copy
import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import numpy as np
import pytest
import submissions as S
from conftest import ROOT, WITH_DEFAULT_SIGINT

from nbtools import code_answer, grade, questions
from nbtools.unpack import Limits, Unreadable, copy_folder, project_root, submission_id, unpack

# ------------------------------------------------------------------------------------
# Safe unpacking (in-process)
# ------------------------------------------------------------------------------------


def _files(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize(
    "entries, symlinks, why",
    [
        ({"ok.txt": b"1", "../evil.txt": b"x"}, {}, "'..' leads outside"),
        ({"a/../../evil.txt": b"x"}, {}, "'..' leads outside"),
        ({"/tmp/evil.txt": b"x"}, {}, "absolute path"),
        ({"C:/evil.txt": b"x"}, {}, "absolute path"),
        ({"hw4\\..\\evil.txt": b"x"}, {}, "backslash"),
        ({"ok.txt": b"1"}, {"hw4": "/etc"}, "a symlink"),
        ({"a.txt": b"1", "./a.txt": b"2"}, {}, "duplicate entry"),
    ],
    ids=["dotdot", "nested-dotdot", "absolute", "drive", "backslash", "symlink", "duplicate"],
)
def test_unsafe_zip_is_refused_and_nothing_is_written(tmp_path, entries, symlinks, why):
    src = S.zip_with(tmp_path / "s.zip", entries, symlinks)
    dest = tmp_path / "out" / "sub"
    with pytest.raises(Unreadable, match=why):
        unpack(src, dest)
    assert not dest.exists() and not (tmp_path / "out" / "evil.txt").exists()


def test_zip_bomb_is_refused_before_inflating(tmp_path):
    src = S.zip_bomb(tmp_path / "bomb.zip", mib=8)
    assert src.stat().st_size < 64 * 2**10  # 8 MiB of zeros in a few KiB
    with pytest.raises(Unreadable, match=r"too big: 8 MiB uncompressed \(limit 4 MiB; a zip bomb\?\)"):
        unpack(src, tmp_path / "out", Limits(max_bytes=4 * 2**20))
    assert not (tmp_path / "out").exists()


def test_a_zip_file_over_the_limit_is_not_opened(tmp_path):
    src = tmp_path / "big.zip"
    src.write_bytes(bytes(5 * 2**20))
    with pytest.raises(Unreadable, match=r"too big: the file has 5 MiB \(limit 4 MiB\)"):
        unpack(src, tmp_path / "out", Limits(max_bytes=4 * 2**20))


def test_too_many_files_are_refused(tmp_path):
    src = S.zip_with(tmp_path / "many.zip", {f"f{i}.txt": b"" for i in range(11)})
    with pytest.raises(Unreadable, match=r"too many files: 11 \(limit 10\)"):
        unpack(src, tmp_path / "out", Limits(max_files=10))


@pytest.mark.parametrize(
    "data, why",
    [
        (b"this is not a zip\n", "not a zip file"),
        (b"", "not a zip file"),
        ("truncated", "not a zip file|corrupt|cannot extract"),
    ],
)
def test_unreadable_files(tmp_path, data, why):
    src = tmp_path / "s.zip"
    if data == "truncated":
        S.zip_with(src, {"Part3_SummaryQuestions.ipynb": b"x" * 1000})
        src.write_bytes(src.read_bytes()[:200])
    else:
        src.write_bytes(data)
    with pytest.raises(Unreadable, match=why):
        unpack(src, tmp_path / "out")


def test_zip_of_the_project_folder_finds_its_root(tmp_path):
    src = S.zip_with(
        tmp_path / "s.zip",
        {"hw4-1/Part3_SummaryQuestions.ipynb": b"{}", "hw4-1/hw4/answers.py": b"", "hw4-1/.venv/x": b""},
    )
    root = unpack(src, tmp_path / "out")
    assert root == tmp_path / "out" / "hw4-1"
    assert _files(root) == {"Part3_SummaryQuestions.ipynb", "hw4/answers.py"}  # .venv skipped


def test_folder_is_copied_under_the_same_rules(tmp_path):
    src = tmp_path / "hw4-7"
    (src / "hw4").mkdir(parents=True)
    (src / "hw4" / "answers.py").write_text("x = 1")
    (src / ".venv" / "bin").mkdir(parents=True)
    (src / ".venv" / "bin" / "python").symlink_to(sys.executable)  # skipped with .venv
    assert copy_folder(src, tmp_path / "a") == 1
    assert _files(tmp_path / "a") == {"hw4/answers.py"}
    (src / "secret").symlink_to("/etc/passwd")
    with pytest.raises(Unreadable, match="'secret': a symlink"):
        copy_folder(src, tmp_path / "b")


def test_submission_ids():
    assert submission_id(Path("x/hw4-123456789_987654321.zip")) == "123456789_987654321"
    assert submission_id(Path("hw4-42")) == "42"
    assert submission_id(Path("My Work (final).ZIP")) == "My_Work__final_"
    assert submission_id(Path("..zip")) == "unnamed"


def test_project_root_defaults_to_the_folder(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    assert project_root(tmp_path) == tmp_path


# ------------------------------------------------------------------------------------
# Verdicts without a kernel (in-process)
# ------------------------------------------------------------------------------------


def test_columns_one_per_question_and_check():
    cols = grade.columns()
    assert cols[:3] == ["id", "status", "passed"] and cols[-2:] == [grade.CODE_COLUMN, "note"]
    for stem in questions.available():
        p = grade.short(stem)
        keys = [q.key for q in questions.load(stem).questions]
        assert [c for c in cols if c.startswith(p + " ")] == [f"{p} check", f"{p} run"] + [
            f"{p} {k}" for k in keys
        ]
    assert len(cols) == len(set(cols))


def test_the_question_files_name_exactly_the_code_answer_graded():
    import re

    text = "".join(p.read_text(encoding="utf-8") for p in questions.QUESTIONS_DIR.glob("*.md"))
    named = set(re.findall(r"implement [^`]*`(\w+)` in `hw4/answers\.py`", text))
    assert named == {grade.CODE_COLUMN}, f"the question files name {named}: grade them all"


@pytest.fixture(scope="module")
def real_notebooks():
    return {stem: nbformat.read(ROOT / f"{stem}.ipynb", as_version=4) for stem in (S.PART3, S.PART4)}


def test_static_verdicts_complete(real_notebooks):
    for stem, nb in real_notebooks.items():
        by_question, general = grade.static_verdicts(nb, questions.load(stem))
        assert not general and not any(by_question.values()), (by_question, general)


def test_static_verdict_empty_answer(real_notebooks):
    nb = copy.deepcopy(real_notebooks[S.PART3])
    S.empty_first_answer(nb)
    qfile = questions.load(S.PART3)
    by_question, general = grade.static_verdicts(nb, qfile)
    first = qfile.questions[0].key
    assert [k for k, v in by_question.items() if v] == [first]
    assert by_question[first][0].startswith("empty answer")
    assert not general


# Same value, different text: the cell still runs, but it is not the given cell.
CHANGED_LINE = (
    "l1 = torch.sum(AffineLayerFunction.apply(X, W, b))",
    "l1 = AffineLayerFunction.apply(X, W, b).sum()",
)


def test_static_verdict_changed_given_cell(real_notebooks):
    nb = copy.deepcopy(real_notebooks[S.PART4])
    S.change_given_line(*CHANGED_LINE)(nb)
    by_question, general = grade.static_verdicts(nb, questions.load(S.PART4))
    assert [k for k, v in by_question.items() if v] == ["Backpropagation/2"]
    assert "given code cell" in by_question["Backpropagation/2"][0]


def _reply(X, W, b, G, transform=lambda grads, needs: grads):
    """The probe's reply for a backward whose gradients are transform(true grads, needs)."""

    def t(a):
        return None if a is None else {"shape": list(a.shape), "dtype": "x", "values": a.ravel().tolist()}

    true = code_answer.expected(X, W, b, G)
    auto = transform(list(true), (True, True, True))
    direct = []
    for needs in code_answer._needs_patterns():
        grads = [g if n else None for g, n in zip(true, needs)]
        direct.append({"grads": [t(g) for g in transform(grads, needs)], "grad_output_modified": False})
    return {"autograd": [t(g) for g in auto], "direct": direct, "gradcheck": "ok"}


@pytest.fixture
def inputs():
    rng = np.random.default_rng(0)
    return tuple(rng.standard_normal(s) for s in ((4, 5), (3, 5), (3,), (4, 3)))


def test_verify_correct(inputs):
    assert code_answer.verify(_reply(*inputs), *inputs) == []


def test_verify_wrong_dx(inputs):
    def double_dx(grads, needs):
        return [None if grads[0] is None else 2 * grads[0], *grads[1:]]

    problems = code_answer.verify(_reply(*inputs, double_dx), *inputs)
    assert problems == ["dX wrong (relative error 0.33)"]


def test_verify_ignores_upstream_gradient(inputs):
    X, W, b, G = inputs
    ones = code_answer.expected(X, W, b, np.ones_like(G))

    def ignore(grads, needs):
        return [o if g is not None else None for g, o in zip(grads, ones)]

    problems = code_answer.verify(_reply(*inputs, ignore), *inputs)
    assert problems == ["dX, dW, db ignore the upstream gradient grad_output (the gradient of sum(Y) instead)"]


def test_verify_unsummed_bias_and_unneeded_gradients(inputs):
    X, W, b, G = inputs
    full = code_answer.expected(X, W, b, G)

    def sloppy(grads, needs):  # always all three; db not summed over the batch
        return [full[0], full[1], G]

    problems = code_answer.verify(_reply(*inputs, sloppy), *inputs)
    assert "db has shape (4, 3), expected (3,)" in problems[0]
    assert "dX, dW, db computed although ctx.needs_input_grad says no (return None)" in problems


def test_verify_import_failure_and_modified_grad_output(inputs):
    assert code_answer.verify({"import": "SyntaxError: x"}, *inputs) == [
        "hw4/answers.py fails on import: SyntaxError: x"
    ]
    reply = _reply(*inputs)
    reply["direct"][3]["grad_output_modified"] = True
    reply["gradcheck"] = "GradcheckError: Jacobian mismatch"
    assert code_answer.verify(reply, *inputs) == [
        "modifies grad_output in place",
        "gradcheck fails: GradcheckError: Jacobian mismatch",
    ]


def test_csv_safe_and_run_summary():
    assert grade.csv_safe("=HYPERLINK(x)") == "'=HYPERLINK(x)"
    assert grade.csv_safe("-1\nx") == "'-1 x" and grade.csv_safe("ok") == "ok"
    report = (
        "P.ipynb: code cell 2 (execution count 2) failed\n  source:\n    1/0\n"
        "  ZeroDivisionError: division by zero\n  traceback:\n    ..."
    )
    assert grade._run_summary(report) == (
        "FAIL: code cell 2 (execution count 2) failed: ZeroDivisionError: division by zero"
    )
    assert grade.memory_size("4G") == 4 * 2**30 and grade.memory_size("512") == 512 * 2**20


# ------------------------------------------------------------------------------------
# A class graded by the command line
# ------------------------------------------------------------------------------------


def main_py(*args, env=None, timeout=300):
    return subprocess.run(
        [sys.executable, str(ROOT / "main.py"), *map(str, args)],
        capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, env=env,
    )  # fmt: skip


def read_rows(path: Path) -> dict[str, dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    ids = [r["id"] for r in rows]
    assert ids == sorted(set(ids)), "one row per submission ID, sorted"
    return {r["id"]: r for r in rows}


def _spawner(pid_file: Path) -> str:
    """A cell that starts a detached child (new session) and records both PIDs."""
    return (
        "import os, subprocess\n"
        "child = subprocess.Popen(['sleep', '600'], start_new_session=True)\n"
        f"open({str(pid_file)!r}, 'w').write(f'{{os.getpid()}} {{child.pid}}')"
    )


def _assert_ended(pid_file: Path) -> None:
    pids = [int(p) for p in pid_file.read_text().split()]
    assert len(pids) == 2
    for pid in pids:  # the kernel, and the child it detached
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            continue
        assert state == "Z", f"process {pid} is still running"


CHECK_STUDENT_HW4 = (
    "import os, hw4.answers\n"
    "assert os.path.samefile(os.path.dirname(hw4.answers.__file__), 'hw4'), hw4.answers.__file__"
)


def _class(d: Path) -> tuple[list[Path], Path]:
    """Every verdict that needs no real notebook, one or two per submission."""
    subs, pid_file = d / "subs", d / "kernel.pids"
    subs.mkdir()
    a = S.answers_only(subs / "hw4-wrong-dx", S.WRONG_DX)
    S.tiny_notebook(a / f"{S.PART3}.ipynb", CHECK_STUDENT_HW4, "1 / 0")
    b = S.answers_only(subs / "hw4-ignores-upstream", S.IGNORES_UPSTREAM)
    S.tiny_notebook(b / f"{S.PART4}.ipynb", _spawner(pid_file), "while True:\n    pass")
    c = S.answers_only(subs / "hw4-import-fails", S.FAILS_ON_IMPORT)
    S.tiny_notebook(c / f"{S.PART3}.ipynb", "x = bytearray(2 * 2**30)  # over the memory limit")
    e = S.answers_only(d / "hw4-import-loops", S.LOOPS_ON_IMPORT)
    # The two that wait for a timeout first, so that they overlap with the others.
    sources = [b, S.zip_folder(e, subs / "hw4-import-loops.zip"), a, c]
    sources += [
        S.zip_with(subs / "hw4-dotdot.zip", {"hw4/answers.py": b"", "../../evil.py": b"x"}),
        S.zip_bomb(subs / "hw4-bomb.zip", mib=300),  # over the default 200 MiB
        S.zip_with(subs / "hw4-symlink.zip", {}, {"hw4": "/etc"}),
    ]
    (subs / "hw4-not-a-zip.zip").write_text("hello")
    sources.append(subs / "hw4-not-a-zip.zip")
    return sources, pid_file


CODE = grade.CODE_COLUMN
# Submission ID -> column -> the verdict: equal to a string, or starting with "^..." / containing
# "~...". Unlisted verdict columns: "missing notebook" where a notebook is missing, else anything.
EXPECTED = {
    "wrong-dx": {
        "status": "graded",
        CODE: "^FAIL: dX wrong (relative error 0.33); gradcheck fails: GradcheckError: Jacobian "
        "mismatch for output 0 with respect to input 0 (X)",  # its first line, the input named
        # Cell 1 passed: the kernel imported the student's hw4, not the grader's.
        # "code cell 2" or, numbered as JupyterLab does, "cell 2": the notebook has code cells only.
        "Part3 run": "~cell 2 (execution count 2) failed: ZeroDivisionError: division by zero",
        "Part4 run": "missing notebook",
        "Part4 CNNs/1": "missing notebook",
    },
    "ignores-upstream": {
        CODE: "^FAIL: dX, dW, db ignore the upstream gradient grad_output",
        "Part4 run": "~cell 2 (execution count 2) timed out: CellTimeoutError: the cell ran longer "
        "than 3 s",
        "Part3 run": "missing notebook",
    },
    "import-fails": {
        CODE: "FAIL: hw4/answers.py fails on import: RuntimeError: student bug at import time "
        "(hw4/answers.py, line 3)",
        "Part3 run": "~MemoryError",
    },
    "import-loops": {
        "status": "graded",
        CODE: "FAIL: timed out after 3 s while importing hw4/answers.py (endless loop?)",
        "Part3 run": "missing notebook",
    },
    "dotdot": {"note": "unsafe entry '../../evil.py': '..' leads outside the submission"},
    "bomb": {"note": "too big: 300 MiB uncompressed (limit 200 MiB; a zip bomb?)"},
    "symlink": {"note": "unsafe entry 'hw4': a symlink"},
    "not-a-zip": {"note": "not a zip file (File is not a zip file)"},
}
for sid in ("dotdot", "bomb", "symlink", "not-a-zip"):
    EXPECTED[sid].update({"status": "unreadable", "passed": "", "Part3 run": "", CODE: ""})


def _mismatches(rows: dict, expected: dict) -> list[str]:
    out = []
    for sid, want in expected.items():
        row = rows.get(sid)
        if row is None:
            out.append(f"{sid}: no row")
            continue
        for col, w in want.items():
            got = row[col]
            ok = got.startswith(w[1:]) if w[:1] == "^" else w[1:] in got if w[:1] == "~" else got == w
            if not ok:
                out.append(f"{sid} / {col}: expected {w!r}, got {got!r}")
    return out


def test_a_class_graded_by_the_command_line(tmp_path):
    """One run, every verdict that needs no real notebook; all mismatches reported at once."""
    sources, pid_file = _class(tmp_path)
    out = tmp_path / "out"
    start = time.monotonic()
    proc = main_py("grade", *sources, "--jobs", "4", "--out", out, "--timeout", "3",
                   "--memory-limit", "1G")  # fmt: skip
    seconds = time.monotonic() - start
    assert proc.returncode == 0, proc.stderr  # every submission has a row, whatever its grades
    rows = read_rows(out / "grades.csv")
    with open(out / "grades.csv", newline="") as f:
        assert next(csv.reader(f)) == grade.columns()
    assert sorted(rows) == sorted(EXPECTED)
    problems = _mismatches(rows, EXPECTED)
    assert not problems, "verdicts differ:\n" + "\n".join(problems)
    # Reports: one per ID, with the details the CSV cannot hold.
    assert sorted(p.stem for p in (out / "reports").glob("*.md")) == sorted(EXPECTED)
    report = (out / "reports" / "wrong-dx.md").read_text()
    assert "1 / 0" in report and "ZeroDivisionError" in report and "dX wrong" in report
    assert "Not graded: unreadable" in (out / "reports" / "bomb.md").read_text()
    # Progress: a running count, one line per submission (no terminal: no bar).
    assert "[8/8]" in proc.stderr and "8 of 8 graded" in proc.stderr
    _assert_ended(pid_file)  # the kernel of the endless cell, and the child it detached
    print(f"class of {len(rows)} graded in {seconds:.1f} s")


def test_existing_grades_need_resume_and_sources_must_exist(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "grades.csv").write_text(",".join(grade.columns()) + "\n")
    proc = main_py("grade", tmp_path, "--out", out)
    assert proc.returncode == 2 and "--resume" in proc.stderr
    proc = main_py("grade", ROOT / "no-such.zip", "--out", tmp_path / "x")
    assert proc.returncode == 2 and "no such file" in proc.stderr
    assert not (tmp_path / "x").exists()


def test_a_long_temp_folder_path_still_grades(tmp_path):
    """The fork server's Unix socket lives under TMPDIR, and a socket path has at most 107
    bytes: pytest's deep temp folders once made grading fail with 'AF_UNIX path too long'."""
    tmp = tmp_path / ("t" * max(1, 110 - len(str(tmp_path))))
    tmp.mkdir()
    (tmp_path / "hw4-not-a-zip.zip").write_text("hello")
    env = dict(os.environ, TMPDIR=str(tmp))
    proc = main_py("grade", tmp_path / "hw4-not-a-zip.zip", "--out", tmp_path / "out", env=env)
    assert proc.returncode == 0, proc.stderr
    assert "not a zip file" in (tmp_path / "out" / "grades.csv").read_text()
    assert not list(tmp.iterdir()), "grade leaves nothing in the temp folder"


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_interrupt_stops_cleanly_and_keeps_what_was_graded(tmp_path, signum):
    """Ctrl-C (or a batch scheduler's SIGTERM) while a kernel runs an endless cell."""
    subs, pid_file = tmp_path / "subs", tmp_path / "kernel.pids"
    subs.mkdir()
    endless = subs / "hw4-endless"
    endless.mkdir()
    S.tiny_notebook(endless / f"{S.PART3}.ipynb", _spawner(pid_file), "while True:\n    pass")
    (subs / "hw4-not-a-zip.zip").write_text("hello")
    out, tmp = tmp_path / "out", tmp_path / "tmp"
    tmp.mkdir()
    env = dict(os.environ, TMPDIR=str(tmp))
    args = [*WITH_DEFAULT_SIGINT, str(ROOT / "main.py"), "grade", str(endless), str(subs / "hw4-not-a-zip.zip"),
            "--jobs", "2", "--out", str(out), "--timeout", "600"]  # fmt: skip
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (pid_file.exists() and pid_file.read_text()) and time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.1)
        time.sleep(0.3)  # the endless cell is running
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signum, err
    assert f"interrupted ({signum.name}): 1 of 2 graded" in err and "--resume" in err
    assert "Traceback" not in err
    rows = read_rows(out / "grades.csv")
    assert list(rows) == ["not-a-zip"]
    _assert_ended(pid_file)
    assert list(tmp.iterdir()) == [], "temporary folders left behind"
    # --resume skips what is graded.
    proc2 = main_py("grade", subs / "hw4-not-a-zip.zip", "--out", out, "--resume")
    assert proc2.returncode == 0 and "1 already in" in proc2.stderr


# ------------------------------------------------------------------------------------
# End to end on the real notebooks
# ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_real_submissions_complete_and_with_known_faults(tmp_path):
    correct = S.zip_folder(S.copy_project(tmp_path / "p1"), tmp_path / "hw4-111111111.zip")
    faulty = S.copy_project(tmp_path / "hw4-222222222")
    S.edit_notebook(faulty / f"{S.PART3}.ipynb", S.empty_first_answer)
    S.edit_notebook(
        faulty / f"{S.PART4}.ipynb",
        S.change_given_line(*CHANGED_LINE),
    )
    # The student's own checker and question files pass anything: the grader must not use them.
    (faulty / "nbtools" / "check.py").write_text("def check_nb(nb, qfile):\n    return []\n")
    (faulty / "tests" / "questions" / f"{S.PART3}.md").write_text("$$\n$$\n")
    proc = main_py("grade", correct, faulty, "--jobs", "2", "--out", tmp_path / "out")
    assert proc.returncode == 0, proc.stderr
    rows = read_rows(tmp_path / "out" / "grades.csv")
    verdicts = grade.verdict_columns(grade.columns())
    ok = rows["111111111"]
    assert {c: ok[c] for c in verdicts if ok[c] != "ok"} == {}
    assert ok["passed"] == f"{len(verdicts)}/{len(verdicts)}"
    bad = rows["222222222"]
    wrong = {c: bad[c] for c in verdicts if bad[c] != "ok"}
    assert sorted(wrong) == ["Part3 CNNs/1", "Part3 check", "Part4 Backpropagation/2", "Part4 check"]
    assert wrong["Part3 CNNs/1"].startswith("empty answer")
    assert "given code cell" in wrong["Part4 Backpropagation/2"]
    report = (tmp_path / "out" / "reports" / "222222222.md").read_text()
    assert f"**{len(verdicts) - 4}/{len(verdicts)} checks passed**" in report
