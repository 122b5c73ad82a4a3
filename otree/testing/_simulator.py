"""The simulator behind :mod:`otree.testing`: the real engine, fake processes, a fake clock.

The fake world is as simple as a world of processes can be:

- ``Spawn`` gives the service a fake PID (counting from 100) and answers
  ``Spawned`` at the same instant, then ``Ready`` at the same instant (or
  ``ready.delay`` seconds later for ``ReadyDelay``) when the spec has a
  readiness check; with ``ReadyExited`` (a one-shot step) it exits 0 at once
  instead. A ``fail_start`` mark makes the next spawn of that path
  answer ``SpawnFailed`` instead.
- ``Signal`` makes the process exit at once, killed by that signal, unless it
  was marked ``hang_on_stop``: then it ignores everything but ``Kill``.
  ``Kill`` makes it exit at once with signal ``KILL``.
- A service with ``autostart = false`` gets no ``Spawn`` until
  ``command("start", path)`` (or ``restart``): the engine holds it back, so
  ``inject`` of it does nothing until then.
- ``SetTimer``/``CancelTimer`` keep a heap of timers on the fake clock;
  ``Report`` becomes one trace event; ``Exit`` ends the run.

Everything that happens at one instant is handled before the clock moves:
first the events the last actions caused (in order), then the timers due by
then (earliest first, in the order they were set). Nothing here imports an OS
module: a simulated run is a pure function of the tree, the schedule and the seed.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

import attrs

from otree.core.actions import (
    Action,
    CancelTimer,
    Exit,
    Kill,
    Reply,
    Report,
    SetTimer,
    Signal,
    Spawn,
)
from otree.core.events import (
    Command,
    Event,
    Exited,
    Ready,
    Spawned,
    SpawnFailed,
    TimerFired,
    Unhealthy,
)
from otree.core.pool import services
from otree.core.reprs import plain_repr
from otree.core.spec import ReadyDelay, ReadyExited, Service, Supervisor, check_tree, walk

#: what a schedule item may do to a service
HOWS = ("crash", "exit0", "kill", "hang_on_stop", "fail_start", "unhealthy")
#: a schedule's ``how`` that scales the pool at its path: ``"scale:N"``
SCALE = "scale:"
#: the reason of every simulated start failure
FAIL_START_REASON = "simulated start failure"
#: the ``reason`` of the ``Unhealthy`` an ``unhealthy`` schedule item sends
UNHEALTHY_REASON = "simulated"
#: how far past the last schedule item :func:`simulate` runs by default
DEFAULT_MARGIN = 120.0
#: the first fake PID
FIRST_PID = 100

ScheduleItem = tuple[float, str, str]


class EngineLike(Protocol):
    """What the simulator needs of an engine (``otree.core.engine.Engine`` is one)."""

    done: bool

    @property
    def exit_code(self) -> int | None: ...

    def start(self, now: float) -> list[Action]: ...

    def handle(self, event: Event, now: float) -> list[Action]: ...


EngineFactory = Callable[[Supervisor, random.Random], EngineLike]


def _default_engine(tree: Supervisor, rng: random.Random) -> EngineLike:
    from otree.core.engine import Engine

    return Engine(tree, rng)


def _number(code: int | None) -> int | None:
    return None if code is None else int(code)  # an ExitCode is shown as its number


@plain_repr
@attrs.define(repr=False)
class _Process:
    path: str
    pid: int
    hang_on_stop: bool = False
    signalled: bool = False  # asked to stop: its readiness is no longer probed


class Trace:
    """What a simulated run logged, and the fake world at its end.

    ``events`` holds one dict per event-log line, with the names and fields
    of a real run's ``--events`` file; ``ts`` is simulated seconds from 0.
    """

    def __init__(self, _live: dict[int, _Process] | None = None) -> None:
        self.events: list[dict[str, Any]] = []
        self.exit_code: int | None = None
        self.exit_message: str | None = None
        self._live: dict[int, _Process] = {} if _live is None else _live  # the simulation's

    def filter(self, event: str | None = None, path: str | None = None) -> list[dict[str, Any]]:
        """The events with this name and/or about this path, in order."""
        return [
            e
            for e in self.events
            if (event is None or e["event"] == event) and (path is None or e["path"] == path)
        ]

    def count(self, event: str, path: str | None = None) -> int:
        """How many ``event`` events there were (about ``path``, when given)."""
        return len(self.filter(event, path))

    def gave_up(self, path: str) -> bool:
        """Whether the supervisor at ``path`` (``""``: the root) gave up at least once."""
        return self.count("give_up", path) > 0

    def pids(self, path: str) -> list[int]:
        """The PIDs of the processes ``path`` ran (its ``spawn`` events), in order."""
        return [e["pid"] for e in self.filter("spawn", path)]

    def running(self) -> dict[str, int]:
        """``{path: pid}`` of the fake processes alive now (at the end of the run)."""
        return {p.path: p.pid for p in sorted(self._live.values(), key=lambda p: p.pid)}

    @property
    def stopped(self) -> bool:
        """Whether the tree is down (the engine asked the runtime to exit)."""
        return self.exit_code is not None

    def format(self, limit: int | None = None) -> str:
        """The events as an aligned table, one per line (the last ``limit`` ones).

        A string, so ``assert cond, trace.format()`` shows it whole on failure.
        """
        shown = self.events if limit is None else self.events[-limit:]
        lines = []
        if limit is not None and len(self.events) > limit:
            lines.append(f"  ... {len(self.events) - limit} earlier events")
        for e in shown:
            extra = " ".join(f"{k}={v!r}" for k, v in e.items() if k not in ("ts", "event", "path"))
            path = e["path"] if e["path"] else '""'
            lines.append(f"  {e['ts']:10.3f}  {e['event']:<13} {path:<20} {extra}".rstrip())
        return "\n".join(lines)

    def expect(self, condition: object, message: str = "") -> None:
        """Raise ``AssertionError`` with ``message`` and the whole trace unless ``condition``.

        ``assert cond, trace`` shows only what pytest's ``saferepr`` keeps of the
        trace (about 240 characters); ``trace.expect(cond, "why")`` (or ``assert
        cond, trace.format()``, a string, shown whole) shows every event.
        """
        if condition:
            return
        lines = [message] if message else []
        lines.append(self._head())
        if self.events:
            lines.append(self.format())
        raise AssertionError("\n".join(lines))

    def _head(self) -> str:
        return (
            f"<Trace {len(self.events)} events, exit_code={_number(self.exit_code)!r}, "
            f"running={self.running()!r}>"
        )

    def __repr__(self) -> str:
        head = self._head()
        if not self.events:
            return head
        return head + "\n" + self.format(limit=200)

    __str__ = __repr__


class Simulation:
    """A run of the real engine, driven step by step on a fake clock.

    ``Simulation(tree)`` starts the tree at time 0. Then ``inject`` (a crash,
    exit or kill of a service, or a ``hang_on_stop``/``fail_start`` mark),
    ``command`` (``start``/``stop``/``restart PATH``, ``shutdown``,
    ``kill_all``), and ``advance``/``at`` (move the clock, firing due
    timers). Each call returns once everything due at the new instant has
    been handled. ``trace`` grows as the run goes.
    """

    def __init__(
        self,
        tree: Supervisor,
        *,
        seed: int = 0,
        engine_factory: EngineFactory | None = None,
        start: bool = True,
    ) -> None:
        check_tree(tree)
        self.tree = tree
        self.paths: dict[str, Service | Supervisor] = dict(walk(tree))
        self.paths.update(services(tree))  # a pool's instances
        self.engine: EngineLike = (engine_factory or _default_engine)(tree, random.Random(seed))
        self._live: dict[int, _Process] = {}
        self.trace = Trace(self._live)
        self.now = 0.0
        self.replies: dict[int, Reply] = {}
        self._queue: deque[Event] = deque()
        # (due, seq, what): what is an engine timer key, or ("\0ready", path, pid)
        self._heap: list[tuple[float, int, tuple[str, ...]]] = []
        self._timers: dict[tuple[str, ...], int] = {}  # engine key -> seq of its live entry
        self._seq = itertools.count()
        self._pids = itertools.count(FIRST_PID)
        self._requests = itertools.count(1)
        self._fail_next: set[str] = set()
        self._hang_next: set[str] = set()
        self._started = False
        if start:
            self.start()

    # --- driving --------------------------------------------------------

    @property
    def done(self) -> bool:
        """Whether the engine asked to exit: nothing more happens then."""
        return self.trace.exit_code is not None

    def start(self) -> Simulation:
        """Start the tree at the current time (``Simulation(tree)`` does it by default)."""
        if self._started:
            raise RuntimeError("the simulation is already started")
        self._started = True
        self._apply(self.engine.start(self.now))
        self._settle()
        return self

    def at(self, t: float) -> Simulation:
        """Move the clock to ``t`` (seconds from the start), firing the timers due by then."""
        if t < self.now:
            raise ValueError(f"cannot go back in time: now is {self.now}, asked for {t}")
        self._run_timers(until=t)
        if not self.done:
            self.now = t
        self._settle()
        return self

    def advance(self, dt: float) -> Simulation:
        """Move the clock ``dt`` seconds forward, firing the timers due by then."""
        return self.at(self.now + dt)

    def run(self, until: float | None = None) -> Simulation:
        """Fire timers until none is left (or the next is after ``until``), or the tree is down."""
        self._run_timers(until=until)
        if until is not None and not self.done and until > self.now:
            self.now = until
        return self

    def next_timer(self) -> float | None:
        """When the next timer (an engine timer or a readiness delay) is due."""
        self._drop_stale()
        return self._heap[0][0] if self._heap else None

    def inject(self, path: str, how: str) -> bool:
        """Do ``how`` (one of :data:`HOWS`) to ``path`` now; False if it had no effect.

        ``crash`` (exit code 1), ``exit0`` (code 0) and ``kill`` (signal KILL,
        from outside otree) end the running process of ``path``; with no running
        process they do nothing. ``hang_on_stop`` makes the running process
        ignore stop signals (it dies only of ``Kill``); with none running, the
        next process of ``path`` will. ``fail_start`` makes the next spawn of
        ``path`` fail with ``SpawnFailed("simulated start failure")``. ``unhealthy``
        reports the running process unhealthy (as a failed health check would): the
        engine stops it and its end counts as a crash.
        """
        if how not in HOWS:
            raise ValueError(f"how must be one of {', '.join(HOWS)}, got {how!r}")
        node = self.paths.get(path)
        if not isinstance(node, Service):
            raise ValueError(f"{path!r} is not a service of the tree")
        if self.done:
            return False
        if how == "fail_start":
            self._fail_next.add(path)
            return True
        proc = self._process_of(path)
        if how == "hang_on_stop":
            if proc is None:
                self._hang_next.add(path)
            else:
                proc.hang_on_stop = True
            return True
        if proc is None:
            return False
        if how == "unhealthy":  # the engine stops it; the process lives until then
            self._queue.append(Unhealthy(path, proc.pid, UNHEALTHY_REASON, failures=1))
            self._settle()
            return True
        del self._live[proc.pid]
        if how == "crash":
            self._queue.append(Exited(path, proc.pid, code=1))
        elif how == "exit0":
            self._queue.append(Exited(path, proc.pid, code=0))
        else:
            self._queue.append(Exited(path, proc.pid, signal="KILL"))
        self._settle()
        return True

    def command(self, name: str, path: str = "", count: int | None = None) -> Reply | None:
        """Send ``Command(name, path)`` now (``count``: a ``scale``'s); the engine's
        ``Reply`` (None if it gave none)."""
        if self.done:
            return None
        request = next(self._requests)
        self._queue.append(Command(name, path, request, count))
        self._settle()
        return self.replies.get(request)

    def running(self) -> dict[str, int]:
        """``{path: pid}`` of the fake processes alive now."""
        return self.trace.running()

    # --- the loop -------------------------------------------------------

    def _process_of(self, path: str) -> _Process | None:
        procs = [p for p in self._live.values() if p.path == path]
        return max(procs, key=lambda p: p.pid) if procs else None

    def _settle(self) -> None:
        """Handle every queued event, then every timer due by now."""
        self._drain()
        self._run_timers(until=self.now)

    def _drain(self) -> None:
        while self._queue and not self.done:
            event = self._queue.popleft()
            self._apply(self.engine.handle(event, self.now))

    def _drop_stale(self) -> None:
        while self._heap:
            _, seq, what = self._heap[0]
            if what[:1] == ("\0ready",):
                proc = self._live.get(int(what[2]))
                if proc is not None and not proc.signalled:
                    return
            elif self._timers.get(what) == seq:
                return
            heapq.heappop(self._heap)

    def _run_timers(self, until: float | None) -> None:
        while not self.done:
            self._drain()
            if self.done:
                return
            due = self.next_timer()
            if due is None or (until is not None and due > until):
                return
            _, _, what = heapq.heappop(self._heap)
            self.now = max(self.now, due)
            if what[:1] == ("\0ready",):
                self._queue.append(Ready(what[1], int(what[2])))
            else:
                del self._timers[what]
                self._queue.append(TimerFired(what))

    def _push(self, delay: float, what: tuple[str, ...]) -> int:
        seq = next(self._seq)
        heapq.heappush(self._heap, (self.now + max(delay, 0.0), seq, what))
        return seq

    def _apply(self, actions: Sequence[Action]) -> None:
        for action in actions:
            if isinstance(action, Report):
                self.trace.events.append({"ts": self.now, **action.as_dict()})
            elif isinstance(action, Spawn):
                self._spawn(action)
            elif isinstance(action, Signal):
                proc = self._live.get(action.pid)
                if proc is not None:
                    proc.signalled = True
                if proc is not None and not proc.hang_on_stop:
                    del self._live[action.pid]
                    self._queue.append(Exited(action.path, action.pid, signal=action.signal))
            elif isinstance(action, Kill):
                if self._live.pop(action.pid, None) is not None:
                    self._queue.append(Exited(action.path, action.pid, signal="KILL"))
            elif isinstance(action, SetTimer):
                self._timers[action.key] = self._push(action.delay, action.key)
            elif isinstance(action, CancelTimer):
                self._timers.pop(action.key, None)
            elif isinstance(action, Reply):
                self.replies[action.request] = action
            elif isinstance(action, Exit):
                self.trace.exit_code = action.code
                self.trace.exit_message = action.message
            else:  # pragma: no cover - a new action type the simulator does not know
                raise TypeError(f"the simulator cannot carry out {action!r}")

    def _spawn(self, action: Spawn) -> None:
        path = action.path
        if path in self._fail_next:
            self._fail_next.discard(path)
            self._queue.append(SpawnFailed(path, FAIL_START_REASON))
            return
        pid = next(self._pids)
        hang = path in self._hang_next
        self._hang_next.discard(path)
        self._live[pid] = _Process(path, pid, hang_on_stop=hang)
        self._queue.append(Spawned(path, pid))
        ready = action.spec.ready
        if ready is None:
            return
        if isinstance(ready, ReadyExited):  # a one-shot step: done as soon as it runs
            del self._live[pid]
            self._queue.append(Exited(path, pid, code=0))
        elif isinstance(ready, ReadyDelay) and ready.delay > 0:
            self._push(ready.delay, ("\0ready", path, str(pid)))
        else:
            self._queue.append(Ready(path, pid))


def _check_schedule(tree: Supervisor, schedule: Iterable[ScheduleItem]) -> list[ScheduleItem]:
    processes = {p for p, _ in services(tree)}  # a pool's instances, not the pool
    pools = {p for p, n in walk(tree) if isinstance(n, Service) and n.replicas is not None}
    items: list[ScheduleItem] = []
    for i, item in enumerate(schedule):
        try:
            at, path, how = item
        except (TypeError, ValueError):
            raise ValueError(
                f"schedule[{i}]: expected (at_seconds, path, how), got {item!r}"
            ) from None
        if isinstance(at, bool) or not isinstance(at, (int, float)) or not at >= 0:
            raise ValueError(f"schedule[{i}]: at_seconds must be a number >= 0, got {at!r}")
        if isinstance(how, str) and how.startswith(SCALE):
            count = how[len(SCALE) :]
            if path not in pools:
                raise ValueError(f"schedule[{i}]: {path!r} is not a pool of the tree")
            if not count.isdigit():
                raise ValueError(f"schedule[{i}]: expected scale:N with N >= 0, got {how!r}")
            items.append((float(at), path, how))
            continue
        if path not in processes:
            raise ValueError(f"schedule[{i}]: {path!r} is not a service of the tree")
        if how not in HOWS:
            raise ValueError(f"schedule[{i}]: how must be one of {', '.join(HOWS)}, got {how!r}")
        items.append((float(at), path, how))
    # stable: items at the same instant keep their given order
    return sorted(items, key=lambda it: it[0])


def simulate(
    tree: Supervisor,
    schedule: Iterable[ScheduleItem] = (),
    *,
    until: float | None = None,
    seed: int = 0,
    stop: bool = False,
    engine_factory: EngineFactory | None = None,
) -> Trace:
    """Run ``tree`` on the real engine with fake processes, doing ``schedule`` to them.

    ``schedule`` is ``(at_seconds, path, how)`` items (sorted here; items at
    the same instant keep their order). The run goes on until ``until``
    (default: the last item's time + 120 s, enough for backoff and shutdown
    timers to play out), or until the tree exits. The tree is left as it is
    at the end, so the trace shows its state; ``stop=True`` then sends
    ``shutdown`` and lets the tree stop. ``seed`` seeds the engine's Random
    (backoff jitter).
    """
    items = _check_schedule(tree, schedule)
    if until is None:
        until = (items[-1][0] if items else 0.0) + DEFAULT_MARGIN
    sim = Simulation(tree, seed=seed, engine_factory=engine_factory)
    for at, path, how in items:
        if at > until or sim.done:
            break
        sim.at(at)
        if how.startswith(SCALE):
            sim.command("scale", path, int(how[len(SCALE) :]))
        else:
            sim.inject(path, how)
    sim.run(until=until)
    if stop and not sim.done:
        sim.command("shutdown")
        sim.run(until=sim.now + DEFAULT_MARGIN)
    return sim.trace
