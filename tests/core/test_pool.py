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
