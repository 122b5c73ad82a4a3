"""Startup (OTP-RULES.md B, R5-R8): declared order, one at a time, start failures."""

from __future__ import annotations

import pytest
from support.rules import (
    Bench,
    log_of,
    mark,
    non_reports,
    spawn_paths,
    started,
    state,
    stopped,
    window,
)
from support.specs import root, sup, svc

from otree.core import actions as act
from otree.core import events as ev
from otree.core.engine import Engine
from otree.core.spec import ReadyDelay, ReadyNotify
from otree.errors import ConfigError
from otree.testing import Simulation


def test_r5_children_start_in_declared_order() -> None:
    """R5 start order: children [c7,c3,c10,c2,c5] (not sorted) start in exactly that order."""
    names = ["c7", "c3", "c10", "c2", "c5"]
    sim = Simulation(root(*(svc(n) for n in names)))
    assert log_of(sim) == [*started(*names), "tree_ready"]
    assert sim.trace.pids("c7") == [100]
    assert sim.trace.pids("c5") == [104]


def test_r5_one_at_a_time_each_waits_for_the_previous_to_be_ready() -> None:
    """R5 (otree: a child has started when it is *ready*): the next Spawn comes only
    after the previous child's Ready; the tree is ready after the last one."""
    b = Bench(root(svc("a", ready=ReadyNotify()), svc("b")))
    assert non_reports(b.start()) == [act.Spawn("a", b.engine.tree.children[0])]  # type: ignore[arg-type]
    out = b.feed(ev.Spawned("a", 10))
    assert out == [act.SetTimer(("ready", "a", "10"), 30.0)]  # waiting: no spawn of b yet
    out = b.feed(ev.Ready("a", 10), at=1.0)
    assert spawn_paths(out) == ["b"]
    assert b.reports() == ["spawn a", "ready a"]
    b.feed(ev.Spawned("b", 11))
    assert b.reports() == ["spawn a", "ready a", "spawn b", "ready b", "tree_ready"]


def test_r5_a_supervisor_is_started_when_all_its_children_are() -> None:
    """R5: [a, web[x, y], z] starts depth first: a, web.x, web.y, then z."""
    sim = Simulation(root(svc("a"), sup("web", svc("x"), svc("y")), svc("z")))
    assert log_of(sim) == [*started("a", "web.x", "web.y", "z"), "tree_ready"]


def test_r6_initial_start_failure_stops_the_started_in_reverse_and_exits_3() -> None:
    """R6: [a, b(fails), c] -> start_failed for b; a stopped; c never started; no
    restart, no intensity entry; otree run exits 3 naming the child and the cause."""
    sim = Simulation(root(svc("x"), svc("a"), svc("b"), svc("c")), start=False)
    sim.inject("b", "fail_start")
    sim.start()
    assert log_of(sim) == [
        *started("x", "a"),
        "start_failed b: simulated start failure",
        *stopped("a", "x"),
        "tree_stopped 3",
    ]
    assert sim.trace.exit_code == 3
    assert sim.trace.exit_message == "b: cannot start: simulated start failure"
    assert sim.trace.count("spawn", "c") == 0
    assert window(sim) == []


def test_r6_initial_start_failure_propagates_up_with_the_full_path() -> None:
    """R6: a failure deep in the tree fails every supervisor on the way up, each
    stopping its started children in reverse order."""
    tree = root(svc("a"), sup("web", svc("x"), sup("api", svc("p"), svc("q"))), svc("z"))
    sim = Simulation(tree, start=False)
    sim.inject("web.api.q", "fail_start")
    sim.start()
    assert log_of(sim) == [
        *started("a", "web.x", "web.api.p"),
        "start_failed web.api.q: simulated start failure",
        *stopped("web.api.p", "web.x", "a"),
        "tree_stopped 3",
    ]
    assert sim.trace.exit_message == "web.api.q: cannot start: simulated start failure"


def test_r6_readiness_timeout_is_a_start_failure() -> None:
    """R6 (otree: readiness): not ready within ``ready.timeout`` -> the process is
    stopped and the start fails (no spawn/stop/exit logged: it never started)."""
    sim = Simulation(root(svc("a"), svc("b", ready=ReadyDelay(delay=10, timeout=2))))
    assert sim.running() == {"a": 100, "b": 101}
    sim.advance(5)
    assert log_of(sim) == [
        *started("a"),
        "start_failed b: not ready after 2s",
        *stopped("a"),
        "tree_stopped 3",
    ]
    assert sim.trace.exit_message == "b: cannot start: not ready after 2s"
    assert [e["ts"] for e in sim.trace.filter("start_failed")] == [2.0]
    assert sim.running() == {}


