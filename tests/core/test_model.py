"""Model-based test: the real engine on the simulator against the reference model (model.py).

A Hypothesis state machine builds a random valid tree (up to 3 supervisor
levels, every strategy, restart type and auto_shutdown, significant
children), starts it in both the simulator and the model, then applies
random steps: crashes, clean exits and kills of live services, clock jumps
(small, large, and exactly onto a restart-window edge), and manual
start/stop/restart of services and supervisors. After every step the two
must agree on the running services, the ordered lifecycle events of the
step (spawn, ready, stop, exit, start_failed, restart, give_up,
auto_shutdown, tree_ready, tree_stopped) and the exit code.

Times and periods are multiples of 0.25 s, so window-edge arithmetic is
exact in floating point for both sides.

The model's world is instant (nothing waits), so some of OTP's rules cannot
arise in it. Invariants check those on the engine itself (``CheckedEngine``),
in this machine and in a second one (``EngineInvariants``) whose trees have
readiness delays and backoff and whose processes may hang on stop, so starts
take time, restarts wait and requests queue. One invariant per rule that
issue 10 found broken, each from OTP's ``supervisor.erl``:

1. ``do_auto_shutdown``: when an ``all_significant`` supervisor shuts down, none
   of its significant children has a process, a pending restart or an exit
   waiting to be handled;
2. ``restart_child`` sees a pid until its EXIT is handled: a ``start`` is never
   answered ok while an exit of that child waits in its supervisor's mailbox;
3. ``terminate_child`` of a restarting child leaves ``try_again_restart``
   nothing to do: after every step, every child shown ``restarting`` is in the
   plan under way or waits on a restart whose trigger is itself restarting;
4. ``add_restart`` for a retry runs in ``try_again_restart``, after what was
   queued before it: no retry follows a ``stop`` of that child sent while its
   attempt was under way.
"""

from __future__ import annotations

from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
)
from model import Entry, Model
from support.specs import svc

from otree.core import events as ev
from otree.core.engine import Engine
from otree.core.node import ExitMail, StartChild, State, SupNode
from otree.core.spec import AutoShutdown, Backoff, ReadyExited, Restart, Service, Supervisor, walk
from otree.testing import Simulation, Trace, crash_schedules, simulate, supervisors

COMPARED = {
    "spawn",
    "ready",
    "stop",
    "exit",
    "start_failed",
    "restart",
    "give_up",
    "auto_shutdown",
    "tree_ready",
    "tree_stopped",
}


def normalise(event: dict[str, Any]) -> Entry:
    """A trace event as the model writes it (no ts, no pids, no exit code/signal)."""
    name, path = event["event"], event["path"]
    if name == "exit":
        return (name, path, event["normal"])
    if name == "restart":
        strategy = event["strategy"]
        return (name, path, getattr(strategy, "value", strategy), event["child"])
    if name == "give_up":
        return (name, path, event["restarts"], event["period"])
    if name == "auto_shutdown":
        return (name, path, event["child"])
    if name == "tree_stopped":
        return (name, path, event["exit_code"])
    return (name, path)


def compared(trace: Trace, since: int = 0) -> list[Entry]:
    return [normalise(e) for e in trace.events[since:] if e["event"] in COMPARED]


def quarter(x: float) -> float:
    """``x`` rounded to a multiple of 0.25 (at least 0.25): exact in binary floating point."""
    return max(0.25, round(x * 4) / 4)


def dyadic_periods(sup: Supervisor) -> Supervisor:
    children = [dyadic_periods(c) if isinstance(c, Supervisor) else c for c in sup.children]
    return attrs.evolve(sup, period=quarter(min(sup.period, 100.0)), children=children)


