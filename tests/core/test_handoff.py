"""The engine's half of self-reload: snapshot, resume, reconcile (docs/self-reload.md)."""

from __future__ import annotations

import json
from typing import Any

import attrs
import pytest
from support.specs import svc

from otree.core import actions as act
from otree.core import events as ev
from otree.core import snapshot
from otree.core.engine import Engine
from otree.core.spec import Backoff, ReadyCmd, ReadyNotify, Supervisor
from otree.errors import ReexecError
from otree.reload import document


def through_json(snap: snapshot.EngineSnapshot) -> snapshot.EngineSnapshot:
    """The snapshot as the next image reads it: JSON written and read by the handoff."""
    conv = document.converter()
    data = json.loads(json.dumps(conv.unstructure(snap)))
    back: snapshot.EngineSnapshot = conv.structure(data, snapshot.EngineSnapshot)
    assert back == snap
    return back


class World:
    """A tiny driver: every Spawn is answered at once with a fresh PID; stops exit at once."""

    def __init__(self, tree: Supervisor, stubborn: frozenset[str] = frozenset()) -> None:
        self.engine = Engine(tree)
        self.stubborn = stubborn  # paths whose processes ignore the stop signal
        self.now = 0.0
        self.next_pid = 100
        self.live: dict[str, int] = {}
        self.log: list[dict[str, Any]] = []
        self.timers: dict[tuple[str, ...], float] = {}
        self.run(self.engine.start(self.now))

    def run(self, actions: list[act.Action]) -> None:
        queue = list(actions)
        while queue:
            a = queue.pop(0)
            events: list[ev.Event] = []
            if isinstance(a, act.Spawn):
                self.next_pid += 1
                self.live[a.path] = self.next_pid
                events.append(ev.Spawned(a.path, self.next_pid))
            elif isinstance(a, act.Signal) and a.path in self.stubborn:
                pass
            elif isinstance(a, (act.Signal, act.Kill)):
                if self.live.get(a.path) == a.pid:
                    del self.live[a.path]
                sig = a.signal if isinstance(a, act.Signal) else "KILL"
                events.append(ev.Exited(a.path, a.pid, None, sig))
            elif isinstance(a, act.Report):
                self.log.append(a.as_dict())
            elif isinstance(a, act.SetTimer):
                self.timers[a.key] = self.now + a.delay
            elif isinstance(a, act.CancelTimer):
                self.timers.pop(a.key, None)
            for e in events:
                queue.extend(self.engine.handle(e, self.now))

    def advance(self, dt: float) -> None:
        self.now += dt
        for key, due in sorted(self.timers.items(), key=lambda kv: kv[1]):
            if due <= self.now and key in self.timers:
                del self.timers[key]
                self.run(self.engine.handle(ev.TimerFired(key), self.now))

    def crash(self, path: str, code: int = 1) -> None:
        pid = self.live.pop(path)
        self.run(self.engine.handle(ev.Exited(path, pid, code), self.now))

    def reload(self, tree: Supervisor, reason: str = "reload") -> None:
        snap = through_json(snapshot.snapshot(self.engine))
        old, self.engine = self.engine.tree, Engine(tree)
        self.log.clear()
        self.timers.clear()
        self.run(snapshot.resume(self.engine, snap, self.now, reason, old))

    def events(self, *names: str) -> list[tuple[str, str]]:
        return [(e["event"], e["path"]) for e in self.log if not names or e["event"] in names]


def test_unchanged_tree_adopts_every_child_with_the_same_pid() -> None:
    tree = Supervisor("root", children=[svc("a"), Supervisor("s", children=[svc("b")])])
    w = World(tree)
    before = dict(w.live)
    w.reload(tree)
    assert w.live == before
    assert w.events() == [("reexec", ""), ("adopt", "a"), ("adopt", "s.b"), ("tree_ready", "")]
    assert w.log[0]["reason"] == "reload"
    assert [e["pid"] for e in w.log if e["event"] == "adopt"] == [before["a"], before["s.b"]]


def test_a_field_added_by_an_upgrade_restarts_nothing() -> None:
    """The new image compares specs, not the old image's fingerprints: a field this otree
    has and the old one had not (so the old fingerprint lacks it) takes its default on
    both sides, and every child is adopted."""
    tree = Supervisor("root", children=[svc("a"), Supervisor("s", children=[svc("b")])])
    w = World(tree)
    before = dict(w.live)
    snap = snapshot.snapshot(w.engine)
    older = {
        path: attrs.evolve(rec, fp=rec.fp + " (an older otree)") for path, rec in snap.nodes.items()
    }
    w.engine = Engine(tree)
    w.log.clear()
    w.run(snapshot.resume(w.engine, attrs.evolve(snap, nodes=older), w.now, "reload", tree))
    assert w.live == before
    assert [e for e, _ in w.events()].count("adopt") == 2 and not w.events("spawn")


