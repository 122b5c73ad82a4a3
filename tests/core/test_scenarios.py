"""Scenarios on the simulator that the model-based test leaves out: backoff, hangs, readiness.

The compared world of test_model.py has processes that start and stop at
once and no backoff; these pin down, one story each, what happens when time
passes inside a decision (docs/concepts.md "Backoff"; R10, R12, R26, R28 in docs/otp-rules.md).
"""

from __future__ import annotations

from support.specs import svc

from otree.core.spec import Backoff, ReadyDelay, Supervisor
from otree.testing import Simulation, Trace, simulate


def steps(trace: Trace, since: float = 0.0) -> list[tuple[float, str, str]]:
    return [(e["ts"], e["event"], e["path"]) for e in trace.events if e["ts"] >= since]


NO_JITTER = {"jitter": 0.0}


def test_backoff_decides_at_the_exit_and_only_the_start_waits() -> None:
    """Backoff (docs/concepts.md): count and sibling stops at the exit; the start waits."""
    tree = Supervisor(
        "root",
        strategy="one_for_all",
        intensity=5,
        children=[svc("a"), svc("b", backoff=Backoff(initial=2.0, **NO_JITTER))],
    )
    trace = simulate(tree, [(1.0, "b", "crash")])
    assert steps(trace, since=1.0) == [
        (1.0, "exit", "b"),
        (1.0, "restart", ""),
        (1.0, "stop", "a"),
        (1.0, "exit", "a"),
        (3.0, "spawn", "a"),
        (3.0, "ready", "a"),
        (3.0, "spawn", "b"),
        (3.0, "ready", "b"),
    ]


def test_backoff_never_delays_a_give_up() -> None:
    backoff = Backoff(initial=10.0, **NO_JITTER)
    tree = Supervisor(
        "root", intensity=1, children=[svc("a", backoff=backoff), svc("b", backoff=backoff)]
    )
    trace = simulate(tree, [(1.0, "a", "crash"), (2.0, "b", "crash")])
    assert steps(trace, since=1.0) == [
        (1.0, "exit", "a"),
        (1.0, "restart", ""),
        (2.0, "exit", "b"),
        (2.0, "give_up", ""),
        (2.0, "tree_stopped", ""),
    ]


def test_stopping_a_child_cancels_its_pending_restart() -> None:
    """R28: terminate_child of a restarting child leaves it stopped."""
    tree = Supervisor("root", children=[svc("a", backoff=Backoff(initial=10.0, **NO_JITTER))])
    sim = Simulation(tree)
    sim.at(1.0).inject("a", "crash")
    reply = sim.at(2.0).command("stop", "a")
    assert reply is not None and reply.ok
    sim.at(30.0)
    assert sim.trace.count("spawn", "a") == 1
    assert sim.running() == {}
    reply = sim.command("start", "a")
    assert reply is not None and reply.ok
    assert sim.running() == {"a": 101}


def test_backoff_grows_caps_and_resets_after_a_stable_run() -> None:
    backoff = Backoff(initial=1.0, factor=3.0, max=5.0, reset_after=50.0, **NO_JITTER)
    tree = Supervisor("root", intensity=100, children=[svc("a", backoff=backoff)])
    crashes = [10.0, 20.0, 30.0, 40.0]  # up 9, 7, 1 s each time: delays 1, 3, 5 (max), 5
    trace = simulate(tree, [(t, "a", "crash") for t in crashes] + [(200.0, "a", "crash")])
    spawns = [e["ts"] for e in trace.filter("spawn", "a")]
    assert spawns == [0.0, 11.0, 23.0, 35.0, 45.0, 201.0]  # up 155 s > reset_after: 1 s again


def test_a_failed_retry_waits_for_the_next_backoff_step() -> None:
    backoff = Backoff(initial=1.0, factor=2.0, max=30.0, **NO_JITTER)
    tree = Supervisor("root", intensity=10, children=[svc("a", backoff=backoff)])
    trace = simulate(tree, [(1.0, "a", "fail_start"), (1.0, "a", "crash")])
    assert steps(trace, since=1.0) == [
        (1.0, "exit", "a"),
        (1.0, "restart", ""),
        (2.0, "start_failed", "a"),
        (2.0, "restart", ""),
        (4.0, "spawn", "a"),
        (4.0, "ready", "a"),
    ]


