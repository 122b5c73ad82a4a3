"""The pure supervision core: specs, events in, actions out. No OS access.

What users of the core may use is ``__all__``: the spec classes, the events
the engine takes, the actions it returns, and the ``Engine``. The names load
on first use (PEP 562), so importing a core module (or ``otree.core`` itself)
costs only that module: nothing here is imported up front.
"""

from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from otree.core.actions import (
        Action,
        CancelTimer,
        Exit,
        Kill,
        Reply,
        Report,
        SetTimer,
        Signal,
        Spawn,
    )
    from otree.core.engine import Engine, NodeStatus
    from otree.core.events import (
        Command,
        Event,
        Exited,
        Ready,
        ReadyFailed,
        Spawned,
        SpawnFailed,
        TimerFired,
        Unhealthy,
    )
    from otree.core.spec import (
        AutoShutdown,
        Backoff,
        HealthCmd,
        HealthHttp,
        HealthTcp,
        Log,
        ReadyCmd,
        ReadyDelay,
        ReadyExited,
        ReadyHttp,
        ReadyNotify,
        ReadyTcp,
        Restart,
        Service,
        Strategy,
        Supervisor,
        check_tree,
        walk,
    )

#: each public name -> the core module that defines it
_HOME = {
    **dict.fromkeys(
        (
            "AutoShutdown",
            "Backoff",
            "Log",
            "HealthCmd",
            "HealthHttp",
            "HealthTcp",
            "ReadyCmd",
            "ReadyDelay",
            "ReadyExited",
            "ReadyHttp",
            "ReadyNotify",
            "ReadyTcp",
            "Restart",
            "Service",
            "Strategy",
            "Supervisor",
            "check_tree",
            "walk",
        ),
        "spec",
    ),
    **dict.fromkeys(
        (
            "Command",
            "Event",
            "Exited",
            "Ready",
            "ReadyFailed",
            "SpawnFailed",
            "Spawned",
            "TimerFired",
            "Unhealthy",
            "Unhealthy",
        ),
        "events",
    ),
    **dict.fromkeys(
        (
            "Action",
            "CancelTimer",
            "Exit",
            "Kill",
            "Report",
            "Reply",
            "SetTimer",
            "Signal",
            "Spawn",
        ),
        "actions",
    ),
    **dict.fromkeys(("Engine", "NodeStatus"), "engine"),
}


def _spec() -> ModuleType:
    from otree.core import spec

    return spec


def _events() -> ModuleType:
    from otree.core import events

    return events


def _actions() -> ModuleType:
    from otree.core import actions

    return actions


def _engine() -> ModuleType:
    from otree.core import engine

    return engine


_LOADERS = {"spec": _spec, "events": _events, "actions": _actions, "engine": _engine}


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(_LOADERS[home](), name)


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


__all__ = [
    "Action",
    "AutoShutdown",
    "Backoff",
    "CancelTimer",
    "Command",
    "Engine",
    "Event",
    "Exit",
    "Exited",
    "HealthCmd",
    "HealthHttp",
    "HealthTcp",
    "Kill",
    "Log",
    "NodeStatus",
    "Ready",
    "ReadyCmd",
    "ReadyDelay",
    "ReadyExited",
    "ReadyFailed",
    "ReadyHttp",
    "ReadyNotify",
    "ReadyTcp",
    "Reply",
    "Report",
    "Restart",
    "Service",
    "SetTimer",
    "Signal",
    "Spawn",
    "SpawnFailed",
    "Spawned",
    "Strategy",
    "Supervisor",
    "TimerFired",
    "Unhealthy",
    "check_tree",
    "walk",
]