def test_changed_removed_and_new_are_stopped_restarted_and_started_in_order() -> None:
    old = Supervisor("root", children=[svc("a"), svc("b"), svc("c"), svc("gone1"), svc("gone2")])
    new = Supervisor("root", children=[svc("a"), svc("b", "other"), svc("c"), svc("fresh")])
    w = World(old)
    a, b = w.live["a"], w.live["b"]
    w.reload(new)
    assert w.events() == [
        ("reexec", ""),
        ("adopt", "a"),
        ("adopt", "c"),
        ("stop", "gone2"),
        ("exit", "gone2"),
        ("stop", "gone1"),
        ("exit", "gone1"),
        ("stop", "b"),
        ("exit", "b"),
        ("spawn", "b"),
        ("ready", "b"),
        ("spawn", "fresh"),
        ("ready", "fresh"),
        ("tree_ready", ""),
    ]
    assert w.live["a"] == a and w.live["b"] != b
    assert set(w.live) == {"a", "b", "c", "fresh"}
    assert not any(e["event"] == "restart" for e in w.log)


def test_a_supervision_only_change_keeps_the_pid_and_is_an_update() -> None:
    """DESIGN "Observability": a changed ``ready``, ``shutdown`` or ``stop_signal``
    applies in place; the kept process is stopped with its new settings from then on."""
    old = Supervisor("root", children=[svc("a"), svc("b")])
    new = Supervisor(
        "root",
        children=[
            svc("a", ready=ReadyCmd(["pg_isready"]), shutdown=20.0, stop_signal="INT"),
            svc("b"),
        ],
    )
    w = World(old)
    before = dict(w.live)
    w.reload(new)
    assert w.live == before
    assert w.events() == [
        ("reexec", ""),
        ("adopt", "a"),
        ("update", "a"),
        ("adopt", "b"),
        ("tree_ready", ""),
    ]
    assert w.log[2]["fields"] == ["stop_signal", "shutdown", "ready"]
    out = w.engine.handle(ev.Command("stop", "a", 1), w.now)
    assert act.Signal("a", before["a"], "INT") in out
    assert any(isinstance(x, act.SetTimer) and x.delay == 20.0 for x in out)  # its shutdown


def test_reload_changes_are_not_counted_as_restarts() -> None:
    old = Supervisor("root", intensity=0, children=[svc("a")])
    new = Supervisor("root", intensity=0, children=[svc("a", "v2")])
    w = World(old)
    w.reload(new)
    assert w.engine.root.window.times == []
    assert w.engine.exit_code is None and "a" in w.live


def test_restart_window_carries_over_and_counts_after_reload() -> None:
    tree = Supervisor("root", intensity=1, period=10, children=[svc("a")])
    w = World(tree)
    w.advance(1)
    w.crash("a")  # one restart: allowed
    w.reload(tree)
    w.advance(1)
    w.crash("a")  # the second within 10 s: gives up, the window survived the reload
    assert ("give_up", "") in w.events()
    assert w.engine.exit_code == 1


def test_pending_backoff_timer_carries_over_with_the_time_left() -> None:
    tree = Supervisor("root", children=[svc("a", backoff=Backoff(initial=10, max=10, jitter=0))])
    w = World(tree)
    w.advance(1)
    w.crash("a")
    assert "a" not in w.live
    w.advance(4)
    w.reload(tree)
    restart_timers = [k for k in w.timers if k[0] == "restart"]
    assert len(restart_timers) == 1
    assert w.timers[restart_timers[0]] == pytest.approx(11.0)
    w.advance(5.9)
    assert "a" not in w.live
    w.advance(0.2)
    assert "a" in w.live


def test_exited_temporary_child_stays_exited() -> None:
    tree = Supervisor("root", children=[svc("job", restart="temporary"), svc("a")])
    w = World(tree)
    w.crash("job", 0)
    w.reload(tree)
    assert "job" not in w.live
    assert {s.path: s.state for s in w.engine.status(w.now)}["job"] == "exited"


