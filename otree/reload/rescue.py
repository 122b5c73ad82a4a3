"""When a new image cannot take over after a re-exec: stop the children it was handed.

The handoff could not be read, the tree could not be built, or taking over
raised: the children left running by the image before are still ours (the
exec kept our PID), and they must not be left unsupervised. Every
handed-over child is stopped in reverse start order with its own stop signal
and shutdown time (then ``KILL``), any other child gets ``TERM`` to its group
and ``KILL`` after a grace period; all are reaped, and ``otree run`` exits 4
(``ExitCode.REEXEC``). The stopping is :mod:`otree.reload.bootstrap`'s, which
does the same when the new image cannot even import.
"""

from __future__ import annotations

from otree.errors import ExitCode, stderr_line
from otree.reload import bootstrap


def give_up(message: str) -> int:
    """A re-exec cannot be completed: say why, stop every child of ours, return 4."""
    stderr_line(f"cannot take over after the re-exec: {message}")
    stderr_line("stopping the children left running (they are not orphaned)")
    bootstrap.stop_all()
    return ExitCode.REEXEC
