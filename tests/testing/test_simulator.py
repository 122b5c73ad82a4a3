"""Tests of otree.testing itself: the simulator's fake world, Trace, and the strategies."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from support.specs import FAST, svc

from otree.core import actions as act
from otree.core import events as ev
from otree.core.pool import services
from otree.core.spec import (
    Backoff,
    ReadyCmd,
    ReadyDelay,
    ReadyNotify,
    ReadyTcp,
    Restart,
    Service,
    Supervisor,
    walk,
)
from otree.errors import ConfigError
from otree.testing import (
    FAIL_START_REASON,
    HOWS,
    Simulation,
    Trace,
    crash_schedules,
    simulate,
    trees,
)


def lifecycle(trace: Trace) -> list[tuple[float, str, str]]:
    """(ts, event, path) of every event, for exact comparisons."""
    return [(e["ts"], e["event"], e["path"]) for e in trace.events]


# --- the event log format ------------------------------------------------------

#: docs/cli.md "Event log": the extra fields of each event
FIELDS: dict[str, set[str]] = {
    "spawn": {"pid"},
    "ready": {"pid"},
    "stop": {"pid"},
    "unhealthy": {"pid", "reason", "failures"},
    "restart": {"strategy", "child", "count", "intensity", "period"},
    "give_up": {"restarts", "period"},
    "start_failed": {"reason"},
    "adopt": {"pid"},
    "reexec": {"reason"},
    "auto_shutdown": {"child"},
    "tree_ready": set(),
    "tree_stopped": {"exit_code"},
}
SERVICE_EVENTS = {"spawn", "ready", "exit", "stop", "unhealthy", "adopt", "start_failed"}
SUPERVISOR_EVENTS = {"restart", "give_up", "auto_shutdown"}


def check_event_format(tree: Supervisor, trace: Trace) -> None:
    # a pool (a service with replicas) is a supervisor of its instances
    kinds: dict[str, type] = {
        p: Supervisor if isinstance(n, Service) and n.replicas is not None else type(n)
        for p, n in walk(tree)
    }
    kinds.update((p, Service) for p, _ in services(tree))
    last = 0.0
    for e in trace.events:
        name = e["event"]
        extra = set(e) - {"ts", "event", "path"}
        if name == "exit":
            how = (
                {"pid", "normal", "reason"} if e.get("reason") == "unhealthy" else {"pid", "normal"}
            )
            assert extra in (how | {"code"}, how | {"signal"}), e
            assert isinstance(e["normal"], bool)
            assert e["normal"] is False or "reason" not in e, e
            if "signal" in e:
                assert not e["signal"].startswith("SIG")
        else:
            assert name in FIELDS, e
            assert extra == FIELDS[name], e
        if name in SERVICE_EVENTS:
            assert kinds[e["path"]] is Service, e
        elif name in SUPERVISOR_EVENTS:
            assert e["path"] == "" or kinds[e["path"]] is Supervisor, e
        else:
            assert e["path"] == "", e
        if "pid" in e:
            assert isinstance(e["pid"], int) and e["pid"] >= 100
        assert e["ts"] >= last
        last = e["ts"]


@FAST
@given(st.data())
def test_events_have_exactly_the_event_log_fields(data: st.DataObject) -> None:
    tree = data.draw(trees(max_depth=3, max_children=3), label="tree")
    schedule = data.draw(crash_schedules(tree, max_crashes=10, hows=HOWS), label="schedule")
    trace = simulate(tree, schedule, stop=True)
    check_event_format(tree, trace)
    if trace.exit_code is not None:
        assert trace.events[-1]["event"] == "tree_stopped"
        assert trace.events[-1]["exit_code"] == trace.exit_code


@FAST
@given(st.data())
def test_a_simulated_run_is_a_function_of_tree_schedule_and_seed(data: st.DataObject) -> None:
    tree = data.draw(trees(max_depth=2, max_children=3), label="tree")
    schedule = data.draw(crash_schedules(tree, max_crashes=8, hows=HOWS), label="schedule")
    seed = data.draw(st.integers(0, 2**32), label="seed")
    assert simulate(tree, schedule, seed=seed).events == simulate(tree, schedule, seed=seed).events


# --- the fake world ------------------------------------------------------------


def test_start_crash_and_restart_with_fake_pids_and_clock() -> None:
    tree = Supervisor("root", children=[svc("db"), svc("api")])
    trace = simulate(tree, [(1.5, "api", "crash")])
    assert lifecycle(trace) == [
        (0.0, "spawn", "db"),
        (0.0, "ready", "db"),
        (0.0, "spawn", "api"),
        (0.0, "ready", "api"),
        (0.0, "tree_ready", ""),
        (1.5, "exit", "api"),
        (1.5, "restart", ""),
        (1.5, "spawn", "api"),
        (1.5, "ready", "api"),
    ]
    assert trace.pids("db") == [100]
    assert trace.pids("api") == [101, 102]
    assert trace.filter("exit")[0] == {
        "ts": 1.5,
        "event": "exit",
        "path": "api",
        "pid": 101,
        "code": 1,
        "normal": False,
    }
    assert trace.running() == {"db": 100, "api": 102}
    assert trace.exit_code is None  # not stopped automatically


@pytest.mark.parametrize(
    ("how", "fields"),
    [
        ("crash", {"code": 1, "normal": False}),
        ("exit0", {"code": 0, "normal": True}),
        ("kill", {"signal": "KILL", "normal": False}),
    ],
)
def test_each_way_a_process_can_end(how: str, fields: dict[str, Any]) -> None:
    tree = Supervisor("root", children=[svc("a", restart=Restart.TEMPORARY)])
    trace = simulate(tree, [(1.0, "a", how)])
    (exit_event,) = trace.filter("exit", "a")
    assert {k: v for k, v in exit_event.items() if k in ("code", "signal", "normal")} == fields
    assert trace.running() == {}


def test_a_schedule_item_for_a_path_with_no_process_does_nothing() -> None:
    tree = Supervisor("root", children=[svc("a", restart=Restart.TEMPORARY), svc("b")])
    trace = simulate(tree, [(1.0, "a", "crash"), (2.0, "a", "crash"), (3.0, "a", "kill")])
    assert trace.count("exit", "a") == 1
    sim = Simulation(tree)
    assert sim.inject("a", "exit0") is True
    assert sim.inject("a", "exit0") is False


def test_the_schedule_is_sorted_and_same_instant_items_keep_their_order() -> None:
    tree = Supervisor("root", intensity=10, children=[svc("a"), svc("b")])
    trace = simulate(tree, [(2.0, "b", "crash"), (1.0, "b", "crash"), (1.0, "a", "crash")])
    exits = [(e["ts"], e["path"]) for e in trace.filter("exit")]
    assert exits == [(1.0, "b"), (1.0, "a"), (2.0, "b")]


def test_ready_delay_holds_back_the_next_sibling() -> None:
    tree = Supervisor(
        "root", children=[svc("db", ready=ReadyDelay(2.5)), svc("api", ready=ReadyDelay(0))]
    )
    trace = simulate(tree)
    assert lifecycle(trace) == [
        (2.5, "spawn", "db"),
        (2.5, "ready", "db"),
        (2.5, "spawn", "api"),
        (2.5, "ready", "api"),
        (2.5, "tree_ready", ""),
    ]


@pytest.mark.parametrize(
    "ready", [ReadyTcp("127.0.0.1:1"), ReadyNotify(), ReadyCmd(["true"])], ids=repr
)
def test_other_readiness_checks_pass_at_once(ready: Any) -> None:
    trace = simulate(Supervisor("root", children=[svc("a", ready=ready)]))
    assert [e["ts"] for e in trace.filter("ready")] == [0.0]


def test_a_process_dying_before_its_ready_delay_is_a_start_failure() -> None:
    tree = Supervisor("root", children=[svc("a", ready=ReadyDelay(5))])
    trace = simulate(tree, [(1.0, "a", "crash")])
    assert trace.count("spawn") == 0
    assert trace.count("start_failed", "a") == 1
    assert trace.exit_code == 3


def test_fail_start_fails_the_next_spawn_only() -> None:
    tree = Supervisor("root", children=[svc("a")])
    trace = simulate(tree, [(1.0, "a", "fail_start"), (2.0, "a", "crash")])
    (failed,) = trace.filter("start_failed")
    assert failed == {
        "ts": 2.0,
        "event": "start_failed",
        "path": "a",
        "reason": FAIL_START_REASON,
    }
    assert trace.count("restart", "") == 2  # the retry is counted as a restart too
    assert trace.running() == {"a": trace.pids("a")[-1]}


def test_fail_start_before_the_initial_start_fails_the_tree() -> None:
    tree = Supervisor("root", children=[svc("a"), svc("b")])
    sim = Simulation(tree, start=False)
    sim.inject("b", "fail_start")
    sim.start()
    assert sim.trace.exit_code == 3
    assert [(e["event"], e["path"]) for e in sim.trace.events] == [
        ("spawn", "a"),
        ("ready", "a"),
        ("start_failed", "b"),
        ("stop", "a"),
        ("exit", "a"),
        ("tree_stopped", ""),
    ]
    assert "b" in (sim.trace.exit_message or "")


def test_hang_on_stop_is_killed_after_shutdown_seconds() -> None:
    tree = Supervisor("root", children=[svc("a", shutdown=3), svc("b")])
    trace = simulate(tree, [(1.0, "a", "hang_on_stop")], until=10.0, stop=True)
    assert lifecycle(trace)[-5:] == [
        (10.0, "stop", "b"),
        (10.0, "exit", "b"),
        (10.0, "stop", "a"),
        (13.0, "exit", "a"),
        (13.0, "tree_stopped", ""),
    ]
    assert trace.filter("exit", "a")[0]["signal"] == "KILL"
    assert trace.filter("exit", "b")[0]["signal"] == "TERM"


def test_hang_on_stop_with_infinity_never_ends() -> None:
    tree = Supervisor("root", children=[svc("a", shutdown="infinity")])
    trace = simulate(tree, [(1.0, "a", "hang_on_stop")], until=5.0, stop=True)
    assert trace.filter("stop")[0]["ts"] == 5.0
    assert trace.count("exit") == 0
    assert trace.running() == {"a": 100}
    assert trace.exit_code is None


def test_hang_on_stop_without_a_process_marks_the_next_one() -> None:
    tree = Supervisor("root", children=[svc("a", shutdown=2, restart=Restart.TRANSIENT)])
    sim = Simulation(tree)
    sim.inject("a", "exit0")  # stays stopped (transient, normal exit)
    sim.inject("a", "hang_on_stop")
    sim.command("start", "a")
    sim.advance(1).command("stop", "a")
    assert sim.running() == {"a": 101}
    sim.advance(2)
    assert sim.running() == {}
    assert sim.trace.filter("exit", "a")[-1]["ts"] == 3.0


def test_brutal_kill_needs_no_hang() -> None:
    tree = Supervisor("root", children=[svc("a", shutdown="brutal_kill")])
    trace = simulate(tree, [(1.0, "a", "hang_on_stop")], until=2.0, stop=True)
    assert trace.filter("exit", "a")[0]["ts"] == 2.0
    assert trace.filter("exit", "a")[0]["signal"] == "KILL"


def test_backoff_delays_the_restart_on_the_fake_clock() -> None:
    backoff = Backoff(initial=1.0, factor=2.0, max=30.0, jitter=0.0)
    tree = Supervisor("root", intensity=10, children=[svc("a", backoff=backoff)])
    trace = simulate(tree, [(10.0, "a", "crash"), (20.0, "a", "crash"), (30.0, "a", "crash")])
    assert [e["ts"] for e in trace.filter("spawn", "a")] == [0.0, 11.0, 22.0, 34.0]
    assert [e["ts"] for e in trace.filter("restart")] == [10.0, 20.0, 30.0]


def test_until_cuts_the_run_and_stop_shuts_the_tree_down() -> None:
    backoff = Backoff(initial=5.0, jitter=0.0)
    tree = Supervisor("root", children=[svc("a", backoff=backoff)])
    trace = simulate(tree, [(1.0, "a", "crash")], until=3.0)
    assert trace.count("spawn", "a") == 1
    assert trace.running() == {}
    trace = simulate(tree, [(1.0, "a", "crash")], until=10.0, stop=True)
    assert trace.count("spawn", "a") == 2
    assert trace.exit_code == 0
    assert trace.running() == {}
    assert trace.stopped


def test_schedule_items_after_until_are_ignored() -> None:
    tree = Supervisor("root", children=[svc("a")])
    trace = simulate(tree, [(1.0, "a", "crash"), (50.0, "a", "crash")], until=10.0)
    assert trace.count("exit") == 1


def test_the_run_ends_when_the_root_gives_up() -> None:
    tree = Supervisor("root", intensity=1, period=5, children=[svc("a")])
    trace = simulate(tree, [(1.0, "a", "crash"), (2.0, "a", "crash"), (3.0, "a", "crash")])
    assert trace.gave_up("")
    assert trace.exit_code == 1
    assert trace.count("exit", "a") == 2
    assert trace.filter("give_up") == [
        {"ts": 2.0, "event": "give_up", "path": "", "restarts": 2, "period": 5.0}
    ]


@pytest.mark.parametrize(
    ("schedule", "message"),
    [
        ([(1.0, "nope", "crash")], "schedule[0]: 'nope' is not a service of the tree"),
        ([(1.0, "a", "explode")], "schedule[0]: how must be one of crash, exit0, kill"),
        ([(0.0, "a", "crash"), (-1, "a", "crash")], "schedule[1]: at_seconds must be"),
        ([(1.0, "a")], "schedule[0]: expected (at_seconds, path, how)"),
        ([(1.0, "", "crash")], "schedule[0]: '' is not a service"),
    ],
)
def test_bad_schedules_are_refused_with_the_item(schedule: Any, message: str) -> None:
    tree = Supervisor("root", children=[svc("a")])
    with pytest.raises(ValueError) as info:
        simulate(tree, schedule)
    assert str(info.value).startswith(message)


def test_an_invalid_tree_is_refused() -> None:
    tree = Supervisor("root", children=[svc("a"), svc("a")])
    with pytest.raises(ConfigError, match="duplicate name"):
        simulate(tree)


# --- Simulation step by step ------------------------------------------------------


def test_simulation_steps_and_commands() -> None:
    tree = Supervisor("root", children=[svc("a"), Supervisor("s", children=[svc("b")])])
    sim = Simulation(tree)
    assert sim.now == 0.0 and sim.running() == {"a": 100, "s.b": 101}
    sim.at(2.0)
    reply = sim.command("stop", "s")
    assert reply is not None and reply.ok
    assert sim.running() == {"a": 100}
    reply = sim.command("start", "a")
    assert reply is not None and not reply.ok and reply.error
    reply = sim.command("restart", "s")
    assert reply is not None and reply.ok
    assert sim.running() == {"a": 100, "s.b": 102}
    sim.advance(1.0)
    assert sim.now == 3.0
    with pytest.raises(ValueError, match="back in time"):
        sim.at(1.0)
    with pytest.raises(ValueError, match="not a service"):
        sim.inject("s", "crash")
    with pytest.raises(ValueError, match="how must be one of"):
        sim.inject("a", "boom")
    sim.command("shutdown")
    assert sim.done and sim.trace.exit_code == 0
    assert sim.command("start", "a") is None
    assert sim.inject("a", "crash") is False
    with pytest.raises(RuntimeError):
        sim.start()


def test_trace_helpers_and_repr() -> None:
    tree = Supervisor(
        "root", intensity=0, children=[Supervisor("web", intensity=0, children=[svc("api")])]
    )
    trace = simulate(tree, [(1.0, "web.api", "crash")])
    assert trace.gave_up("web") and trace.gave_up("")
    assert trace.count("give_up") == 2
    assert trace.count("spawn", "web.api") == 1
    assert trace.filter(path="web.api") == [e for e in trace.events if e["path"] == "web.api"]
    assert trace.filter() == trace.events
    text = repr(trace)
    assert text.startswith("<Trace 7 events, exit_code=1, running={}>")
    assert "give_up       web" in text
    assert str(trace) == text
    assert repr(Trace()) == "<Trace 0 events, exit_code=None, running={}>"
    long = Trace()
    long.events = [{"ts": float(i), "event": "spawn", "path": "a", "pid": i} for i in range(300)]
    assert "... 100 earlier events" in long.format(limit=200)


# --- the plumbing, with a throw-away engine --------------------------------------


class TimerEngine:
    """A stand-in engine that only plays with timers, to pin down the timer heap."""

    def __init__(self, tree: Supervisor, rng: Any) -> None:
        self.done = False
        self.exit_code: int | None = None
        self.fired: list[tuple[float, tuple[str, ...]]] = []

    def start(self, now: float) -> list[act.Action]:
        return [
            act.SetTimer(("a",), 5.0),
            act.SetTimer(("b",), 3.0),
            act.SetTimer(("a",), 10.0),  # replaces the first
            act.CancelTimer(("b",)),
            act.SetTimer(("c",), 0.0),
            act.SetTimer(("d",), 2.0),
            act.SetTimer(("e",), 2.0),  # same instant: in the order set
        ]

    def handle(self, event: ev.Event, now: float) -> list[act.Action]:
        assert isinstance(event, ev.TimerFired)
        self.fired.append((now, event.key))
        if event.key == ("a",):
            return [act.Report("tree_stopped", "", {"exit_code": 7}), act.Exit(7)]
        return []


def test_timers_replace_cancel_and_fire_in_order() -> None:
    engines: list[TimerEngine] = []

    def factory(tree: Supervisor, rng: Any) -> TimerEngine:
        engines.append(TimerEngine(tree, rng))
        return engines[-1]

    tree = Supervisor("root", children=[svc("a")])
    sim = Simulation(tree, engine_factory=factory)
    assert engines[0].fired == [(0.0, ("c",))]
    assert sim.next_timer() == 2.0
    sim.run()
    assert engines[0].fired == [(0.0, ("c",)), (2.0, ("d",)), (2.0, ("e",)), (10.0, ("a",))]
    assert sim.done and sim.trace.exit_code == 7
    assert sim.trace.events == [{"ts": 10.0, "event": "tree_stopped", "path": "", "exit_code": 7}]
