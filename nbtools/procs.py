"""End every process a grading process started, however it detached itself.

A student's notebook may start processes that outlive its kernel: a ``sleep`` in a
new session, a double fork. Process groups miss those. On Linux the grading
process becomes a *child subreaper* (``prctl(PR_SET_CHILD_SUBREAPER)``): orphaned
descendants are re-parented to it instead of to PID 1, so every process it ever
started stays in its tree, and :func:`end_descendants` ends that tree by PID
(found in ``/proc``), never by name. Elsewhere both are no-ops.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import time
from pathlib import Path

_PR_SET_CHILD_SUBREAPER = 36
_PROC = Path("/proc")


def become_subreaper() -> bool:
    """Make orphaned descendants children of this process (Linux). True if it worked."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _parents() -> dict[int, int]:
    """pid -> parent pid of every process visible in /proc."""
    out = {}
    for entry in _PROC.iterdir() if _PROC.is_dir() else ():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # exited meanwhile
            continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 1:
            out[int(entry.name)] = int(fields[1])
    return out


def descendants(pid: int | None = None) -> list[int]:
    """PIDs of every living descendant of pid (default: this process), parents first."""
    root = os.getpid() if pid is None else pid
    children: dict[int, list[int]] = {}
    for child, parent in _parents().items():
        children.setdefault(parent, []).append(child)
    out, todo = [], list(children.get(root, []))
    while todo:
        p = todo.pop(0)
        out.append(p)
        todo += children.get(p, [])
    return out


def _kill(pid: int) -> None:
    """SIGKILL pid, a descendant found a moment ago.

    Through a pidfd where possible: the pidfd pins the process, so if the PID was
    recycled in between (its parent is then not ours), nothing is signalled.
    """
    try:
        if hasattr(os, "pidfd_open") and hasattr(signal, "pidfd_send_signal"):
            fd = os.pidfd_open(pid)
            try:
                if pid in descendants():
                    signal.pidfd_send_signal(fd, signal.SIGKILL)
            finally:
                os.close(fd)
        else:
            os.kill(pid, signal.SIGKILL)
    except OSError:  # gone already, or not ours
        pass


def _reap_children(keep: set[int]) -> None:
    """Collect exited children of this process (re-parented orphans included), except keep.

    The PIDs in keep belong to a ``subprocess.Popen`` that collects its own status.
    """
    for pid, parent in _parents().items():
        if parent == os.getpid() and pid not in keep:
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass


def end_descendants(keep: set[int] = frozenset(), timeout: float = 5.0) -> list[int]:
    """SIGKILL every descendant of this process except the PIDs in keep and theirs.

    Repeats until none is left (a killed parent's children come back to us as
    orphans), at most ``timeout`` seconds; reaps what exited. Returns the PIDs ended.
    """
    ended: list[int] = []
    deadline = time.monotonic() + timeout
    while True:
        spared = set(keep)
        for k in keep:
            spared.update(descendants(k))
        living = [p for p in descendants() if p not in spared and _alive(p)]
        if not living or time.monotonic() > deadline:
            _reap_children(set(keep))
            return ended
        for p in living:
            _kill(p)
            if p not in ended:
                ended.append(p)
        time.sleep(0.02)
        _reap_children(set(keep))


def _alive(pid: int) -> bool:
    """Running, not a zombie waiting to be reaped."""
    try:
        stat = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2 :].split()[0] != "Z"
