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

import itertools
import random
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from otree.core import actions as act
from otree.core import events as ev
from otree.core.engine import Engine
from otree.core.node import SupNode
from otree.core.spec import Backoff, ReadyDelay, ReadyNotify, Service, Supervisor, walk
from otree.errors import ConfigError
from otree.testing import HOWS, Simulation, Trace, trees

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


def engine_of(sim: Simulation) -> Engine:
    engine = getattr(sim.engine, "engine", sim.engine)  # Wrapped wraps one
    assert isinstance(engine, Engine)
    return engine


def state(sim: Simulation, path: str) -> tuple[str, int | None]:
    """``(state, pid)`` of ``path`` as ``otree status`` would show it."""
    for node in engine_of(sim).status(sim.now):
        if node.path == path:
            return node.state, node.pid
    raise KeyError(path)


def window(sim: Simulation, path: str = "") -> list[float]:
    """The restart times in the window of the supervisor at ``path``."""
    return list(engine_of(sim).nodes[path].window.times)  # type: ignore[attr-defined]


class Wrapped:
    """The real engine for the simulator, recording every action it emits, and making
    every ``Spawn`` of the services in ``failing`` fail: such a ``Spawn`` is answered at
    once with ``SpawnFailed`` and never reaches the fake world.
    """

    def __init__(self, tree: Supervisor, rng: random.Random, failing: set[str]) -> None:
        self.engine = Engine(tree, rng)
        self.paths = failing
        self.actions: list[act.Action] = []

    @property
    def done(self) -> bool:
        return self.engine.done

    @property
    def exit_code(self) -> int | None:
        return self.engine.exit_code

    def start(self, now: float) -> list[act.Action]:
        return self._answer(self.engine.start(now), now)

    def handle(self, event: ev.Event, now: float) -> list[act.Action]:
        return self._answer(self.engine.handle(event, now), now)

    def _answer(self, actions: list[act.Action], now: float) -> list[act.Action]:
        self.actions.extend(actions)
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

    def factory(t: Supervisor, rng: random.Random) -> Wrapped:
        return Wrapped(t, rng, paths)

    return Simulation(tree, seed=seed, engine_factory=factory)


def spawns(sim: Simulation) -> list[str]:
    """Every ``Spawn`` the engine asked for (of a ``failing_sim``), ready or not."""
    assert isinstance(sim.engine, Wrapped)
    return [a.path for a in sim.engine.actions if isinstance(a, act.Spawn)]


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


# --- D. Restart types -------------------------------------------------------------


@pytest.mark.parametrize(
    ("how", "logged"),
    [
        ("crash", "exit a 1 abnormal"),
        ("exit0", "exit a 0 normal"),
        ("kill", "exit a KILL abnormal"),
    ],
)
def test_r13_permanent_is_restarted_after_every_exit(how: str, logged: str) -> None:
    """R13 permanent: restarted after a normal exit, a crash and a kill alike (new PID)."""
    sim = Simulation(root(svc("a"), svc("b")))
    m = mark(sim)
    sim.inject("a", how)
    assert log_of(sim, m) == [logged, "restart <root> a", *started("a")]
    assert sim.running() == {"b": 101, "a": 102}
    assert window(sim) == [0.0]


def test_r13_an_external_term_is_abnormal() -> None:
    """R13 + exit classification (otree): death by a signal otree did not send is
    abnormal, TERM included (OTP's ``shutdown`` from a stranger has no equivalent)."""
    b = Bench(root(svc("a", restart="transient")))
    b.start()
    b.feed(ev.Spawned("a", 10))
    out = b.feed(ev.Exited("a", 10, signal="TERM"))
    assert spawn_paths(out) == ["a"]
    assert b.reports()[-2:] == ["exit a TERM abnormal", "restart <root> a"]


def test_r14_transient_is_not_restarted_after_a_normal_exit() -> None:
    """R14 transient: exit 0 -> not restarted, kept as ``exited`` with no PID and no
    window entry; ``otree start`` starts it again."""
    sim = Simulation(root(svc("a", restart="transient"), svc("b")))
    m = mark(sim)
    sim.inject("a", "exit0")
    assert log_of(sim, m) == ["exit a 0 normal"]
    assert state(sim, "a") == ("exited", None)
    assert window(sim) == []
    assert sim.command("start", "a") == act.Reply(1, True, None)
    assert state(sim, "a") == ("running", 102)


@pytest.mark.parametrize("how", ["crash", "kill"])
def test_r14_transient_is_restarted_after_an_abnormal_exit(how: str) -> None:
    """R14 transient: a crash or a kill (``killed``) -> restarted with a new PID."""
    sim = Simulation(root(svc("a", restart="transient")))
    sim.inject("a", how)
    assert state(sim, "a") == ("running", 101)
    assert sim.trace.count("restart", "") == 1


def test_r14_normal_exit_codes_replace_the_default() -> None:
    """R14 (otree: normal_exit_codes, like systemd's SuccessExitStatus): with [1] an
    exit 1 is normal and exit 0 is abnormal; the list replaces [0]."""
    sim = Simulation(root(svc("a", restart="transient", normal_exit_codes=[1])))
    m = mark(sim)
    sim.inject("a", "exit0")
    assert log_of(sim, m) == ["exit a 0 abnormal", "restart <root> a", *started("a")]
    m = mark(sim)
    sim.inject("a", "crash")  # code 1
    assert log_of(sim, m) == ["exit a 1 normal"]
    assert state(sim, "a") == ("exited", None)


@pytest.mark.parametrize("how", ["crash", "exit0", "kill"])
def test_r15_temporary_is_never_restarted_and_stays_as_exited(how: str) -> None:
    """R15 (otree: the spec is kept): a temporary child is never restarted; unlike
    OTP it stays in the tree as ``exited``, and ``otree start`` starts it again."""
    sim = Simulation(root(svc("a"), svc("job", restart="temporary")))
    m = mark(sim)
    sim.inject("job", how)
    assert len(log_of(sim, m)) == 1 and log_of(sim, m)[0].startswith("exit job ")
    assert state(sim, "job") == ("exited", None)
    assert sim.command("start", "job") == act.Reply(1, True, None)
    assert log_of(sim, m)[1:] == started("job")
    assert sim.command("restart", "job") == act.Reply(2, True, None)
    assert sim.trace.pids("job") == [101, 102, 103]


def test_r16_exits_that_need_no_restart_are_not_counted() -> None:
    """R16: under intensity 0, a transient's normal exit and any temporary exit do not
    make the supervisor give up: they are not restarts."""
    sim = Simulation(
        root(
            svc("t", restart="transient"),
            svc("x", restart="temporary"),
            svc("y", restart="temporary"),
            intensity=0,
        )
    )
    sim.inject("t", "exit0")
    sim.inject("x", "crash")
    sim.inject("y", "kill")
    assert window(sim) == []
    assert not sim.done
    assert sim.trace.count("give_up") == 0


# --- E. Strategies -------------------------------------------------------------------


def test_r17_one_for_one_restarts_only_the_exited_child() -> None:
    """R17 one_for_one: [a,b]: crash a -> a gets a new PID, b keeps its PID."""
    sim = Simulation(root(svc("a"), svc("b")))
    m = mark(sim)
    sim.inject("a", "crash")
    assert log_of(sim, m) == ["exit a 1 abnormal", "restart <root> a", *started("a")]
    assert sim.running() == {"b": 101, "a": 102}
    restart = sim.trace.filter("restart")[0]
    assert restart == {
        "ts": 0.0,
        "event": "restart",
        "path": "",
        "strategy": "one_for_one",
        "child": "a",
    }


def test_r18_one_for_all_stops_all_in_reverse_and_starts_all_in_order() -> None:
    """R18 one_for_all: [a,b,c(temporary)]: crash b -> c, then a, are stopped; a and b
    start again in declared order with new PIDs; the temporary c is not started."""
    sim = Simulation(
        root(svc("a"), svc("b"), svc("c", restart="temporary"), strategy="one_for_all")
    )
    m = mark(sim)
    sim.inject("b", "crash")
    assert log_of(sim, m) == [
        "exit b 1 abnormal",
        "restart <root> b",
        *stopped("c", "a"),
        *started("a", "b"),
    ]
    assert sim.running() == {"a": 103, "b": 104}
    assert state(sim, "c") == ("stopped", None)
    assert sim.trace.filter("restart")[0]["strategy"] == "one_for_all"


