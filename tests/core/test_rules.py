"""The OTP supervisor rules (shared/OTP-RULES.md R5-R43) on the pure engine.

Each test's docstring cites the rule it checks. Where otree maps a rule
differently from OTP (DESIGN.md "Semantics"), the test checks otree's
documented behaviour and its docstring says so ("otree:").

Most tests run the real engine on the simulator (``otree.testing.Simulation``:
fake processes, fake clock). Two small helpers fill what the simulator does
not offer: ``failing_engine`` makes every start of some services fail (the
simulator's ``fail_start`` fails only the next one), and ``Bench`` drives the
``Engine`` by hand, one event at a time, for exact interleavings (what comes
out before the runtime answers; a command arriving before a timer fires).
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from otree.core import actions as act
from otree.core import events as ev
from otree.core.engine import Engine
from otree.core.spec import ReadyDelay, ReadyNotify, Service, Supervisor
from otree.errors import ConfigError
from otree.testing import Simulation, Trace

# --- helpers ------------------------------------------------------------------


def svc(name: str, **kw: Any) -> Service:
    return Service(name, cmd=["sleep", "infinity"], **kw)


def sup(name: str, *children: Service | Supervisor, **kw: Any) -> Supervisor:
    return Supervisor(name, children=children, **kw)


def root(*children: Service | Supervisor, **kw: Any) -> Supervisor:
    return Supervisor("root", children=children, **kw)


def brief(e: dict[str, Any]) -> str:
    """One trace event as a short line: ``exit a 1 abnormal``, ``restart <root> a``."""
    name, path = e["event"], e["path"] or "<root>"
    if name == "exit":
        how = e["code"] if "code" in e else e["signal"]
        return f"exit {path} {how} {'normal' if e['normal'] else 'abnormal'}"
    if name == "restart":
        return f"restart {path} {e['child']}"
    if name == "give_up":
        return f"give_up {path} {e['restarts']}/{e['period']:g}"
    if name == "start_failed":
        return f"start_failed {path}: {e['reason']}"
    if name == "auto_shutdown":
        return f"auto_shutdown {path} {e['child']}"
    if name == "tree_stopped":
        return f"tree_stopped {e['exit_code']}"
    if name == "tree_ready":
        return "tree_ready"
    return f"{name} {path}"


def log(trace: Trace, since: int = 0) -> list[str]:
    return [brief(e) for e in trace.events[since:]]


def log_of(sim: Simulation, since: int = 0) -> list[str]:
    return log(sim.trace, since)


def mark(sim: Simulation) -> int:
    return len(sim.trace.events)


def started(*paths: str) -> list[str]:
    return [x for p in paths for x in (f"spawn {p}", f"ready {p}")]


def stopped(*paths: str, how: str = "TERM") -> list[str]:
    return [x for p in paths for x in (f"stop {p}", f"exit {p} {how} normal")]


def state(sim: Simulation, path: str) -> tuple[str, int | None]:
    """``(state, pid)`` of ``path`` as ``otree status`` would show it."""
    engine = sim.engine
    assert isinstance(engine, Engine)
    for st in engine.status(sim.now):
        if st.path == path:
            return st.state, st.pid
    raise KeyError(path)


def window(sim: Simulation, path: str = "") -> list[float]:
    engine = sim.engine
    assert isinstance(engine, Engine)
    return list(engine.nodes[path].window.times)  # type: ignore[attr-defined]


class FailingSpawns:
    """An engine whose ``Spawn`` of the services in ``paths`` always fails.

    It wraps the real engine for the simulator: a ``Spawn`` of a failing path is
    answered at once with ``SpawnFailed`` and never reaches the fake world.
    """

    def __init__(self, tree: Supervisor, rng: random.Random, paths: set[str]) -> None:
        self.engine = Engine(tree, rng)
        self.paths = paths

    @property
    def done(self) -> bool:
        return self.engine.done

    @property
    def exit_code(self) -> int | None:
        return self.engine.exit_code

    def status(self, now: float) -> Any:
        return self.engine.status(now)

    @property
    def nodes(self) -> Any:
        return self.engine.nodes

    def start(self, now: float) -> list[act.Action]:
        return self._answer(self.engine.start(now), now)

    def handle(self, event: ev.Event, now: float) -> list[act.Action]:
        return self._answer(self.engine.handle(event, now), now)

    def _answer(self, actions: list[act.Action], now: float) -> list[act.Action]:
        out: list[act.Action] = []
        failed = []
        for a in actions:
            if isinstance(a, act.Spawn) and a.path in self.paths:
                failed.append(a.path)
            else:
                out.append(a)
        for path in failed:
            answer = self.engine.handle(ev.SpawnFailed(path, "No such file or directory"), now)
            out.extend(self._answer(answer, now))
        return out


def failing_sim(tree: Supervisor, paths: set[str], seed: int = 0) -> Simulation:
    """A simulation in which every start of a service in ``paths`` (a live set) fails."""

    def factory(t: Supervisor, rng: random.Random) -> Any:
        return FailingSpawns(t, rng, paths)

    sim = Simulation(tree, seed=seed, engine_factory=factory, start=False)
    sim.engine = sim.engine.engine  # type: ignore[attr-defined]
    sim.engine = factory(tree, random.Random(seed))
    return sim.start()


class Bench:
    """The engine driven by hand: every event is fed by the test, nothing is automatic."""

    def __init__(self, tree: Supervisor, seed: int = 0) -> None:
        self.engine = Engine(tree, random.Random(seed))
        self.now = 0.0
        self.out: list[act.Action] = []

    def start(self) -> list[act.Action]:
        return self._keep(self.engine.start(self.now))

    def feed(self, event: ev.Event, at: float | None = None) -> list[act.Action]:
        if at is not None:
            self.now = at
        return self._keep(self.engine.handle(event, self.now))

    def _keep(self, actions: list[act.Action]) -> list[act.Action]:
        self.out.extend(actions)
        return actions

    def reports(self) -> list[str]:
        return [brief({**a.fields, "event": a.event, "path": a.path}) for a in self.reports_raw()]

    def reports_raw(self) -> list[act.Report]:
        return [a for a in self.out if isinstance(a, act.Report)]


def non_reports(actions: list[act.Action]) -> list[act.Action]:
    return [a for a in actions if not isinstance(a, act.Report)]


def spawn_paths(actions: list[act.Action]) -> list[str]:
    return [a.path for a in actions if isinstance(a, act.Spawn)]


# --- B. Startup ------------------------------------------------------------------


def test_r5_children_start_in_declared_order() -> None:
    """R5 start order: children [c7,c3,c10,c2,c5] (not sorted) start in exactly that order."""
    names = ["c7", "c3", "c10", "c2", "c5"]
    sim = Simulation(root(*(svc(n) for n in names)))
    assert log_of(sim) == [*started(*names), "tree_ready"]
    assert sim.trace.pids("c7") == [100]
    assert sim.trace.pids("c5") == [104]


def test_r5_one_at_a_time_each_waits_for_the_previous_to_be_ready() -> None:
    """R5 (otree: a child has started when it is *ready*): the next Spawn comes only
    after the previous child's Ready; the tree is ready after the last one."""
    b = Bench(root(svc("a", ready=ReadyNotify()), svc("b")))
    assert non_reports(b.start()) == [act.Spawn("a", b.engine.tree.children[0])]  # type: ignore[arg-type]
    out = b.feed(ev.Spawned("a", 10))
    assert out == [act.SetTimer(("ready", "a", "10"), 30.0)]  # waiting: no spawn of b yet
    out = b.feed(ev.Ready("a", 10), at=1.0)
    assert spawn_paths(out) == ["b"]
    assert b.reports() == ["spawn a", "ready a"]
    b.feed(ev.Spawned("b", 11))
    assert b.reports() == ["spawn a", "ready a", "spawn b", "ready b", "tree_ready"]


