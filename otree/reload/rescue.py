"""When a new image cannot take over after a re-exec: stop the children it was handed.

The handoff could not be read, the tree could not be built, or taking over
raised: the children left running by the image before are still ours (the
exec kept our PID), and they must not be left unsupervised. Every child of
this process gets ``TERM`` to its group, then ``KILL`` after a grace period;
all are reaped, and ``otree run`` exits 4 (``ExitCode.REEXEC``).
"""

from __future__ import annotations

import signal
import time

from otree.errors import ExitCode, stderr_line
from otree.runtime import posix

#: how long the children get to stop after TERM before KILL
GRACE = 5.0


def give_up(message: str) -> ExitCode:
    """A re-exec cannot be completed: say why, stop every child of ours, return 4."""
    stderr_line(f"cannot take over after the re-exec: {message}")
    stderr_line("stopping the children left running (they are not orphaned)")
    stop_children()
    return ExitCode.REEXEC


def stop_children(grace: float = GRACE) -> None:
    """Stop every child of this process: TERM to each one's group, then KILL; reap them."""
    children = posix.children()
    for pid in children:
        _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    left = set(children)
    while left and time.monotonic() < deadline:
        left = {pid for pid in left if posix.reap(pid) is None}
        if left:
            time.sleep(0.02)
    for pid in left:
        _signal_group(pid, signal.SIGKILL)
    for pid in left:
        posix.reap(pid, block=True)
    posix.reap_exited()  # anything else: readiness probes, orphans adopted as a subreaper


def _signal_group(pid: int, signum: int) -> None:
    """Its group; the process alone if it left the group (or never led one)."""
    if not posix.kill_group(pid, signum):
        posix.kill_process(pid, signum)
