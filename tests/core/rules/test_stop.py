"""Termination and shutdown specs (OTP-RULES.md C, R9-R12): reverse order, TERM then
KILL, supervisor children, stray exits.
"""

from __future__ import annotations

from support.rules import (
    Bench,
    log_of,
    mark,
    non_reports,
    started,
    state,
    stopped,
    window,
)
from support.specs import root, sup, svc

from otree.core import actions as act
from otree.core import events as ev
from otree.testing import Simulation


def test_r9_shutdown_stops_children_in_reverse_order_one_at_a_time() -> None:
    """R9: [c1..c5]: shutdown stops c5, c4, c3, c2, c1, each only after the previous
    one is gone; then otree run exits 0."""
    names = [f"c{i}" for i in range(1, 6)]
    b = Bench(root(*(svc(n) for n in names)))
    b.start()
    for pid, n in enumerate(names, start=10):
        b.feed(ev.Spawned(n, pid))
    out = b.feed(ev.Command("shutdown", "", 1))
    assert non_reports(out) == [
        act.Reply(1, True, None),
        act.Signal("c5", 14, "TERM"),
        act.SetTimer(("kill", "c5", "14"), 5.0),
    ]
    order = []
    for pid in range(14, 9, -1):
        n = names[pid - 10]
        order.append(n)
        out = b.feed(ev.Exited(n, pid, signal="TERM"))
        if pid > 10:
            assert [a for a in out if isinstance(a, act.Signal)] == [
                act.Signal(names[pid - 11], pid - 1, "TERM")
            ]
    assert order == ["c5", "c4", "c3", "c2", "c1"]
    assert b.out[-1] == act.Exit(0, None)
    assert b.reports()[-1] == "tree_stopped 0"


def test_r9_nested_supervisors_stop_their_subtree_before_the_next_sibling() -> None:
    """R9: [a, web[x, y], z]: shutdown stops z, then web (y, then x), then a."""
    sim = Simulation(root(svc("a"), sup("web", svc("x"), svc("y")), svc("z")))
    m = mark(sim)
    assert sim.command("shutdown") == act.Reply(1, True, None)
    assert log_of(sim, m) == [*stopped("z", "web.y", "web.x", "a"), "tree_stopped 0"]
    assert sim.trace.exit_code == 0


def test_r9_worst_case_shutdown_time_is_the_sum_of_the_timeouts() -> None:
    """R9 + R10: three children that ignore TERM with shutdown=1 take 3 s to stop."""
    sim = Simulation(root(*(svc(n, shutdown=1) for n in ("a", "b", "c"))))
    for n in ("a", "b", "c"):
        sim.inject(n, "hang_on_stop")
    sim.command("shutdown")
    sim.advance(10)
    exits = sim.trace.filter("exit")
    assert [(e["path"], e["ts"], e["signal"]) for e in exits] == [
        ("c", 1.0, "KILL"),
        ("b", 2.0, "KILL"),
        ("a", 3.0, "KILL"),
    ]
    assert sim.trace.filter("tree_stopped")[0]["ts"] == 3.0


def test_r10_shutdown_timeout_sends_term_then_kill() -> None:
    """R10: a child ignoring the stop signal with shutdown=1 is killed 1 s after the stop."""
    b = Bench(root(svc("a", shutdown=1)))
    b.start()
    b.feed(ev.Spawned("a", 10))
    out = b.feed(ev.Command("shutdown"), at=3.0)
    assert non_reports(out) == [act.Signal("a", 10, "TERM"), act.SetTimer(("kill", "a", "10"), 1.0)]
    assert b.feed(ev.TimerFired(("kill", "a", "10")), at=4.0) == [act.Kill("a", 10)]
    b.feed(ev.Exited("a", 10, signal="KILL"))
    assert b.reports()[-3:] == ["stop a", "exit a KILL normal", "tree_stopped 0"]


def test_r10_an_exit_in_time_cancels_the_kill_timer() -> None:
    """R10: the process is gone before the timeout: the kill timer is cancelled."""
    b = Bench(root(svc("a", shutdown=1)))
    b.start()
    b.feed(ev.Spawned("a", 10))
    b.feed(ev.Command("shutdown"))
    out = b.feed(ev.Exited("a", 10, signal="TERM"), at=0.2)
    assert act.CancelTimer(("kill", "a", "10")) in out
    assert b.feed(ev.TimerFired(("kill", "a", "10")), at=1.0) == []


def test_r10_brutal_kill_kills_at_once() -> None:
    """R10: shutdown="brutal_kill" -> Kill with no stop signal and no timer."""
    b = Bench(root(svc("a", shutdown="brutal_kill")))
    b.start()
    b.feed(ev.Spawned("a", 10))
    out = b.feed(ev.Command("shutdown"))
    assert non_reports(out) == [act.Kill("a", 10)]
    b.feed(ev.Exited("a", 10, signal="KILL"))
    assert b.reports()[-3:] == ["stop a", "exit a KILL normal", "tree_stopped 0"]


