"""What a supervisor keeps besides its children: its record of each, its plan, its mailbox.

Small typed values, dispatched with ``isinstance`` and ``timers.never`` (so mypy
sees a kind left out); see ``otree.core.node`` for how a supervisor uses them.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import TYPE_CHECKING, Literal, TypeAlias

import attrs

from otree.core.service import State
from otree.core.timers import RestartTimer

if TYPE_CHECKING:
    from otree.core.supervisor import Child


@attrs.define(eq=False)
class ChildRecord:
    """What a supervisor knows of one child (OTP's ``#child``); the child never writes it."""

    #: while the child is not alive: STOPPED, RESTARTING, EXITED or DEAD (``SupNode.mark``)
    mark: State = State.STOPPED
    #: the restart timer that will start it again (RESTARTING)
    restart_key: RestartTimer | None = None
    #: when it was restarted automatically (within the window: ``otree status``)
    restart_times: list[float] = attrs.field(factory=list)


# --- a plan's steps ------------------------------------------------------------------


@attrs.frozen(eq=False)
class StopChild:
    child: Child


@attrs.frozen(eq=False)
class StartChild:
    child: Child


@attrs.frozen(eq=False)
class Call:
    then: Callable[[], None]


Step: TypeAlias = "StopChild | StartChild | Call"


# --- what waits in the mailbox -----------------------------------------------------


@attrs.frozen(eq=False)
class ExitMail:
    """A child ended on its own (stale once it was started or stopped again, R12)."""

    child: Child
    incarnation: int
    normal: bool


@attrs.frozen(eq=False)
class RestartMail:
    key: RestartTimer


@attrs.frozen(eq=False)
class CommandMail:
    name: str  # start | stop | restart
    child: Child
    request: int | None


Mail: TypeAlias = "ExitMail | RestartMail | CommandMail"


class Ending(enum.Enum):
    """Why a supervisor is stopping."""

    STOPPED = "stopped"  # asked to (its parent, a command, the tree's shutdown)
    INIT_FAILED = "init_failed"  # a child of its start failed (R6)
    GAVE_UP = "gave_up"  # too many restarts (R24)
    AUTO_SHUTDOWN = "auto_shutdown"  # a significant child ended (R40-R42)


#: how a supervisor's own start or stop ended, told to its parent
Outcome = Literal["started", "start_failed", "stopped", "exited"]
