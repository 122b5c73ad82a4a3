"""Start failures during a restart (OTP-RULES.md F, R26-R28): retried through the loop,
counted; a group restart goes on; a restarting child.
"""

from __future__ import annotations

from support.rules import (
    Bench,
    failing_sim,
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
from otree.core.node import SupNode
from otree.core.spec import Backoff, ReadyNotify
from otree.testing import Simulation


def bench_window(b: Bench) -> list[float]:
    node = b.engine.nodes[""]
    assert isinstance(node, SupNode)
    return list(node.window.times)


def test_r26_a_failing_restart_is_retried_counted_and_escalates() -> None:
    """R26: S(one_for_one, 4, 3600): a crashes and every later start of a fails ->
    each retry is one more restart; the fifth gives up at once and b is stopped."""
    failing: set[str] = set()
    sim = failing_sim(root(svc("a"), svc("b"), intensity=4, period=3600), failing)
    failing.add("a")
    m = mark(sim)
    sim.inject("a", "crash")
    fail = "start_failed a: No such file or directory"
    assert log_of(sim, m) == [
        "exit a 1 abnormal",
        *["restart <root> a", fail] * 4,
        "give_up <root> 5/3600",
        *stopped("b"),
        "tree_stopped 1",
    ]
    assert {e["ts"] for e in sim.trace.events[m:]} == {0.0}  # no delay: OTP's behaviour


def test_r26_the_retry_goes_through_the_loop() -> None:
    """R26 (STYLE 4): a failed restart is not retried inside the decision: the engine
    marks the child restarting and sets a zero-delay timer (OTP's ``try_again_restart``);
    the retry is decided, counted and started when it fires."""
    b = Bench(root(svc("a"), svc("b")))
    b.start()
    b.feed(ev.Spawned("a", 10))
    b.feed(ev.Spawned("b", 11))
    assert spawn_paths(b.feed(ev.Exited("a", 10, code=1))) == ["a"]
    out = b.feed(ev.SpawnFailed("a", "boom"))
    assert non_reports(out) == [act.SetTimer(("restart", "", "1"), 0.0)]
    assert [n.state for n in b.engine.status(0) if n.path == "a"] == ["restarting"]
    assert bench_window(b) == [0.0]
    assert spawn_paths(b.feed(ev.TimerFired(("restart", "", "1")))) == ["a"]
    assert bench_window(b) == [0.0, 0.0]
    b.feed(ev.Spawned("a", 12))
    assert b.reports()[-6:] == [
        "exit a 1 abnormal",
        "restart <root> a",
        "start_failed a: boom",
        "restart <root> a",
        "spawn a",
        "ready a",
    ]


def test_r26_a_request_queued_before_the_retry_runs_first() -> None:
    """R26 + R28 + R38: a ``stop a`` that arrives before the retry timer fires is
    carried out first: it cancels the retry loop (and its timer) and a stays stopped;
    the retry is never counted."""
    b = Bench(root(svc("a"), svc("b")))
    b.start()
    b.feed(ev.Spawned("a", 10))
    b.feed(ev.Spawned("b", 11))
    b.feed(ev.Exited("a", 10, code=1))
    b.feed(ev.SpawnFailed("a", "boom"))
    assert b.feed(ev.Command("stop", "a", 7)) == [
        act.CancelTimer(("restart", "", "1")),
        act.Reply(7, True, None),
    ]
    assert b.feed(ev.TimerFired(("restart", "", "1"))) == []
    assert [n.state for n in b.engine.status(0) if n.path == "a"] == ["stopped"]
    assert bench_window(b) == [0.0]


def test_r27_one_for_all_retry_repeats_the_whole_cycle() -> None:
    """R27 one_for_all: [a,b,c]: crash a; b fails to start in the cycle -> a (already
    restarted) is stopped again and the whole cycle runs again, counted again."""
    sim = Simulation(root(svc("a"), svc("b"), svc("c"), strategy="one_for_all"))
    sim.inject("b", "fail_start")
    m = mark(sim)
    sim.inject("a", "crash")
    assert log_of(sim, m) == [
        "exit a 1 abnormal",
        "restart <root> a",
        *stopped("c", "b"),
        *started("a"),
        "start_failed b: simulated start failure",
        "restart <root> b",
        *stopped("a"),
        *started("a", "b", "c"),
    ]
    assert window(sim) == [0.0, 0.0]
    assert sim.running() == {"a": 104, "b": 105, "c": 106}  # a failed spawn has no PID


def test_r27_rest_for_one_retry_goes_on_from_the_failed_child() -> None:
    """R27 rest_for_one: [c1..c4]: crash c2; c3 fails to start -> the retry starts c3
    and c4 only; c2 (restarted) keeps its new PID, c1 its old one."""
    names = [f"c{i}" for i in range(1, 5)]
    sim = Simulation(root(*(svc(n) for n in names), strategy="rest_for_one"))
    sim.inject("c3", "fail_start")
    m = mark(sim)
    sim.inject("c2", "crash")
    assert log_of(sim, m) == [
        "exit c2 1 abnormal",
        "restart <root> c2",
        *stopped("c4", "c3"),
        *started("c2"),
        "start_failed c3: simulated start failure",
        "restart <root> c3",
        *started("c3", "c4"),
    ]
    assert sim.running() == {"c1": 100, "c2": 104, "c3": 105, "c4": 106}
    assert window(sim) == [0.0, 0.0]


def test_r28_a_restarting_child_refuses_start_and_restart_but_can_be_stopped() -> None:
    """R28: while a waits for its (delayed) restart it shows as ``restarting`` with no
    PID; ``start``/``restart`` are refused; ``stop`` cancels the restart and leaves it
    stopped."""
    bo = Backoff(initial=2, jitter=0)
    sim = Simulation(root(svc("a", backoff=bo), svc("b")))
    sim.inject("a", "crash")
    assert state(sim, "a") == ("restarting", None)
    assert sim.command("start", "a") == act.Reply(1, False, "a is restarting")
    assert sim.command("restart", "a") == act.Reply(2, False, "a is restarting")
    assert sim.command("stop", "a") == act.Reply(3, True, None)
    sim.advance(10)
    assert state(sim, "a") == ("stopped", None)
    assert sim.trace.pids("a") == [100]
    assert sim.command("start", "a") == act.Reply(4, True, None)
    assert sim.trace.pids("a") == [100, 102]


def test_r28_rest_for_one_children_after_a_restarting_one_show_no_pid() -> None:
    """R28: with rest_for_one, the children after a restarting child are restarting too."""
    bo = Backoff(initial=2, jitter=0)
    sim = Simulation(
        root(svc("a"), svc("b", backoff=bo), svc("c"), svc("d"), strategy="rest_for_one")
    )
    sim.inject("b", "crash")
    assert [state(sim, p) for p in ("a", "b", "c", "d")] == [
        ("running", 100),
        ("restarting", None),
        ("restarting", None),
        ("restarting", None),
    ]
    sim.advance(2)
    assert sim.running() == {"a": 100, "b": 104, "c": 105, "d": 106}


def test_r28_the_tree_can_be_shut_down_while_a_child_is_restarting() -> None:
    """R28: shutdown while a delayed restart is pending: the timer is cancelled and
    nothing starts again."""
    bo = Backoff(initial=2, jitter=0)
    sim = Simulation(root(svc("a", backoff=bo), svc("b")))
    sim.inject("a", "crash")
    m = mark(sim)
    sim.command("shutdown")
    sim.advance(10)
    assert log_of(sim, m) == [*stopped("b"), "tree_stopped 0"]
    assert sim.trace.exit_code == 0


def test_r26_a_readiness_timeout_during_a_restart_is_retried_and_counted() -> None:
    """R26 + readiness: a restarted process that is not ready in time failed to start:
    it is stopped, ``start_failed`` is logged and the restart is retried (counted)."""
    b = Bench(root(svc("a", ready=ReadyNotify(timeout=2))))
    b.start()
    b.feed(ev.Spawned("a", 10))
    b.feed(ev.Ready("a", 10))
    b.feed(ev.Exited("a", 10, code=1), at=1.0)
    b.feed(ev.Spawned("a", 11))
    out = b.feed(ev.TimerFired(("ready", "a", "11")), at=3.0)
    assert non_reports(out) == [act.Signal("a", 11, "TERM"), act.SetTimer(("kill", "a", "11"), 5.0)]
    out = b.feed(ev.Exited("a", 11, signal="TERM"))
    assert act.SetTimer(("restart", "", "1"), 0.0) in out
    b.feed(ev.TimerFired(("restart", "", "1")))
    assert b.reports()[-4:] == [
        "exit a 1 abnormal",
        "restart <root> a",
        "start_failed a: not ready after 2s",
        "restart <root> a",
    ]
    assert b.engine.nodes[""].window.times == [1.0, 3.0]  # type: ignore[attr-defined]


def test_r26_a_supervisor_child_that_fails_to_start_in_a_restart_is_retried() -> None:
    """R26/R11: the root restarts web after web gave up; web's child fails to start, so
    web fails to start: the root retries web (counted again) and web comes up."""
    sim = Simulation(root(svc("z"), sup("web", svc("x"), intensity=0)))
    sim.inject("web.x", "fail_start")
    m = mark(sim)
    sim.inject("web.x", "crash")
    assert log_of(sim, m) == [
        "exit web.x 1 abnormal",
        "give_up web 1/5",
        "restart <root> web",
        "start_failed web.x: simulated start failure",
        "restart <root> web",
        *started("web.x"),
    ]
    assert window(sim) == [0.0, 0.0]


def test_stopping_a_supervisor_cancels_its_pending_delayed_restarts() -> None:
    """R28/R31: ``stop web`` while web.x waits for its backoff: the timer is cancelled,
    nothing starts; ``start web`` later starts both children."""
    tree = root(svc("z"), sup("web", svc("x", backoff=Backoff(initial=5, jitter=0)), svc("y")))
    sim = Simulation(tree)
    sim.inject("web.x", "crash")
    assert sim.command("stop", "web") == act.Reply(1, True, None)
    sim.advance(10)
    assert sim.running() == {"z": 100}
    assert sim.next_timer() is None
    assert [state(sim, p)[0] for p in ("web", "web.x", "web.y")] == ["stopped"] * 3
    assert sim.command("start", "web") == act.Reply(2, True, None)
    assert sim.running() == {"z": 100, "web.x": 103, "web.y": 104}