def test_r6_a_process_that_ignores_the_stop_after_a_readiness_timeout_is_killed() -> None:
    """R6 + R10: the readiness-timeout stop follows the shutdown spec (TERM, wait, KILL)."""
    b = Bench(root(svc("a", ready=ReadyNotify(timeout=2), shutdown=3)))
    b.start()
    b.feed(ev.Spawned("a", 10))
    out = b.feed(ev.TimerFired(("ready", "a", "10")), at=2.0)
    assert out == [act.Signal("a", 10, "TERM"), act.SetTimer(("kill", "a", "10"), 3.0)]
    assert b.feed(ev.TimerFired(("kill", "a", "10")), at=5.0) == [act.Kill("a", 10)]
    b.feed(ev.Exited("a", 10, signal="KILL"))
    assert b.reports() == ["start_failed a: not ready after 2s", "tree_stopped 3"]
    assert b.out[-1] == act.Exit(3, "a: cannot start: not ready after 2s")


def test_r6_an_exit_before_ready_is_a_start_failure() -> None:
    """R6 (otree): a process that exits before its readiness check passed failed to start."""
    b = Bench(root(svc("a", ready=ReadyNotify())))
    b.start()
    b.feed(ev.Spawned("a", 10))
    out = b.feed(ev.Exited("a", 10, code=1), at=0.5)
    assert act.CancelTimer(("ready", "a", "10")) in out
    assert b.reports() == ["start_failed a: exited (code 1) before it was ready", "tree_stopped 3"]
    assert b.engine.exit_code == 3


def test_r6_a_failed_readiness_check_is_a_start_failure() -> None:
    """R6 (otree): ReadyFailed -> the process is stopped, the start fails with that reason."""
    b = Bench(root(svc("a", ready=ReadyNotify())))
    b.start()
    b.feed(ev.Spawned("a", 10))
    out = b.feed(ev.ReadyFailed("a", 10, "sent STOPPING=1"))
    assert act.Signal("a", 10, "TERM") in out
    b.feed(ev.Exited("a", 10, signal="TERM"))
    assert b.reports() == ["start_failed a: sent STOPPING=1", "tree_stopped 3"]
    assert b.out[-1] == act.Exit(3, "a: cannot start: sent STOPPING=1")


def test_r6_exit_right_after_exec_without_readiness_is_a_crash() -> None:
    """R6 (otree): with the default readiness (exec succeeded) the child *has* started,
    so an exit right after is a crash handled by its strategy, not a start failure."""
    b = Bench(root(svc("a")))
    b.start()
    b.feed(ev.Spawned("a", 10))
    out = b.feed(ev.Exited("a", 10, code=1))
    assert spawn_paths(out) == ["a"]
    assert b.reports() == [
        "spawn a",
        "ready a",
        "tree_ready",
        "exit a 1 abnormal",
        "restart <root> a",
    ]


def test_r7_no_ignore_for_processes_a_transient_that_exits_0_at_once_stays_exited() -> None:
    """R7 (otree: a process cannot return ``ignore``): the nearest is a transient child
    that exits 0 right after starting: it started, is not restarted, stays in the
    tree as ``exited`` with no PID, and ``otree start`` starts it again."""
    sim = Simulation(root(svc("a"), svc("once", restart="transient")))
    m = mark(sim)
    sim.inject("once", "exit0")
    assert log_of(sim, m) == ["exit once 0 normal"]
    assert state(sim, "once") == ("exited", None)
    assert sim.command("start", "once") == act.Reply(1, True, None)
    assert state(sim, "once") == ("running", 102)


def test_r8_an_invalid_tree_never_starts() -> None:
    """R8 (otree: no init callback): the tree is checked when the engine is built;
    an invalid one raises ConfigError and nothing starts."""
    with pytest.raises(ConfigError) as info:
        Engine(root(svc("a"), svc("a")))
    assert [str(i) for i in info.value.issues] == [
        "a: duplicate name 'a' under the same supervisor"
    ]


def test_r8_an_empty_supervisor_starts_at_once() -> None:
    """R8 (otree): a supervisor with no children is started at once (OTP: init
    returning an empty child list)."""
    sim = Simulation(root(svc("a"), sup("idle")))
    assert log_of(sim) == [*started("a"), "tree_ready"]
    assert state(sim, "idle") == ("running", None)


def test_a_process_stopped_before_it_was_ready_logs_nothing() -> None:
    """Event log: ``spawn`` comes only once a service is ready, so a process stopped
    while its readiness check runs has no ``stop``/``exit`` lines either."""
    sim = Simulation(root(svc("a"), svc("slow", ready=ReadyDelay(delay=10))))
    assert sim.running() == {"a": 100, "slow": 101}
    m = mark(sim)
    sim.command("shutdown")
    assert sim.replies[1] == act.Reply(1, True, None)
    assert log_of(sim, m) == [*stopped("a"), "tree_stopped 0"]
    assert sim.running() == {}
