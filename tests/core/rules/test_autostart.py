"""``autostart = false`` (DESIGN.md "Running a service"; otree: supervisord's ``autostart``).

A service with ``autostart = false`` is *held*: in the tree, shown ``stopped``, not
started with its supervisor, until ``otree start`` (or ``restart``) of it. A group
restart (one_for_all, rest_for_one) leaves a held sibling as it is; once started by
hand it restarts with its group like the others; ``otree stop`` holds it again.
"""

from __future__ import annotations

import attrs
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from support.rules import log_of, mark, started, state, stopped
from support.specs import root, sup, svc

from otree.core import actions as act
from otree.core.pool import services
from otree.core.spec import ReadyDelay, Restart, Service, Supervisor, walk
from otree.testing import Simulation, crash_schedules, simulate, supervisors


def late(name: str, **kw: object) -> Service:
    return svc(name, autostart=False, **kw)


def test_a_held_service_is_stopped_and_the_tree_is_ready_without_it() -> None:
    """[a, b(autostart = false, a slow readiness), c]: a and c start, tree_ready; b stopped."""
    sim = Simulation(root(svc("a"), late("b", ready=ReadyDelay(delay=5.0)), svc("c")))
    assert log_of(sim) == [*started("a", "c"), "tree_ready"]
    assert sim.now == 0.0
    assert state(sim, "b") == ("stopped", None)
    assert set(sim.running()) == {"a", "c"}


def test_otree_start_starts_it_and_it_is_supervised_like_any_other() -> None:
    sim = Simulation(root(svc("a"), late("b")))
    m = mark(sim)
    assert sim.command("start", "b") == act.Reply(1, True, None)
    assert log_of(sim, m) == started("b")
    assert state(sim, "b")[0] == "running"
    m = mark(sim)
    sim.inject("b", "crash")  # permanent: restarted by its strategy
    assert log_of(sim, m) == ["exit b 1 abnormal", "restart <root> b", *started("b")]


def test_otree_restart_of_a_held_service_starts_it() -> None:
    sim = Simulation(root(late("b")))
    m = mark(sim)
    assert sim.command("restart", "b") == act.Reply(1, True, None)
    assert log_of(sim, m) == started("b")


def test_one_for_all_leaves_a_held_sibling_stopped() -> None:
    """a crashes under one_for_all: a and c restart, b (never started) stays stopped."""
    sim = Simulation(root(svc("a"), late("b"), svc("c"), strategy="one_for_all"))
    m = mark(sim)
    sim.inject("a", "crash")
    assert log_of(sim, m) == [
        "exit a 1 abnormal",
        "restart <root> a",
        *stopped("c"),
        *started("a", "c"),
    ]
    assert state(sim, "b") == ("stopped", None)


def test_rest_for_one_leaves_a_held_sibling_after_the_failed_one_stopped() -> None:
    sim = Simulation(root(svc("a"), late("b"), svc("c"), strategy="rest_for_one"))
    m = mark(sim)
    sim.inject("a", "crash")
    assert log_of(sim, m) == [
        "exit a 1 abnormal",
        "restart <root> a",
        *stopped("c"),
        *started("a", "c"),
    ]
    assert state(sim, "b") == ("stopped", None)


def test_one_started_by_hand_restarts_with_its_group() -> None:
    sim = Simulation(root(svc("a"), late("b"), strategy="one_for_all"))
    sim.command("start", "b")
    m = mark(sim)
    sim.inject("a", "crash")
    assert log_of(sim, m) == [
        "exit a 1 abnormal",
        "restart <root> a",
        *stopped("b"),
        *started("a", "b"),
    ]


def test_otree_stop_holds_it_again() -> None:
    """Started, then stopped by hand: the next group restart leaves it stopped (an
    autostart = true service stopped by hand is restarted by its group, as in OTP)."""
    sim = Simulation(root(svc("a"), late("b"), svc("c"), strategy="one_for_all"))
    sim.command("start", "b")
    sim.command("stop", "b")
    sim.command("stop", "c")
    m = mark(sim)
    sim.inject("a", "crash")
    assert log_of(sim, m) == ["exit a 1 abnormal", "restart <root> a", *started("a", "c")]
    assert state(sim, "b") == ("stopped", None)


def test_a_failed_start_by_hand_leaves_it_held() -> None:
    sim = Simulation(root(svc("a"), late("b"), strategy="one_for_all"))
    sim.inject("b", "fail_start")
    reply = sim.command("start", "b")
    assert reply is not None and not reply.ok
    m = mark(sim)
    sim.inject("a", "crash")
    assert log_of(sim, m) == ["exit a 1 abnormal", "restart <root> a", *started("a")]


