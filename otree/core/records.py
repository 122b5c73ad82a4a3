"""What a supervisor keeps besides its children: its record of each, its plan, its mailbox.

Small typed values, dispatched with ``isinstance`` and ``timers.never`` (so mypy
sees a kind left out); see ``otree.core.node`` for how a supervisor uses them.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import TYPE_CHECKING, Literal, NamedTuple, TypeAlias

from otree.core.service import State
from otree.core.timers import RestartTimer

if TYPE_CHECKING:
    from otree.core.supervisor import Child


class ChildRecord:
    """What a supervisor knows of one child (OTP's ``#child``); the child never writes it.

    ``mark``: while the child is not alive, STOPPED, RESTARTING, EXITED or DEAD
    (``SupNode.mark``); ``restart_key``: the restart timer that will start it
    again (RESTARTING); ``restart_times``: when it was restarted automatically
    (within the window: ``otree status``); ``held``: an ``autostart = false`` child
    nobody has started yet (or that ``otree stop`` stopped again): no start of its
    supervisor and no group restart starts it, only ``otree start``/``restart``.

    A plain class, as the values below are named tuples: one of these exists
    per node, and attrs classes cost the supervisor's RSS more.
    """

    __slots__ = ("held", "mark", "restart_key", "restart_times")

    def __init__(
        self,
        mark: State = State.STOPPED,
        restart_key: RestartTimer | None = None,
        restart_times: list[float] | None = None,
        held: bool = False,
    ) -> None:
        self.mark = mark
        self.restart_key = restart_key
        self.restart_times: list[float] = [] if restart_times is None else restart_times
        self.held = held

    def __repr__(self) -> str:
        return (
            f"ChildRecord(mark={self.mark!r}, restart_key={self.restart_key!r}, "
            f"restart_times={self.restart_times!r}, held={self.held!r})"
        )


class PendingRestart(NamedTuple):
    """A restart that waits for its restart timer (a backoff delay, or a retry's turn).

    ``trigger``: the child whose exit (or failed start) called for it; stopping that
    child cancels it as a whole (OTP: ``terminate_child`` of a restarting child leaves
    ``try_again_restart`` nothing to do). ``retry``: the timer is a failed restart's
    turn in the loop: when it fires the retry is decided, counted, then carried out
    (OTP's ``add_restart`` in ``handle_cast({try_again_restart, _})``); otherwise the
    decision was taken already and only the start waited.
    """

    trigger: Child
    retry: bool


# --- a plan's steps ------------------------------------------------------------------


class StopChild(NamedTuple):
    child: Child


class StartChild(NamedTuple):
    child: Child


class Call(NamedTuple):
    then: Callable[[], None]


Step: TypeAlias = "StopChild | StartChild | Call"


# --- what waits in the mailbox -----------------------------------------------------


class ExitMail(NamedTuple):
    """A child ended on its own (stale once it was started or stopped again, R12)."""

    child: Child
    incarnation: int
    normal: bool


class RestartMail(NamedTuple):
    key: RestartTimer


class CommandMail(NamedTuple):
    name: str  # start | stop | restart
    child: Child
    request: int | None


class ScaleMail(NamedTuple):
    """``otree scale`` of a pool, waiting its turn (R38)."""

    size: int
    request: int | None


Mail: TypeAlias = "ExitMail | RestartMail | CommandMail | ScaleMail"


class Ending(enum.Enum):
    """Why a supervisor is stopping."""

    STOPPED = "stopped"  # asked to (its parent, a command, the tree's shutdown)
    INIT_FAILED = "init_failed"  # a child of its start failed (R6)
    GAVE_UP = "gave_up"  # too many restarts (R24)
    AUTO_SHUTDOWN = "auto_shutdown"  # a significant child ended (R40-R42)


#: how a supervisor's own start or stop ended, told to its parent
Outcome = Literal["started", "start_failed", "stopped", "exited"]