def test_child_that_died_during_the_exec_is_handled_by_its_strategy() -> None:
    tree = Supervisor("root", strategy="one_for_all", children=[svc("a"), svc("b")])
    w = World(tree)
    a = w.live["a"]
    w.reload(tree)
    w.crash("a")  # the runtime reports the exit it finds once it watches the PID again
    assert ("restart", "") in w.events()
    assert w.live["a"] != a


def test_new_supervisor_is_started_as_a_whole() -> None:
    old = Supervisor("root", children=[svc("a")])
    new = Supervisor("root", children=[svc("a"), Supervisor("s", children=[svc("x"), svc("y")])])
    w = World(old)
    w.reload(new)
    assert w.events("spawn") == [("spawn", "s.x"), ("spawn", "s.y")]
    assert w.events()[-1] == ("tree_ready", "")


def test_unknown_snapshot_version_is_an_error_not_a_guess() -> None:
    tree = Supervisor("root", children=[svc("a")])
    with pytest.raises(ReexecError, match="unknown snapshot version 99"):
        snapshot.resume(Engine(tree), snapshot.EngineSnapshot({}, version=99), 0.0, "x", tree)


def test_fatal_reexec_during_the_initial_start_starts_the_children_not_reached_yet() -> None:
    tree = Supervisor("root", children=[svc("a"), Supervisor("s", children=[svc("b"), svc("c")])])
    engine = Engine(tree)
    actions = engine.start(0.0)
    assert [a.path for a in actions if isinstance(a, act.Spawn)] == ["a"]
    engine.handle(ev.Spawned("a", 10), 0.0)  # a is up, s.b is being spawned: then a crash
    snap = through_json(snapshot.snapshot(engine))
    w = World.__new__(World)
    w.stubborn = frozenset()
    w.engine, w.now, w.next_pid, w.live, w.log, w.timers = Engine(tree), 1.0, 200, {"a": 10}, [], {}
    w.run(snapshot.resume(w.engine, snap, 1.0, "fatal: RuntimeError: boom", tree))
    assert w.events("adopt", "spawn", "tree_ready") == [
        ("adopt", "a"),
        ("spawn", "s.b"),
        ("spawn", "s.c"),
        ("tree_ready", ""),
    ]
    assert set(w.live) == {"a", "s.b", "s.c"}


def _spawn_log(w: World, path: str) -> list[tuple[str, int]]:
    return [(e["event"], e["pid"]) for e in w.log if e["path"] == path and "pid" in e]


@pytest.mark.parametrize("how", ["group restart", "start command"])
def test_changed_service_never_runs_twice_while_its_old_process_is_stopping(how: str) -> None:
    """A regression (found by the chaos run): a changed service whose old process ignores
    TERM was spawned anew by a group restart (or a ``start``) during the old one's
    shutdown; the new process must wait until the old one is gone."""
    slow = {"shutdown": 2.0}
    old = Supervisor(
        "root",
        children=[Supervisor("g", strategy="one_for_all", children=[svc("a", **slow), svc("b")])],
    )
    new = Supervisor(
        "root",
        children=[
            Supervisor("g", strategy="one_for_all", children=[svc("a", "v2", **slow), svc("b")])
        ],
    )
    w = World(old, stubborn=frozenset({"g.a"}))
    a = w.live["g.a"]
    w.reload(new)
    assert w.live["g.a"] == a  # still stopping: TERM is ignored for 2 s
    if how == "group restart":
        w.crash("g.b")
    else:
        w.run(w.engine.handle(ev.Command("start", "g.a", 7), w.now))
    assert _spawn_log(w, "g.a") == [("stop", a)], "spawned while the old process runs"
    w.advance(2.0)  # the old process is killed; then the new one goes
    log = _spawn_log(w, "g.a")
    assert log[:2] == [("stop", a), ("exit", a)] and log[2][0] == "spawn", log
    assert w.live["g.a"] != a and len([e for e in log if e[0] == "spawn"]) == 1
    assert w.events("tree_ready") == [("tree_ready", "")]
    assert set(w.live) == {"g.a", "g.b"}


def test_shutdown_while_a_spawn_waits_for_the_old_process_stops_everything() -> None:
    old = Supervisor("root", children=[svc("a", shutdown=2.0), svc("b")])
    new = Supervisor("root", children=[svc("a", "v2", shutdown=2.0), svc("b")])
    w = World(old, stubborn=frozenset({"a"}))
    w.reload(new)
    w.run(w.engine.handle(ev.Command("start", "a", 7), w.now))  # held: the old a runs
    w.run(w.engine.handle(ev.Command("shutdown", "", 8), w.now))
    w.advance(2.0)
    w.advance(2.0)
    assert w.engine.done and w.engine.exit_code == 0
    assert w.live == {}


