"""otree's exit codes, shutdown while starting or giving up, and kill_all."""

from __future__ import annotations

from support.rules import (
    Bench,
    failing_sim,
    log_of,
    mark,
    non_reports,
    spawns,
)
from support.specs import root, sup, svc

from otree.core import actions as act
from otree.core import events as ev
from otree.core.spec import ReadyDelay
from otree.testing import Simulation


def test_shutdown_exits_0_and_give_up_exits_1_and_start_failure_exits_3() -> None:
    """Exit codes (DESIGN "CLI"): 0 shutdown, 1 root gave up, 3 initial start failed."""
    sim = Simulation(root(svc("a")))
    sim.command("shutdown")
    assert (sim.trace.exit_code, sim.trace.exit_message) == (0, None)
    sim = Simulation(root(svc("a"), intensity=0))
    sim.inject("a", "crash")
    assert sim.trace.exit_code == 1
    sim = Simulation(root(svc("a")), start=False)
    sim.inject("a", "fail_start")
    sim.start()
    assert (sim.trace.exit_code, sim.trace.exit_message) == (
        3,
        "a: cannot start: simulated start failure",
    )


def test_shutdown_during_a_give_up_keeps_exit_code_1() -> None:
    """Exit codes (bug fixed): a shutdown request (SIGTERM) that arrives while the root
    is stopping after a give-up does not turn the exit 1 into 0."""
    sim = Simulation(root(svc("a"), svc("b", shutdown=3), intensity=0))
    sim.inject("b", "hang_on_stop")
    sim.inject("a", "crash")
    assert sim.command("shutdown") == act.Reply(1, True, None)
    sim.advance(5)
    assert sim.trace.exit_code == 1
    assert log_of(sim)[-1] == "tree_stopped 1"


def test_shutdown_during_a_failed_initial_start_keeps_exit_code_3() -> None:
    """Exit codes (bug fixed): same for a shutdown while a failed start is unwinding."""
    sim = Simulation(root(svc("a", shutdown=3), svc("b")), start=False)
    sim.inject("a", "hang_on_stop")
    sim.inject("b", "fail_start")
    sim.start()
    sim.command("shutdown")
    sim.advance(5)
    assert sim.trace.exit_code == 3
    assert sim.trace.exit_message == "b: cannot start: simulated start failure"


def test_shutdown_while_starting_stops_what_started() -> None:
    """Shutdown during the initial start: the child being started is stopped as soon
    as it exists, then the others in reverse order; exit 0."""
    b = Bench(root(svc("a"), svc("b"), svc("c")))
    b.start()
    b.feed(ev.Spawned("a", 10))
    out = b.feed(ev.Command("shutdown", "", 1))  # b's Spawn is out, not answered yet
    assert non_reports(out) == [act.Reply(1, True, None)]
    out = b.feed(ev.Spawned("b", 11))
    assert non_reports(out) == [act.Signal("b", 11, "TERM"), act.SetTimer(("kill", "b", "11"), 5.0)]
    out = b.feed(ev.Exited("b", 11, signal="TERM"))
    assert [a for a in out if isinstance(a, act.Signal)] == [act.Signal("a", 10, "TERM")]
    b.feed(ev.Exited("a", 10, signal="TERM"))
    assert b.engine.exit_code == 0
    assert not [a for a in b.out if isinstance(a, act.Spawn) and a.path == "c"]


def test_kill_all_kills_every_process_at_once() -> None:
    """A second INT (``kill_all``): every process group gets SIGKILL at once, the
    children in reverse order, and the tree exits 0."""
    sim = Simulation(root(svc("a"), sup("web", svc("x"), svc("y")), svc("z")))
    for p in ("a", "web.x", "web.y", "z"):
        sim.inject(p, "hang_on_stop")
    m = mark(sim)
    assert sim.command("kill_all") == act.Reply(1, True, None)
    assert log_of(sim, m) == [
        "stop z",
        "stop web.y",
        "stop web.x",
        "stop a",
        "exit z KILL normal",
        "exit web.y KILL normal",
        "exit web.x KILL normal",
        "exit a KILL normal",
        "tree_stopped 0",
    ]


def test_kill_all_after_shutdown_kills_the_ones_still_stopping() -> None:
    """INT then INT: the first starts the orderly stop, the second kills what is left."""
    sim = Simulation(root(svc("a", shutdown=100), svc("b", shutdown=100)))
    sim.inject("a", "hang_on_stop")
    sim.inject("b", "hang_on_stop")
    m = mark(sim)
    sim.command("shutdown")
    sim.advance(1)
    sim.command("kill_all")
    assert log_of(sim, m) == [
        "stop b",
        "stop a",
        "exit b KILL normal",
        "exit a KILL normal",
        "tree_stopped 0",
    ]
    assert sim.now == 1.0


def test_kill_all_during_a_group_restart_starts_nothing_more() -> None:
    """kill_all (bug fixed): a supervisor in the middle of a restart stops starting
    children once everything is being killed; it used to start the next one."""
    tree = root(
        sup("web", svc("a"), svc("b", ready=ReadyDelay(delay=5)), svc("c"), strategy="one_for_all"),
        svc("x", shutdown=10),
    )
    sim = failing_sim(tree, set())
    sim.advance(6)
    sim.inject("x", "hang_on_stop")
    sim.inject("web.a", "crash")  # web: stops c, b; starts a, then b (ready after 5 s)
    sim.advance(1)
    before = spawns(sim)
    assert before[-2:] == ["web.a", "web.b"]
    sim.command("shutdown")  # the root stops x first: it hangs
    sim.command("kill_all")
    sim.advance(20)
    assert spawns(sim) == before  # web.c is not started
    assert sim.running() == {}
    assert sim.trace.exit_code == 0