def test_r5_a_supervisor_is_started_when_all_its_children_are() -> None:
    """R5: [a, web[x, y], z] starts depth first: a, web.x, web.y, then z."""
    sim = Simulation(root(svc("a"), sup("web", svc("x"), svc("y")), svc("z")))
    assert log_of(sim) == [*started("a", "web.x", "web.y", "z"), "tree_ready"]


def test_r6_initial_start_failure_stops_the_started_in_reverse_and_exits_3() -> None:
    """R6: [a, b(fails), c] -> start_failed for b; a stopped; c never started; no
    restart, no intensity entry; otree run exits 3 naming the child and the cause."""
    sim = Simulation(root(svc("x"), svc("a"), svc("b"), svc("c")), start=False)
    sim.inject("b", "fail_start")
    sim.start()
    assert log_of(sim) == [
        *started("x", "a"),
        "start_failed b: simulated start failure",
        *stopped("a", "x"),
        "tree_stopped 3",
    ]
    assert sim.trace.exit_code == 3
    assert sim.trace.exit_message == "b: cannot start: simulated start failure"
    assert sim.trace.count("spawn", "c") == 0
    assert window(sim) == []


def test_r6_initial_start_failure_propagates_up_with_the_full_path() -> None:
    """R6: a failure deep in the tree fails every supervisor on the way up, each
    stopping its started children in reverse order."""
    tree = root(svc("a"), sup("web", svc("x"), sup("api", svc("p"), svc("q"))), svc("z"))
    sim = Simulation(tree, start=False)
    sim.inject("web.api.q", "fail_start")
    sim.start()
    assert log_of(sim) == [
        *started("a", "web.x", "web.api.p"),
        "start_failed web.api.q: simulated start failure",
        *stopped("web.api.p", "web.x", "a"),
        "tree_stopped 3",
    ]
    assert sim.trace.exit_message == "web.api.q: cannot start: simulated start failure"