def test_r18_one_for_all_group_restart_counts_once() -> None:
    """R18/R22: the whole cycle is one restart: one ``restart`` event, one window entry."""
    sim = Simulation(root(svc("a"), svc("b"), svc("c"), strategy="one_for_all", intensity=1))
    sim.inject("a", "crash")
    assert window(sim) == [0.0]
    assert sim.trace.count("restart") == 1
    sim.advance(1)
    sim.inject("c", "crash")
    assert sim.trace.gave_up("")
    assert sim.trace.exit_code == 1


def test_r18_one_for_all_leaves_siblings_alone_when_no_restart_is_due() -> None:
    """R18: an exit that calls for no restart (transient normal, temporary) touches no
    sibling."""
    sim = Simulation(
        root(
            svc("a"),
            svc("t", restart="transient"),
            svc("x", restart="temporary"),
            strategy="one_for_all",
        )
    )
    m = mark(sim)
    sim.inject("t", "exit0")
    sim.inject("x", "crash")
    assert log_of(sim, m) == ["exit t 0 normal", "exit x 1 abnormal"]
    assert sim.running() == {"a": 100}


def test_r18_one_for_all_starts_stopped_and_exited_non_temporary_children_too() -> None:
    """R18: *all* non-temporary children start again, also one that had exited
    normally (transient) or was stopped by hand; a temporary one that had exited does not."""
    sim = Simulation(
        root(
            svc("a"),
            svc("t", restart="transient"),
            svc("m"),
            svc("x", restart="temporary"),
            strategy="one_for_all",
        )
    )
    sim.inject("t", "exit0")
    sim.command("stop", "m")
    sim.inject("x", "exit0")
    m = mark(sim)
    sim.inject("a", "crash")
    assert log_of(sim, m) == [
        "exit a 1 abnormal",
        "restart <root> a",
        *started("a", "t", "m"),
    ]
    assert state(sim, "x") == ("exited", None)


def test_r19_rest_for_one_restarts_the_child_and_those_after_it() -> None:
    """R19 rest_for_one: [c1..c5]: crash c3 -> c5, then c4, are stopped; c1 and c2 keep
    their PIDs; c3, c4, c5 start again in that order."""
    names = [f"c{i}" for i in range(1, 6)]
    sim = Simulation(root(*(svc(n) for n in names), strategy="rest_for_one"))
    m = mark(sim)
    sim.inject("c3", "crash")
    assert log_of(sim, m) == [
        "exit c3 1 abnormal",
        "restart <root> c3",
        *stopped("c5", "c4"),
        *started("c3", "c4", "c5"),
    ]
    assert sim.running() == {"c1": 100, "c2": 101, "c3": 105, "c4": 106, "c5": 107}


def test_r19_rest_for_one_last_child_restarts_alone_and_temporary_followers_stay_down() -> None:
    """R19: crash of the last child restarts it alone; a temporary child after the
    crashed one is stopped and not started again."""
    sim = Simulation(
        root(svc("a"), svc("b"), svc("x", restart="temporary"), svc("c"), strategy="rest_for_one")
    )
    m = mark(sim)
    sim.inject("c", "crash")
    assert log_of(sim, m) == ["exit c 1 abnormal", "restart <root> c", *started("c")]
    m = mark(sim)
    sim.inject("b", "crash")
    assert log_of(sim, m) == [
        "exit b 1 abnormal",
        "restart <root> b",
        *stopped("c", "x"),
        *started("b", "c"),
    ]
    assert state(sim, "x") == ("stopped", None)
    assert sim.running()["a"] == 100


def test_r20_a_restarted_child_keeps_its_place() -> None:
    """R20: after a and b were restarted (one_for_one), the order is still the declared
    one: a later one_for_all-like stop (shutdown) goes c, b, a; status lists a, b, c."""
    sim = Simulation(root(svc("a"), svc("b"), svc("c")))
    sim.inject("a", "crash")
    sim.inject("b", "crash")
    assert [n.path for n in engine_of(sim).status(sim.now)] == ["", "a", "b", "c"]
    m = mark(sim)
    sim.command("shutdown")
    assert log_of(sim, m) == [*stopped("c", "b", "a"), "tree_stopped 0"]


def test_r20_rest_for_one_uses_the_declared_place_of_a_restarted_child() -> None:
    """R20: a child restarted earlier still only takes down the children declared after it."""
    sim = Simulation(root(svc("a"), svc("b"), svc("c"), strategy="rest_for_one"))
    sim.inject("c", "crash")
    sim.inject("b", "crash")
    m = mark(sim)
    sim.inject("a", "crash")
    assert log_of(sim, m) == [
        "exit a 1 abnormal",
        "restart <root> a",
        *stopped("c", "b"),
        *started("a", "b", "c"),
    ]


# --- F. Restart intensity -----------------------------------------------------------


def test_r22_one_window_is_shared_by_all_children() -> None:
    """R22/R23: S(one_for_one, 2, 3600) with [a,b]: crash a, crash b -> both
    restarted; a third crash of either -> the supervisor gives up."""
    sim = Simulation(root(svc("a"), svc("b"), intensity=2, period=3600))
    sim.inject("a", "crash")
    sim.advance(10)
    sim.inject("b", "crash")
    assert window(sim) == [0.0, 10.0]
    sim.advance(10)
    m = mark(sim)
    sim.inject("a", "crash")
    assert log_of(sim, m) == [
        "exit a 1 abnormal",
        "give_up <root> 3/3600",
        *stopped("b"),
        "tree_stopped 1",
    ]


def test_r22_manual_commands_and_the_initial_start_are_not_counted() -> None:
    """R22: under intensity 0, ``start``, ``stop`` and ``restart`` by hand and the
    initial start add nothing to the window."""
    sim = Simulation(root(svc("a"), svc("b", restart="transient"), intensity=0))
    assert sim.command("restart", "a") == act.Reply(1, True, None)
    assert sim.command("stop", "b") == act.Reply(2, True, None)
    assert sim.command("start", "b") == act.Reply(3, True, None)
    assert sim.command("restart", "b") == act.Reply(4, True, None)
    assert window(sim) == []
    assert sim.trace.pids("a") == [100, 102]
    assert not sim.done


def test_r23_the_window_slides_a_slow_crasher_runs_for_ever() -> None:
    """R23: S(1, 1): crash, wait 2.1 s, crash, ... -> the supervisor survives."""
    sim = Simulation(root(svc("a"), intensity=1, period=1))
    for _ in range(4):
        sim.inject("a", "crash")
        sim.advance(2.1)
    assert not sim.trace.gave_up("")
    assert sim.trace.count("restart") == 4


def test_r23_the_window_includes_both_ends() -> None:
    """R23: S(1, 5): crashes at 1.0 and 6.0 (exactly ``period`` apart) -> give up;
    at 1.0 and 6.25 -> both restarted."""
    sim = Simulation(root(svc("a"), intensity=1, period=5))
    sim.at(1.0).inject("a", "crash")
    sim.at(6.0).inject("a", "crash")
    assert sim.trace.gave_up("")
    assert sim.trace.filter("give_up")[0]["restarts"] == 2
    sim = Simulation(root(svc("a"), intensity=1, period=5))
    sim.at(1.0).inject("a", "crash")
    sim.at(6.25).inject("a", "crash")
    assert not sim.trace.gave_up("")
    assert window(sim) == [6.25]


def test_r23_intensity_zero_gives_up_on_the_first_restart() -> None:
    """R23: with intensity 0 the first exit that calls for a restart stops the supervisor."""
    sim = Simulation(root(svc("a"), intensity=0))
    m = mark(sim)
    sim.inject("a", "exit0")
    assert log_of(sim, m) == ["exit a 0 normal", "give_up <root> 1/5", "tree_stopped 1"]
    assert sim.trace.exit_code == 1


