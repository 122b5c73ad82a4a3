"""Pools (``replicas = N``, issue 14): the instances' specs and their supervision."""

from __future__ import annotations

import pytest

from otree.core.engine import Engine
from otree.core.pool import instance_spec, services
from otree.core.spec import Log, Service, Supervisor, check_tree
from otree.errors import ConfigError
from otree.testing import simulate


def steps(trace, since: float = 0.0) -> list[tuple[float, str, str]]:  # type: ignore[no-untyped-def]
    return [(e["ts"], e["event"], e["path"]) for e in trace.events if e["ts"] >= since]


def pool(n: int, **kw: object) -> Supervisor:
    return Supervisor("root", children=[Service("w", cmd="run ${OTREE_REPLICA}", replicas=n, **kw)])


def test_an_instance_is_the_service_with_its_index() -> None:
    svc = Service(
        "w",
        cmd="run --id ${OTREE_REPLICA}",
        env={"A": "x${OTREE_REPLICA}", "OTREE_REPLICA": "mine"},
        cwd="/srv/${OTREE_REPLICA}",
        replicas=4,
        intensity=9,
        log=Log(file="logs/w.log"),
    )
    spec = instance_spec(svc, 2)
    assert spec.name == "2"
    assert spec.cmd == ("run", "--id", "2")
    assert spec.environ == {"A": "x2", "OTREE_REPLICA": "2"}
    assert spec.cwd == "/srv/2"
    assert spec.log is not None and spec.log.file == "logs/w.2.log"
    assert (spec.replicas, spec.intensity, spec.period) == (None, None, None)
    named = Service("w", cmd="x", replicas=1, log=Log(file="w-${OTREE_REPLICA}"))
    assert instance_spec(named, 0).log == Log(file="w-0")


def test_services_lists_the_instances_in_place_of_the_pool() -> None:
    tree = Supervisor("root", children=[Service("a", cmd="x"), Service("w", cmd="x", replicas=2)])
    assert [p for p, _ in services(tree)] == ["a", "w.0", "w.1"]


def test_the_engine_builds_a_pool_node_with_its_instances() -> None:
    eng = Engine(pool(3))
    eng.start(0.0)
    rows = {s.path: s for s in eng.status(0.0)}
    assert list(rows) == ["", "w", "w.0", "w.1", "w.2"]
    assert (rows["w"].kind, rows["w"].replicas) == ("pool", 3)
    assert rows["w.0"].kind == "service" and rows["w.0"].replicas is None


def test_instances_start_in_index_order_and_stop_from_the_highest() -> None:
    trace = simulate(pool(3), stop=True, until=1.0)
    spawns = [p for _, e, p in steps(trace) if e == "spawn"]
    stops = [p for _, e, p in steps(trace) if e == "stop"]
    assert spawns == ["w.0", "w.1", "w.2"]
    assert stops == ["w.2", "w.1", "w.0"]


def test_a_crash_of_one_instance_restarts_only_it() -> None:
    trace = simulate(pool(3), [(1.0, "w.1", "crash")])
    assert steps(trace, since=1.0) == [
        (1.0, "exit", "w.1"),
        (1.0, "restart", "w"),
        (1.0, "spawn", "w.1"),
        (1.0, "ready", "w.1"),
    ]
    restart = next(e for e in trace.events if e["event"] == "restart")
    assert restart["child"] == "w.1" and restart["strategy"] == "one_for_one"


def test_the_pools_own_window_gives_up_and_escalates_to_its_parent() -> None:
    tree = Supervisor(
        "root",
        intensity=5,
        children=[Service("db", cmd="x"), Service("w", cmd="x", replicas=3, intensity=1)],
    )
    trace = simulate(tree, [(1.0, "w.1", "crash"), (2.0, "w.2", "crash")])
    assert trace.gave_up("w") and not trace.gave_up("")
    assert steps(trace, since=2.0)[:7] == [
        (2.0, "exit", "w.2"),
        (2.0, "give_up", "w"),
        (2.0, "stop", "w.1"),
        (2.0, "exit", "w.1"),
        (2.0, "stop", "w.0"),
        (2.0, "exit", "w.0"),
        (2.0, "restart", ""),
    ]
    assert trace.count("spawn", "db") == 1  # one_for_one at the root: db keeps its process


