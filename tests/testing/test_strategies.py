"""Tests of the Hypothesis strategies of otree.testing: valid trees, every field drawn."""

from __future__ import annotations

import itertools
import subprocess
import sys
from typing import Any

import attrs
import pytest
from hypothesis import assume, find, given
from hypothesis import strategies as st
from support.specs import FAST, NO_SHRINK, svc

from otree.core.spec import (
    SERVICE_FIELDS,
    SUPERVISOR_FIELDS,
    ReadyCmd,
    ReadyDelay,
    ReadyNotify,
    ReadyTcp,
    Service,
    Supervisor,
    check_tree,
    walk,
)
from otree.testing import HOWS, crash_schedules, service_paths, services, supervisors, trees


@FAST
@given(trees())
def test_generated_trees_are_valid(tree: Supervisor) -> None:
    check_tree(tree)
    assert any(isinstance(n, Service) for _, n in walk(tree))  # a pool may have 0 instances


def _default(cls: type, name: str) -> Any:
    field = attrs.fields_dict(cls)[name]
    default = field.default
    if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
        default = default.factory()
    converter = field.converter
    return converter(default) if callable(converter) else default  # type: ignore[misc]


@pytest.mark.parametrize("name", SERVICE_FIELDS)
def test_services_draw_every_service_field(name: str) -> None:
    """A new Service field must get a strategy (this fails until it does)."""
    default = _default(Service, name)
    strategy = services(significant_allowed=True)
    find(strategy, lambda s: getattr(s, name) != default, settings=NO_SHRINK)


@pytest.mark.parametrize("name", SUPERVISOR_FIELDS)
def test_trees_draw_every_supervisor_field(name: str) -> None:
    """A new Supervisor field must get a strategy (this fails until it does)."""
    default = _default(Supervisor, name)

    def nested_has_it(tree: Supervisor) -> bool:
        return (
            any(isinstance(n, Supervisor) and getattr(n, name) != default for _, n in walk(tree))
            or getattr(tree, name) != default
        )

    find(trees(max_depth=3), nested_has_it, settings=NO_SHRINK)


def test_every_ready_kind_and_shutdown_kind_is_drawn() -> None:
    for kind in (ReadyDelay, ReadyTcp, ReadyNotify, ReadyCmd):
        find(services(), lambda s, k=kind: isinstance(s.ready, k), settings=NO_SHRINK)
    for value in ("brutal_kill", "infinity"):
        find(services(), lambda s, v=value: s.shutdown == v, settings=NO_SHRINK)
    find(services(), lambda s: s.target is not None and s.args, settings=NO_SHRINK)


def test_trees_reach_the_requested_depth() -> None:
    def depth(node: Supervisor | Service) -> int:
        if isinstance(node, Service):
            return 0
        return 1 + max(depth(c) for c in node.children)

    find(trees(max_depth=3), lambda t: depth(t) == 3, settings=NO_SHRINK)


@FAST
@given(trees(backoff=False, ready_delays=False))
def test_tree_options_leave_out_backoff_and_ready_delays(tree: Supervisor) -> None:
    for _, node in walk(tree):
        if isinstance(node, Service):
            assert node.backoff is None
            assert not isinstance(node.ready, ReadyDelay) or node.ready.delay == 0


@FAST
@given(st.data())
def test_crash_schedules_are_sorted_valid_and_spaced(data: st.DataObject) -> None:
    tree = data.draw(trees(max_depth=2), label="tree")
    paths = service_paths(tree)
    assume(paths)  # every service may be a pool of 0 instances
    chosen = data.draw(st.lists(st.sampled_from(paths), min_size=1, unique=True), label="paths")
    gap = data.draw(st.sampled_from([0.0, 0.5, 2.0]), label="gap")
    hows = data.draw(st.lists(st.sampled_from(HOWS), min_size=1, unique=True), label="hows")
    schedule = data.draw(
        crash_schedules(tree, max_crashes=15, within=30.0, hows=hows, paths=chosen, min_gap=gap)
    )
    assert len(schedule) <= 15
    times = [t for t, _, _ in schedule]
    assert times == sorted(times)
    assert all(0.0 <= t <= 30.0 + 1e-9 for t in times)
    assert all(b - a >= gap - 1e-9 for a, b in itertools.pairwise(times))
    assert all(p in chosen and h in hows for _, p, h in schedule)


def test_crash_schedules_refuse_unknown_paths_and_hows() -> None:
    tree = Supervisor("root", children=[svc("a")])
    with pytest.raises(ValueError, match="'b' is not a service"):
        find(crash_schedules(tree, paths=["b"]), lambda s: True, settings=NO_SHRINK)
    with pytest.raises(ValueError, match="how must be one of"):
        find(crash_schedules(tree, hows=["boom"]), lambda s: True, settings=NO_SHRINK)


def test_supervisors_strategy_draws_non_root_fields() -> None:
    find(
        supervisors(root=False, significant_allowed=True),
        lambda s: s.significant and s.shutdown == "brutal_kill",
        settings=NO_SHRINK,
    )


def test_import_otree_does_not_need_hypothesis() -> None:
    code = (
        "import sys, otree, otree.testing._simulator\n"
        "assert 'hypothesis' not in sys.modules, 'otree imported hypothesis'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