def test_a_supervisor_restarted_by_its_parent_keeps_what_was_started_by_hand() -> None:
    """web[x, y(autostart = false), z(autostart = false)], y started by hand; the root's
    one_for_all restarts web: y restarts with it, z stays stopped."""
    tree = root(
        svc("db"),
        sup("web", svc("x"), late("y"), late("z")),
        strategy="one_for_all",
    )
    sim = Simulation(tree)
    sim.command("start", "web.y")
    m = mark(sim)
    sim.inject("db", "crash")
    assert log_of(sim, m) == [
        "exit db 1 abnormal",
        "restart <root> db",
        *stopped("web.y", "web.x"),
        *started("db", "web.x", "web.y"),
    ]
    assert state(sim, "web.z") == ("stopped", None)


def test_a_held_significant_child_is_gone_for_all_significant() -> None:
    """all_significant: a held significant child counts as gone (it has no process)."""
    tree = root(
        svc("a", restart=Restart.TRANSIENT, significant=True),
        late("b", restart=Restart.TRANSIENT, significant=True),
        auto_shutdown="all_significant",
    )
    sim = Simulation(tree)
    m = mark(sim)
    sim.inject("a", "exit0")
    assert log_of(sim, m) == ["exit a 0 normal", "auto_shutdown <root> a", "tree_stopped 0"]


def test_a_pool_with_autostart_false_starts_its_instances_on_start() -> None:
    sim = Simulation(root(svc("a"), late("w", replicas=2)))
    assert log_of(sim) == [*started("a"), "tree_ready"]
    assert state(sim, "w") == ("stopped", None)
    m = mark(sim)
    assert sim.command("start", "w") == act.Reply(1, True, None)
    assert log_of(sim, m) == started("w.0", "w.1")
    assert state(sim, "w")[0] == "running"


def _held_paths(tree: Supervisor) -> set[str]:
    """Every process path below an ``autostart = false`` service or pool."""
    held = {p for p, n in walk(tree) if isinstance(n, Service) and not n.autostart}
    return {p for p, _ in services(tree) if any(p == h or p.startswith(h + ".") for h in held)}


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_nothing_ever_spawns_a_service_nobody_started(data: st.DataObject) -> None:
    """Any tree, any faults (crashes, exits, kills, failed starts, hangs) and no command: a
    held service (or pool) is never spawned, whatever restarts, gives up or shuts down."""
    tree = data.draw(supervisors(max_depth=3, max_children=3), label="tree")
    held = _held_paths(tree)
    hows = ("crash", "exit0", "kill", "fail_start", "hang_on_stop")
    schedule = data.draw(crash_schedules(tree, max_crashes=15, within=20.0, hows=hows))
    trace = simulate(tree, schedule, stop=True)
    spawned = {e["path"] for e in trace.events if e["event"] == "spawn"}
    assert not spawned & held, trace.format(40)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_a_service_started_by_hand_is_supervised_as_if_it_autostarted(
    data: st.DataObject,
) -> None:
    """One held service ``late`` beside a random sibling tree, started by hand at once:
    from then on, crashes of anything give the same events as the same tree with
    ``late`` autostarting and declared last (its start came last, after tree_ready).
    Instant starts (no readiness delay, no backoff), so both are quiet at time 0."""
    inner = data.draw(
        supervisors(
            max_depth=2,
            max_children=3,
            root=False,
            name="s",
            backoff=False,
            ready_delays=False,
            pools=False,
        )
    )
    strategy = data.draw(st.sampled_from(["one_for_one", "one_for_all", "rest_for_one"]))
    held = Supervisor("root", strategy=strategy, intensity=3, children=[inner, late("late")])
    plain = attrs.evolve(held, children=[inner, svc("late")])
    schedule = data.draw(crash_schedules(plain, max_crashes=10, within=20.0))
    a = Simulation(held)
    assume(not a.done)  # a start failure of the tree itself (a one-shot's bad exit)
    assert a.command("start", "late") == act.Reply(1, True, None)
    assert state(a, "late")[0] == "running"
    b = Simulation(plain)
    since_a, since_b = mark(a), mark(b)
    for at, path, how in schedule:
        a.at(at)
        b.at(at)
        a.inject(path, how)
        b.inject(path, how)
    assert log_of(a, since_a) == log_of(b, since_b)
