"""Cases from OTP's ``supervisor_SUITE.erl`` and ``supervisor.erl`` where otree deviated
(issue 10), each named after the OTP case or function it follows.

Each failed on the engine before its fix: the comment of each test says how.
"""

from __future__ import annotations

from support.rules import log_of, mark, started, state, stopped, window
from support.specs import root, svc

from otree.core import actions as act
from otree.core.spec import Backoff, ReadyDelay
from otree.testing import Simulation

NO_JITTER = Backoff(initial=5, jitter=0)


# --- do_auto_shutdown/2: only a child with no pid is gone --------------------------


def significant_pair(**x1: object) -> Simulation:
    return Simulation(
        root(
            svc("x1", restart="transient", significant=True, **x1),
            svc("x2", restart="transient", significant=True),
            svc("w"),
            auto_shutdown="all_significant",
        )
    )


def test_do_auto_shutdown_all_significant_counts_a_child_retrying_its_restart() -> None:
    """R41 + R28 (``do_auto_shutdown/2``: a child whose pid is ``{restarting, _}`` is
    still there): x1's restart fails while x2 ends; the supervisor stays up and
    retries x1. Before the fix: ``auto_shutdown`` after x2, exit 0."""
    sim = significant_pair(ready=ReadyDelay(1))
    m = mark(sim.at(2))
    sim.at(3).inject("x1", "crash")
    sim.at(3.2).inject("x2", "exit0")
    sim.at(3.5).inject("x1", "crash")  # during its restart's readiness delay
    sim.advance(2)
    assert log_of(sim, m) == [
        "exit x1 1 abnormal",
        "restart <root> x1",
        "exit x2 0 normal",
        "start_failed x1: exited (code 1) before it was ready",
        "restart <root> x1",
        *started("x1"),
    ]
    assert not sim.done
    assert state(sim, "x2") == ("exited", None)
    m = mark(sim)
    sim.inject("x1", "exit0")  # now the last significant child ends
    assert log_of(sim, m) == [
        "exit x1 0 normal",
        "auto_shutdown <root> x1",
        *stopped("w"),
        "tree_stopped 0",
    ]


def test_do_auto_shutdown_all_significant_counts_a_child_waiting_for_its_backoff() -> None:
    """R41 + backoff: x1 waits 5 s for its restart when x2 ends: x1 is still there, so
    nothing shuts down and x1 starts at 6. Before the fix: ``auto_shutdown`` at 2."""
    sim = significant_pair(backoff=NO_JITTER)
    sim.at(1).inject("x1", "crash")
    sim.at(2).inject("x2", "exit0")
    assert sim.trace.count("auto_shutdown") == 0
    assert state(sim, "x1") == ("restarting", None)
    sim.at(6)
    assert state(sim, "x1") == ("running", 103)
    assert not sim.done


# --- handle_call restart_child: the pid is still there until the EXIT is handled ----


def test_handle_call_restart_child_is_running_while_its_exit_waits() -> None:
    """R32 + R38 (``handle_call({restart_child, Id})`` sees the child's pid while its
    EXIT waits in the mailbox: ``{error, running}``): one_for_all [a, b, c], b hangs on
    stop; ``stop b`` at 1, ``start c`` at 1.5, c crashes at 1.6. Once b is killed (4),
    ``start c`` is refused and c's exit is a counted one_for_all restart that starts b
    too. Before the fix: ``start c`` ok, c spawned alone at 4, no restart, a on its old
    PID, b stopped."""
    sim = Simulation(
        root(svc("a"), svc("b", shutdown=3), svc("c"), strategy="one_for_all", intensity=3)
    )
    sim.inject("b", "hang_on_stop")
    m = mark(sim)
    assert sim.at(1).command("stop", "b") is None  # answered once b is gone
    assert sim.at(1.5).command("start", "c") is None  # waits its turn
    sim.at(1.6).inject("c", "crash")
    sim.at(4)
    assert sim.replies[1] == act.Reply(1, True, None)
    assert sim.replies[2] == act.Reply(2, False, "c is already running")
    assert log_of(sim, m) == [
        "stop b",
        "exit c 1 abnormal",
        "exit b KILL normal",
        "restart <root> c",
        *stopped("a"),
        *started("a", "b", "c"),
    ]
    assert window(sim) == [4.0]
    assert sim.running() == {"a": 103, "b": 104, "c": 105}


