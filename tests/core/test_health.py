"""Liveness in the core (issue 12): ``Unhealthy`` makes a running service's end a crash,
and a one-shot step (``ready = { exited = true }``) is started by its normal exit."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from support.specs import FAST, root, svc

from otree.core import actions as act
from otree.core import events as ev
from otree.core.engine import Engine
from otree.core.spec import ReadyExited, Restart, Strategy, Supervisor, walk
from otree.testing import crash_schedules, simulate, supervisors


def reports(actions: list[act.Action]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(a.event, a.path, a.fields) for a in actions if isinstance(a, act.Report)]


def test_unhealthy_stops_with_the_stop_sequence_and_the_end_is_a_crash() -> None:
    """Exit code 0 after the stop: still abnormal, reason unhealthy; one_for_all restarts
    the sibling too, and the restart counts in the window (R-intensity)."""
    tree = root(svc("db"), svc("api"), strategy="one_for_all", intensity=1)
    eng = Engine(tree)
    eng.start(0.0)
    eng.handle(ev.Spawned("db", 10), 0.0)
    eng.handle(ev.Spawned("api", 11), 0.0)
    out = eng.handle(ev.Unhealthy("api", 11, "http 503", 3), 1.0)
    assert reports(out) == [
        ("unhealthy", "api", {"pid": 11, "reason": "http 503", "failures": 3}),
        ("stop", "api", {"pid": 11}),
    ]
    assert [type(a) for a in out if not isinstance(a, act.Report)] == [act.Signal, act.SetTimer]
    out = eng.handle(ev.Exited("api", 11, code=0), 1.5)
    events = reports(out)
    assert events[0] == (
        "exit",
        "api",
        {"pid": 11, "code": 0, "reason": "unhealthy", "normal": False},
    )
    assert ("restart", "", {"strategy": Strategy.ONE_FOR_ALL, "child": "api"}) in [
        (n, p, {k: f[k] for k in ("strategy", "child")}) for n, p, f in events if n == "restart"
    ]
    assert ("stop", "db", {"pid": 10}) in events  # the sibling goes down too


def test_stale_unhealthy_is_dropped() -> None:
    tree = root(svc("api"))
    eng = Engine(tree)
    eng.start(0.0)
    eng.handle(ev.Spawned("api", 11), 0.0)
    assert eng.handle(ev.Unhealthy("api", 99, "tcp refused", 3), 1.0) == []  # another PID
    eng.handle(ev.Command("stop", "api"), 1.0)  # being stopped by the user
    assert reports(eng.handle(ev.Unhealthy("api", 11, "tcp refused", 3), 1.1)) == []
    out = eng.handle(ev.Exited("api", 11, signal="TERM"), 1.2)
    assert reports(out)[0] == ("exit", "api", {"pid": 11, "signal": "TERM", "normal": True})


def test_unhealthy_while_already_unhealthy_stopping_is_dropped() -> None:
    eng = Engine(root(svc("api")))
    eng.start(0.0)
    eng.handle(ev.Spawned("api", 11), 0.0)
    assert reports(eng.handle(ev.Unhealthy("api", 11, "watchdog"), 1.0))[0][0] == "unhealthy"
    assert eng.handle(ev.Unhealthy("api", 11, "watchdog"), 1.1) == []


def test_always_unhealthy_gives_up_and_the_root_exits_1() -> None:
    tree = root(svc("api"), intensity=2, period=10)
    schedule = [(t, "api", "unhealthy") for t in (1.0, 2.0, 3.0, 4.0)]
    trace = simulate(tree, schedule)
    assert trace.count("unhealthy", "api") == 3  # the third is over the intensity
    assert trace.gave_up("")
    assert trace.exit_code == 1
    exits = trace.filter("exit", "api")
    assert all(e["normal"] is False and e["reason"] == "unhealthy" for e in exits[:3])


def test_a_transient_service_is_restarted_after_unhealthy() -> None:
    trace = simulate(root(svc("job", restart="transient")), [(1.0, "job", "unhealthy")])
    assert trace.count("spawn", "job") == 2


def test_one_shot_gates_the_next_sibling_and_stays_exited() -> None:
    migrate = svc("migrate", restart="transient", ready=ReadyExited())
    eng = Engine(root(migrate, svc("web")))
    out = eng.start(0.0)
    assert [a.path for a in out if isinstance(a, act.Spawn)] == ["migrate"]
    eng.handle(ev.Spawned("migrate", 10), 0.0)
    assert eng.handle(ev.Ready("migrate", 10), 0.1) == []  # no probe starts it
    out = eng.handle(ev.Exited("migrate", 10, code=0), 5.0)
    assert [(n, p) for n, p, _ in reports(out)] == [
        ("spawn", "migrate"),
        ("ready", "migrate"),
        ("exit", "migrate"),
    ]
    assert [a.path for a in out if isinstance(a, act.Spawn)] == ["web"]
    out = eng.handle(ev.Spawned("web", 11), 5.0)
    assert ("tree_ready", "") in [(n, p) for n, p, _ in reports(out)]
    states = {s.path: s.state for s in eng.status(5.0)}
    assert states["migrate"] == "exited"


def test_one_shot_abnormal_exit_is_a_start_failure() -> None:
    eng = Engine(root(svc("migrate", restart="transient", ready=ReadyExited()), svc("web")))
    eng.start(0.0)
    eng.handle(ev.Spawned("migrate", 10), 0.0)
    out = eng.handle(ev.Exited("migrate", 10, code=2), 1.0)
    assert ("start_failed", "migrate") in [(n, p) for n, p, _ in reports(out)]
    assert any(isinstance(a, act.Exit) and a.code == 3 for a in out)


def _restarts_within(trace_events: list[dict[str, Any]], sup: Supervisor, path: str) -> bool:
    """No window of ``period`` holds more than ``intensity`` restarts by ``path`` within
    one run of it (a give-up of it, or a restart decided above it, may begin a new run
    with a new window, as in OTP)."""
    times: list[float] = []
    for e in trace_events:
        above = e["path"] != path and (path.startswith(e["path"] + ".") or e["path"] == "")
        if (e["event"] == "give_up" and e["path"] == path) or (
            e["event"] in ("restart", "give_up") and above
        ):
            times = []
        elif e["event"] == "restart" and e["path"] == path:
            times.append(e["ts"])
            if len([u for u in times if e["ts"] - u <= sup.period]) > sup.intensity:
                return False
    return True


@FAST
@given(st.data())
def test_no_schedule_of_crashes_and_unhealthy_restarts_past_the_intensity(
    data: st.DataObject,
) -> None:
    """Whatever mix of crashes and unhealthy reports: a supervisor restarts at most
    ``intensity`` times in any ``period``, and gives up rather than restart once more."""
    tree = data.draw(supervisors(max_depth=2, max_children=3, backoff=False), label="tree")
    hows = ("crash", "unhealthy", "kill")
    schedule = data.draw(crash_schedules(tree, max_crashes=20, within=30.0, hows=hows))
    trace = simulate(tree, schedule, stop=True)
    sups: list[tuple[str, Supervisor]] = [("", tree)]
    sups += [(p, n) for p, n in walk(tree) if isinstance(n, Supervisor)]
    for path, sup in sups:
        assert _restarts_within(trace.events, sup, path), trace.format(80)


def test_the_restart_type_still_decides() -> None:
    """A temporary service that is unhealthy is stopped and stays exited."""
    trace = simulate(
        root(svc("tmp", restart=Restart.TEMPORARY), svc("other")), [(1.0, "tmp", "unhealthy")]
    )
    assert trace.count("spawn", "tmp") == 1
    assert trace.filter("exit", "tmp")[0]["reason"] == "unhealthy"
