"""Restart intensity (OTP-RULES.md F, R22-R24): one shared window, the exact check,
giving up.
"""

from __future__ import annotations

from support.rules import (
    log_of,
    mark,
    stopped,
    window,
)
from support.specs import root, svc

from otree.core import actions as act
from otree.testing import Simulation


def test_r22_one_window_is_shared_by_all_children() -> None:
    """R22/R23: S(one_for_one, 2, 3600) with [a,b]: crash a, crash b -> both
    restarted; a third crash of either -> the supervisor gives up."""
    sim = Simulation(root(svc("a"), svc("b"), intensity=2, period=3600))
    sim.inject("a", "crash")
    sim.advance(10)
    sim.inject("b", "crash")
    assert window(sim) == [0.0, 10.0]
    sim.advance(10)
    m = mark(sim)
    sim.inject("a", "crash")
    assert log_of(sim, m) == [
        "exit a 1 abnormal",
        "give_up <root> 3/3600",
        *stopped("b"),
        "tree_stopped 1",
    ]


def test_r22_manual_commands_and_the_initial_start_are_not_counted() -> None:
    """R22: under intensity 0, ``start``, ``stop`` and ``restart`` by hand and the
    initial start add nothing to the window."""
    sim = Simulation(root(svc("a"), svc("b", restart="transient"), intensity=0))
    assert sim.command("restart", "a") == act.Reply(1, True, None)
    assert sim.command("stop", "b") == act.Reply(2, True, None)
    assert sim.command("start", "b") == act.Reply(3, True, None)
    assert sim.command("restart", "b") == act.Reply(4, True, None)
    assert window(sim) == []
    assert sim.trace.pids("a") == [100, 102]
    assert not sim.done


def test_r23_the_window_slides_a_slow_crasher_runs_for_ever() -> None:
    """R23: S(1, 1): crash, wait 2.1 s, crash, ... -> the supervisor survives."""
    sim = Simulation(root(svc("a"), intensity=1, period=1))
    for _ in range(4):
        sim.inject("a", "crash")
        sim.advance(2.1)
    assert not sim.trace.gave_up("")
    assert sim.trace.count("restart") == 4


def test_r23_the_window_includes_both_ends() -> None:
    """R23: S(1, 5): crashes at 1.0 and 6.0 (exactly ``period`` apart) -> give up;
    at 1.0 and 6.25 -> both restarted."""
    sim = Simulation(root(svc("a"), intensity=1, period=5))
    sim.at(1.0).inject("a", "crash")
    sim.at(6.0).inject("a", "crash")
    assert sim.trace.gave_up("")
    assert sim.trace.filter("give_up")[0]["restarts"] == 2
    sim = Simulation(root(svc("a"), intensity=1, period=5))
    sim.at(1.0).inject("a", "crash")
    sim.at(6.25).inject("a", "crash")
    assert not sim.trace.gave_up("")
    assert window(sim) == [6.25]


def test_r23_intensity_zero_gives_up_on_the_first_restart() -> None:
    """R23: with intensity 0 the first exit that calls for a restart stops the supervisor."""
    sim = Simulation(root(svc("a"), intensity=0))
    m = mark(sim)
    sim.inject("a", "exit0")
    assert log_of(sim, m) == ["exit a 0 normal", "give_up <root> 1/5", "tree_stopped 1"]
    assert sim.trace.exit_code == 1


def test_r24_giving_up_stops_the_rest_in_reverse_and_exits_1() -> None:
    """R24: S(one_for_one, 0, 5) with [a,b,c]: crash b -> b is not restarted; c, then a,
    are stopped; ``give_up`` counts the refused restart (intensity + 1); otree run
    exits 1 (otree: the root's give-up is an error exit)."""
    sim = Simulation(root(svc("a"), svc("b"), svc("c"), intensity=0))
    m = mark(sim)
    sim.inject("b", "crash")
    assert log_of(sim, m) == [
        "exit b 1 abnormal",
        "give_up <root> 1/5",
        *stopped("c", "a"),
        "tree_stopped 1",
    ]
    assert sim.trace.filter("give_up")[0] == {
        "ts": 0.0,
        "event": "give_up",
        "path": "",
        "restarts": 1,
        "period": 5.0,
    }
    assert sim.trace.exit_code == 1
    assert sim.trace.exit_message == "the root supervisor reached its restart intensity and gave up"
    assert sim.running() == {}


def test_r24_defaults_give_up_on_the_fourth_restart_in_5_s() -> None:
    """R24 (otree defaults: intensity 3, period 5, Elixir's; OTP's are 1 and 5)."""
    sim = Simulation(root(svc("a")))
    for t in (0.0, 1.0, 2.0):
        sim.at(t).inject("a", "crash")
    assert not sim.trace.gave_up("")
    sim.at(3.0).inject("a", "crash")
    assert sim.trace.filter("give_up")[0]["restarts"] == 4


def test_r23_each_restart_event_carries_its_count_in_the_window() -> None:
    """R23: ``restart`` says how many restarts the window holds (this one included),
    the limit and the period, so the chain to a give-up reads from the events."""
    sim = Simulation(root(svc("a"), svc("b"), intensity=3, period=10))
    sim.inject("a", "crash")
    sim.advance(4)
    sim.inject("b", "crash")
    sim.advance(4)
    sim.inject("a", "crash")
    sim.advance(3)  # t=11: the crash at 0 has left the window
    sim.inject("b", "crash")
    restarts = sim.trace.filter("restart", "")
    assert [(e["ts"], e["child"], e["count"]) for e in restarts] == [
        (0.0, "a", 1),
        (4.0, "b", 2),
        (8.0, "a", 3),
        (11.0, "b", 3),
    ]
    assert {(e["intensity"], e["period"]) for e in restarts} == {(3, 10.0)}
    sim.inject("a", "crash")  # the fourth in 10 s: no restart event, a give-up
    assert sim.trace.count("restart", "") == 4
    assert sim.trace.filter("give_up", "")[0]["restarts"] == 4