# --- terminate_child of a restarting child: try_again_restart finds nothing -------


def test_hanging_restart_loop_rest_for_one() -> None:
    """R28 (``hanging_restart_loop_rest_for_one``): rest_for_one [c1, c2, c3]; c2's
    restart attempt fails after a while and ``stop c2`` came meanwhile: the pending
    retry is cancelled as a whole and c3 stays down. Before the fix: c3 was spawned
    alone by the retry."""
    sim = Simulation(
        root(svc("c1"), svc("c2", ready=ReadyDelay(2)), svc("c3"), strategy="rest_for_one")
    )
    sim.at(3).inject("c2", "crash")  # restart: stop c3, start c2 (ready at 5)
    assert sim.at(3.5).command("stop", "c2") is None  # waits for the attempt
    sim.at(4).inject("c2", "crash")  # the attempt fails
    sim.advance(10)
    assert sim.replies[1] == act.Reply(1, True, None)
    assert [state(sim, p) for p in ("c1", "c2", "c3")] == [
        ("running", 100),
        ("stopped", None),
        ("stopped", None),
    ]
    assert sim.trace.pids("c3") == [102]
    assert window(sim) == [3.0]


def test_terminate_child_of_a_restarting_child_cancels_the_group_restart() -> None:
    """R28 + backoff: rest_for_one [a, b (backoff 5 s), c]: b crashes at 1 (c stopped,
    both wait), ``stop b`` at 2 cancels the whole pending restart: nothing starts.
    Before the fix: c was started alone at 6."""
    sim = Simulation(root(svc("a"), svc("b", backoff=NO_JITTER), svc("c"), strategy="rest_for_one"))
    sim.at(1).inject("b", "crash")
    assert [state(sim, p)[0] for p in ("b", "c")] == ["restarting", "restarting"]
    assert sim.at(2).command("stop", "b") == act.Reply(1, True, None)
    assert [state(sim, p)[0] for p in ("b", "c")] == ["stopped", "stopped"]
    sim.advance(20)
    assert sim.running() == {"a": 100}
    assert sim.next_timer() is None
    assert sim.command("start", "c") == act.Reply(2, True, None)


# --- add_restart for a retry runs in handle_cast try_again_restart -----------------


def test_try_again_restart_counts_the_retry_after_the_queued_requests() -> None:
    """R26 + R38 (``add_restart`` for a retry runs in ``handle_cast({try_again_restart,
    _})``, after the ``terminate_child`` queued before it, which cancels the retry):
    one_for_one, intensity 1, [a, b]: a's restart attempt fails at 4.5, ``stop a`` came
    at 4: the supervisor survives with b running. Before the fix: ``give_up`` 2/5 at
    4.5, exit 1, the stop refused."""
    sim = Simulation(root(svc("a", ready=ReadyDelay(2)), svc("b"), intensity=1))
    m = mark(sim.at(2))
    sim.at(3).inject("a", "crash")  # restart attempt: ready at 5
    assert sim.at(4).command("stop", "a") is None  # waits for the attempt
    sim.at(4.5).inject("a", "crash")  # the attempt fails
    sim.advance(10)
    assert sim.replies[1] == act.Reply(1, True, None)
    assert log_of(sim, m) == [
        "exit a 1 abnormal",
        "restart <root> a",
        "start_failed a: exited (code 1) before it was ready",
    ]
    assert not sim.done
    assert window(sim) == [3.0]
    assert state(sim, "a") == ("stopped", None)
    assert sim.running() == {"b": 101}