def test_r24_giving_up_stops_the_rest_in_reverse_and_exits_1() -> None:
    """R24: S(one_for_one, 0, 5) with [a,b,c]: crash b -> b is not restarted; c, then a,
    are stopped; ``give_up`` counts the refused restart (intensity + 1); otree run
    exits 1 (otree: the root's give-up is an error exit)."""
    sim = Simulation(root(svc("a"), svc("b"), svc("c"), intensity=0))
    m = mark(sim)
    sim.inject("b", "crash")
    assert log_of(sim, m) == [
        "exit b 1 abnormal",
        "give_up <root> 1/5",
        *stopped("c", "a"),
        "tree_stopped 1",
    ]
    assert sim.trace.filter("give_up")[0] == {
        "ts": 0.0,
        "event": "give_up",
        "path": "",
        "restarts": 1,
        "period": 5.0,
    }
    assert sim.trace.exit_code == 1
    assert sim.trace.exit_message == "the root supervisor reached its restart intensity and gave up"
    assert sim.running() == {}


def test_r24_defaults_give_up_on_the_fourth_restart_in_5_s() -> None:
    """R24 (otree defaults: intensity 3, period 5, Elixir's; OTP's are 1 and 5)."""
    sim = Simulation(root(svc("a")))
    for t in (0.0, 1.0, 2.0):
        sim.at(t).inject("a", "crash")
    assert not sim.trace.gave_up("")
    sim.at(3.0).inject("a", "crash")
    assert sim.trace.filter("give_up")[0]["restarts"] == 4


def test_r25_a_child_supervisor_that_gives_up_escalates_to_its_parent() -> None:
    """R25: web gives up -> the root restarts web (one restart in the root's window,
    ``child`` = web); web starts with fresh children and a fresh window; a is untouched."""
    sim = Simulation(root(svc("a"), sup("web", svc("x"), svc("y"), intensity=1)))
    sim.inject("web.x", "crash")
    m = mark(sim)
    sim.inject("web.y", "crash")
    assert log_of(sim, m) == [
        "exit web.y 1 abnormal",
        "give_up web 2/5",
        *stopped("web.x"),
        "restart <root> web",
        *started("web.x", "web.y"),
    ]
    assert window(sim) == [0.0]
    assert window(sim, "web") == []
    assert sim.running()["a"] == 100


def test_r25_intensities_multiply_up_the_tree() -> None:
    """R25: root(I=1)[web(I=1)[x]]: web absorbs one crash, gives up on the second; the
    root absorbs one give-up and gives up on the second: x runs 4 times, then exit 1."""
    sim = Simulation(root(sup("web", svc("x"), intensity=1), intensity=1, period=60))
    for t in (1.0, 2.0, 3.0, 4.0):
        assert not sim.done
        sim.at(t).inject("web.x", "crash")
    assert sim.trace.count("spawn", "web.x") == 4
    assert [e["path"] for e in sim.trace.filter("give_up")] == ["web", "web", ""]
    assert sim.trace.exit_code == 1


def test_r25_a_transient_supervisor_that_gives_up_is_restarted() -> None:
    """R25 (otree differs from OTP on purpose): a give-up is an *abnormal* exit, so a
    transient child supervisor that gives up is restarted (OTP: exits ``shutdown`` and
    is silently left stopped)."""
    sim = Simulation(root(svc("a"), sup("web", svc("x"), intensity=0, restart="transient")))
    m = mark(sim)
    sim.inject("web.x", "crash")
    assert log_of(sim, m) == [
        "exit web.x 1 abnormal",
        "give_up web 1/5",
        "restart <root> web",
        *started("web.x"),
    ]


def test_r25_a_temporary_supervisor_that_gives_up_stays_exited() -> None:
    """R25: a temporary child supervisor that gives up is not restarted; the rest of
    the tree runs on."""
    sim = Simulation(root(svc("a"), sup("web", svc("x"), intensity=0, restart="temporary")))
    m = mark(sim)
    sim.inject("web.x", "crash")
    assert log_of(sim, m) == ["exit web.x 1 abnormal", "give_up web 1/5"]
    assert state(sim, "web") == ("exited", None)
    assert state(sim, "web.x") == ("stopped", None)
    assert sim.running() == {"a": 100}


def test_r26_a_failing_restart_is_retried_counted_and_escalates() -> None:
    """R26: S(one_for_one, 4, 3600): a crashes and every later start of a fails ->
    each retry is one more restart; the fifth gives up at once and b is stopped."""
    failing: set[str] = set()
    sim = failing_sim(root(svc("a"), svc("b"), intensity=4, period=3600), failing)
    failing.add("a")
    m = mark(sim)
    sim.inject("a", "crash")
    fail = "start_failed a: No such file or directory"
    assert log_of(sim, m) == [
        "exit a 1 abnormal",
        *["restart <root> a", fail] * 4,
        "give_up <root> 5/3600",
        *stopped("b"),
        "tree_stopped 1",
    ]
    assert {e["ts"] for e in sim.trace.events[m:]} == {0.0}  # no delay: OTP's behaviour


def test_r26_the_retry_goes_through_the_loop() -> None:
    """R26 (STYLE 4): a failed restart is not retried inside the decision: the engine
    marks the child restarting and sets a zero-delay timer; the start comes when it fires."""
    b = Bench(root(svc("a"), svc("b")))
    b.start()
    b.feed(ev.Spawned("a", 10))
    b.feed(ev.Spawned("b", 11))
    assert spawn_paths(b.feed(ev.Exited("a", 10, code=1))) == ["a"]
    out = b.feed(ev.SpawnFailed("a", "boom"))
    assert non_reports(out) == [act.SetTimer(("restart", "", "1"), 0.0)]
    assert [n.state for n in b.engine.status(0) if n.path == "a"] == ["restarting"]
    assert spawn_paths(b.feed(ev.TimerFired(("restart", "", "1")))) == ["a"]
    b.feed(ev.Spawned("a", 12))
    assert b.reports()[-6:] == [
        "exit a 1 abnormal",
        "restart <root> a",
        "start_failed a: boom",
        "restart <root> a",
        "spawn a",
        "ready a",
    ]


def test_r26_a_request_queued_before_the_retry_runs_first() -> None:
    """R26 + R28 + R38: a ``stop a`` that arrives before the retry timer fires is
    carried out first: it cancels the retry loop and a stays stopped."""
    b = Bench(root(svc("a"), svc("b")))
    b.start()
    b.feed(ev.Spawned("a", 10))
    b.feed(ev.Spawned("b", 11))
    b.feed(ev.Exited("a", 10, code=1))
    b.feed(ev.SpawnFailed("a", "boom"))
    assert b.feed(ev.Command("stop", "a", 7)) == [act.Reply(7, True, None)]
    assert b.feed(ev.TimerFired(("restart", "", "1"))) == []
    assert [n.state for n in b.engine.status(0) if n.path == "a"] == ["stopped"]


def test_r27_one_for_all_retry_repeats_the_whole_cycle() -> None:
    """R27 one_for_all: [a,b,c]: crash a; b fails to start in the cycle -> a (already
    restarted) is stopped again and the whole cycle runs again, counted again."""
    sim = Simulation(root(svc("a"), svc("b"), svc("c"), strategy="one_for_all"))
    sim.inject("b", "fail_start")
    m = mark(sim)
    sim.inject("a", "crash")
    assert log_of(sim, m) == [
        "exit a 1 abnormal",
        "restart <root> a",
        *stopped("c", "b"),
        *started("a"),
        "start_failed b: simulated start failure",
        "restart <root> b",
        *stopped("a"),
        *started("a", "b", "c"),
    ]
    assert window(sim) == [0.0, 0.0]
    assert sim.running() == {"a": 104, "b": 105, "c": 106}  # a failed spawn has no PID