class CheckedEngine(Engine):
    """The engine, checking invariants 1, 2 and 4 of the module doc as it goes."""

    def __init__(self, tree: Supervisor, rng: Any) -> None:
        super().__init__(tree, rng)
        self.requests: dict[int, tuple[str, str]] = {}
        self.reports = 0  # how many reports so far: a clock of what happened
        self.last_restart: dict[str, int] = {}  # supervisor path -> report number
        self.attempt_stops: dict[str, int] = {}  # child path -> report number of a stop
        self.failed_at: dict[str, int] = {}  # child path -> its last start_failed

    def handle(self, event: ev.Event, now: float) -> list[Any]:
        if isinstance(event, ev.Command):
            self.requests[event.request] = (event.name, event.path)
            if event.name == "stop":
                self.attempt_stops[event.path] = self.reports
        return super().handle(event, now)

    def report(self, event: str, path: str, **fields: Any) -> None:
        self.reports += 1
        if event == "auto_shutdown":
            self._check_auto_shutdown(path)
        elif event == "start_failed":
            self.failed_at[path] = self.reports
        elif event == "spawn":
            self.failed_at.pop(path, None)
        elif event == "restart":
            self._check_retry(path, fields["child"])
            self.last_restart[path] = self.reports
        super().report(event, path, **fields)

    def reply(self, request: int | None, error: str | None) -> None:
        name, path = self.requests.get(request or 0, ("", ""))
        if error is None and name == "start":
            node = self.nodes[path]
            sup = node.parent
            assert sup is not None
            waiting = [m for m in sup.mailbox if isinstance(m, ExitMail) and m.child is node]
            assert not waiting, f"invariant 2: start {path!r} answered ok, its exit waits"
        super().reply(request, error)

    def _check_auto_shutdown(self, path: str) -> None:
        sup = self.nodes[path]
        assert isinstance(sup, SupNode)
        if sup.spec.auto_shutdown is not AutoShutdown.ALL_SIGNIFICANT:
            return
        there = {
            c.path: c.status.value
            for c in sup.children
            if c.significant and c.status not in (State.STOPPED, State.EXITED)
        }
        assert not there, f"invariant 1: {path!r} shut down with significant children {there}"

    def _check_retry(self, sup: str, child: str) -> None:
        failed = self.failed_at.get(child)
        if failed is None:  # not a retry
            return
        stop = self.attempt_stops.get(child)
        began = self.last_restart.get(sup, 0)
        assert stop is None or not began < stop <= failed, (
            f"invariant 4: {sup!r} retried {child!r} after a stop sent during the attempt"
        )


def check_restarting(engine: Any) -> None:
    """Invariant 3 of the module doc, on the engine's state now."""
    assert isinstance(engine, Engine)
    for node in engine.nodes.values():
        sup = node.parent
        if sup is None or node.status is not State.RESTARTING:
            continue
        key = node.record.restart_key
        if key is None:  # restarting now: the plan under way starts it
            planned = [s for s in sup.plan if isinstance(s, StartChild) and s.child is node]
            assert planned, f"invariant 3: {node.path!r} restarting, nothing will start it"
            continue
        pending = sup.pending.get(key)
        assert pending is not None, f"invariant 3: {node.path!r} restarting, nothing pending"
        trigger = pending.trigger
        assert trigger.status is State.RESTARTING and trigger.record.restart_key == key, (
            f"invariant 3: {node.path!r} waits on the restart of {trigger.path!r}, "
            f"which is {trigger.status.value}"
        )


def without_one_shots(sup: Supervisor) -> Supervisor:
    """One-shot steps (``ready = { exited = true }``) exit as they start: the model has
    no such services (their start and end are tested in tests/core/test_health.py)."""
    children = [
        without_one_shots(c)
        if isinstance(c, Supervisor)
        else attrs.evolve(c, ready=None)
        if isinstance(c.ready, ReadyExited)
        else c
        for c in sup.children
    ]
    return attrs.evolve(sup, children=children)


model_trees = (
    supervisors(max_depth=3, max_children=3, backoff=False, ready_delays=False, pools=False)
    .map(dyadic_periods)
    .map(without_one_shots)
)


