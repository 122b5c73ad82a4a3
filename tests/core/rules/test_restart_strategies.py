"""Strategies (OTP-RULES.md E, R17-R20): one_for_one, one_for_all, rest_for_one; a
restarted child keeps its place.
"""

from __future__ import annotations

from support.rules import (
    engine_of,
    log_of,
    mark,
    started,
    state,
    stopped,
    window,
)
from support.specs import root, svc

from otree.testing import Simulation


def test_r17_one_for_one_restarts_only_the_exited_child() -> None:
    """R17 one_for_one: [a,b]: crash a -> a gets a new PID, b keeps its PID."""
    sim = Simulation(root(svc("a"), svc("b")))
    m = mark(sim)
    sim.inject("a", "crash")
    assert log_of(sim, m) == ["exit a 1 abnormal", "restart <root> a", *started("a")]
    assert sim.running() == {"b": 101, "a": 102}
    restart = sim.trace.filter("restart")[0]
    assert restart == {
        "ts": 0.0,
        "event": "restart",
        "path": "",
        "strategy": "one_for_one",
        "child": "a",
        "count": 1,
        "intensity": 3,
        "period": 5.0,
    }


def test_r18_one_for_all_stops_all_in_reverse_and_starts_all_in_order() -> None:
    """R18 one_for_all: [a,b,c(temporary)]: crash b -> c, then a, are stopped; a and b
    start again in declared order with new PIDs; the temporary c is not started."""
    sim = Simulation(
        root(svc("a"), svc("b"), svc("c", restart="temporary"), strategy="one_for_all")
    )
    m = mark(sim)
    sim.inject("b", "crash")
    assert log_of(sim, m) == [
        "exit b 1 abnormal",
        "restart <root> b",
        *stopped("c", "a"),
        *started("a", "b"),
    ]
    assert sim.running() == {"a": 103, "b": 104}
    assert state(sim, "c") == ("stopped", None)
    assert sim.trace.filter("restart")[0]["strategy"] == "one_for_all"


def test_r18_one_for_all_group_restart_counts_once() -> None:
    """R18/R22: the whole cycle is one restart: one ``restart`` event, one window entry."""
    sim = Simulation(root(svc("a"), svc("b"), svc("c"), strategy="one_for_all", intensity=1))
    sim.inject("a", "crash")
    assert window(sim) == [0.0]
    assert sim.trace.count("restart") == 1
    sim.advance(1)
    sim.inject("c", "crash")
    assert sim.trace.gave_up("")
    assert sim.trace.exit_code == 1


def test_r18_one_for_all_leaves_siblings_alone_when_no_restart_is_due() -> None:
    """R18: an exit that calls for no restart (transient normal, temporary) touches no
    sibling."""
    sim = Simulation(
        root(
            svc("a"),
            svc("t", restart="transient"),
            svc("x", restart="temporary"),
            strategy="one_for_all",
        )
    )
    m = mark(sim)
    sim.inject("t", "exit0")
    sim.inject("x", "crash")
    assert log_of(sim, m) == ["exit t 0 normal", "exit x 1 abnormal"]
    assert sim.running() == {"a": 100}


def test_r18_one_for_all_starts_stopped_and_exited_non_temporary_children_too() -> None:
    """R18: *all* non-temporary children start again, also one that had exited
    normally (transient) or was stopped by hand; a temporary one that had exited does not."""
    sim = Simulation(
        root(
            svc("a"),
            svc("t", restart="transient"),
            svc("m"),
            svc("x", restart="temporary"),
            strategy="one_for_all",
        )
    )
    sim.inject("t", "exit0")
    sim.command("stop", "m")
    sim.inject("x", "exit0")
    m = mark(sim)
    sim.inject("a", "crash")
    assert log_of(sim, m) == [
        "exit a 1 abnormal",
        "restart <root> a",
        *started("a", "t", "m"),
    ]
    assert state(sim, "x") == ("exited", None)


def test_r19_rest_for_one_restarts_the_child_and_those_after_it() -> None:
    """R19 rest_for_one: [c1..c5]: crash c3 -> c5, then c4, are stopped; c1 and c2 keep
    their PIDs; c3, c4, c5 start again in that order."""
    names = [f"c{i}" for i in range(1, 6)]
    sim = Simulation(root(*(svc(n) for n in names), strategy="rest_for_one"))
    m = mark(sim)
    sim.inject("c3", "crash")
    assert log_of(sim, m) == [
        "exit c3 1 abnormal",
        "restart <root> c3",
        *stopped("c5", "c4"),
        *started("c3", "c4", "c5"),
    ]
    assert sim.running() == {"c1": 100, "c2": 101, "c3": 105, "c4": 106, "c5": 107}


def test_r19_rest_for_one_last_child_restarts_alone_and_temporary_followers_stay_down() -> None:
    """R19: crash of the last child restarts it alone; a temporary child after the
    crashed one is stopped and not started again."""
    sim = Simulation(
        root(svc("a"), svc("b"), svc("x", restart="temporary"), svc("c"), strategy="rest_for_one")
    )
    m = mark(sim)
    sim.inject("c", "crash")
    assert log_of(sim, m) == ["exit c 1 abnormal", "restart <root> c", *started("c")]
    m = mark(sim)
    sim.inject("b", "crash")
    assert log_of(sim, m) == [
        "exit b 1 abnormal",
        "restart <root> b",
        *stopped("c", "x"),
        *started("b", "c"),
    ]
    assert state(sim, "x") == ("stopped", None)
    assert sim.running()["a"] == 100


def test_r20_a_restarted_child_keeps_its_place() -> None:
    """R20: after a and b were restarted (one_for_one), the order is still the declared
    one: a later one_for_all-like stop (shutdown) goes c, b, a; status lists a, b, c."""
    sim = Simulation(root(svc("a"), svc("b"), svc("c")))
    sim.inject("a", "crash")
    sim.inject("b", "crash")
    assert [n.path for n in engine_of(sim).status(sim.now)] == ["", "a", "b", "c"]
    m = mark(sim)
    sim.command("shutdown")
    assert log_of(sim, m) == [*stopped("c", "b", "a"), "tree_stopped 0"]


def test_r20_rest_for_one_uses_the_declared_place_of_a_restarted_child() -> None:
    """R20: a child restarted earlier still only takes down the children declared after it."""
    sim = Simulation(root(svc("a"), svc("b"), svc("c"), strategy="rest_for_one"))
    sim.inject("c", "crash")
    sim.inject("b", "crash")
    m = mark(sim)
    sim.inject("a", "crash")
    assert log_of(sim, m) == [
        "exit a 1 abnormal",
        "restart <root> a",
        *stopped("c", "b"),
        *started("a", "b", "c"),
    ]