def test_r27_rest_for_one_retry_goes_on_from_the_failed_child() -> None:
    """R27 rest_for_one: [c1..c4]: crash c2; c3 fails to start -> the retry starts c3
    and c4 only; c2 (restarted) keeps its new PID, c1 its old one."""
    names = [f"c{i}" for i in range(1, 5)]
    sim = Simulation(root(*(svc(n) for n in names), strategy="rest_for_one"))
    sim.inject("c3", "fail_start")
    m = mark(sim)
    sim.inject("c2", "crash")
    assert log_of(sim, m) == [
        "exit c2 1 abnormal",
        "restart <root> c2",
        *stopped("c4", "c3"),
        *started("c2"),
        "start_failed c3: simulated start failure",
        "restart <root> c3",
        *started("c3", "c4"),
    ]
    assert sim.running() == {"c1": 100, "c2": 104, "c3": 105, "c4": 106}
    assert window(sim) == [0.0, 0.0]


def test_r28_a_restarting_child_refuses_start_and_restart_but_can_be_stopped() -> None:
    """R28: while a waits for its (delayed) restart it shows as ``restarting`` with no
    PID; ``start``/``restart`` are refused; ``stop`` cancels the restart and leaves it
    stopped."""
    bo = Backoff(initial=2, jitter=0)
    sim = Simulation(root(svc("a", backoff=bo), svc("b")))
    sim.inject("a", "crash")
    assert state(sim, "a") == ("restarting", None)
    assert sim.command("start", "a") == act.Reply(1, False, "a is restarting")
    assert sim.command("restart", "a") == act.Reply(2, False, "a is restarting")
    assert sim.command("stop", "a") == act.Reply(3, True, None)
    sim.advance(10)
    assert state(sim, "a") == ("stopped", None)
    assert sim.trace.pids("a") == [100]
    assert sim.command("start", "a") == act.Reply(4, True, None)
    assert sim.trace.pids("a") == [100, 102]


def test_r28_rest_for_one_children_after_a_restarting_one_show_no_pid() -> None:
    """R28: with rest_for_one, the children after a restarting child are restarting too."""
    bo = Backoff(initial=2, jitter=0)
    sim = Simulation(
        root(svc("a"), svc("b", backoff=bo), svc("c"), svc("d"), strategy="rest_for_one")
    )
    sim.inject("b", "crash")
    assert [state(sim, p) for p in ("a", "b", "c", "d")] == [
        ("running", 100),
        ("restarting", None),
        ("restarting", None),
        ("restarting", None),
    ]
    sim.advance(2)
    assert sim.running() == {"a": 100, "b": 104, "c": 105, "d": 106}


def test_r28_the_tree_can_be_shut_down_while_a_child_is_restarting() -> None:
    """R28: shutdown while a delayed restart is pending: the timer is cancelled and
    nothing starts again."""
    bo = Backoff(initial=2, jitter=0)
    sim = Simulation(root(svc("a", backoff=bo), svc("b")))
    sim.inject("a", "crash")
    m = mark(sim)
    sim.command("shutdown")
    sim.advance(10)
    assert log_of(sim, m) == [*stopped("b"), "tree_stopped 0"]
    assert sim.trace.exit_code == 0


# --- G. Manual commands (otree start|stop|restart PATH) ---------------------------------


def test_r31_stop_stops_the_child_and_is_not_a_crash() -> None:
    """R31 terminate_child (``otree stop``): stops by the shutdown spec, replies ok;
    no restart, no window entry; the child stays in the tree as ``stopped``."""
    sim = Simulation(root(svc("a"), svc("b"), intensity=0))
    m = mark(sim)
    assert sim.command("stop", "a") == act.Reply(1, True, None)
    assert log_of(sim, m) == stopped("a")
    assert state(sim, "a") == ("stopped", None)
    assert window(sim) == []
    assert sim.running() == {"b": 101}


def test_r31_stop_of_a_stopped_or_exited_child_is_ok() -> None:
    """R31: ``stop`` of a child that is not running replies ok and changes nothing."""
    sim = Simulation(root(svc("a"), svc("t", restart="temporary")))
    sim.command("stop", "a")
    sim.inject("t", "exit0")
    m = mark(sim)
    assert sim.command("stop", "a") == act.Reply(2, True, None)
    assert sim.command("stop", "t") == act.Reply(3, True, None)
    assert log_of(sim, m) == []
    assert state(sim, "t") == ("exited", None)


def test_r31_stop_of_a_supervisor_stops_its_subtree() -> None:
    """R31/R9: ``stop web`` stops web's children in reverse order; web stays stopped."""
    sim = Simulation(root(svc("a"), sup("web", svc("x"), svc("y"))))
    m = mark(sim)
    assert sim.command("stop", "web") == act.Reply(1, True, None)
    assert log_of(sim, m) == stopped("web.y", "web.x")
    assert state(sim, "web") == ("stopped", None)
    m = mark(sim)
    assert sim.command("start", "web") == act.Reply(2, True, None)
    assert log_of(sim, m) == started("web.x", "web.y")


def test_r32_start_and_restart_errors() -> None:
    """R32 restart_child (``otree start``/``restart``): ``start`` of a running child is
    refused (OTP ``{error, running}``); an unknown path, the root and unknown commands
    are refused with a reason."""
    sim = Simulation(root(svc("a"), sup("web", svc("x"))))
    assert sim.command("start", "a") == act.Reply(1, False, "a is already running")
    assert sim.command("start", "web") == act.Reply(2, False, "web is already running")
    assert sim.command("start", "nope") == act.Reply(3, False, "no node at path 'nope'")
    assert sim.command("stop", "web.nope") == act.Reply(4, False, "no node at path 'web.nope'")
    assert sim.command("restart", "") == act.Reply(
        5, False, "the root cannot be started or stopped: use shutdown"
    )
    assert sim.command("reload", "a") == act.Reply(6, False, "unknown command 'reload'")
    assert sim.trace.pids("a") == [100]


def test_r32_restart_of_a_running_child_is_stop_then_start_and_not_counted() -> None:
    """R32 (otree ``restart`` = terminate_child + restart_child): new PID, no
    ``restart`` event, no window entry (intensity 0 does not give up)."""
    sim = Simulation(root(svc("a"), svc("b"), intensity=0, strategy="one_for_all"))
    m = mark(sim)
    assert sim.command("restart", "a") == act.Reply(1, True, None)
    assert log_of(sim, m) == [*stopped("a"), *started("a")]  # b untouched: not a crash
    assert sim.running() == {"b": 101, "a": 102}
    assert window(sim) == []


def test_r32_a_failed_manual_start_is_reported_and_not_retried() -> None:
    """R32: a manual start that fails replies with the reason; the child stays stopped
    (spec kept); no retry, no ``restart`` event, no window entry."""
    sim = Simulation(root(svc("a"), svc("b"), intensity=0))
    sim.command("stop", "a")
    sim.inject("a", "fail_start")
    m = mark(sim)
    assert sim.command("start", "a") == act.Reply(
        2, False, "a: cannot start: simulated start failure"
    )
    assert log_of(sim, m) == ["start_failed a: simulated start failure"]
    assert state(sim, "a") == ("stopped", None)
    assert window(sim) == []
    assert sim.command("start", "a") == act.Reply(3, True, None)


def test_r32_a_failed_manual_restart_leaves_the_child_stopped() -> None:
    """R32: ``restart`` whose start fails: the old process is stopped, the error is
    replied, nothing is retried."""
    sim = Simulation(root(svc("a"), svc("b")))
    sim.inject("a", "fail_start")
    m = mark(sim)
    assert sim.command("restart", "a") == act.Reply(
        1, False, "a: cannot start: simulated start failure"
    )
    assert log_of(sim, m) == [*stopped("a"), "start_failed a: simulated start failure"]
    assert state(sim, "a") == ("stopped", None)


def test_r33_there_is_no_delete() -> None:
    """R33 (otree: no delete_child): the tree is declared; a child can only be stopped.
    A ``delete`` request is refused as an unknown command."""
    sim = Simulation(root(svc("a")))
    assert sim.command("delete", "a") == act.Reply(1, False, "unknown command 'delete'")
    assert sim.running() == {"a": 100}