def test_zero_replicas_is_a_running_pool_with_nothing_to_start() -> None:
    trace = simulate(pool(0), until=1.0)
    assert [e["event"] for e in trace.events] == ["tree_ready"]


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"replicas": -1}, "w.replicas: expected an integer >= 0, got -1"),
        ({"replicas": 2.5}, "w.replicas: expected an integer >= 0, got 2.5"),
        ({"replicas": 10_001}, "w.replicas: must be at most 10000, got 10001"),
        ({"intensity": 3}, "w.intensity: 'intensity' on a service goes with 'replicas'"),
        ({"period": 3}, "w.period: 'period' on a service goes with 'replicas'"),
    ],
)
def test_bad_pool_fields(kw: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        check_tree(Supervisor("root", children=[Service("w", cmd="x", **kw)]))
    assert message in str(info.value)


def test_a_pool_cannot_be_significant() -> None:
    tree = Supervisor(
        "root",
        auto_shutdown="any_significant",
        children=[Service("w", cmd="x", restart="transient", significant=True, replicas=2)],
    )
    with pytest.raises(ConfigError, match=r"w\.significant: a pool cannot be significant"):
        check_tree(tree)


# --- scale -----------------------------------------------------------------------


def test_scale_up_starts_in_index_order_each_once_the_one_before_is_ready() -> None:
    from otree.core.spec import ReadyDelay

    tree = Supervisor("root", children=[Service("w", cmd="x", replicas=1, ready=ReadyDelay(1.0))])
    trace = simulate(tree, [(5.0, "w", "scale:3")])
    assert steps(trace, since=5.0) == [
        (5.0, "scale", "w"),
        (6.0, "spawn", "w.1"),
        (6.0, "ready", "w.1"),
        (7.0, "spawn", "w.2"),
        (7.0, "ready", "w.2"),
    ]
    scale = next(e for e in trace.events if e["event"] == "scale")
    assert (scale["from"], scale["to"]) == (1, 3)
    assert trace.count("restart", "w") == 0  # not a restart


def test_scale_down_stops_from_the_highest_index_and_the_rest_keep_their_pids() -> None:
    trace = simulate(pool(4), [(1.0, "w", "scale:1")])
    assert steps(trace, since=1.0) == [
        (1.0, "scale", "w"),
        (1.0, "stop", "w.3"),
        (1.0, "exit", "w.3"),
        (1.0, "stop", "w.2"),
        (1.0, "exit", "w.2"),
        (1.0, "stop", "w.1"),
        (1.0, "exit", "w.1"),
    ]
    assert trace.count("spawn", "w.0") == 1


def test_a_crash_during_a_scale_waits_its_turn() -> None:
    """R38: the exit of w.0 is handled once the scale's plan is done."""
    from otree.core.spec import ReadyDelay

    tree = Supervisor("root", children=[Service("w", cmd="x", replicas=1, ready=ReadyDelay(1.0))])
    trace = simulate(tree, [(5.0, "w", "scale:3"), (5.5, "w.0", "crash")])
    assert steps(trace, since=5.5) == [
        (5.5, "exit", "w.0"),
        (6.0, "spawn", "w.1"),
        (6.0, "ready", "w.1"),
        (7.0, "spawn", "w.2"),
        (7.0, "ready", "w.2"),
        (7.0, "restart", "w"),
        (8.0, "spawn", "w.0"),
        (8.0, "ready", "w.0"),
    ]


def test_scale_takes_no_intensity_entry() -> None:
    tree = Supervisor("root", children=[Service("w", cmd="x", replicas=1, intensity=0)])
    schedule = [(float(t), "w", f"scale:{n}") for t, n in enumerate([3, 0, 5, 2, 4], 1)]
    trace = simulate(tree, schedule)
    assert not trace.gave_up("w")
    assert trace.count("scale", "w") == 5


def test_scale_replies_and_status_shows_the_new_size() -> None:
    from otree.testing import Simulation

    sim = Simulation(pool(2))
    sim.run(until=1.0)
    reply = sim.command("scale", "w", 5)
    assert reply is not None and reply.ok
    assert sorted(sim.running()) == [f"w.{i}" for i in range(5)]
    rows = {s.path: s for s in sim.engine.status(sim.now)}  # type: ignore[attr-defined]
    assert rows["w"].replicas == 5 and list(rows)[-1] == "w.4"


@pytest.mark.parametrize(
    ("path", "count", "message"),
    [
        ("w.0", 2, "'w.0': not a pool"),
        ("nope", 2, "'nope': no node"),
        ("w", -1, "the count must be an integer >= 0, got -1"),
        ("w", 10_001, "the count must be at most 10000, got 10001"),
    ],
)
def test_bad_scale_is_refused_and_nothing_changes(path: str, count: int, message: str) -> None:
    from otree.testing import Simulation

    sim = Simulation(pool(2))
    sim.run(until=1.0)
    before = sim.running()
    reply = sim.command("scale", path, count)
    assert reply is not None and not reply.ok and message in (reply.error or "")
    assert sim.running() == before


def test_a_stopped_pool_takes_its_new_size_at_its_next_start() -> None:
    from otree.testing import Simulation

    sim = Simulation(pool(2))
    sim.run(until=1.0)
    assert sim.command("stop", "w").ok  # type: ignore[union-attr]
    assert sim.command("scale", "w", 3).ok  # type: ignore[union-attr]
    assert sim.running() == {}
    assert sim.command("start", "w").ok  # type: ignore[union-attr]
    assert sorted(sim.running()) == ["w.0", "w.1", "w.2"]


def test_instance_spec_finishes_the_pending_expansion_with_its_path() -> None:
    """The loader leaves ``${OTREE_REPLICA}``, ``${OTREE_PATH}`` and ``$$`` (pending form,
    ``otree.core.expand``); each instance finishes them once."""
    svc = Service(
        "w",
        cmd=["run", "${OTREE_PATH}", "$$${OTREE_REPLICA}", "${OTREE_REPLICA:-x}"],
        user="u${OTREE_REPLICA}",
        replicas=3,
    )
    spec = instance_spec(svc, 2, "jobs.w")
    assert spec.cmd == ("run", "jobs.w.2", "$2", "2")
    assert spec.user == "u2"
    # without a path (a caller that has none), ${OTREE_PATH} stays as written
    assert instance_spec(svc, 1).cmd == ("run", "${OTREE_PATH}", "$1", "1")