def test_r10_infinity_waits_for_ever() -> None:
    """R10: shutdown="infinity" sends the stop signal and never kills; the supervisor
    exits only once the child is gone."""
    sim = Simulation(root(svc("a"), svc("slow", shutdown="infinity")))
    sim.inject("slow", "hang_on_stop")
    sim.command("shutdown")
    sim.advance(10_000)
    assert not sim.done
    assert "slow" in sim.running()
    sim.inject("slow", "exit0")
    assert log_of(sim) == [
        *started("a", "slow"),
        "tree_ready",
        "stop slow",
        "exit slow 0 normal",
        *stopped("a"),
        "tree_stopped 0",
    ]
    assert sim.trace.exit_code == 0


def test_r10_the_stop_signal_is_configurable() -> None:
    """R10 (otree: stop_signal): the graceful signal is the service's ``stop_signal``."""
    b = Bench(root(svc("a", stop_signal="INT")))
    b.start()
    b.feed(ev.Spawned("a", 10))
    out = b.feed(ev.Command("shutdown"))
    assert act.Signal("a", 10, "INT") in out


def test_r10_an_unexpected_exit_while_stopping_is_only_logged() -> None:
    """R10/R12: a child that exits with code 1 while being stopped is logged as a
    normal exit (otree stopped it); no restart, no intensity entry."""
    sim = Simulation(root(svc("a", shutdown=3), svc("b"), intensity=0))
    sim.inject("a", "hang_on_stop")
    m = mark(sim)
    sim.command("restart", "a")
    sim.inject("a", "crash")  # dies on its own while otree is stopping it
    assert log_of(sim, m) == ["stop a", "exit a 1 normal", *started("a")]
    assert window(sim) == []
    assert not sim.done


def test_r11_a_supervisor_child_defaults_to_infinity() -> None:
    """R11: a supervisor child's default shutdown is infinity; a service's is 5 s."""
    tree = root(sup("web", svc("x")))
    assert tree.children[0].shutdown == "infinity"
    assert svc("x").shutdown == 5.0


def test_r11_a_finite_supervisor_shutdown_kills_the_whole_subtree() -> None:
    """R11 (otree: no grandchild is left behind): when a supervisor child's finite
    shutdown runs out, every process below it is killed at once."""
    tree = root(svc("a"), sup("web", svc("x", shutdown=100), svc("y", shutdown=100), shutdown=2))
    sim = Simulation(tree)
    sim.inject("web.x", "hang_on_stop")
    sim.inject("web.y", "hang_on_stop")
    m = mark(sim)
    sim.command("shutdown")
    sim.advance(5)
    assert log_of(sim, m) == [
        "stop web.y",
        "stop web.x",
        "exit web.y KILL normal",
        "exit web.x KILL normal",
        *stopped("a"),
        "tree_stopped 0",
    ]
    assert [e["ts"] for e in sim.trace.filter("exit")] == [2.0, 2.0, 2.0]


def test_r11_a_supervisor_child_follows_the_same_restart_rules() -> None:
    """R11: a permanent supervisor child that gives up is restarted like a worker
    and counted in its parent's window."""
    sim = Simulation(root(svc("a"), sup("web", svc("x"), intensity=0)))
    m = mark(sim)
    sim.inject("web.x", "crash")
    assert log_of(sim, m) == [
        "exit web.x 1 abnormal",
        "give_up web 1/5",
        "restart <root> web",
        *started("web.x"),
    ]
    assert window(sim) == [0.0]


def test_r12_exits_of_unknown_or_stale_processes_are_ignored() -> None:
    """R12: an exit notice for a PID that is not the child's current one, or for a
    path that is not a service, changes nothing."""
    b = Bench(root(svc("a")))
    b.start()
    b.feed(ev.Spawned("a", 10))
    assert b.feed(ev.Exited("a", 99, code=1)) == []
    assert b.feed(ev.Exited("nope", 10, code=1)) == []
    assert b.feed(ev.Exited("", 10, code=1)) == []
    b.feed(ev.Exited("a", 10, code=1))  # the real one: restarted as pid 11
    b.feed(ev.Spawned("a", 11))
    assert b.feed(ev.Exited("a", 10, code=1)) == []  # the old PID again
    assert b.reports().count("restart <root> a") == 1


def test_r12_the_exit_of_a_child_otree_stopped_is_consumed() -> None:
    """R12: the exit of a child the supervisor stopped itself is never a crash and never
    counted (here: a manual stop under intensity 0)."""
    sim = Simulation(root(svc("a"), svc("b"), intensity=0))
    m = mark(sim)
    assert sim.command("stop", "a") == act.Reply(1, True, None)
    assert log_of(sim, m) == stopped("a")
    assert window(sim) == []
    assert state(sim, "a") == ("stopped", None)
