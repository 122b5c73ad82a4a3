"""Serialisation (OTP-RULES.md G, R38): a command waits while its supervisor is busy;
exits and requests are handled in turn.
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

from otree.core import actions as act
from otree.core.spec import ReadyDelay
from otree.testing import Simulation


def test_r38_commands_wait_while_the_supervisor_is_busy() -> None:
    """R38: each supervisor does one thing at a time: while ``restart a`` waits for a
    to stop (it ignores TERM; killed after 2 s), ``stop b`` waits its turn, then runs."""
    sim = Simulation(root(svc("a", shutdown=2), svc("b")))
    sim.inject("a", "hang_on_stop")
    m = mark(sim)
    assert sim.command("restart", "a") is None  # not answered yet
    sim.advance(0.5)
    assert sim.command("stop", "b") is None
    assert sim.running() == {"a": 100, "b": 101}
    sim.advance(1.5)
    assert sim.replies == {1: act.Reply(1, True, None), 2: act.Reply(2, True, None)}
    assert log_of(sim, m) == [
        "stop a",
        "exit a KILL normal",
        *started("a"),
        *stopped("b"),
    ]
    assert {e["ts"] for e in sim.trace.events[m + 1 :]} == {2.0}


def test_r38_an_exit_during_a_busy_spell_is_handled_after_it() -> None:
    """R38: a crash that happens while the supervisor is busy is handled, in order,
    once the current job is done."""
    sim = Simulation(root(svc("a", shutdown=2), svc("b")))
    sim.inject("a", "hang_on_stop")
    sim.command("restart", "a")
    sim.advance(0.5)
    m = mark(sim)
    sim.inject("b", "crash")
    assert log_of(sim, m) == ["exit b 1 abnormal"]  # logged now, handled later
    sim.advance(1.5)
    assert log_of(sim, m) == [
        "exit b 1 abnormal",
        "exit a KILL normal",
        *started("a"),
        "restart <root> b",
        *started("b"),
    ]
    assert window(sim) == [2.0]


def test_r38_queued_commands_are_refused_when_the_supervisor_gives_up() -> None:
    """R38 (bug fixed): a command waiting in a supervisor's queue when the supervisor
    gives up gets an error reply; it used to get none."""
    tree = root(svc("z"), sup("web", svc("a", shutdown=2), svc("b"), svc("c"), intensity=0))
    sim = Simulation(tree)
    sim.inject("web.a", "hang_on_stop")
    assert sim.command("restart", "web.a") is None
    sim.advance(0.5)
    sim.inject("web.b", "crash")  # queued: gives up once the restart is done
    assert sim.command("stop", "web.c") is None  # queued behind the crash
    sim.advance(2)
    assert sim.replies[1] == act.Reply(1, True, None)
    assert sim.replies[2] == act.Reply(2, False, "'web' is not running (stopping)")
    assert sim.trace.count("give_up", "web") == 1


def test_r38_a_stop_queued_before_a_crash_consumes_it() -> None:
    """R38/R12: ``stop b`` queued before b's crash is carried out first: b is then
    stopped, and its crash is consumed (OTP: terminate_child flushes the EXIT)."""
    sim = Simulation(root(svc("a", shutdown=2), svc("b"), intensity=0))
    sim.inject("a", "hang_on_stop")
    sim.command("restart", "a")
    assert sim.command("stop", "b") is None
    sim.inject("b", "crash")
    sim.advance(2)
    assert sim.replies[2] == act.Reply(2, True, None)
    assert state(sim, "b") == ("stopped", None)
    assert window(sim) == []
    assert not sim.done


def test_r38_a_command_during_the_initial_start_waits_for_the_tree() -> None:
    """R38: ``stop a`` sent while the tree is still starting runs once it is up."""
    sim = Simulation(root(svc("a"), svc("slow", ready=ReadyDelay(delay=3))))
    assert sim.command("stop", "a") is None
    sim.advance(3)
    assert sim.replies[1] == act.Reply(1, True, None)
    assert log_of(sim) == [*started("a", "slow"), "tree_ready", *stopped("a")]


def test_r38_a_command_in_progress_is_answered_when_its_supervisor_is_stopped() -> None:
    """R38 (bug fixed): ``stop web`` hangs on a child; a shutdown then replaces web's
    plan. The ``stop`` is answered once that child is gone (it used to get no reply);
    a ``restart`` cut short the same way is refused."""
    sim = Simulation(root(svc("a"), svc("web", shutdown=5)))
    sim.inject("web", "hang_on_stop")
    assert sim.command("stop", "web") is None
    assert sim.command("shutdown") == act.Reply(2, True, None)
    sim.advance(5)
    assert sim.replies[1] == act.Reply(1, True, None)
    assert sim.trace.exit_code == 0

    sim = Simulation(root(svc("z"), sup("web", svc("x", shutdown=5), svc("y"))))
    sim.inject("web.x", "hang_on_stop")
    assert sim.command("restart", "web.x") is None  # web: stopping x (it hangs)
    assert sim.command("stop", "web") is None  # the root: stopping web
    assert sim.replies[1] == act.Reply(1, False, "'web' is not running (stopping)")
    sim.advance(5)
    assert sim.replies[2] == act.Reply(2, True, None)
    assert sim.running() == {"z": 100}