def test_r6_readiness_timeout_is_a_start_failure() -> None:
    """R6 (otree: readiness): not ready within ``ready.timeout`` -> the process is
    stopped and the start fails (no spawn/stop/exit logged: it never started)."""
    sim = Simulation(root(svc("a"), svc("b", ready=ReadyDelay(delay=10, timeout=2))))
    assert sim.running() == {"a": 100, "b": 101}
    sim.advance(5)
    assert log_of(sim) == [
        *started("a"),
        "start_failed b: not ready after 2s",
        *stopped("a"),
        "tree_stopped 3",
    ]
    assert sim.trace.exit_message == "b: cannot start: not ready after 2s"
    assert [e["ts"] for e in sim.trace.filter("start_failed")] == [2.0]
    assert sim.running() == {}


def test_r6_a_process_that_ignores_the_stop_after_a_readiness_timeout_is_killed() -> None:
    """R6 + R10: the readiness-timeout stop follows the shutdown spec (TERM, wait, KILL)."""
    b = Bench(root(svc("a", ready=ReadyNotify(timeout=2), shutdown=3)))
    b.start()
    b.feed(ev.Spawned("a", 10))
    out = b.feed(ev.TimerFired(("ready", "a", "10")), at=2.0)
    assert out == [act.Signal("a", 10, "TERM"), act.SetTimer(("kill", "a", "10"), 3.0)]
    assert b.feed(ev.TimerFired(("kill", "a", "10")), at=5.0) == [act.Kill("a", 10)]
    b.feed(ev.Exited("a", 10, signal="KILL"))
    assert b.reports() == ["start_failed a: not ready after 2s", "tree_stopped 3"]
    assert b.out[-1] == act.Exit(3, "a: cannot start: not ready after 2s")


def test_r6_an_exit_before_ready_is_a_start_failure() -> None:
    """R6 (otree): a process that exits before its readiness check passed failed to start."""
    b = Bench(root(svc("a", ready=ReadyNotify())))
    b.start()
    b.feed(ev.Spawned("a", 10))
    out = b.feed(ev.Exited("a", 10, code=1), at=0.5)
    assert act.CancelTimer(("ready", "a", "10")) in out
    assert b.reports() == ["start_failed a: exited (code 1) before it was ready", "tree_stopped 3"]
    assert b.engine.exit_code == 3


