"""The code answer the question files name, ``part4_affine_backward``, checked safely.

The student's function runs in a process of its own (:mod:`nbtools.affine_probe`,
working directory the student's folder, a memory limit, a timeout); this module,
in the grader's process, sends it random inputs and checks the gradients it sends
back against the formulas of ``Y = 0.5 * X @ W.T + b`` (numpy, float64):

    dX = 0.5 * G @ W,   dW = 0.5 * G.T @ X,   db = G.sum(0)

The student's function passes if, with a random upstream gradient G,
(1) through autograd with every input requiring grad it gives those gradients;
(2) called directly with each of the 8 ``needs_input_grad`` patterns it returns a
tuple of three, None exactly where the flag is False, and otherwise tensors of the
inputs' exact shapes (autograd would hide an unsummed ``db`` by reducing it) with
the right values, never modifying G in place; and (3) ``torch.autograd.gradcheck``
passes with every input requiring grad.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

FUNCTION = "part4_affine_backward"
MODULE_FILE = "hw4/answers.py"
PROBE = Path(__file__).resolve().with_name("affine_probe.py")
STARTUP_TIMEOUT = 120  # seconds for the probe to start and import torch (a busy machine)
N, D_IN, D_OUT = 4, 5, 3  # small but distinct: a transpose bug cannot hide
NAMES = ("dX", "dW", "db")
MAX_REPLY = 2**20  # bytes: the longest line read from the probe (a reply is ~10 KB)
RTOL, ATOL = 1e-7, 1e-9
# PIDs of probes running now, changed under LOCK: a caller ending processes spares them.
ACTIVE: set[int] = set()
LOCK = threading.Lock()


@dataclass
class CodeResult:
    ok: bool
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def summary(self) -> str:
        """'ok' or 'FAIL: ...' (one line, at most three problems)."""
        if self.ok:
            return "ok"
        shown = "; ".join(self.problems[:3])
        more = f" (+{len(self.problems) - 3} more)" if len(self.problems) > 3 else ""
        return f"FAIL: {shown}{more}"


def expected(X, W, b, G) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The true (dX, dW, db) of Y = 0.5 * X @ W.T + b for upstream gradient G."""
    return 0.5 * G @ W, 0.5 * G.T @ X, G.sum(0)


def rel_error(a: np.ndarray, b: np.ndarray) -> float:
    """max |a - b| / max(1e-8, max(|a| + |b|)) (CS231n's relative error)."""
    return float(np.max(np.abs(a - b)) / max(1e-8, float(np.max(np.abs(a) + np.abs(b)))))


def _compare(got, want: np.ndarray, want_if_g_ignored: np.ndarray) -> str | None:
    """None if got (a reply entry) is the gradient want, else what is wrong with it.

    The text follows the gradient's name: "dX " + "is None".
    """
    if got is None:
        return "is None"
    if not isinstance(got, dict) or "shape" not in got:
        kind = got.get("type", "?") if isinstance(got, dict) else type(got).__name__
        return f"is a {kind}, not a tensor"
    shape = tuple(got["shape"])
    if shape != want.shape:
        return f"has shape {shape}, expected {want.shape}"
    values = np.asarray(got["values"], dtype=np.float64)
    if values.size != want.size:
        return "is malformed in the reply"
    values = values.reshape(want.shape)
    if np.allclose(values, want, rtol=RTOL, atol=ATOL):
        return None
    if np.allclose(values, want_if_g_ignored, rtol=RTOL, atol=ATOL):
        return "ignore the upstream gradient grad_output (the gradient of sum(Y) instead)"
    if not np.all(np.isfinite(values)):
        return "not finite"
    return f"wrong (relative error {rel_error(values, want):.2g})"


class _Problems:
    """Ordered problems; the same text for several gradients is said once: "dX, db ..."."""

    def __init__(self):
        self.items: dict[str, list[str]] = {}

    def add(self, text: str, name: str = "") -> None:
        names = self.items.setdefault(text, [])
        if name not in names:
            names.append(name)

    def lines(self) -> list[str]:
        out = []
        for text, names in self.items.items():
            names = [n for n in names if n]
            out.append(f"{', '.join(names)} {text}" if names else text)
        return out


def verify(reply: dict, X, W, b, G) -> list[str]:
    """Problems of the probe's reply for inputs X, W, b and upstream gradient G."""
    if "import" in reply:
        return [f"{MODULE_FILE} fails on import: {reply['import']}"]
    want = expected(X, W, b, G)
    ignored = expected(X, W, b, np.ones_like(G))
    problems = _Problems()

    auto = reply["autograd"]
    if isinstance(auto, str):
        problems.add(f"raises through autograd: {auto}")
    else:
        for name, got, w, i in zip(NAMES, auto, want, ignored):
            p = _compare(got, w, i)
            if p:
                problems.add(p, name)

    for needs, case in zip(_needs_patterns(), reply["direct"]):
        if "error" in case:
            problems.add(f"raises with ctx.needs_input_grad={needs}: {case['error']}")
            continue
        if "returned" in case:
            problems.add(f"returns a {case['returned']}, expected a tuple (dX, dW, db)")
            continue
        grads = case["grads"]
        if len(grads) != 3:
            problems.add(f"returns {len(grads)} values, expected 3 (dX, dW, db)")
            continue
        for i, (needed, name, got) in enumerate(zip(needs, NAMES, grads)):
            if not needed:
                if got is not None:
                    problems.add("computed although ctx.needs_input_grad says no (return None)", name)
                continue
            p = _compare(got, want[i], ignored[i])
            if p:
                problems.add(p + (" (called directly)" if p.startswith("has shape") else ""), name)
        if case.get("grad_output_modified"):
            problems.add("modifies grad_output in place")

    if reply["gradcheck"] != "ok":
        problems.add(f"gradcheck fails: {reply['gradcheck']}")
    return problems.lines()


