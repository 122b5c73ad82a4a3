"""Automatic shutdown and significant children (OTP-RULES.md H, R39-R43)."""

from __future__ import annotations

import pytest
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
from otree.core.engine import Engine
from otree.errors import ConfigError
from otree.testing import Simulation


def test_r39_bad_combinations_are_refused_before_anything_starts() -> None:
    """R39: significant with permanent, and significant under auto_shutdown=never, are
    refused (the engine checks the tree when it is built)."""
    with pytest.raises(ConfigError) as info:
        Engine(root(svc("a", significant=True), auto_shutdown="any_significant"))
    assert [str(i) for i in info.value.issues] == [
        "a.significant: a permanent child cannot be significant (use transient or temporary)"
    ]
    with pytest.raises(ConfigError) as info:
        Engine(root(svc("a", significant=True, restart="transient")))
    assert [str(i) for i in info.value.issues] == [
        "a.significant: significant has no effect: auto_shutdown of the root is 'never'"
    ]


@pytest.mark.parametrize(
    ("restart", "how"),
    [("transient", "exit0"), ("temporary", "exit0"), ("temporary", "crash"), ("temporary", "kill")],
)
def test_r40_any_significant_shuts_down_when_a_significant_child_ends(
    restart: str, how: str
) -> None:
    """R40 any_significant: a significant child that ends on its own and is not
    restarted shuts the supervisor down normally: the others stop in reverse order,
    otree run exits 0."""
    sim = Simulation(
        root(
            svc("a"),
            svc("job", restart=restart, significant=True),
            svc("c"),
            auto_shutdown="any_significant",
        )
    )
    m = mark(sim)
    sim.inject("job", how)
    assert log_of(sim, m)[1:] == [
        "auto_shutdown <root> job",
        *stopped("c", "a"),
        "tree_stopped 0",
    ]
    assert sim.trace.filter("auto_shutdown")[0] == {
        "ts": 0.0,
        "event": "auto_shutdown",
        "path": "",
        "child": "job",
    }
    assert sim.trace.exit_code == 0
    assert sim.trace.exit_message is None
    assert window(sim) == []


def test_r40_a_transient_significant_child_that_crashes_is_just_restarted() -> None:
    """R40: an abnormal exit of a transient significant child is a restart, not an
    automatic shutdown."""
    sim = Simulation(
        root(svc("job", restart="transient", significant=True), auto_shutdown="any_significant")
    )
    m = mark(sim)
    sim.inject("job", "crash")
    assert log_of(sim, m) == ["exit job 1 abnormal", "restart <root> job", *started("job")]


def test_r41_all_significant_waits_for_the_last_significant_child() -> None:
    """R41 all_significant: two significant children: the first ends -> nothing; the
    second ends -> shutdown."""
    sim = Simulation(
        root(
            svc("a"),
            svc("j1", restart="transient", significant=True),
            svc("j2", restart="temporary", significant=True),
            auto_shutdown="all_significant",
        )
    )
    m = mark(sim)
    sim.inject("j1", "exit0")
    assert log_of(sim, m) == ["exit j1 0 normal"]
    sim.advance(1)
    sim.inject("j2", "crash")
    assert log_of(sim, m)[1:] == [
        "exit j2 1 abnormal",
        "auto_shutdown <root> j2",
        *stopped("a"),
        "tree_stopped 0",
    ]


def test_r41_all_significant_counts_a_manually_stopped_child_as_gone() -> None:
    """R41/R42: a significant child stopped by hand triggers nothing itself, but it no
    longer counts as running when the last other one ends."""
    sim = Simulation(
        root(
            svc("a"),
            svc("j1", restart="transient", significant=True),
            svc("j2", restart="transient", significant=True),
            auto_shutdown="all_significant",
        )
    )
    m = mark(sim)
    assert sim.command("stop", "j1") == act.Reply(1, True, None)
    assert log_of(sim, m) == stopped("j1")
    sim.inject("j2", "exit0")
    assert sim.trace.count("auto_shutdown") == 1
    assert sim.trace.exit_code == 0


def test_r42_a_significant_child_stopped_by_hand_does_not_shut_down() -> None:
    """R42: ``otree stop`` of a significant child is not an exit on its own."""
    sim = Simulation(
        root(
            svc("a"),
            svc("job", restart="temporary", significant=True),
            auto_shutdown="any_significant",
        )
    )
    assert sim.command("stop", "job") == act.Reply(1, True, None)
    assert sim.trace.count("auto_shutdown") == 0
    assert not sim.done


def test_r42_a_significant_bystander_of_a_group_restart_does_not_shut_down() -> None:
    """R42: a temporary significant child stopped by a one_for_all cycle is not
    restarted and does not trigger the automatic shutdown."""
    sim = Simulation(
        root(
            svc("a"),
            svc("job", restart="temporary", significant=True),
            strategy="one_for_all",
            auto_shutdown="any_significant",
        )
    )
    m = mark(sim)
    sim.inject("a", "crash")
    assert log_of(sim, m) == [
        "exit a 1 abnormal",
        "restart <root> a",
        *stopped("job"),
        *started("a"),
    ]
    assert sim.trace.count("auto_shutdown") == 0


def test_r42_auto_shutdown_escalates_through_a_significant_supervisor() -> None:
    """R42: a significant child supervisor that shuts itself down exits normally; its
    parent (any_significant) sees a significant child end and shuts down too."""
    tree = root(
        svc("a"),
        sup(
            "batch",
            svc("job", restart="transient", significant=True),
            svc("helper"),
            auto_shutdown="any_significant",
            restart="transient",
            significant=True,
        ),
        auto_shutdown="any_significant",
    )
    sim = Simulation(tree)
    m = mark(sim)
    sim.inject("batch.job", "exit0")
    assert log_of(sim, m) == [
        "exit batch.job 0 normal",
        "auto_shutdown batch batch.job",
        *stopped("batch.helper"),
        "auto_shutdown <root> batch",
        *stopped("a"),
        "tree_stopped 0",
    ]
    assert sim.trace.exit_code == 0


def test_r42_a_non_significant_supervisor_shutting_down_leaves_the_parent_alone() -> None:
    """R42: if the supervisor that shut itself down is not significant (transient), its
    parent just keeps it as exited."""
    tree = root(
        svc("a"),
        sup(
            "batch",
            svc("job", restart="transient", significant=True),
            auto_shutdown="any_significant",
            restart="transient",
        ),
    )
    sim = Simulation(tree)
    sim.inject("batch.job", "exit0")
    assert state(sim, "batch") == ("exited", None)
    assert sim.running() == {"a": 100}
    assert not sim.done


def test_r43_a_permanent_auto_shutdown_supervisor_is_restarted_and_counted() -> None:
    """R43 (docs warning): a permanent supervisor that shuts itself down is restarted
    each time and uses up its parent's intensity."""
    tree = root(
        sup(
            "batch",
            svc("job", restart="transient", significant=True),
            auto_shutdown="any_significant",
        ),
        intensity=1,
    )
    sim = Simulation(tree)
    sim.inject("batch.job", "exit0")
    assert sim.trace.count("restart", "") == 1
    sim.inject("batch.job", "exit0")
    assert sim.trace.gave_up("")
    assert sim.trace.exit_code == 1
