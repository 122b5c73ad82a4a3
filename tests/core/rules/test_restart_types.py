"""Restart types (OTP-RULES.md D, R13-R16): permanent, transient, temporary; what is
counted.
"""

from __future__ import annotations

import pytest
from support.rules import (
    Bench,
    log_of,
    mark,
    spawn_paths,
    started,
    state,
    window,
)
from support.specs import root, svc

from otree.core import actions as act
from otree.core import events as ev
from otree.testing import Simulation


@pytest.mark.parametrize(
    ("how", "logged"),
    [
        ("crash", "exit a 1 abnormal"),
        ("exit0", "exit a 0 normal"),
        ("kill", "exit a KILL abnormal"),
    ],
)
def test_r13_permanent_is_restarted_after_every_exit(how: str, logged: str) -> None:
    """R13 permanent: restarted after a normal exit, a crash and a kill alike (new PID)."""
    sim = Simulation(root(svc("a"), svc("b")))
    m = mark(sim)
    sim.inject("a", how)
    assert log_of(sim, m) == [logged, "restart <root> a", *started("a")]
    assert sim.running() == {"b": 101, "a": 102}
    assert window(sim) == [0.0]


def test_r13_an_external_term_is_abnormal() -> None:
    """R13 + exit classification (otree): death by a signal otree did not send is
    abnormal, TERM included (OTP's ``shutdown`` from a stranger has no equivalent)."""
    b = Bench(root(svc("a", restart="transient")))
    b.start()
    b.feed(ev.Spawned("a", 10))
    out = b.feed(ev.Exited("a", 10, signal="TERM"))
    assert spawn_paths(out) == ["a"]
    assert b.reports()[-2:] == ["exit a TERM abnormal", "restart <root> a"]


def test_r14_transient_is_not_restarted_after_a_normal_exit() -> None:
    """R14 transient: exit 0 -> not restarted, kept as ``exited`` with no PID and no
    window entry; ``otree start`` starts it again."""
    sim = Simulation(root(svc("a", restart="transient"), svc("b")))
    m = mark(sim)
    sim.inject("a", "exit0")
    assert log_of(sim, m) == ["exit a 0 normal"]
    assert state(sim, "a") == ("exited", None)
    assert window(sim) == []
    assert sim.command("start", "a") == act.Reply(1, True, None)
    assert state(sim, "a") == ("running", 102)


@pytest.mark.parametrize("how", ["crash", "kill"])
def test_r14_transient_is_restarted_after_an_abnormal_exit(how: str) -> None:
    """R14 transient: a crash or a kill (``killed``) -> restarted with a new PID."""
    sim = Simulation(root(svc("a", restart="transient")))
    sim.inject("a", how)
    assert state(sim, "a") == ("running", 101)
    assert sim.trace.count("restart", "") == 1


def test_r14_normal_exit_codes_replace_the_default() -> None:
    """R14 (otree: normal_exit_codes, like systemd's SuccessExitStatus): with [1] an
    exit 1 is normal and exit 0 is abnormal; the list replaces [0]."""
    sim = Simulation(root(svc("a", restart="transient", normal_exit_codes=[1])))
    m = mark(sim)
    sim.inject("a", "exit0")
    assert log_of(sim, m) == ["exit a 0 abnormal", "restart <root> a", *started("a")]
    m = mark(sim)
    sim.inject("a", "crash")  # code 1
    assert log_of(sim, m) == ["exit a 1 normal"]
    assert state(sim, "a") == ("exited", None)


@pytest.mark.parametrize("how", ["crash", "exit0", "kill"])
def test_r15_temporary_is_never_restarted_and_stays_as_exited(how: str) -> None:
    """R15 (otree: the spec is kept): a temporary child is never restarted; unlike
    OTP it stays in the tree as ``exited``, and ``otree start`` starts it again."""
    sim = Simulation(root(svc("a"), svc("job", restart="temporary")))
    m = mark(sim)
    sim.inject("job", how)
    assert len(log_of(sim, m)) == 1 and log_of(sim, m)[0].startswith("exit job ")
    assert state(sim, "job") == ("exited", None)
    assert sim.command("start", "job") == act.Reply(1, True, None)
    assert log_of(sim, m)[1:] == started("job")
    assert sim.command("restart", "job") == act.Reply(2, True, None)
    assert sim.trace.pids("job") == [101, 102, 103]


def test_r16_exits_that_need_no_restart_are_not_counted() -> None:
    """R16: under intensity 0, a transient's normal exit and any temporary exit do not
    make the supervisor give up: they are not restarts."""
    sim = Simulation(
        root(
            svc("t", restart="transient"),
            svc("x", restart="temporary"),
            svc("y", restart="temporary"),
            intensity=0,
        )
    )
    sim.inject("t", "exit0")
    sim.inject("x", "crash")
    sim.inject("y", "kill")
    assert window(sim) == []
    assert not sim.done
    assert sim.trace.count("give_up") == 0