class EngineVsModel(RuleBasedStateMachine):
    sim: Simulation
    model: Model

    @initialize(tree=model_trees, data=st.data())
    def build(self, tree: Supervisor, data: st.DataObject) -> None:
        self.tree = tree
        self.sim = Simulation(tree, start=False, engine_factory=CheckedEngine)
        self.model = Model(tree)
        # now and then, a service fails its initial start
        services = [p for p, n in walk(tree) if isinstance(n, Service)]
        if data.draw(st.integers(0, 9), label="initial failure?") == 0:
            path = data.draw(st.sampled_from(services), label="fails to start")
            self.sim.inject(path, "fail_start")
            self.model.fail_next.add(path)
        self.sim.start()
        self.model.start()
        self.seen_sim = 0
        self.seen_model = 0
        self.steps: list[str] = []
        self.check_step("start")

    # --- comparison ----------------------------------------------------

    def check_step(self, step: str) -> None:
        self.steps.append(step)
        got = compared(self.sim.trace, self.seen_sim)
        for entry in got:
            event(entry[0])
        want = self.model.log[self.seen_model :]
        self.seen_sim = len(self.sim.trace.events)
        self.seen_model = len(self.model.log)
        status = {n.path: n.state for n in self.sim.engine.status(self.sim.now)}  # type: ignore[attr-defined]
        states_agree = all(
            (status[path] == "running") == node.running
            for path, node in self.model.nodes.items()
            if path
        )
        ok = (
            states_agree
            and got == want
            and set(self.sim.running()) == self.model.running_services()
            and self.sim.trace.exit_code == self.model.exit_code
        )
        if not ok:
            raise AssertionError(
                f"engine and model differ after {step}\nsteps: {self.steps}\n"
                f"trace:\n{self.sim.trace.format(60)}\n"
                f"engine events: {got}\nmodel events:  {want}\n"
                f"engine running: {sorted(self.sim.running())}\n"
                f"model running:  {sorted(self.model.running_services())}\n"
                f"exit codes: engine {self.sim.trace.exit_code}, model {self.model.exit_code}\n"
                f"engine states: {status}\n"
                f"model running nodes: {sorted(self.model.running_nodes())}"
            )

    @invariant()
    def one_process_per_service(self) -> None:
        live = list(self.sim.trace._live.values())
        assert len({p.path for p in live}) == len(live)

    @invariant()
    def restarting_children_wait_on_a_restarting_trigger(self) -> None:
        check_restarting(self.sim.engine)

    # --- helpers -------------------------------------------------------

    def live_services(self) -> list[str]:
        return sorted(self.model.running_services())

    def commandable(self) -> list[str]:
        """Paths whose parent supervisor runs (the root itself excluded)."""
        out = []
        for path, node in self.model.nodes.items():
            if path and node.parent is not None and node.parent.running:
                out.append(path)
        return sorted(out)

    # --- rules ---------------------------------------------------------
    # No preconditions: a rule that does not apply does nothing (a rule filter
    # that rejects often makes Hypothesis throw the whole example away).

    def end_a_service(self, data: st.DataObject, how: str) -> None:
        live = self.live_services()
        if self.model.done or not live:
            return
        path = data.draw(st.sampled_from(live), label="path")
        assert self.sim.inject(path, how)
        self.model.exit(path, how)
        self.check_step(f"{how} {path!r} at {self.sim.now}")

    @rule(data=st.data())
    def crash(self, data: st.DataObject) -> None:
        self.end_a_service(data, "crash")

    @rule(data=st.data())
    def exit0(self, data: st.DataObject) -> None:
        self.end_a_service(data, "exit0")

    @rule(data=st.data())
    def kill(self, data: st.DataObject) -> None:
        self.end_a_service(data, "kill")

    @rule(data=st.data())
    def unhealthy(self, data: st.DataObject) -> None:
        self.end_a_service(data, "unhealthy")

    @rule(data=st.data())
    def fail_next_start(self, data: st.DataObject) -> None:
        if self.model.done:
            return
        services = sorted(p for p, n in self.model.nodes.items() if n.is_service)
        path = data.draw(st.sampled_from(services), label="path")
        self.sim.inject(path, "fail_start")
        self.model.fail_next.add(path)
        self.check_step(f"fail_start {path!r}")

    @rule(dt=st.sampled_from([0.25, 0.5, 1.0, 2.5, 5.0, 30.0, 1000.0]))
    def advance(self, dt: float) -> None:
        self.sim.advance(dt)
        self.model.now = self.sim.now
        self.check_step(f"advance {dt} to {self.sim.now}")

    @rule(data=st.data(), offset=st.sampled_from([0.0, -0.25, 0.25]))
    def advance_to_window_edge(self, data: st.DataObject, offset: float) -> None:
        """Jump to exactly ``t + period`` of a recorded restart time (or just before/after)."""
        edges = sorted(
            {
                t + n.spec.period + offset
                for n in self.model.nodes.values()
                if isinstance(n.spec, Supervisor) and n.running
                for t in n.history
                if t + n.spec.period + offset >= self.sim.now
            }
        )
        if self.model.done or not edges:
            return
        t = data.draw(st.sampled_from(edges), label="edge")
        self.sim.at(t)
        self.model.now = t
        self.check_step(f"edge to {t}")

    @rule(data=st.data(), name=st.sampled_from(["start", "stop", "restart"] * 4 + ["shutdown"]))
    def manual(self, data: st.DataObject, name: str) -> None:
        if self.model.done:
            return
        if name == "shutdown":
            self.sim.command("shutdown")
            self.model.command("shutdown")
            self.check_step("shutdown")
            return
        paths = self.commandable()
        if not paths:
            return
        path = data.draw(st.sampled_from(paths), label="path")
        self.sim.command(name, path)
        self.model.command(name, path)
        self.check_step(f"{name} {path!r} at {self.sim.now}")