def test_r6_a_failed_readiness_check_is_a_start_failure() -> None:
    """R6 (otree): ReadyFailed -> the process is stopped, the start fails with that reason."""
    b = Bench(root(svc("a", ready=ReadyNotify())))
    b.start()
    b.feed(ev.Spawned("a", 10))
    out = b.feed(ev.ReadyFailed("a", 10, "sent STOPPING=1"))
    assert act.Signal("a", 10, "TERM") in out
    b.feed(ev.Exited("a", 10, signal="TERM"))
    assert b.reports() == ["start_failed a: sent STOPPING=1", "tree_stopped 3"]
    assert b.out[-1] == act.Exit(3, "a: cannot start: sent STOPPING=1")


def test_r6_exit_right_after_exec_without_readiness_is_a_crash() -> None:
    """R6 (otree): with the default readiness (exec succeeded) the child *has* started,
    so an exit right after is a crash handled by its strategy, not a start failure."""
    b = Bench(root(svc("a")))
    b.start()
    b.feed(ev.Spawned("a", 10))
    out = b.feed(ev.Exited("a", 10, code=1))
    assert spawn_paths(out) == ["a"]
    assert b.reports() == [
        "spawn a",
        "ready a",
        "tree_ready",
        "exit a 1 abnormal",
        "restart <root> a",
    ]


def test_r7_no_ignore_for_processes_a_transient_that_exits_0_at_once_stays_exited() -> None:
    """R7 (otree: a process cannot return ``ignore``): the nearest is a transient child
    that exits 0 right after starting: it started, is not restarted, stays in the
    tree as ``exited`` with no PID, and ``otree start`` starts it again."""
    sim = Simulation(root(svc("a"), svc("once", restart="transient")))
    m = mark(sim)
    sim.inject("once", "exit0")
    assert log_of(sim, m) == ["exit once 0 normal"]
    assert state(sim, "once") == ("exited", None)
    assert sim.command("start", "once") == act.Reply(1, True, None)
    assert state(sim, "once") == ("running", 102)


def test_r8_an_invalid_tree_never_starts() -> None:
    """R8 (otree: no init callback): the tree is checked when the engine is built;
    an invalid one raises ConfigError and nothing starts."""
    with pytest.raises(ConfigError) as info:
        Engine(root(svc("a"), svc("a")))
    assert [str(i) for i in info.value.issues] == [
        "a: duplicate name 'a' under the same supervisor"
    ]


def test_r8_an_empty_supervisor_starts_at_once() -> None:
    """R8 (otree): a supervisor with no children is started at once (OTP: init
    returning an empty child list)."""
    sim = Simulation(root(svc("a"), sup("idle")))
    assert log_of(sim) == [*started("a"), "tree_ready"]
    assert state(sim, "idle") == ("running", None)


# --- C. Termination and shutdown specs ----------------------------------------------


def test_r9_shutdown_stops_children_in_reverse_order_one_at_a_time() -> None:
    """R9: [c1..c5]: shutdown stops c5, c4, c3, c2, c1, each only after the previous
    one is gone; then otree run exits 0."""
    names = [f"c{i}" for i in range(1, 6)]
    b = Bench(root(*(svc(n) for n in names)))
    b.start()
    for pid, n in enumerate(names, start=10):
        b.feed(ev.Spawned(n, pid))
    out = b.feed(ev.Command("shutdown", "", 1))
    assert non_reports(out) == [
        act.Reply(1, True, None),
        act.Signal("c5", 14, "TERM"),
        act.SetTimer(("kill", "c5", "14"), 5.0),
    ]
    order = []
    for pid in range(14, 9, -1):
        n = names[pid - 10]
        order.append(n)
        out = b.feed(ev.Exited(n, pid, signal="TERM"))
        if pid > 10:
            assert [a for a in out if isinstance(a, act.Signal)] == [
                act.Signal(names[pid - 11], pid - 1, "TERM")
            ]
    assert order == ["c5", "c4", "c3", "c2", "c1"]
    assert b.out[-1] == act.Exit(0, None)
    assert b.reports()[-1] == "tree_stopped 0"


