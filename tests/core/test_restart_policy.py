"""The restart policy as a table: which siblings a restart stops and starts (R17-R19, R27).

Each row names the children in declared order, one letter each: upper case for a
child still alive (starting, running or stopping), lower case for one that is not;
``temporary`` lists the temporary ones. The expected stops are in the order they
happen (reverse declared order), the starts in declared order.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from otree.core.rules import RestartPlan, Sibling, restart_plan
from otree.core.spec import Restart, Strategy

O41, O4A, R41 = Strategy.ONE_FOR_ONE, Strategy.ONE_FOR_ALL, Strategy.REST_FOR_ONE

# strategy, children, temporary, failed, retry -> touched, stopped, started
TABLE = [
    # R17: one_for_one touches the failed child alone
    (O41, "AbC", "", "b", False, "b", "", "b"),
    (O41, "b", "", "b", False, "b", "", "b"),
    (O41, "AbC", "b", "b", False, "b", "", "b"),  # the failed child always starts
    (O41, "AbC", "", "b", True, "b", "", "b"),
    # R18: one_for_all stops the others in reverse order, then starts all in order
    (O4A, "AbC", "", "b", False, "abc", "CA", "abc"),
    (O4A, "abC", "", "a", False, "abc", "C", "abc"),
    (O4A, "AbCD", "C", "b", False, "abcd", "DCA", "abd"),  # temporary siblings stay stopped
    (O4A, "AbcD", "c", "b", False, "abcd", "DA", "abd"),  # an ended temporary one too
    (O4A, "AbC", "", "b", True, "abc", "CA", "abc"),  # a retry starts them all again
    # R19: rest_for_one touches the failed child and those declared after it
    (R41, "AbCD", "", "b", False, "bcd", "DC", "bcd"),
    (R41, "ABcD", "", "c", False, "cd", "D", "cd"),
    (R41, "AbCD", "C", "b", False, "bcd", "DC", "bd"),
    (R41, "ABCd", "", "d", False, "d", "", "d"),
    # R27: a retry goes on from the failed child; the later ones that started stay up
    (R41, "AbCd", "", "b", True, "bd", "", "bd"),
    (R41, "ABcDe", "", "c", True, "ce", "", "ce"),
    (R41, "Abcd", "", "b", True, "bcd", "", "bcd"),
]


def siblings(children: str, temporary: str) -> list[Sibling]:
    return [
        Sibling(
            Restart.TEMPORARY if c.lower() in temporary.lower() else Restart.PERMANENT,
            alive=c.isupper(),
        )
        for c in children
    ]


def letters(children: str, indices: tuple[int, ...]) -> str:
    return "".join(children[i] for i in indices)


@pytest.mark.parametrize(
    ("strategy", "children", "temporary", "failed", "retry", "touched", "stopped", "started"),
    TABLE,
    ids=[f"{r[0].value}-{r[1]}-{r[3]}{'-retry' if r[4] else ''}" for r in TABLE],
)
def test_restart_plan(
    strategy: Strategy,
    children: str,
    temporary: str,
    failed: str,
    retry: bool,
    touched: str,
    stopped: str,
    started: str,
) -> None:
    index = children.lower().index(failed)
    plan = restart_plan(strategy, siblings(children, temporary), index, retry=retry)
    assert letters(children, plan.group).lower() == touched
    assert letters(children, plan.stop) == stopped
    assert letters(children, plan.start).lower() == started


@given(
    st.sampled_from(list(Strategy)),
    st.lists(st.tuples(st.sampled_from(list(Restart)), st.booleans()), min_size=1, max_size=8),
    st.data(),
    st.booleans(),
)
def test_a_plan_stops_only_live_touched_children_and_always_starts_the_failed_one(
    strategy: Strategy,
    kids: list[tuple[Restart, bool]],
    data: st.DataObject,
    retry: bool,
) -> None:
    sibs = [Sibling(restart, alive) for restart, alive in kids]
    failed = data.draw(st.integers(0, len(sibs) - 1))
    plan = restart_plan(strategy, sibs, failed, retry=retry)
    assert isinstance(plan, RestartPlan)
    assert failed in plan.group and failed in plan.start and failed not in plan.stop
    assert list(plan.group) == sorted(plan.group)
    assert list(plan.stop) == sorted(plan.stop, reverse=True)
    assert list(plan.start) == sorted(plan.start)
    assert set(plan.stop) | set(plan.start) <= set(plan.group)
    assert all(sibs[i].alive for i in plan.stop)
    assert all(i == failed or sibs[i].restart is not Restart.TEMPORARY for i in plan.start)