EngineVsModel.TestCase.settings = settings(
    max_examples=150,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestEngineVsModel = EngineVsModel.TestCase


class EngineInvariants(RuleBasedStateMachine):
    """The model's blind spot: trees where starts take time (readiness delays),
    restarts wait (backoff) and stops hang, so exits and requests queue. No model
    here: the invariants of the module doc are the oracle."""

    sim: Simulation

    @initialize(
        tree=supervisors(max_depth=3, max_children=3, pools=False), seed=st.integers(0, 2**16)
    )
    def build(self, tree: Supervisor, seed: int) -> None:
        self.sim = Simulation(tree, seed=seed, engine_factory=CheckedEngine)
        self.services = sorted(p for p, n in walk(tree) if isinstance(n, Service))
        self.paths = sorted(p for p, _ in walk(tree))

    @invariant()
    def restarting_children_wait_on_a_restarting_trigger(self) -> None:
        check_restarting(self.sim.engine)

    @rule(data=st.data(), how=st.sampled_from(["crash", "exit0", "kill", "hang_on_stop"]))
    def end_a_process(self, data: st.DataObject, how: str) -> None:
        live = sorted(set(self.sim.running()))  # starting ones too: a failed start
        if self.sim.done or not live:
            return
        self.sim.inject(data.draw(st.sampled_from(live), label="path"), how)

    @rule(data=st.data())
    def fail_next_start(self, data: st.DataObject) -> None:
        if not self.sim.done:
            self.sim.inject(data.draw(st.sampled_from(self.services), label="path"), "fail_start")

    @rule(dt=st.sampled_from([0.1, 0.25, 0.5, 1.0, 2.0, 5.0]))
    def advance(self, dt: float) -> None:
        self.sim.advance(dt)

    @rule(data=st.data(), name=st.sampled_from(["start", "stop", "restart"]))
    def manual(self, data: st.DataObject, name: str) -> None:
        self.sim.command(name, data.draw(st.sampled_from(self.paths), label="path"))


EngineInvariants.TestCase.settings = settings(
    max_examples=150,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestEngineInvariants = EngineInvariants.TestCase


# --- targeted checks of the model itself (so a wrong model is caught too) ---


def test_model_one_for_all_with_a_temporary_bystander() -> None:
    tree = Supervisor(
        "root",
        strategy="one_for_all",
        children=[svc("a"), svc("b"), svc("c", restart=Restart.TEMPORARY)],
    )
    m = Model(tree)
    m.start()
    del m.log[:]
    m.exit("b", "crash")
    assert m.log == [
        ("exit", "b", False),
        ("restart", "", "one_for_all", "b"),
        ("stop", "c"),
        ("exit", "c", True),
        ("stop", "a"),
        ("exit", "a", True),
        ("spawn", "a"),
        ("ready", "a"),
        ("spawn", "b"),
        ("ready", "b"),
    ]
    assert m.running_services() == {"a", "b"}


def test_model_gives_up_on_the_intensity_plus_first_restart_and_escalates() -> None:
    tree = Supervisor(
        "root",
        intensity=0,
        children=[svc("db"), Supervisor("web", intensity=1, period=5, children=[svc("api")])],
    )
    m = Model(tree)
    m.start()
    m.exit("web.api", "crash")
    assert ("restart", "web", "one_for_one", "web.api") in m.log
    m.now = 5.0  # exactly period later: the first restart still counts
    m.exit("web.api", "crash")
    assert m.log[-6:] == [
        ("exit", "web.api", False),
        ("give_up", "web", 2, 5.0),
        ("give_up", "", 1, 5.0),
        ("stop", "db"),
        ("exit", "db", True),
        ("tree_stopped", "", 1),
    ]
    assert m.exit_code == 1
    assert m.running_services() == set()


def test_model_window_keeps_the_edge_and_drops_past_it() -> None:
    tree = Supervisor("root", intensity=1, period=2, children=[svc("a")])
    m = Model(tree)
    m.start()
    m.exit("a", "crash")
    m.now = 2.0
    m.exit("a", "crash")  # 2.0 - 0.0 <= 2: two in the window -> give up
    assert m.exit_code == 1
    m = Model(tree)
    m.start()
    m.exit("a", "crash")
    m.now = 2.25
    m.exit("a", "crash")  # the first one dropped out
    assert m.exit_code is None


def test_model_auto_shutdown_all_significant_waits_for_the_last() -> None:
    tree = Supervisor(
        "root",
        auto_shutdown="all_significant",
        children=[
            svc("a", restart=Restart.TRANSIENT, significant=True),
            svc("b", restart=Restart.TEMPORARY, significant=True),
            svc("c"),
        ],
    )
    m = Model(tree)
    m.start()
    m.exit("a", "exit0")
    assert m.exit_code is None
    m.exit("b", "crash")
    assert m.log[-4:] == [
        ("auto_shutdown", "", "b"),
        ("stop", "c"),
        ("exit", "c", True),
        ("tree_stopped", "", 0),
    ]


def test_model_failed_restart_is_retried_and_counted() -> None:
    tree = Supervisor("root", intensity=2, children=[svc("a"), svc("b")])
    m = Model(tree)
    m.start()
    m.fail_next.add("a")
    m.exit("a", "crash")
    assert m.log[-6:] == [
        ("exit", "a", False),
        ("restart", "", "one_for_one", "a"),
        ("start_failed", "a"),
        ("restart", "", "one_for_one", "a"),
        ("spawn", "a"),
        ("ready", "a"),
    ]
    assert m.root.history == [0.0, 0.0]


@pytest.mark.parametrize("strategy", ["one_for_one", "one_for_all", "rest_for_one"])
def test_model_walks_every_path(strategy: str) -> None:
    tree = Supervisor(
        "root", strategy=strategy, children=[svc("a"), Supervisor("s", children=[svc("b")])]
    )
    m = Model(tree)
    assert set(m.nodes) == {"", *(p for p, _ in walk(tree))}


def with_zero_backoff(sup: Supervisor) -> Supervisor:
    zero = Backoff(initial=0.0, max=0.0, jitter=0.5)
    children = [
        with_zero_backoff(c) if isinstance(c, Supervisor) else attrs.evolve(c, backoff=zero)
        for c in sup.children
    ]
    return attrs.evolve(sup, children=children)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_a_zero_backoff_changes_nothing(data: st.DataObject) -> None:
    """The backoff path with a 0 s delay makes the same decisions at the same instants
    as the immediate restart of OTP (failed retries and hanging stops included)."""
    tree = data.draw(model_trees, label="tree")
    hows = ("crash", "exit0", "kill", "fail_start", "hang_on_stop", "unhealthy")
    schedule = data.draw(crash_schedules(tree, max_crashes=15, within=20.0, hows=hows))
    plain = simulate(tree, schedule, stop=True)
    zero = simulate(with_zero_backoff(tree), schedule, stop=True)
    assert zero.events == plain.events, f"plain:\n{plain}\nzero backoff:\n{zero}"
