"""Backoff between restarts (an otree extension; DESIGN "Backoff")."""

from __future__ import annotations

import itertools
import random

from support.rules import (
    failing_sim,
    log_of,
    mark,
    spawn_times,
    started,
    state,
    stopped,
    window,
)
from support.specs import root, svc

from otree.core.spec import Backoff
from otree.testing import Simulation


def test_backoff_delays_grow_by_factor_up_to_max_with_seeded_jitter() -> None:
    """Backoff: the n-th quick restart waits initial * factor**(n-1), capped at max,
    scaled by a jitter drawn from the engine's seeded Random."""
    bo = Backoff(initial=1, factor=2, max=5, reset_after=60, jitter=0.1)
    sim = Simulation(root(svc("a", backoff=bo), intensity=100, period=1), seed=7)
    for _ in range(5):
        sim.inject("a", "crash")
        due = sim.next_timer()
        assert due is not None
        sim.at(due)
    rng = random.Random(7)
    expected = [min(5.0, base * rng.uniform(0.9, 1.1)) for base in (1, 2, 4, 5, 5)]
    starts = spawn_times(sim.trace, "a")
    assert [round(b - a, 9) for a, b in itertools.pairwise(starts)] == [
        round(d, 9) for d in expected
    ]


def test_backoff_without_jitter_is_exact() -> None:
    """Backoff: with jitter 0 the delays are initial * factor**n capped at max."""
    bo = Backoff(initial=0.5, factor=3, max=10, jitter=0)
    sim = Simulation(root(svc("a", backoff=bo), intensity=100, period=1))
    t = 0.0
    delays = []
    for _ in range(4):
        sim.inject("a", "crash")
        due = sim.next_timer()
        assert due is not None
        delays.append(due - t)
        sim.at(due)
        t = due
    assert delays == [0.5, 1.5, 4.5, 10.0]


def test_backoff_falls_back_to_initial_after_reset_after_seconds_up() -> None:
    """Backoff: once the child stayed up ``reset_after`` seconds, the next delay is
    ``initial`` again; a shorter run keeps the sequence going."""
    bo = Backoff(initial=1, factor=2, max=100, reset_after=10, jitter=0)
    sim = Simulation(root(svc("a", backoff=bo), intensity=100, period=1))
    sim.inject("a", "crash")  # waits 1
    sim.advance(1 + 5)  # up 5 s
    sim.inject("a", "crash")  # waits 2
    assert sim.next_timer() == 8.0
    sim.advance(2 + 10)  # up exactly reset_after
    sim.inject("a", "crash")  # back to 1
    assert sim.next_timer() == sim.now + 1


def test_backoff_keeps_growing_across_failed_retries_after_a_long_run() -> None:
    """Backoff (bug fixed): a child that ran for long, crashed, and then fails to start
    again and again waits 1, 2, 4, 8 s between attempts; it used to restart from
    ``initial`` every time because its last *start* was long ago."""
    failing: set[str] = set()
    bo = Backoff(initial=1, factor=2, max=100, reset_after=10, jitter=0)
    sim = failing_sim(root(svc("a", backoff=bo), intensity=10, period=3600), failing)
    sim.advance(100)
    failing.add("a")
    sim.inject("a", "crash")
    sim.advance(30)
    fails = [e["ts"] for e in sim.trace.filter("start_failed", "a")]
    assert fails == [101.0, 103.0, 107.0, 115.0]


def test_backoff_the_decision_is_taken_at_the_exit() -> None:
    """Backoff: the ``restart`` event and the window entry come at the exit; a group
    strategy stops the siblings then; only the starts wait."""
    bo = Backoff(initial=3, jitter=0)
    sim = Simulation(root(svc("a", backoff=bo), svc("b"), strategy="one_for_all"))
    m = mark(sim)
    sim.at(1).inject("a", "crash")
    assert log_of(sim, m) == ["exit a 1 abnormal", "restart <root> a", *stopped("b")]
    assert window(sim) == [1.0]
    assert [state(sim, p) for p in ("a", "b")] == [("restarting", None), ("restarting", None)]
    sim.advance(3)
    assert log_of(sim, m)[4:] == started("a", "b")
    assert spawn_times(sim.trace, "b") == [0.0, 4.0]


def test_backoff_a_give_up_never_waits() -> None:
    """Backoff: the give-up is decided at the exit that exceeds the intensity."""
    bo = Backoff(initial=3, jitter=0)
    sim = Simulation(root(svc("a", backoff=bo), svc("b"), intensity=0))
    m = mark(sim)
    sim.at(1).inject("a", "crash")
    assert log_of(sim, m) == [
        "exit a 1 abnormal",
        "give_up <root> 1/5",
        *stopped("b"),
        "tree_stopped 1",
    ]
    assert sim.now == 1.0


def test_backoff_in_a_group_restart_the_triggering_childs_backoff_applies() -> None:
    """Backoff: b has none, a has 2 s: a's crash restarts both after 2 s; b's crash
    restarts both at once."""
    bo = Backoff(initial=2, jitter=0)
    sim = Simulation(root(svc("a", backoff=bo), svc("b"), strategy="one_for_all"))
    sim.inject("a", "crash")
    sim.advance(2)
    assert spawn_times(sim.trace, "b") == [0.0, 2.0]
    sim.advance(1)
    sim.inject("b", "crash")
    assert spawn_times(sim.trace, "a") == [0.0, 2.0, 3.0]


def test_backoff_a_crash_of_a_sibling_subsumes_a_pending_delayed_restart() -> None:
    """Backoff: rest_for_one [a, b(backoff 5)]: b waits for its restart; a crashes ->
    the new restart (a and b, at once) replaces b's pending one."""
    bo = Backoff(initial=5, jitter=0)
    sim = Simulation(root(svc("a"), svc("b", backoff=bo), strategy="rest_for_one"))
    sim.inject("b", "crash")
    sim.advance(1)
    m = mark(sim)
    sim.inject("a", "crash")
    assert log_of(sim, m) == ["exit a 1 abnormal", "restart <root> a", *started("a", "b")]
    sim.advance(10)
    assert sim.trace.pids("b") == [101, 103]
