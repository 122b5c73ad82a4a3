"""Outputs of the engine: what the runtime (or the simulator) must carry out."""

from __future__ import annotations

from typing import Any, TypeAlias

import attrs

from otree.core.reprs import plain_repr
from otree.core.spec import Service


@plain_repr
@attrs.frozen(repr=False)
class Spawn:
    """Start the service's process in a new process group; answer with Spawned or SpawnFailed,
    then (when ``spec.ready`` is set) run its readiness check and answer Ready or ReadyFailed."""

    path: str
    spec: Service


@plain_repr
@attrs.frozen(repr=False)
class Signal:
    """Send ``signal`` (a name without ``SIG``) to the process group of ``pid``."""

    path: str
    pid: int
    signal: str


@plain_repr
@attrs.frozen(repr=False)
class Kill:
    """SIGKILL the process group of ``pid``."""

    path: str
    pid: int


@plain_repr
@attrs.frozen(repr=False)
class SetTimer:
    """Deliver ``TimerFired(key)`` after ``delay`` seconds (0: on the next loop turn).
    Setting a key that is already set replaces it."""

    key: tuple[str, ...]
    delay: float


@plain_repr
@attrs.frozen(repr=False)
class CancelTimer:
    key: tuple[str, ...]


@plain_repr
@attrs.frozen(repr=False)
class Report:
    """One event-log entry: ``{"ts", "event": event, "path": path, **fields}``."""

    event: str
    path: str
    fields: dict[str, Any] = attrs.field(factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"event": self.event, "path": self.path, **self.fields}


@plain_repr
@attrs.frozen(repr=False)
class Reply:
    """The answer to ``Command(request=request)``: ``ok``, or ``error`` with a reason."""

    request: int
    ok: bool
    error: str | None = None


@plain_repr
@attrs.frozen(repr=False)
class Exit:
    """The tree is down: the runtime exits with ``code`` (``OK`` after a shutdown, ``GAVE_UP``
    when the root gave up, ``START_FAILED`` when the initial start failed)."""

    code: int  #: an ExitCode
    message: str | None = None


Action: TypeAlias = "Spawn | Signal | Kill | SetTimer | CancelTimer | Report | Reply | Exit"