def _needs_patterns() -> list[tuple[bool, bool, bool]]:
    return [(a, b, c) for a in (False, True) for b in (False, True) for c in (False, True)]


class _Reader(threading.Thread):
    """Collects the probe's marker lines (``<nonce> ...``) from its stdout.

    Whatever else the student's code prints is read and dropped; lines are read
    in bounded pieces, so a flood of output costs no memory.
    """

    def __init__(self, stream, nonce: str):
        super().__init__(daemon=True)
        self.stream, self.prefix = stream, nonce.encode() + b" "
        self.markers: list[bytes] = []
        self.changed = threading.Condition()

    def run(self) -> None:
        at_line_start = True
        while line := self.stream.readline(MAX_REPLY):
            if at_line_start and line.startswith(self.prefix) and len(self.markers) < 16:
                with self.changed:
                    self.markers.append(line[len(self.prefix) :].strip())
                    self.changed.notify_all()
            at_line_start = line.endswith(b"\n")
        with self.changed:
            self.markers.append(b"<eof>")
            self.changed.notify_all()

    def wait_for(self, test, timeout: float) -> bool:
        with self.changed:
            return self.changed.wait_for(lambda: any(test(m) for m in self.markers), timeout)


def check_affine_backward(
    root: Path, *, timeout: float = 60, memory_limit: int = 4 * 2**30, seed: int | None = None
) -> CodeResult:
    """Check the student's part4_affine_backward in root/hw4/answers.py (see module doc).

    timeout: seconds for the student's code (import and calls), after torch is imported.
    """
    start = time.perf_counter()
    result = _check(root, timeout, memory_limit, seed)
    result.seconds = time.perf_counter() - start
    return result


def _check(root: Path, timeout: float, memory_limit: int, seed: int | None) -> CodeResult:
    if not (root / MODULE_FILE).is_file():
        return CodeResult(False, [f"{MODULE_FILE} missing"])
    rng = np.random.default_rng(secrets.randbits(64) if seed is None else seed)
    X, W, b, G = (rng.standard_normal(s) for s in ((N, D_IN), (D_OUT, D_IN), (D_OUT,), (N, D_OUT)))
    nonce = secrets.token_hex(16)
    request = {"nonce": nonce, "X": X.tolist(), "W": W.tolist(), "b": b.tolist(), "G": G.tolist()}
    with LOCK:
        proc = subprocess.Popen(
            [sys.executable, "-I", str(PROBE), str(root), str(memory_limit)],
            cwd=root,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,  # its own process group: ended as a whole on timeout
        )
        ACTIVE.add(proc.pid)
    reader = _Reader(proc.stdout, nonce)
    reader.start()
    errors = _Tail(proc.stderr)
    errors.start()
    try:
        proc.stdin.write(json.dumps(request).encode())
        proc.stdin.close()
    except BrokenPipeError:
        pass

    def final(m: bytes) -> bool:
        return m.startswith(b"{") or m == b"<eof>"

    try:
        if not reader.wait_for(lambda m: m == b"ready" or final(m), STARTUP_TIMEOUT):
            return CodeResult(False, [f"the check could not start in {STARTUP_TIMEOUT} s"])
        if not reader.wait_for(final, timeout):
            stage = "importing " + MODULE_FILE
            if b"imported" in reader.markers:
                stage = f"calling {FUNCTION}"
            return CodeResult(False, [f"timed out after {timeout:g} s while {stage} (endless loop?)"])
    finally:
        _end(proc)
        with LOCK:
            ACTIVE.discard(proc.pid)
        reader.join(5)
        errors.join(5)
    reply_line = next((m for m in reversed(reader.markers) if m.startswith(b"{")), None)
    if reply_line is None:
        code = proc.returncode
        why = f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}"
        tail = errors.last_line()
        return CodeResult(
            False,
            [f"the check process ended without a result ({why})" + (f": {tail}" if tail else "")],
        )
    try:
        problems = verify(json.loads(reply_line), X, W, b, G)
    except (ValueError, KeyError, TypeError, IndexError, AttributeError) as e:
        problems = [f"malformed reply from the check process ({type(e).__name__})"]
    return CodeResult(not problems, problems)


class _Tail(threading.Thread):
    """Keeps the last few KiB of a stream."""

    def __init__(self, stream, keep: int = 8192):
        super().__init__(daemon=True)
        self.stream, self.keep, self.data = stream, keep, b""

    def run(self) -> None:
        for chunk in iter(lambda: self.stream.read(4096), b""):
            self.data = (self.data + chunk)[-self.keep :]

    def last_line(self) -> str:
        lines = [ln.strip() for ln in self.data.decode(errors="replace").splitlines() if ln.strip()]
        return lines[-1][:200] if lines else ""


def _end(proc: subprocess.Popen) -> None:
    """End the probe and its process group (it is our child, so its PID is still ours)."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            proc.kill()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        pass