def test_commands_after_the_tree_stopped_are_refused() -> None:
    """Commands that arrive once the tree is down get an error reply."""
    b = Bench(root(svc("a")))
    b.start()
    b.feed(ev.Spawned("a", 10))
    b.feed(ev.Command("shutdown", "", 1))
    b.feed(ev.Exited("a", 10, signal="TERM"))
    assert b.engine.done
    assert b.feed(ev.Command("start", "a", 2)) == [act.Reply(2, False, "the tree has stopped")]


def test_commands_to_a_child_of_a_stopped_supervisor_are_refused() -> None:
    """A command under a supervisor that is not running names that supervisor."""
    sim = Simulation(root(svc("a"), sup("web", svc("x"))))
    sim.command("stop", "web")
    assert sim.command("start", "web.x") == act.Reply(2, False, "'web' is not running (stopped)")


# --- R38 serialisation ------------------------------------------------------------------


def test_r38_commands_wait_while_the_supervisor_is_busy() -> None:
    """R38: each supervisor does one thing at a time: while ``restart a`` waits for a
    to stop (it ignores TERM; killed after 2 s), ``stop b`` waits its turn, then runs."""
    sim = Simulation(root(svc("a", shutdown=2), svc("b")))
    sim.inject("a", "hang_on_stop")
    m = mark(sim)
    assert sim.command("restart", "a") is None  # not answered yet
    sim.advance(0.5)
    assert sim.command("stop", "b") is None
    assert sim.running() == {"a": 100, "b": 101}
    sim.advance(1.5)
    assert sim.replies == {1: act.Reply(1, True, None), 2: act.Reply(2, True, None)}
    assert log_of(sim, m) == [
        "stop a",
        "exit a KILL normal",
        *started("a"),
        *stopped("b"),
    ]
    assert {e["ts"] for e in sim.trace.events[m + 1 :]} == {2.0}


def test_r38_an_exit_during_a_busy_spell_is_handled_after_it() -> None:
    """R38: a crash that happens while the supervisor is busy is handled, in order,
    once the current job is done."""
    sim = Simulation(root(svc("a", shutdown=2), svc("b")))
    sim.inject("a", "hang_on_stop")
    sim.command("restart", "a")
    sim.advance(0.5)
    m = mark(sim)
    sim.inject("b", "crash")
    assert log_of(sim, m) == ["exit b 1 abnormal"]  # logged now, handled later
    sim.advance(1.5)
    assert log_of(sim, m) == [
        "exit b 1 abnormal",
        "exit a KILL normal",
        *started("a"),
        "restart <root> b",
        *started("b"),
    ]
    assert window(sim) == [2.0]


def test_r38_queued_commands_are_refused_when_the_supervisor_gives_up() -> None:
    """R38 (bug fixed): a command waiting in a supervisor's queue when the supervisor
    gives up gets an error reply; it used to get none."""
    tree = root(svc("z"), sup("web", svc("a", shutdown=2), svc("b"), svc("c"), intensity=0))
    sim = Simulation(tree)
    sim.inject("web.a", "hang_on_stop")
    assert sim.command("restart", "web.a") is None
    sim.advance(0.5)
    sim.inject("web.b", "crash")  # queued: gives up once the restart is done
    assert sim.command("stop", "web.c") is None  # queued behind the crash
    sim.advance(2)
    assert sim.replies[1] == act.Reply(1, True, None)
    assert sim.replies[2] == act.Reply(2, False, "'web' is not running (stopping)")
    assert sim.trace.count("give_up", "web") == 1


def test_r38_a_stop_queued_before_a_crash_consumes_it() -> None:
    """R38/R12: ``stop b`` queued before b's crash is carried out first: b is then
    stopped, and its crash is consumed (OTP: terminate_child flushes the EXIT)."""
    sim = Simulation(root(svc("a", shutdown=2), svc("b"), intensity=0))
    sim.inject("a", "hang_on_stop")
    sim.command("restart", "a")
    assert sim.command("stop", "b") is None
    sim.inject("b", "crash")
    sim.advance(2)
    assert sim.replies[2] == act.Reply(2, True, None)
    assert state(sim, "b") == ("stopped", None)
    assert window(sim) == []
    assert not sim.done


# --- H. Automatic shutdown and significant children ----------------------------------------


def test_r39_bad_combinations_are_refused_before_anything_starts() -> None:
    """R39: significant with permanent, and significant under auto_shutdown=never, are
    refused (the engine checks the tree when it is built)."""
    with pytest.raises(ConfigError) as info:
        Engine(root(svc("a", significant=True), auto_shutdown="any_significant"))
    assert [str(i) for i in info.value.issues] == [
        "a.significant: a permanent child cannot be significant (use transient or temporary)"
    ]
    with pytest.raises(ConfigError) as info:
        Engine(root(svc("a", significant=True, restart="transient")))
    assert [str(i) for i in info.value.issues] == [
        "a.significant: significant has no effect: auto_shutdown of the root is 'never'"
    ]


@pytest.mark.parametrize(
    ("restart", "how"),
    [("transient", "exit0"), ("temporary", "exit0"), ("temporary", "crash"), ("temporary", "kill")],
)
def test_r40_any_significant_shuts_down_when_a_significant_child_ends(
    restart: str, how: str
) -> None:
    """R40 any_significant: a significant child that ends on its own and is not
    restarted shuts the supervisor down normally: the others stop in reverse order,
    otree run exits 0."""
    sim = Simulation(
        root(
            svc("a"),
            svc("job", restart=restart, significant=True),
            svc("c"),
            auto_shutdown="any_significant",
        )
    )
    m = mark(sim)
    sim.inject("job", how)
    assert log_of(sim, m)[1:] == [
        "auto_shutdown <root> job",
        *stopped("c", "a"),
        "tree_stopped 0",
    ]
    assert sim.trace.filter("auto_shutdown")[0] == {
        "ts": 0.0,
        "event": "auto_shutdown",
        "path": "",
        "child": "job",
    }
    assert sim.trace.exit_code == 0
    assert sim.trace.exit_message is None
    assert window(sim) == []


def test_r40_a_transient_significant_child_that_crashes_is_just_restarted() -> None:
    """R40: an abnormal exit of a transient significant child is a restart, not an
    automatic shutdown."""
    sim = Simulation(
        root(svc("job", restart="transient", significant=True), auto_shutdown="any_significant")
    )
    m = mark(sim)
    sim.inject("job", "crash")
    assert log_of(sim, m) == ["exit job 1 abnormal", "restart <root> job", *started("job")]


def test_r41_all_significant_waits_for_the_last_significant_child() -> None:
    """R41 all_significant: two significant children: the first ends -> nothing; the
    second ends -> shutdown."""
    sim = Simulation(
        root(
            svc("a"),
            svc("j1", restart="transient", significant=True),
            svc("j2", restart="temporary", significant=True),
            auto_shutdown="all_significant",
        )
    )
    m = mark(sim)
    sim.inject("j1", "exit0")
    assert log_of(sim, m) == ["exit j1 0 normal"]
    sim.advance(1)
    sim.inject("j2", "crash")
    assert log_of(sim, m)[1:] == [
        "exit j2 1 abnormal",
        "auto_shutdown <root> j2",
        *stopped("a"),
        "tree_stopped 0",
    ]


def test_r41_all_significant_counts_a_manually_stopped_child_as_gone() -> None:
    """R41/R42: a significant child stopped by hand triggers nothing itself, but it no
    longer counts as running when the last other one ends."""
    sim = Simulation(
        root(
            svc("a"),
            svc("j1", restart="transient", significant=True),
            svc("j2", restart="transient", significant=True),
            auto_shutdown="all_significant",
        )
    )
    m = mark(sim)
    assert sim.command("stop", "j1") == act.Reply(1, True, None)
    assert log_of(sim, m) == stopped("j1")
    sim.inject("j2", "exit0")
    assert sim.trace.count("auto_shutdown") == 1
    assert sim.trace.exit_code == 0