def test_r9_nested_supervisors_stop_their_subtree_before_the_next_sibling() -> None:
    """R9: [a, web[x, y], z]: shutdown stops z, then web (y, then x), then a."""
    sim = Simulation(root(svc("a"), sup("web", svc("x"), svc("y")), svc("z")))
    m = mark(sim)
    assert sim.command("shutdown") == act.Reply(1, True, None)
    assert log_of(sim, m) == [*stopped("z", "web.y", "web.x", "a"), "tree_stopped 0"]
    assert sim.trace.exit_code == 0


def test_r9_worst_case_shutdown_time_is_the_sum_of_the_timeouts() -> None:
    """R9 + R10: three children that ignore TERM with shutdown=1 take 3 s to stop."""
    sim = Simulation(root(*(svc(n, shutdown=1) for n in ("a", "b", "c"))))
    for n in ("a", "b", "c"):
        sim.inject(n, "hang_on_stop")
    sim.command("shutdown")
    sim.advance(10)
    exits = sim.trace.filter("exit")
    assert [(e["path"], e["ts"], e["signal"]) for e in exits] == [
        ("c", 1.0, "KILL"),
        ("b", 2.0, "KILL"),
        ("a", 3.0, "KILL"),
    ]
    assert sim.trace.filter("tree_stopped")[0]["ts"] == 3.0


def test_r10_shutdown_timeout_sends_term_then_kill() -> None:
    """R10: a child ignoring the stop signal with shutdown=1 is killed 1 s after the stop."""
    b = Bench(root(svc("a", shutdown=1)))
    b.start()
    b.feed(ev.Spawned("a", 10))
    out = b.feed(ev.Command("shutdown"), at=3.0)
    assert non_reports(out) == [act.Signal("a", 10, "TERM"), act.SetTimer(("kill", "a", "10"), 1.0)]
    assert b.feed(ev.TimerFired(("kill", "a", "10")), at=4.0) == [act.Kill("a", 10)]
    b.feed(ev.Exited("a", 10, signal="KILL"))
    assert b.reports()[-3:] == ["stop a", "exit a KILL normal", "tree_stopped 0"]


def test_r10_an_exit_in_time_cancels_the_kill_timer() -> None:
    """R10: the process is gone before the timeout: the kill timer is cancelled."""
    b = Bench(root(svc("a", shutdown=1)))
    b.start()
    b.feed(ev.Spawned("a", 10))
    b.feed(ev.Command("shutdown"))
    out = b.feed(ev.Exited("a", 10, signal="TERM"), at=0.2)
    assert act.CancelTimer(("kill", "a", "10")) in out
    assert b.feed(ev.TimerFired(("kill", "a", "10")), at=1.0) == []


def test_r10_brutal_kill_kills_at_once() -> None:
    """R10: shutdown="brutal_kill" -> Kill with no stop signal and no timer."""
    b = Bench(root(svc("a", shutdown="brutal_kill")))
    b.start()
    b.feed(ev.Spawned("a", 10))
    out = b.feed(ev.Command("shutdown"))
    assert non_reports(out) == [act.Kill("a", 10)]
    b.feed(ev.Exited("a", 10, signal="KILL"))
    assert b.reports()[-3:] == ["stop a", "exit a KILL normal", "tree_stopped 0"]


def test_r10_infinity_waits_for_ever() -> None:
    """R10: shutdown="infinity" sends the stop signal and never kills; the supervisor
    exits only once the child is gone."""
    sim = Simulation(root(svc("a"), svc("slow", shutdown="infinity")))
    sim.inject("slow", "hang_on_stop")
    sim.command("shutdown")
    sim.advance(10_000)
    assert not sim.done
    assert "slow" in sim.running()
    sim.inject("slow", "exit0")
    assert log_of(sim) == [
        *started("a", "slow"),
        "tree_ready",
        "stop slow",
        "exit slow 0 normal",
        *stopped("a"),
        "tree_stopped 0",
    ]
    assert sim.trace.exit_code == 0


