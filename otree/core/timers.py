"""The engine's timers, typed: what each one is for, and its key on the wire.

``SetTimer``/``TimerFired`` carry a tuple of strings (the runtime and the
simulator treat it as an opaque, hashable name; a snapshot stores it as a JSON
list); inside the engine a timer is one of these classes. ``wire`` gives the
tuple, :func:`parse` reads one back (None for a key the engine never set).
They are named tuples (light on RSS): tell kinds apart with ``isinstance``,
never by comparing a timer with one of another kind.
"""

from __future__ import annotations

from typing import NamedTuple, NoReturn, TypeAlias


def never(value: NoReturn) -> NoReturn:
    """The ``else`` of a dispatch over a closed union: mypy checks none is left out."""
    raise AssertionError(f"unexpected {value!r}")  # pragma: no cover


class KillTimer(NamedTuple):
    """A service's shutdown time is up: SIGKILL its process (R10)."""

    path: str
    pid: int

    @property
    def wire(self) -> tuple[str, ...]:
        return ("kill", self.path, str(self.pid))


class ReadyTimer(NamedTuple):
    """A service's readiness check is out of time."""

    path: str
    pid: int

    @property
    def wire(self) -> tuple[str, ...]:
        return ("ready", self.path, str(self.pid))


class RestartTimer(NamedTuple):
    """A delayed (backoff) or retried restart of a supervisor's children is due (R26)."""

    path: str  # the supervisor's
    seq: int

    @property
    def wire(self) -> tuple[str, ...]:
        return ("restart", self.path, str(self.seq))


class SupKillTimer(NamedTuple):
    """A supervisor's shutdown time is up: SIGKILL everything below it."""

    path: str

    @property
    def wire(self) -> tuple[str, ...]:
        return ("supkill", self.path)


TimerKey: TypeAlias = "KillTimer | ReadyTimer | RestartTimer | SupKillTimer"


def parse(wire: tuple[str, ...]) -> TimerKey | None:
    """The timer named ``wire`` (as ``TimerKey.wire`` gives it); None if it is none of ours."""
    match wire:
        case ("kill", str(path), str(pid)) if pid.isdigit():
            return KillTimer(path, int(pid))
        case ("ready", str(path), str(pid)) if pid.isdigit():
            return ReadyTimer(path, int(pid))
        case ("restart", str(path), str(seq)) if seq.isdigit():
            return RestartTimer(path, int(seq))
        case ("supkill", str(path)):
            return SupKillTimer(path)
    return None