def test_r42_a_significant_child_stopped_by_hand_does_not_shut_down() -> None:
    """R42: ``otree stop`` of a significant child is not an exit on its own."""
    sim = Simulation(
        root(
            svc("a"),
            svc("job", restart="temporary", significant=True),
            auto_shutdown="any_significant",
        )
    )
    assert sim.command("stop", "job") == act.Reply(1, True, None)
    assert sim.trace.count("auto_shutdown") == 0
    assert not sim.done


def test_r42_a_significant_bystander_of_a_group_restart_does_not_shut_down() -> None:
    """R42: a temporary significant child stopped by a one_for_all cycle is not
    restarted and does not trigger the automatic shutdown."""
    sim = Simulation(
        root(
            svc("a"),
            svc("job", restart="temporary", significant=True),
            strategy="one_for_all",
            auto_shutdown="any_significant",
        )
    )
    m = mark(sim)
    sim.inject("a", "crash")
    assert log_of(sim, m) == [
        "exit a 1 abnormal",
        "restart <root> a",
        *stopped("job"),
        *started("a"),
    ]
    assert sim.trace.count("auto_shutdown") == 0


def test_r42_auto_shutdown_escalates_through_a_significant_supervisor() -> None:
    """R42: a significant child supervisor that shuts itself down exits normally; its
    parent (any_significant) sees a significant child end and shuts down too."""
    tree = root(
        svc("a"),
        sup(
            "batch",
            svc("job", restart="transient", significant=True),
            svc("helper"),
            auto_shutdown="any_significant",
            restart="transient",
            significant=True,
        ),
        auto_shutdown="any_significant",
    )
    sim = Simulation(tree)
    m = mark(sim)
    sim.inject("batch.job", "exit0")
    assert log_of(sim, m) == [
        "exit batch.job 0 normal",
        "auto_shutdown batch batch.job",
        *stopped("batch.helper"),
        "auto_shutdown <root> batch",
        *stopped("a"),
        "tree_stopped 0",
    ]
    assert sim.trace.exit_code == 0


def test_r42_a_non_significant_supervisor_shutting_down_leaves_the_parent_alone() -> None:
    """R42: if the supervisor that shut itself down is not significant (transient), its
    parent just keeps it as exited."""
    tree = root(
        svc("a"),
        sup(
            "batch",
            svc("job", restart="transient", significant=True),
            auto_shutdown="any_significant",
            restart="transient",
        ),
    )
    sim = Simulation(tree)
    sim.inject("batch.job", "exit0")
    assert state(sim, "batch") == ("exited", None)
    assert sim.running() == {"a": 100}
    assert not sim.done


def test_r43_a_permanent_auto_shutdown_supervisor_is_restarted_and_counted() -> None:
    """R43 (docs warning): a permanent supervisor that shuts itself down is restarted
    each time and uses up its parent's intensity."""
    tree = root(
        sup(
            "batch",
            svc("job", restart="transient", significant=True),
            auto_shutdown="any_significant",
        ),
        intensity=1,
    )
    sim = Simulation(tree)
    sim.inject("batch.job", "exit0")
    assert sim.trace.count("restart", "") == 1
    sim.inject("batch.job", "exit0")
    assert sim.trace.gave_up("")
    assert sim.trace.exit_code == 1


# --- Backoff (otree extension; DESIGN "Backoff") ---------------------------------------------


def spawn_times(trace: Trace, path: str) -> list[float]:
    return [e["ts"] for e in trace.filter("spawn", path)]


def test_backoff_delays_grow_by_factor_up_to_max_with_seeded_jitter() -> None:
    """Backoff: the n-th quick restart waits initial * factor**(n-1), capped at max,
    scaled by a jitter drawn from the engine's seeded Random."""
    bo = Backoff(initial=1, factor=2, max=5, reset_after=60, jitter=0.1)
    sim = Simulation(root(svc("a", backoff=bo), intensity=100, period=1), seed=7)
    for _ in range(5):
        sim.inject("a", "crash")
        due = sim.next_timer()
        assert due is not None
        sim.at(due)
    rng = random.Random(7)
    expected = [min(5.0, base * rng.uniform(0.9, 1.1)) for base in (1, 2, 4, 5, 5)]
    starts = spawn_times(sim.trace, "a")
    assert [round(b - a, 9) for a, b in itertools.pairwise(starts)] == [
        round(d, 9) for d in expected
    ]


def test_backoff_without_jitter_is_exact() -> None:
    """Backoff: with jitter 0 the delays are initial * factor**n capped at max."""
    bo = Backoff(initial=0.5, factor=3, max=10, jitter=0)
    sim = Simulation(root(svc("a", backoff=bo), intensity=100, period=1))
    t = 0.0
    delays = []
    for _ in range(4):
        sim.inject("a", "crash")
        due = sim.next_timer()
        assert due is not None
        delays.append(due - t)
        sim.at(due)
        t = due
    assert delays == [0.5, 1.5, 4.5, 10.0]


def test_backoff_falls_back_to_initial_after_reset_after_seconds_up() -> None:
    """Backoff: once the child stayed up ``reset_after`` seconds, the next delay is
    ``initial`` again; a shorter run keeps the sequence going."""
    bo = Backoff(initial=1, factor=2, max=100, reset_after=10, jitter=0)
    sim = Simulation(root(svc("a", backoff=bo), intensity=100, period=1))
    sim.inject("a", "crash")  # waits 1
    sim.advance(1 + 5)  # up 5 s
    sim.inject("a", "crash")  # waits 2
    assert sim.next_timer() == 8.0
    sim.advance(2 + 10)  # up exactly reset_after
    sim.inject("a", "crash")  # back to 1
    assert sim.next_timer() == sim.now + 1


def test_backoff_keeps_growing_across_failed_retries_after_a_long_run() -> None:
    """Backoff (bug fixed): a child that ran for long, crashed, and then fails to start
    again and again waits 1, 2, 4, 8 s between attempts; it used to restart from
    ``initial`` every time because its last *start* was long ago."""
    failing: set[str] = set()
    bo = Backoff(initial=1, factor=2, max=100, reset_after=10, jitter=0)
    sim = failing_sim(root(svc("a", backoff=bo), intensity=10, period=3600), failing)
    sim.advance(100)
    failing.add("a")
    sim.inject("a", "crash")
    sim.advance(30)
    fails = [e["ts"] for e in sim.trace.filter("start_failed", "a")]
    assert fails == [101.0, 103.0, 107.0, 115.0]


def test_backoff_the_decision_is_taken_at_the_exit() -> None:
    """Backoff: the ``restart`` event and the window entry come at the exit; a group
    strategy stops the siblings then; only the starts wait."""
    bo = Backoff(initial=3, jitter=0)
    sim = Simulation(root(svc("a", backoff=bo), svc("b"), strategy="one_for_all"))
    m = mark(sim)
    sim.at(1).inject("a", "crash")
    assert log_of(sim, m) == ["exit a 1 abnormal", "restart <root> a", *stopped("b")]
    assert window(sim) == [1.0]
    assert [state(sim, p) for p in ("a", "b")] == [("restarting", None), ("restarting", None)]
    sim.advance(3)
    assert log_of(sim, m)[4:] == started("a", "b")
    assert spawn_times(sim.trace, "b") == [0.0, 4.0]


def test_backoff_a_give_up_never_waits() -> None:
    """Backoff: the give-up is decided at the exit that exceeds the intensity."""
    bo = Backoff(initial=3, jitter=0)
    sim = Simulation(root(svc("a", backoff=bo), svc("b"), intensity=0))
    m = mark(sim)
    sim.at(1).inject("a", "crash")
    assert log_of(sim, m) == [
        "exit a 1 abnormal",
        "give_up <root> 1/5",
        *stopped("b"),
        "tree_stopped 1",
    ]
    assert sim.now == 1.0


