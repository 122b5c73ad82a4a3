"""What a reload does to a running service whose spec changed (docs/self-reload.md):
restart it when its process was started with what changed, else update it in place."""

from __future__ import annotations

from typing import Any

import attrs
import pytest
from support.specs import svc

from otree.core.changes import IN_PLACE, Change, service_change
from otree.core.spec import (
    Backoff,
    HealthCmd,
    Log,
    ReadyCmd,
    ReadyDelay,
    ReadyNotify,
    Service,
)

BASE = svc("api", "gunicorn app:app", ready=ReadyDelay(1.0))


@pytest.mark.parametrize(
    ("changes", "update"),
    [
        ({"ready": ReadyCmd(["pg_isready"])}, ("ready",)),
        ({"ready": None}, ("ready",)),
        ({"shutdown": 30.0}, ("shutdown",)),
        ({"shutdown": "brutal_kill", "stop_signal": "INT"}, ("stop_signal", "shutdown")),
        ({"restart": "transient", "significant": True}, ("restart", "significant")),
        ({"normal_exit_codes": (0, 3)}, ("normal_exit_codes",)),
        ({"backoff": Backoff(initial=1.0)}, ("backoff",)),
        ({"health": HealthCmd(["true"], interval=5, timeout=1)}, ("health",)),
        ({"autostart": False}, ("autostart",)),
        ({"log": Log(max_bytes=1024, backups=1)}, ("log.max_bytes", "log.backups")),
    ],
)
def test_supervision_changes_apply_in_place(
    changes: dict[str, Any], update: tuple[str, ...]
) -> None:
    assert service_change(BASE, attrs.evolve(BASE, **changes)) == Change((), update)


@pytest.mark.parametrize(
    ("changes", "restart"),
    [
        ({"cmd": ["gunicorn", "app:app", "-w", "4"]}, ("cmd",)),
        ({"env": {"PORT": "8001"}}, ("env",)),
        ({"cwd": "/srv"}, ("cwd",)),
        ({"umask": "0077", "nice": 5}, ("umask", "nice")),
        ({"oom_score_adj": 100}, ("oom_score_adj",)),
        ({"limits": {"nofile": 1024}}, ("limits",)),
        ({"env_file": (".env",)}, ("env_file",)),
        ({"log": Log(file="api.log")}, ("log.file",)),
        ({"watchdog": 10.0}, ("watchdog",)),  # NOTIFY_SOCKET and WATCHDOG_USEC in its env
        ({"ready": ReadyNotify()}, ("ready",)),  # NOTIFY_SOCKET in its env
    ],
)
def test_what_the_process_was_started_with_restarts(
    changes: dict[str, Any], restart: tuple[str, ...]
) -> None:
    change = service_change(BASE, attrs.evolve(BASE, **changes))
    assert change.restart == restart and change.update == ()


def test_a_change_of_both_kinds_restarts_and_says_which_is_which() -> None:
    new = attrs.evolve(BASE, cmd=["api", "--v2"], shutdown=10.0)
    assert service_change(BASE, new) == Change(("cmd",), ("shutdown",))


def test_a_watchdog_period_is_part_of_the_process_but_a_notify_ready_timeout_is_not() -> None:
    old = attrs.evolve(BASE, ready=ReadyNotify(timeout=10), watchdog=5.0)
    assert service_change(old, attrs.evolve(old, watchdog=6.0)).restart == ("watchdog",)
    assert service_change(old, attrs.evolve(old, ready=ReadyNotify(timeout=60))) == Change(
        (), ("ready",)
    )


def test_an_unchanged_spec_is_the_same() -> None:
    assert service_change(BASE, svc("api", "gunicorn app:app", ready=ReadyDelay(1.0))).same


def test_the_in_place_list_names_real_fields_only() -> None:
    """A field not listed in place restarts: a misspelt name would make its field restart."""
    names = {f.name for f in attrs.fields(Service)}
    assert names >= IN_PLACE
