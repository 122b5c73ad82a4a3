"""Inputs to the engine: what the runtime (or the simulator) saw happen.

Every event names the service by its path. ``pid`` ties an event to one
incarnation of the service; the engine ignores events about a PID that is no
longer the service's (a late notice about a process it already replaced).
"""

from __future__ import annotations

from typing import TypeAlias

import attrs

from otree.core.reprs import plain_repr


@plain_repr
@attrs.frozen(repr=False)
class Spawned:
    """The service's process exists and its exec succeeded."""

    path: str
    pid: int


@plain_repr
@attrs.frozen(repr=False)
class SpawnFailed:
    """The process could not be started (fork or exec failed); no process exists."""

    path: str
    reason: str


@plain_repr
@attrs.frozen(repr=False)
class Ready:
    """The service's readiness check passed."""

    path: str
    pid: int


@plain_repr
@attrs.frozen(repr=False)
class ReadyFailed:
    """The service's readiness check failed for good (the process still runs)."""

    path: str
    pid: int
    reason: str


@plain_repr
@attrs.frozen(repr=False)
class Exited:
    """The service's main process is gone.

    ``code`` if it exited, ``signal`` (a name without SIG: ``"KILL"``) if a signal killed it.
    """

    path: str
    pid: int
    code: int | None = None
    signal: str | None = None


@plain_repr
@attrs.frozen(repr=False)
class Unhealthy:
    """The running service failed its health check (``failures`` in a row) or its
    watchdog (``reason`` ``"watchdog"``): the engine stops it, and its end is a crash."""

    path: str
    pid: int
    reason: str
    failures: int = 0


@plain_repr
@attrs.frozen(repr=False)
class TimerFired:
    """A timer the engine set with ``SetTimer(key, ...)`` is due."""

    key: tuple[str, ...]


#: the manual commands: OTP's restart_child / terminate_child / both, and the tree's end
COMMANDS = ("start", "stop", "restart", "shutdown", "kill_all", "scale")


@plain_repr
@attrs.frozen(repr=False)
class Command:
    """A request from a user: ``start|stop|restart PATH``, ``scale PATH COUNT``,
    ``shutdown``, ``kill_all``.

    ``request`` is an opaque id echoed in the ``Reply`` action (None: no reply wanted).
    """

    name: str
    path: str = ""
    request: int | None = None
    count: int | None = None  #: ``scale``: how many instances the pool at ``path`` runs


Event: TypeAlias = (
    "Spawned | SpawnFailed | Ready | ReadyFailed | Exited | Unhealthy | TimerFired | Command"
)