def test_backoff_in_a_group_restart_the_triggering_childs_backoff_applies() -> None:
    """Backoff: b has none, a has 2 s: a's crash restarts both after 2 s; b's crash
    restarts both at once."""
    bo = Backoff(initial=2, jitter=0)
    sim = Simulation(root(svc("a", backoff=bo), svc("b"), strategy="one_for_all"))
    sim.inject("a", "crash")
    sim.advance(2)
    assert spawn_times(sim.trace, "b") == [0.0, 2.0]
    sim.advance(1)
    sim.inject("b", "crash")
    assert spawn_times(sim.trace, "a") == [0.0, 2.0, 3.0]


def test_backoff_a_crash_of_a_sibling_subsumes_a_pending_delayed_restart() -> None:
    """Backoff: rest_for_one [a, b(backoff 5)]: b waits for its restart; a crashes ->
    the new restart (a and b, at once) replaces b's pending one."""
    bo = Backoff(initial=5, jitter=0)
    sim = Simulation(root(svc("a"), svc("b", backoff=bo), strategy="rest_for_one"))
    sim.inject("b", "crash")
    sim.advance(1)
    m = mark(sim)
    sim.inject("a", "crash")
    assert log_of(sim, m) == ["exit a 1 abnormal", "restart <root> a", *started("a", "b")]
    sim.advance(10)
    assert sim.trace.pids("b") == [101, 103]


# --- exit codes, signals to otree, kill_all ------------------------------------------------------


def test_shutdown_exits_0_and_give_up_exits_1_and_start_failure_exits_3() -> None:
    """Exit codes (DESIGN "CLI"): 0 shutdown, 1 root gave up, 3 initial start failed."""
    sim = Simulation(root(svc("a")))
    sim.command("shutdown")
    assert (sim.trace.exit_code, sim.trace.exit_message) == (0, None)
    sim = Simulation(root(svc("a"), intensity=0))
    sim.inject("a", "crash")
    assert sim.trace.exit_code == 1
    sim = Simulation(root(svc("a")), start=False)
    sim.inject("a", "fail_start")
    sim.start()
    assert (sim.trace.exit_code, sim.trace.exit_message) == (
        3,
        "a: cannot start: simulated start failure",
    )


def test_shutdown_during_a_give_up_keeps_exit_code_1() -> None:
    """Exit codes (bug fixed): a shutdown request (SIGTERM) that arrives while the root
    is stopping after a give-up does not turn the exit 1 into 0."""
    sim = Simulation(root(svc("a"), svc("b", shutdown=3), intensity=0))
    sim.inject("b", "hang_on_stop")
    sim.inject("a", "crash")
    assert sim.command("shutdown") == act.Reply(1, True, None)
    sim.advance(5)
    assert sim.trace.exit_code == 1
    assert log_of(sim)[-1] == "tree_stopped 1"


def test_shutdown_during_a_failed_initial_start_keeps_exit_code_3() -> None:
    """Exit codes (bug fixed): same for a shutdown while a failed start is unwinding."""
    sim = Simulation(root(svc("a", shutdown=3), svc("b")), start=False)
    sim.inject("a", "hang_on_stop")
    sim.inject("b", "fail_start")
    sim.start()
    sim.command("shutdown")
    sim.advance(5)
    assert sim.trace.exit_code == 3
    assert sim.trace.exit_message == "b: cannot start: simulated start failure"


def test_shutdown_while_starting_stops_what_started() -> None:
    """Shutdown during the initial start: the child being started is stopped as soon
    as it exists, then the others in reverse order; exit 0."""
    b = Bench(root(svc("a"), svc("b"), svc("c")))
    b.start()
    b.feed(ev.Spawned("a", 10))
    out = b.feed(ev.Command("shutdown", "", 1))  # b's Spawn is out, not answered yet
    assert non_reports(out) == [act.Reply(1, True, None)]
    out = b.feed(ev.Spawned("b", 11))
    assert non_reports(out) == [act.Signal("b", 11, "TERM"), act.SetTimer(("kill", "b", "11"), 5.0)]
    out = b.feed(ev.Exited("b", 11, signal="TERM"))
    assert [a for a in out if isinstance(a, act.Signal)] == [act.Signal("a", 10, "TERM")]
    b.feed(ev.Exited("a", 10, signal="TERM"))
    assert b.engine.exit_code == 0
    assert not [a for a in b.out if isinstance(a, act.Spawn) and a.path == "c"]


def test_kill_all_kills_every_process_at_once() -> None:
    """A second INT (``kill_all``): every process group gets SIGKILL at once, the
    children in reverse order, and the tree exits 0."""
    sim = Simulation(root(svc("a"), sup("web", svc("x"), svc("y")), svc("z")))
    for p in ("a", "web.x", "web.y", "z"):
        sim.inject(p, "hang_on_stop")
    m = mark(sim)
    assert sim.command("kill_all") == act.Reply(1, True, None)
    assert log_of(sim, m) == [
        "stop z",
        "stop web.y",
        "stop web.x",
        "stop a",
        "exit z KILL normal",
        "exit web.y KILL normal",
        "exit web.x KILL normal",
        "exit a KILL normal",
        "tree_stopped 0",
    ]


def test_kill_all_after_shutdown_kills_the_ones_still_stopping() -> None:
    """INT then INT: the first starts the orderly stop, the second kills what is left."""
    sim = Simulation(root(svc("a", shutdown=100), svc("b", shutdown=100)))
    sim.inject("a", "hang_on_stop")
    sim.inject("b", "hang_on_stop")
    m = mark(sim)
    sim.command("shutdown")
    sim.advance(1)
    sim.command("kill_all")
    assert log_of(sim, m) == [
        "stop b",
        "stop a",
        "exit b KILL normal",
        "exit a KILL normal",
        "tree_stopped 0",
    ]
    assert sim.now == 1.0


def test_kill_all_during_a_group_restart_starts_nothing_more() -> None:
    """kill_all (bug fixed): a supervisor in the middle of a restart stops starting
    children once everything is being killed; it used to start the next one."""
    tree = root(
        sup("web", svc("a"), svc("b", ready=ReadyDelay(delay=5)), svc("c"), strategy="one_for_all"),
        svc("x", shutdown=10),
    )
    sim = failing_sim(tree, set())
    sim.advance(6)
    sim.inject("x", "hang_on_stop")
    sim.inject("web.a", "crash")  # web: stops c, b; starts a, then b (ready after 5 s)
    sim.advance(1)
    before = spawns(sim)
    assert before[-2:] == ["web.a", "web.b"]
    sim.command("shutdown")  # the root stops x first: it hangs
    sim.command("kill_all")
    sim.advance(20)
    assert spawns(sim) == before  # web.c is not started
    assert sim.running() == {}
    assert sim.trace.exit_code == 0


# --- more restart paths --------------------------------------------------------------------


def test_r26_a_readiness_timeout_during_a_restart_is_retried_and_counted() -> None:
    """R26 + readiness: a restarted process that is not ready in time failed to start:
    it is stopped, ``start_failed`` is logged and the restart is retried (counted)."""
    b = Bench(root(svc("a", ready=ReadyNotify(timeout=2))))
    b.start()
    b.feed(ev.Spawned("a", 10))
    b.feed(ev.Ready("a", 10))
    b.feed(ev.Exited("a", 10, code=1), at=1.0)
    b.feed(ev.Spawned("a", 11))
    out = b.feed(ev.TimerFired(("ready", "a", "11")), at=3.0)
    assert non_reports(out) == [act.Signal("a", 11, "TERM"), act.SetTimer(("kill", "a", "11"), 5.0)]
    out = b.feed(ev.Exited("a", 11, signal="TERM"))
    assert act.SetTimer(("restart", "", "1"), 0.0) in out
    assert b.reports()[-4:] == [
        "exit a 1 abnormal",
        "restart <root> a",
        "start_failed a: not ready after 2s",
        "restart <root> a",
    ]
    assert b.engine.nodes[""].window.times == [1.0, 3.0]  # type: ignore[attr-defined]