def test_backoff_jitter_comes_from_the_seed() -> None:
    backoff = Backoff(initial=10.0, max=10.0, jitter=0.5)
    tree = Supervisor("root", children=[svc("a", backoff=backoff)])
    delays = set()
    for seed in range(20):
        trace = simulate(tree, [(1.0, "a", "crash")], seed=seed)
        (at,) = [e["ts"] for e in trace.filter("spawn", "a")][1:]
        assert 1.0 + 5.0 <= at <= 1.0 + 15.0
        assert simulate(tree, [(1.0, "a", "crash")], seed=seed).events == trace.events
        delays.add(at)
    assert len(delays) > 10


def test_a_hanging_sibling_holds_up_a_group_restart_until_it_is_killed() -> None:
    tree = Supervisor("root", strategy="one_for_all", children=[svc("a", shutdown=2.0), svc("b")])
    trace = simulate(tree, [(1.0, "a", "hang_on_stop"), (1.0, "b", "crash")])
    assert steps(trace, since=1.0) == [
        (1.0, "exit", "b"),
        (1.0, "restart", ""),
        (1.0, "stop", "a"),
        (3.0, "exit", "a"),
        (3.0, "spawn", "a"),
        (3.0, "ready", "a"),
        (3.0, "spawn", "b"),
        (3.0, "ready", "b"),
    ]
    assert trace.filter("exit", "a")[0]["signal"] == "KILL"
    assert trace.filter("exit", "a")[0]["normal"] is True


def test_an_exit_while_being_stopped_is_not_a_crash() -> None:
    """R12: the exit of a child otree is stopping is consumed, whatever its code."""
    tree = Supervisor("root", intensity=0, children=[svc("a", shutdown=10.0), svc("b")])
    sim = Simulation(tree)
    sim.inject("b", "hang_on_stop")
    sim.at(1.0).command("stop", "b")
    sim.at(2.0).inject("b", "crash")
    (exit_b,) = sim.trace.filter("exit", "b")
    assert exit_b["code"] == 1 and exit_b["normal"] is True
    assert sim.trace.count("restart") == 0 and not sim.trace.gave_up("")
    assert sim.running() == {"a": 100}


def test_shutdown_stops_one_child_at_a_time_in_reverse_order() -> None:
    tree = Supervisor("root", children=[svc("a"), svc("b", shutdown=3.0), svc("c", shutdown=1.0)])
    trace = simulate(
        tree, [(0.0, "b", "hang_on_stop"), (0.0, "c", "hang_on_stop")], until=1.0, stop=True
    )
    assert steps(trace, since=1.0) == [
        (1.0, "stop", "c"),
        (2.0, "exit", "c"),
        (2.0, "stop", "b"),
        (5.0, "exit", "b"),
        (5.0, "stop", "a"),
        (5.0, "exit", "a"),
        (5.0, "tree_stopped", ""),
    ]


def test_a_supervisor_shutdown_timeout_kills_its_whole_subtree() -> None:
    tree = Supervisor(
        "root",
        children=[
            svc("db"),
            Supervisor("web", shutdown=2.0, children=[svc("a"), svc("b", shutdown="infinity")]),
        ],
    )
    trace = simulate(tree, [(0.0, "web.b", "hang_on_stop")], until=1.0, stop=True)
    assert steps(trace, since=1.0) == [
        (1.0, "stop", "web.b"),
        (3.0, "stop", "web.a"),
        (3.0, "exit", "web.b"),
        (3.0, "exit", "web.a"),
        (3.0, "stop", "db"),
        (3.0, "exit", "db"),
        (3.0, "tree_stopped", ""),
    ]
    assert trace.filter("exit", "web.b")[0]["signal"] == "KILL"
    assert trace.exit_code == 0
    assert trace.running() == {}


def test_a_readiness_timeout_at_the_initial_start_fails_the_tree() -> None:
    tree = Supervisor("root", children=[svc("a"), svc("b", ready=ReadyDelay(5.0, timeout=1.0))])
    trace = simulate(tree)
    assert steps(trace) == [
        (0.0, "spawn", "a"),
        (0.0, "ready", "a"),
        (1.0, "start_failed", "b"),
        (1.0, "stop", "a"),
        (1.0, "exit", "a"),
        (1.0, "tree_stopped", ""),
    ]
    assert trace.exit_code == 3
    assert trace.running() == {}


def test_an_exit_before_ready_during_a_restart_is_a_failed_restart() -> None:
    tree = Supervisor("root", intensity=5, children=[svc("a", ready=ReadyDelay(2.0))])
    trace = simulate(tree, [(5.0, "a", "crash"), (6.0, "a", "crash")])
    assert steps(trace, since=5.0) == [
        (5.0, "exit", "a"),
        (5.0, "restart", ""),
        (6.0, "start_failed", "a"),
        (6.0, "restart", ""),
        (8.0, "spawn", "a"),
        (8.0, "ready", "a"),
    ]