def test_r10_the_stop_signal_is_configurable() -> None:
    """R10 (otree: stop_signal): the graceful signal is the service's ``stop_signal``."""
    b = Bench(root(svc("a", stop_signal="INT")))
    b.start()
    b.feed(ev.Spawned("a", 10))
    out = b.feed(ev.Command("shutdown"))
    assert act.Signal("a", 10, "INT") in out


def test_r10_an_unexpected_exit_while_stopping_is_only_logged() -> None:
    """R10/R12: a child that exits with code 1 while being stopped is logged as a
    normal exit (otree stopped it); no restart, no intensity entry."""
    sim = Simulation(root(svc("a", shutdown=3), svc("b"), intensity=0))
    sim.inject("a", "hang_on_stop")
    m = mark(sim)
    sim.command("restart", "a")
    sim.inject("a", "crash")  # dies on its own while otree is stopping it
    assert log_of(sim, m) == ["stop a", "exit a 1 normal", *started("a")]
    assert window(sim) == []
    assert not sim.done


def test_r11_a_supervisor_child_defaults_to_infinity() -> None:
    """R11: a supervisor child's default shutdown is infinity; a service's is 5 s."""
    tree = root(sup("web", svc("x")))
    assert tree.children[0].shutdown == "infinity"
    assert svc("x").shutdown == 5.0


def test_r11_a_finite_supervisor_shutdown_kills_the_whole_subtree() -> None:
    """R11 (otree: no grandchild is left behind): when a supervisor child's finite
    shutdown runs out, every process below it is killed at once."""
    tree = root(svc("a"), sup("web", svc("x", shutdown=100), svc("y", shutdown=100), shutdown=2))
    sim = Simulation(tree)
    sim.inject("web.x", "hang_on_stop")
    sim.inject("web.y", "hang_on_stop")
    m = mark(sim)
    sim.command("shutdown")
    sim.advance(5)
    assert log_of(sim, m) == [
        "stop web.y",
        "stop web.x",
        "exit web.y KILL normal",
        "exit web.x KILL normal",
        *stopped("a"),
        "tree_stopped 0",
    ]
    assert [e["ts"] for e in sim.trace.filter("exit")] == [2.0, 2.0, 2.0]


def test_r11_a_supervisor_child_follows_the_same_restart_rules() -> None:
    """R11: a permanent supervisor child that gives up is restarted like a worker
    and counted in its parent's window."""
    sim = Simulation(root(svc("a"), sup("web", svc("x"), intensity=0)))
    m = mark(sim)
    sim.inject("web.x", "crash")
    assert log_of(sim, m) == [
        "exit web.x 1 abnormal",
        "give_up web 1/5",
        "restart <root> web",
        *started("web.x"),
    ]
    assert window(sim) == [0.0]


def test_r12_exits_of_unknown_or_stale_processes_are_ignored() -> None:
    """R12: an exit notice for a PID that is not the child's current one, or for a
    path that is not a service, changes nothing."""
    b = Bench(root(svc("a")))
    b.start()
    b.feed(ev.Spawned("a", 10))
    assert b.feed(ev.Exited("a", 99, code=1)) == []
    assert b.feed(ev.Exited("nope", 10, code=1)) == []
    assert b.feed(ev.Exited("", 10, code=1)) == []
    b.feed(ev.Exited("a", 10, code=1))  # the real one: restarted as pid 11
    b.feed(ev.Spawned("a", 11))
    assert b.feed(ev.Exited("a", 10, code=1)) == []  # the old PID again
    assert b.reports().count("restart <root> a") == 1


def test_r12_the_exit_of_a_child_otree_stopped_is_consumed() -> None:
    """R12: the exit of a child the supervisor stopped itself is never a crash and never
    counted (here: a manual stop under intensity 0)."""
    sim = Simulation(root(svc("a"), svc("b"), intensity=0))
    m = mark(sim)
    assert sim.command("stop", "a") == act.Reply(1, True, None)
    assert log_of(sim, m) == stopped("a")
    assert window(sim) == []
    assert state(sim, "a") == ("stopped", None)
