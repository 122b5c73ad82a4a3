"""Manual commands (OTP-RULES.md G, R31-R33: ``otree start|stop|restart PATH``) and
``otree status``.
"""

from __future__ import annotations

from support.rules import (
    Bench,
    engine_of,
    log_of,
    mark,
    started,
    state,
    stopped,
    window,
)
from support.specs import root, sup, svc

from otree.core import actions as act
from otree.core import events as ev
from otree.testing import Simulation


def test_r31_stop_stops_the_child_and_is_not_a_crash() -> None:
    """R31 terminate_child (``otree stop``): stops by the shutdown spec, replies ok;
    no restart, no window entry; the child stays in the tree as ``stopped``."""
    sim = Simulation(root(svc("a"), svc("b"), intensity=0))
    m = mark(sim)
    assert sim.command("stop", "a") == act.Reply(1, True, None)
    assert log_of(sim, m) == stopped("a")
    assert state(sim, "a") == ("stopped", None)
    assert window(sim) == []
    assert sim.running() == {"b": 101}


def test_r31_stop_of_a_stopped_or_exited_child_is_ok() -> None:
    """R31: ``stop`` of a child that is not running replies ok and changes nothing."""
    sim = Simulation(root(svc("a"), svc("t", restart="temporary")))
    sim.command("stop", "a")
    sim.inject("t", "exit0")
    m = mark(sim)
    assert sim.command("stop", "a") == act.Reply(2, True, None)
    assert sim.command("stop", "t") == act.Reply(3, True, None)
    assert log_of(sim, m) == []
    assert state(sim, "t") == ("exited", None)


def test_r31_stop_of_a_supervisor_stops_its_subtree() -> None:
    """R31/R9: ``stop web`` stops web's children in reverse order; web stays stopped."""
    sim = Simulation(root(svc("a"), sup("web", svc("x"), svc("y"))))
    m = mark(sim)
    assert sim.command("stop", "web") == act.Reply(1, True, None)
    assert log_of(sim, m) == stopped("web.y", "web.x")
    assert state(sim, "web") == ("stopped", None)
    m = mark(sim)
    assert sim.command("start", "web") == act.Reply(2, True, None)
    assert log_of(sim, m) == started("web.x", "web.y")


def test_r32_start_and_restart_errors() -> None:
    """R32 restart_child (``otree start``/``restart``): ``start`` of a running child is
    refused (OTP ``{error, running}``); an unknown path, the root and unknown commands
    are refused with a reason."""
    sim = Simulation(root(svc("a"), sup("web", svc("x"))))
    assert sim.command("start", "a") == act.Reply(1, False, "a is already running")
    assert sim.command("start", "web") == act.Reply(2, False, "web is already running")
    assert sim.command("start", "nope") == act.Reply(3, False, "no node at path 'nope'")
    assert sim.command("stop", "web.nope") == act.Reply(4, False, "no node at path 'web.nope'")
    assert sim.command("restart", "") == act.Reply(
        5, False, "the root cannot be started or stopped: use shutdown"
    )
    assert sim.command("reload", "a") == act.Reply(6, False, "unknown command 'reload'")
    assert sim.trace.pids("a") == [100]


def test_r32_restart_of_a_running_child_is_stop_then_start_and_not_counted() -> None:
    """R32 (otree ``restart`` = terminate_child + restart_child): new PID, no
    ``restart`` event, no window entry (intensity 0 does not give up)."""
    sim = Simulation(root(svc("a"), svc("b"), intensity=0, strategy="one_for_all"))
    m = mark(sim)
    assert sim.command("restart", "a") == act.Reply(1, True, None)
    assert log_of(sim, m) == [*stopped("a"), *started("a")]  # b untouched: not a crash
    assert sim.running() == {"b": 101, "a": 102}
    assert window(sim) == []


def test_r32_a_failed_manual_start_is_reported_and_not_retried() -> None:
    """R32: a manual start that fails replies with the reason; the child stays stopped
    (spec kept); no retry, no ``restart`` event, no window entry."""
    sim = Simulation(root(svc("a"), svc("b"), intensity=0))
    sim.command("stop", "a")
    sim.inject("a", "fail_start")
    m = mark(sim)
    assert sim.command("start", "a") == act.Reply(
        2, False, "a: cannot start: simulated start failure"
    )
    assert log_of(sim, m) == ["start_failed a: simulated start failure"]
    assert state(sim, "a") == ("stopped", None)
    assert window(sim) == []
    assert sim.command("start", "a") == act.Reply(3, True, None)


