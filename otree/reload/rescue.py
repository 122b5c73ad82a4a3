"""When a new image cannot take over after a re-exec: stop the children it was handed.

The handoff could not be read, the tree could not be built, or taking over
raised: the children left running by the image before are still ours (the
exec kept our PID), and they must not be left unsupervised. Every child of
this process gets ``TERM`` to its group, then ``KILL`` after a grace period;
all are reaped, and ``otree run`` exits 4 (``ExitCode.REEXEC``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time

from otree.errors import ExitCode
from otree.runtime.output import stderr_line

#: how long the children get to stop after TERM before KILL
GRACE = 5.0


def give_up(message: str) -> ExitCode:
    """A re-exec cannot be completed: say why, stop every child of ours, return 4."""
    stderr_line(f"cannot take over after the re-exec: {message}")
    stderr_line("stopping the children left running (they are not orphaned)")
    stop_children()
    return ExitCode.REEXEC


def our_children() -> list[int]:
    """PIDs whose parent is this process (from /proc)."""
    me = os.getpid()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                fields = f.read().rpartition(b")")[2].split()
        except OSError:
            continue
        if len(fields) > 1 and int(fields[1]) == me:
            found.append(int(entry))
    return found


def stop_children(grace: float = GRACE) -> None:
    """Stop every child of this process: TERM to each one's group, then KILL; reap them."""
    children = our_children()
    for pid in children:
        _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    left = set(children)
    while left and time.monotonic() < deadline:
        left = {pid for pid in left if not _reaped(pid)}
        if left:
            time.sleep(0.02)
    for pid in left:
        _signal_group(pid, signal.SIGKILL)
    for pid in left:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
    while True:  # anything else: readiness probes, orphans adopted as a subreaper
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _signal_group(pid: int, signum: int) -> None:
    try:
        os.killpg(pid, signum)
    except OSError:
        with contextlib.suppress(OSError):
            os.kill(pid, signum)


def _reaped(pid: int) -> bool:
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return done != 0
