"""Escalation (OTP-RULES.md F, R25): a child supervisor that gives up is an exit to its
parent.
"""

from __future__ import annotations

from support.rules import (
    log_of,
    mark,
    started,
    state,
    stopped,
    window,
)
from support.specs import root, sup, svc

from otree.testing import Simulation


def test_r25_a_child_supervisor_that_gives_up_escalates_to_its_parent() -> None:
    """R25: web gives up -> the root restarts web (one restart in the root's window,
    ``child`` = web); web starts with fresh children and a fresh window; a is untouched."""
    sim = Simulation(root(svc("a"), sup("web", svc("x"), svc("y"), intensity=1)))
    sim.inject("web.x", "crash")
    m = mark(sim)
    sim.inject("web.y", "crash")
    assert log_of(sim, m) == [
        "exit web.y 1 abnormal",
        "give_up web 2/5",
        *stopped("web.x"),
        "restart <root> web",
        *started("web.x", "web.y"),
    ]
    assert window(sim) == [0.0]
    assert window(sim, "web") == []
    assert sim.running()["a"] == 100


def test_r25_intensities_multiply_up_the_tree() -> None:
    """R25: root(I=1)[web(I=1)[x]]: web absorbs one crash, gives up on the second; the
    root absorbs one give-up and gives up on the second: x runs 4 times, then exit 1."""
    sim = Simulation(root(sup("web", svc("x"), intensity=1), intensity=1, period=60))
    for t in (1.0, 2.0, 3.0, 4.0):
        assert not sim.done
        sim.at(t).inject("web.x", "crash")
    assert sim.trace.count("spawn", "web.x") == 4
    assert [e["path"] for e in sim.trace.filter("give_up")] == ["web", "web", ""]
    assert sim.trace.exit_code == 1


def test_r25_a_transient_supervisor_that_gives_up_is_restarted() -> None:
    """R25 (otree differs from OTP on purpose): a give-up is an *abnormal* exit, so a
    transient child supervisor that gives up is restarted (OTP: exits ``shutdown`` and
    is silently left stopped)."""
    sim = Simulation(root(svc("a"), sup("web", svc("x"), intensity=0, restart="transient")))
    m = mark(sim)
    sim.inject("web.x", "crash")
    assert log_of(sim, m) == [
        "exit web.x 1 abnormal",
        "give_up web 1/5",
        "restart <root> web",
        *started("web.x"),
    ]


def test_r25_a_temporary_supervisor_that_gives_up_stays_exited() -> None:
    """R25: a temporary child supervisor that gives up is not restarted; the rest of
    the tree runs on."""
    sim = Simulation(root(svc("a"), sup("web", svc("x"), intensity=0, restart="temporary")))
    m = mark(sim)
    sim.inject("web.x", "crash")
    assert log_of(sim, m) == ["exit web.x 1 abnormal", "give_up web 1/5"]
    assert state(sim, "web") == ("exited", None)
    assert state(sim, "web.x") == ("stopped", None)
    assert sim.running() == {"a": 100}