def test_r32_a_failed_manual_restart_leaves_the_child_stopped() -> None:
    """R32: ``restart`` whose start fails: the old process is stopped, the error is
    replied, nothing is retried."""
    sim = Simulation(root(svc("a"), svc("b")))
    sim.inject("a", "fail_start")
    m = mark(sim)
    assert sim.command("restart", "a") == act.Reply(
        1, False, "a: cannot start: simulated start failure"
    )
    assert log_of(sim, m) == [*stopped("a"), "start_failed a: simulated start failure"]
    assert state(sim, "a") == ("stopped", None)


def test_r33_there_is_no_delete() -> None:
    """R33 (otree: no delete_child): the tree is declared; a child can only be stopped.
    A ``delete`` request is refused as an unknown command."""
    sim = Simulation(root(svc("a")))
    assert sim.command("delete", "a") == act.Reply(1, False, "unknown command 'delete'")
    assert sim.running() == {"a": 100}


def test_commands_after_the_tree_stopped_are_refused() -> None:
    """Commands that arrive once the tree is down get an error reply."""
    b = Bench(root(svc("a")))
    b.start()
    b.feed(ev.Spawned("a", 10))
    b.feed(ev.Command("shutdown", "", 1))
    b.feed(ev.Exited("a", 10, signal="TERM"))
    assert b.engine.done
    assert b.feed(ev.Command("start", "a", 2)) == [act.Reply(2, False, "the tree has stopped")]


def test_commands_to_a_child_of_a_stopped_supervisor_are_refused() -> None:
    """A command under a supervisor that is not running names that supervisor."""
    sim = Simulation(root(svc("a"), sup("web", svc("x"))))
    sim.command("stop", "web")
    assert sim.command("start", "web.x") == act.Reply(2, False, "'web' is not running (stopped)")


def test_a_manual_restart_of_a_supervisor_gives_it_a_fresh_window() -> None:
    """R25/R32: a supervisor started again (by hand or by its parent) starts with only
    its declared children and an empty restart window."""
    sim = Simulation(root(sup("web", svc("x"), svc("y"), intensity=1)))
    sim.inject("web.x", "crash")
    assert window(sim, "web") == [0.0]
    assert sim.command("restart", "web") == act.Reply(1, True, None)
    assert window(sim, "web") == []
    sim.inject("web.y", "crash")
    assert not sim.trace.gave_up("web")


def test_status_shows_state_pid_restarts_and_last_exit() -> None:
    """``otree status``: per node its state, PID, restarts inside the parent's window
    and last exit."""
    sim = Simulation(root(svc("a"), svc("t", restart="transient"), period=10))
    sim.at(1).inject("a", "crash")
    sim.at(2).inject("a", "kill")
    sim.inject("t", "exit0")
    by_path = {n.path: n for n in engine_of(sim).status(sim.now)}
    a, t = by_path["a"], by_path["t"]
    assert (a.kind, a.state, a.pid, a.restarts, a.started_at) == ("service", "running", 103, 2, 2.0)
    assert a.last_exit == {"signal": "KILL", "normal": False}
    assert (t.state, t.pid, t.last_exit) == ("exited", None, {"code": 0, "normal": True})
    assert by_path[""].kind == "supervisor"
    late = {n.path: n for n in engine_of(sim).status(11.5)}
    assert late["a"].restarts == 1  # the restart at 1.0 has left the window


def test_status_restarts_start_over_when_the_supervisor_restarts() -> None:
    """R22/R25 + ``otree status``: a supervisor restarted by its parent begins with an
    empty window, so its children's RESTARTS start over too: status shows the restarts
    the next decision will count. Before the fix: x showed 2 while web's window was
    empty."""
    sim = Simulation(root(svc("z"), sup("web", svc("x"), intensity=2, period=60), period=60))
    for t in (1, 2, 3):  # two restarts, then web gives up and the root restarts it
        sim.at(t).inject("web.x", "crash")
    assert sim.trace.gave_up("web")
    by_path = {n.path: n for n in engine_of(sim).status(sim.now)}
    assert window(sim, "web") == []
    assert by_path["web.x"].restarts == 0
    assert by_path["web"].restarts == 1  # web's own restart, in the root's window
    sim.at(4).inject("web.x", "crash")
    assert {n.path: n.restarts for n in engine_of(sim).status(sim.now)}["web.x"] == 1
    assert window(sim, "web") == [4.0]
