"""Property tests of a tree's restart behaviour, as a user would write them.

The tree: a database, and a one_for_all supervisor of three web workers (a
crash of one worker restarts all three). ``otree.testing.simulate`` runs
the real supervision engine on fake processes and a fake clock, so each
example takes microseconds; Hypothesis draws crash schedules and shrinks any
counterexample to the smallest schedule that breaks the property.

Run with ``pytest examples/test_property.py``.
"""

from __future__ import annotations

from hypothesis import given, settings

from otree import Service, Supervisor
from otree.testing import Simulation, crash_schedules, simulate

WORKERS = ["web.w1", "web.w2", "web.w3"]

tree = Supervisor(
    "root",
    strategy="one_for_one",
    intensity=3,
    period=5,
    children=[
        Service("db", cmd=["postgres", "-D", "data"]),
        Supervisor(
            "web",
            strategy="one_for_all",
            intensity=5,
            period=10,
            children=[Service(name, cmd=["worker", name]) for name in ("w1", "w2", "w3")],
        ),
    ],
)


@settings(max_examples=200, deadline=None)
@given(crash_schedules(tree, max_crashes=20, within=60.0, paths=WORKERS))
def test_worker_crashes_never_restart_the_database(schedule: list[tuple[float, str, str]]) -> None:
    trace = simulate(tree, schedule)
    assert trace.count("spawn", "db") == 1, trace
    # the db is only ever stopped if the whole tree gave up
    assert trace.count("stop", "db") == 0 or trace.gave_up(""), trace


@settings(max_examples=200, deadline=None)
@given(crash_schedules(tree, max_crashes=20, within=60.0, min_gap=2.0))
def test_the_root_never_gives_up_when_crashes_are_2s_apart(
    schedule: list[tuple[float, str, str]],
) -> None:
    # Why it holds: every restart the root counts comes from one crash (of the
    # db, or of a worker that made web give up), and 2 s apart at most 3 fit
    # in its 5 s window. web itself may give up (6 crashes fit in 10 s).
    trace = simulate(tree, schedule)
    assert not trace.gave_up(""), trace
    assert trace.exit_code is None, trace
    assert set(trace.running()) == {"db", *WORKERS}, trace


@settings(max_examples=100, deadline=None)
@given(crash_schedules(tree, max_crashes=10, within=20.0, paths=WORKERS))
def test_after_any_worker_crashes_the_workers_come_back_together(
    schedule: list[tuple[float, str, str]],
) -> None:
    trace = simulate(tree, schedule, stop=True)
    if trace.gave_up(""):
        return
    # one_for_all: the workers are always (re)started as a group, so they
    # were spawned the same number of times
    counts = {trace.count("spawn", w) for w in WORKERS}
    assert len(counts) == 1, trace
    assert trace.exit_code == 0 and trace.running() == {}


def test_a_burst_of_worker_crashes_escalates_to_the_root_step_by_step() -> None:
    sim = Simulation(tree)
    db_pid = sim.running()["db"]
    for _ in range(5):  # five restarts fit in web's window...
        sim.inject("web.w1", "crash")
        sim.advance(0.5)
    assert not sim.trace.gave_up("web")
    sim.inject("web.w2", "crash")  # ...the sixth does not: web gives up, the root restarts it
    assert sim.trace.gave_up("web")
    assert not sim.trace.gave_up("")
    assert sim.running()["db"] == db_pid
    assert set(sim.running()) == {"db", *WORKERS}