def test_r26_a_supervisor_child_that_fails_to_start_in_a_restart_is_retried() -> None:
    """R26/R11: the root restarts web after web gave up; web's child fails to start, so
    web fails to start: the root retries web (counted again) and web comes up."""
    sim = Simulation(root(svc("z"), sup("web", svc("x"), intensity=0)))
    sim.inject("web.x", "fail_start")
    m = mark(sim)
    sim.inject("web.x", "crash")
    assert log_of(sim, m) == [
        "exit web.x 1 abnormal",
        "give_up web 1/5",
        "restart <root> web",
        "start_failed web.x: simulated start failure",
        "restart <root> web",
        *started("web.x"),
    ]
    assert window(sim) == [0.0, 0.0]


def test_a_process_stopped_before_it_was_ready_logs_nothing() -> None:
    """Event log: ``spawn`` comes only once a service is ready, so a process stopped
    while its readiness check runs has no ``stop``/``exit`` lines either."""
    sim = Simulation(root(svc("a"), svc("slow", ready=ReadyDelay(delay=10))))
    assert sim.running() == {"a": 100, "slow": 101}
    m = mark(sim)
    sim.command("shutdown")
    assert sim.replies[1] == act.Reply(1, True, None)
    assert log_of(sim, m) == [*stopped("a"), "tree_stopped 0"]
    assert sim.running() == {}


def test_r38_a_command_during_the_initial_start_waits_for_the_tree() -> None:
    """R38: ``stop a`` sent while the tree is still starting runs once it is up."""
    sim = Simulation(root(svc("a"), svc("slow", ready=ReadyDelay(delay=3))))
    assert sim.command("stop", "a") is None
    sim.advance(3)
    assert sim.replies[1] == act.Reply(1, True, None)
    assert log_of(sim) == [*started("a", "slow"), "tree_ready", *stopped("a")]


def test_a_manual_restart_of_a_supervisor_gives_it_a_fresh_window() -> None:
    """R25/R32: a supervisor started again (by hand or by its parent) starts with only
    its declared children and an empty restart window."""
    sim = Simulation(root(sup("web", svc("x"), svc("y"), intensity=1)))
    sim.inject("web.x", "crash")
    assert window(sim, "web") == [0.0]
    assert sim.command("restart", "web") == act.Reply(1, True, None)
    assert window(sim, "web") == []
    sim.inject("web.y", "crash")
    assert not sim.trace.gave_up("web")


def test_stopping_a_supervisor_cancels_its_pending_delayed_restarts() -> None:
    """R28/R31: ``stop web`` while web.x waits for its backoff: the timer is cancelled,
    nothing starts; ``start web`` later starts both children."""
    tree = root(svc("z"), sup("web", svc("x", backoff=Backoff(initial=5, jitter=0)), svc("y")))
    sim = Simulation(tree)
    sim.inject("web.x", "crash")
    assert sim.command("stop", "web") == act.Reply(1, True, None)
    sim.advance(10)
    assert sim.running() == {"z": 100}
    assert sim.next_timer() is None
    assert [state(sim, p)[0] for p in ("web", "web.x", "web.y")] == ["stopped"] * 3
    assert sim.command("start", "web") == act.Reply(2, True, None)
    assert sim.running() == {"z": 100, "web.x": 103, "web.y": 104}


def test_status_shows_state_pid_restarts_and_last_exit() -> None:
    """``otree status``: per node its state, PID, restarts inside the parent's window
    and last exit."""
    sim = Simulation(root(svc("a"), svc("t", restart="transient"), period=10))
    sim.at(1).inject("a", "crash")
    sim.at(2).inject("a", "kill")
    sim.inject("t", "exit0")
    by_path = {n.path: n for n in engine_of(sim).status(sim.now)}
    a, t = by_path["a"], by_path["t"]
    assert (a.kind, a.state, a.pid, a.restarts, a.started_at) == ("service", "running", 103, 2, 2.0)
    assert a.last_exit == {"signal": "KILL", "normal": False}
    assert (t.state, t.pid, t.last_exit) == ("exited", None, {"code": 0, "normal": True})
    assert by_path[""].kind == "supervisor"
    late = {n.path: n for n in engine_of(sim).status(11.5)}
    assert late["a"].restarts == 1  # the restart at 1.0 has left the window


def test_r38_a_command_in_progress_is_answered_when_its_supervisor_is_stopped() -> None:
    """R38 (bug fixed): ``stop web`` hangs on a child; a shutdown then replaces web's
    plan. The ``stop`` is answered once that child is gone (it used to get no reply);
    a ``restart`` cut short the same way is refused."""
    sim = Simulation(root(svc("a"), svc("web", shutdown=5)))
    sim.inject("web", "hang_on_stop")
    assert sim.command("stop", "web") is None
    assert sim.command("shutdown") == act.Reply(2, True, None)
    sim.advance(5)
    assert sim.replies[1] == act.Reply(1, True, None)
    assert sim.trace.exit_code == 0

    sim = Simulation(root(svc("z"), sup("web", svc("x", shutdown=5), svc("y"))))
    sim.inject("web.x", "hang_on_stop")
    assert sim.command("restart", "web.x") is None  # web: stopping x (it hangs)
    assert sim.command("stop", "web") is None  # the root: stopping web
    assert sim.replies[1] == act.Reply(1, False, "'web' is not running (stopping)")
    sim.advance(5)
    assert sim.replies[2] == act.Reply(2, True, None)
    assert sim.running() == {"z": 100}


# --- liveness under random schedules -------------------------------------------------------------


def idle_supervisors_are_settled(sim: Simulation) -> None:
    """A running supervisor with nothing to do has no exit or request left waiting, and
    each child is up, down, or waiting for a restart timer that is set."""
    engine = engine_of(sim)
    for node in engine.nodes.values():
        if not isinstance(node, SupNode) or node.state != "running" or node.busy:
            continue
        assert not node.mailbox, (node.path, node.mailbox)
        for c in node.children:
            # a child supervisor may be stopping on its own (it gave up or shuts down)
            ok = ("running", "stopped", "exited", "restarting")
            assert c.state in ok or (c.kind == "supervisor" and c.state == "stopping"), c.path
            if c.state == "restarting":
                assert c.restart_key in node.timers, c.path


@settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
@given(tree=trees(), data=st.data())
def test_every_request_is_answered_and_the_tree_always_comes_down(
    tree: Supervisor, data: st.DataObject
) -> None:
    """Whatever happens (crashes, hangs, failed starts, commands at any moment), every
    request gets exactly one reply, an idle supervisor never has a child stuck, and
    shutdown followed by kill_all always brings the tree down with no process left."""
    sim = Simulation(tree, start=False)
    services = [p for p, n in walk(tree) if isinstance(n, Service)]
    paths = [p for p, _ in walk(tree)]
    for path in data.draw(st.lists(st.sampled_from(services), max_size=2)):
        sim.inject(path, data.draw(st.sampled_from(["fail_start", "hang_on_stop"])))
    sim.start()
    sent = 0

    def command(name: str, path: str = "") -> None:
        nonlocal sent
        if not sim.done:
            sent += 1
        sim.command(name, path)

    for _ in range(data.draw(st.integers(0, 20))):
        if sim.done:
            break
        kind = data.draw(st.integers(0, 9))
        if kind < 5:
            sim.inject(data.draw(st.sampled_from(services)), data.draw(st.sampled_from(HOWS)))
        elif kind < 8:
            name = data.draw(st.sampled_from(["start", "stop", "restart"]))
            command(name, data.draw(st.sampled_from(paths)))
        elif kind == 8:
            sim.advance(data.draw(st.sampled_from([0.01, 0.5, 3.0, 40.0])))
        else:
            command(data.draw(st.sampled_from(["shutdown", "kill_all"])))
        if not sim.done:
            idle_supervisors_are_settled(sim)
    command("shutdown")
    sim.run(until=sim.now + 10_000)
    command("kill_all")
    sim.run(until=sim.now + 10_000)
    assert sim.done
    assert sim.running() == {}
    assert sorted(sim.replies) == list(range(1, sent + 1))  # no request left unanswered
    live: set[int] = set()
    for e in sim.trace.events:
        if e["event"] == "spawn":
            live.add(e["pid"])
        elif e["event"] == "exit":
            assert e["pid"] in live
            live.remove(e["pid"])
    assert not live
