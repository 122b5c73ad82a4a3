"""``otree reload --dry-run``'s plan: the reload's own reconciliation on a scratch engine."""

from __future__ import annotations

from support.specs import root, sup, svc

from otree.core import snapshot
from otree.core.engine import Engine
from otree.core.plan import reload_plan
from otree.testing import Simulation

OLD = root(
    svc("db", shutdown=5.0),
    sup("web", svc("api"), svc("worker"), strategy="one_for_all"),
    svc("cron"),
    svc("w", replicas=2),
)
NEW = root(
    svc("db", shutdown=12.0, stop_signal="INT"),
    sup("web", svc("api", "api --v2"), svc("worker"), strategy="one_for_all"),
    svc("w", replicas=3),
    sup("batch", svc("b")),
)


def test_the_plan_says_what_resume_would_do_and_changes_nothing() -> None:
    sim = Simulation(OLD)
    pids = sim.running()
    engine = sim.engine
    assert isinstance(engine, Engine)
    before = snapshot.snapshot(engine)

    plan = reload_plan(engine, NEW, sim.now)

    assert snapshot.snapshot(engine) == before  # the running engine is untouched
    assert plan == {
        "kept": [{"path": p, "pid": pids[p]} for p in ("web.worker", "w.0", "w.1")],
        "updated": [{"path": "db", "pid": pids["db"], "fields": ["stop_signal", "shutdown"]}],
        "restarted": [{"path": "web.api", "pid": pids["web.api"], "fields": ["cmd"]}],
        "stopped": [{"path": "cron", "pid": pids["cron"]}],
        "started": ["w.2", "batch.b"],
    }


def test_a_stopped_service_that_changed_is_neither_kept_nor_restarted() -> None:
    tree = root(svc("a"), svc("t", restart="temporary"))
    sim = Simulation(tree)
    sim.inject("t", "crash")  # temporary: it stays exited
    engine = sim.engine
    assert isinstance(engine, Engine)
    plan = reload_plan(engine, root(svc("a"), svc("t", "t --v2", restart="temporary")), 1.0)
    assert plan["kept"] == [{"path": "a", "pid": sim.running()["a"]}]
    assert plan["restarted"] == plan["stopped"] == plan["started"] == []
