"""The restart-intensity window (R22, R23 of docs/otp-rules.md; docs/concepts.md).

On each restart: keep the times ``t`` with ``now - t <= period`` (both ends
count), add ``now``; the restart is allowed while the count is at most
``intensity``. Unlike OTP, the clock is float seconds, not whole seconds.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from otree.core.intensity import RestartWindow


def test_r23_intensity_restarts_fit_and_the_next_one_gives_up() -> None:
    """R23: S(I=2, P=3600): two restarts are allowed, the third exceeds the limit."""
    w = RestartWindow(2, 3600)
    assert w.add(0.0)
    assert w.add(1.0)
    assert not w.add(2.0)
    assert w.times == [0.0, 1.0, 2.0]  # the refused one is recorded too (give_up counts it)


def test_r23_intensity_zero_gives_up_on_the_first_restart() -> None:
    """R23: with intensity 0 the first restart already exceeds the limit."""
    assert not RestartWindow(0, 5).add(0.0)


def test_r23_the_window_includes_its_edge() -> None:
    """R23: a time exactly ``period`` old is still inside (``now - t <= period``)."""
    w = RestartWindow(1, 5)
    assert w.add(10.0)
    assert not w.add(15.0)  # 15 - 10 == 5: kept, count 2 > 1


def test_r23_a_time_just_past_the_edge_is_dropped() -> None:
    """R23: a time more than ``period`` old no longer counts."""
    w = RestartWindow(1, 5)
    assert w.add(10.0)
    assert w.add(15.25)  # 5.25 > 5: dropped
    assert w.times == [15.25]


def test_r23_the_window_slides_and_is_never_reset() -> None:
    """R23: S(1, 1): crash, wait 2.1 s, crash, three times over -> never exceeded;
    two restarts 0.5 s apart exceed it whenever they come."""
    w = RestartWindow(1, 1)
    for t in (0.0, 2.1, 4.2, 6.3):
        assert w.add(t)
    assert not w.add(6.8)
    w2 = RestartWindow(2, 10)
    assert w2.add(0.0)
    assert w2.add(9.0)
    assert w2.add(10.5)  # 0.0 dropped: [9.0, 10.5]
    assert not w2.add(19.0)  # 9.0 kept (10 <= 10): [9.0, 10.5, 19.0]


def test_r23_a_burst_after_a_quiet_spell_is_judged_on_its_own() -> None:
    """R23: the count only sees the last ``period`` seconds, not the whole history."""
    w = RestartWindow(3, 5)
    for t in (0.0, 1.0, 2.0):
        assert w.add(t)
    for t in (100.0, 100.1, 100.2):
        assert w.add(t)
    assert not w.add(100.3)


def test_count_reports_the_restarts_inside_the_window() -> None:
    w = RestartWindow(5, 5, [0.0, 3.0, 4.0])
    assert w.count(4.0) == 3
    assert w.count(5.0) == 3  # 0.0 is exactly 5 old
    assert w.count(8.5) == 1
    assert w.count(9.5) == 0
    assert w.times == [0.0, 3.0, 4.0]  # counting does not prune


def brute_force(history: list[float], intensity: int, period: float) -> list[bool]:
    """The rule written the obvious way: for each restart, count every earlier one
    (itself included) within ``period`` of it, over the whole history."""
    verdicts = []
    for i, now in enumerate(history):
        inside = [t for t in history[: i + 1] if now - t <= period]
        verdicts.append(len(inside) <= intensity)
    return verdicts


@given(
    gaps=st.lists(
        st.one_of(
            st.sampled_from([0.0, 0.25, 0.5, 1.0, 2.0, 5.0]),
            st.floats(0, 20, allow_nan=False, allow_infinity=False),
        ),
        max_size=30,
    ),
    intensity=st.integers(0, 5),
    period=st.sampled_from([0.5, 1.0, 2.0, 5.0, 10.0]),
)
def test_the_window_agrees_with_a_brute_force_count(
    gaps: list[float], intensity: int, period: float
) -> None:
    """R22/R23: over any history of restarts, each verdict equals the brute-force count."""
    history: list[float] = []
    now = 0.0
    for gap in gaps:
        now += gap
        history.append(now)
    w = RestartWindow(intensity, period)
    assert [w.add(t) for t in history] == brute_force(history, intensity, period)
