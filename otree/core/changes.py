"""What a reload changes in a running service: restart it, or update it in place.

A service is restarted only when something its process was started with
changed: its command line, environment, directory, identity and limits, its
log file, and what its environment tells it of supervision (the sd_notify
socket of ``ready = { notify = true }`` or ``watchdog``, and
``WATCHDOG_USEC``). A change to how it is supervised (readiness, health,
restart type, stop signal and shutdown, backoff, significant, exit codes,
log rotation sizes, autostart) is applied in place and keeps its PID: the
engine supervises the kept process under the new spec from then on.

A field this module does not name restarts: a new spec field is taken as
part of the process until it is listed in ``IN_PLACE``.
"""

from __future__ import annotations

import attrs

from otree.core.checks import ReadyNotify
from otree.core.reprs import plain_repr
from otree.core.spec import Log, Service

#: service fields a running process takes as they change (the engine reads them)
IN_PLACE = frozenset(
    {
        "ready",
        "health",
        "restart",
        "shutdown",
        "stop_signal",
        "backoff",
        "significant",
        "normal_exit_codes",
        "autostart",
        "intensity",  # a pool's window, on its instances' specs: the pool's own setting
        "period",
    }
)
#: ``log`` fields applied in place (the file itself is part of the process)
LOG_IN_PLACE = ("max_bytes", "backups", "ring_bytes")
_DEFAULT_LOG = Log()


@plain_repr
@attrs.frozen(repr=False)
class Change:
    """How a service's spec changed: ``restart`` the fields that need a new process (in
    the spec's order), ``update`` those applied in place."""

    restart: tuple[str, ...] = ()
    update: tuple[str, ...] = ()

    @property
    def same(self) -> bool:
        return not self.restart and not self.update


def service_change(old: Service, new: Service) -> Change:
    """Which fields differ between ``old`` and ``new``, and whether each restarts."""
    restart: list[str] = []
    update: list[str] = []
    for field in attrs.fields(Service):
        name = field.name
        before, after = getattr(old, name), getattr(new, name)
        if name == "log":
            _log_change(before, after, restart, update)
        elif before != after:
            (update if name in IN_PLACE else restart).append(name)
    if _notify_socket(old) != _notify_socket(new):
        # the socket is in the process's environment (NOTIFY_SOCKET): it had none, or has
        # one it no longer needs
        for name in ("ready", "watchdog"):
            if name in update:
                update.remove(name)
            if getattr(old, name) != getattr(new, name) and name not in restart:
                restart.append(name)
    return Change(tuple(restart), tuple(update))


def _notify_socket(spec: Service) -> bool:
    return isinstance(spec.ready, ReadyNotify) or spec.watchdog is not None


def _log_change(old: Log | None, new: Log | None, restart: list[str], update: list[str]) -> None:
    before, after = old or _DEFAULT_LOG, new or _DEFAULT_LOG
    if before.file != after.file:
        restart.append("log.file")
    update.extend(f"log.{n}" for n in LOG_IN_PLACE if getattr(before, n) != getattr(after, n))
