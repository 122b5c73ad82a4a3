"""Specs by hand, short: ``root(svc("db"), sup("web", svc("api")), intensity=1)``;
and the Hypothesis settings of the tests that draw trees."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, Phase, settings

from otree.core.spec import Service, Supervisor

#: for find(): any example will do, no need to shrink it
NO_SHRINK = settings(database=None, max_examples=5000, phases=[Phase.generate])
#: for @given over trees: a few dozen examples, however slow a tree is to draw
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def svc(name: str, cmd: str | list[str] = "x", **kw: Any) -> Service:
    """A service; its command does not matter where nothing runs it."""
    return Service(name, cmd=cmd, **kw)


def sup(name: str, *children: Service | Supervisor, **kw: Any) -> Supervisor:
    return Supervisor(name, children=children, **kw)


def root(*children: Service | Supervisor, **kw: Any) -> Supervisor:
    return Supervisor("root", children=children, **kw)
