"""Driving the real engine for the OTP rule tests (``tests/core/rules``, a file per section
of OTP-RULES.md). Each test's docstring cites the rule it checks; where otree maps a rule
differently from OTP, the test checks otree's documented behaviour and says so ("otree:").

Most rule tests run the engine on the simulator (``otree.testing.Simulation``:
fake processes, fake clock) and compare its event log, one short line an event
(``brief``). Two helpers fill what the simulator does not offer: ``failing_sim``
makes every start of some services fail (the simulator's ``fail_start`` fails
only the next one), and ``Bench`` drives the ``Engine`` by hand, one event at a
time, for exact interleavings (what comes out before the runtime answers; a
command arriving before a timer fires).
"""

from __future__ import annotations

import random
from typing import Any

from otree.core import actions as act
from otree.core import events as ev
from otree.core.engine import Engine
from otree.core.spec import Supervisor
from otree.testing import Simulation, Trace


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


def spawn_times(trace: Trace, path: str) -> list[float]:
    return [e["ts"] for e in trace.filter("spawn", path)]