def test_a_reexec_while_an_old_process_is_stopping_goes_on_stopping_it() -> None:
    """A fatal error during a reload's stops: the next image stops the replaced process
    the same way (its old stop signal and shutdown), and still starts the new one only
    once it has exited; it is never killed out of hand nor run beside its successor."""
    old = Supervisor("root", children=[svc("a", shutdown=2.0, stop_signal="INT"), svc("b")])
    new = Supervisor("root", children=[svc("a", "v2", shutdown=2.0), svc("b")])
    w = World(old, stubborn=frozenset({"a"}))
    a = w.live["a"]
    w.reload(new)
    w.advance(1.0)  # half of its shutdown has gone by
    snap = through_json(snapshot.snapshot(w.engine))
    assert snap.orphans == (snapshot.Orphan("a", a, "INT", 2.0),)
    w.reload(new, reason="fatal: RuntimeError: boom")
    assert [(e["event"], e.get("pid")) for e in w.log if e["path"] == "a"] == [("stop", a)]
    assert w.timers == {("kill", "a", str(a)): w.now + 2.0}
    w.advance(2.0)
    log = _spawn_log(w, "a")
    assert log[:2] == [("stop", a), ("exit", a)] and log[2][0] == "spawn", log
    assert w.events("tree_ready") == [("tree_ready", "")]
    assert set(w.live) == {"a", "b"} and w.live["a"] != a


def test_a_reexec_during_a_reloads_starts_starts_what_was_left() -> None:
    """A fatal error while a reload starts new services one at a time: the one caught
    mid-start is started afresh (its process stopped first), the ones not reached yet
    are started after it, then ``tree_ready``."""
    old = Supervisor("root", children=[svc("a")])
    new = Supervisor(
        "root", children=[svc("a"), svc("f1", ready=ReadyNotify(timeout=30)), svc("f2")]
    )
    w = World(old)
    w.reload(new)
    first = w.live["f1"]
    assert "f2" not in w.live  # waits for f1's readiness
    assert snapshot.snapshot(w.engine).starts == ("f1", "f2")
    w.reload(new, reason="fatal: RuntimeError: boom")
    assert w.events("adopt", "stop", "exit") == [("adopt", "a"), ("stop", "f1"), ("exit", "f1")]
    second = w.live["f1"]  # spawned once the first had exited ("spawn" waits for readiness)
    assert second != first and "f2" not in w.live
    w.run(w.engine.handle(ev.Ready("f1", second), w.now))
    assert w.events("spawn", "tree_ready") == [("spawn", "f1"), ("spawn", "f2"), ("tree_ready", "")]
    assert set(w.live) == {"a", "f1", "f2"}
    assert snapshot.snapshot(w.engine).starts == ()


def test_a_held_service_stays_stopped_across_a_reload() -> None:
    """autostart = false, never started: still stopped after a reload, and still left
    alone by a group restart; one started by hand is adopted and restarts with its group."""
    tree = Supervisor(
        "root",
        strategy="one_for_all",
        children=[svc("a"), svc("late", autostart=False), svc("used", autostart=False)],
    )
    w = World(tree)
    w.run(w.engine.handle(ev.Command("start", "used", 1), w.now))
    assert set(w.live) == {"a", "used"}
    w.reload(tree)
    assert w.events() == [("reexec", ""), ("adopt", "a"), ("adopt", "used"), ("tree_ready", "")]
    assert {s.path: s.state for s in w.engine.status(w.now)}["late"] == "stopped"
    w.log.clear()
    w.crash("a")
    assert set(w.live) == {"a", "used"}
    assert ("spawn", "used") in w.events() and ("spawn", "late") not in w.events()


def test_a_new_autostart_false_service_is_not_started_by_a_reload() -> None:
    old = Supervisor("root", children=[svc("a")])
    new = Supervisor("root", children=[svc("a"), svc("late", autostart=False)])
    w = World(old)
    w.reload(new)
    assert w.events() == [("reexec", ""), ("adopt", "a"), ("tree_ready", "")]
    w.run(w.engine.handle(ev.Command("start", "late", 1), w.now))
    assert set(w.live) == {"a", "late"}
