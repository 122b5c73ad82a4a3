"""One service's state machine, the states a node is shown in, and the nodes' base.

See ``otree.core.node`` for the protocol between a node and its parent.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Any, Protocol

from otree.core import actions as act
from otree.core.spec import BRUTAL_KILL, INFINITY, ReadyExited, Restart, Service, Supervisor
from otree.core.timers import KillTimer, ReadyTimer

if TYPE_CHECKING:
    from otree.core.engine import Engine
    from otree.core.records import ChildRecord
    from otree.core.supervisor import SupNode


class State(str, enum.Enum):
    """A node as ``otree status`` shows it (these strings in JSON and the event log).

    A node keeps only its own lifecycle (``ALIVE``, or ``STOPPED``); while it is
    not alive its parent's record of it says which of the last four it is in.
    """

    STOPPED = "stopped"  # not running: never started, stopped by otree, or gave up
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    RESTARTING = "restarting"  # waiting for a (delayed or retried) restart
    EXITED = "exited"  # ended on its own and not restarted (transient/temporary)
    DEAD = "dead"  # ended on its own; the parent has not handled it yet

    def __str__(self) -> str:
        return self.value


ALIVE = frozenset({State.STARTING, State.RUNNING, State.STOPPING})


class Owner(Protocol):
    """Who a service answers to: its supervisor, or (for a process left from before a
    re-exec) the reload's reconciliation."""

    def child_started(self, child: ServiceNode) -> None: ...

    def child_start_failed(self, child: ServiceNode, reason: str) -> None: ...

    def child_stopped(self, child: ServiceNode) -> None: ...

    def child_exited(self, child: ServiceNode, normal: bool) -> None: ...


class NodeBase:
    kind = "node"

    def __init__(
        self, eng: Engine, path: str, parent: SupNode | None, spec: Service | Supervisor
    ) -> None:
        self.spec: Service | Supervisor = spec
        self.eng = eng
        self.path = path
        self.parent = parent
        self.state = State.STOPPED  # its own lifecycle: STOPPED or one of ALIVE
        self.incarnation = 0
        self.started_at: float | None = None
        self.last_exit: dict[str, Any] | None = None

    @property
    def alive(self) -> bool:
        return self.state in ALIVE

    @property
    def record(self) -> ChildRecord:
        """Its parent's record of it (the engine keeps the root's)."""
        if self.parent is None:
            return self.eng.root_record
        return self.parent.records[self.path]

    @property
    def status(self) -> State:
        """The state ``otree status`` shows: its own while alive, else its parent's word."""
        return self.state if self.alive else self.record.mark

    @property
    def restart(self) -> Restart:
        return self.spec.restart

    @property
    def significant(self) -> bool:
        return self.spec.significant

    @property
    def autostart(self) -> bool:
        """Whether it starts with its supervisor (``autostart``; a supervisor always)."""
        return True

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def kill_all(self) -> None:
        raise NotImplementedError

    def backoff_delay(self) -> float:
        return 0.0


class ServiceNode(NodeBase):
    kind = "service"

    def __init__(
        self,
        eng: Engine,
        path: str,
        parent: SupNode | None,
        spec: Service,
        owner: Owner | None = None,
    ) -> None:
        """``owner`` (default: ``parent``) gets the answers; an orphan has it, but no parent."""
        super().__init__(eng, path, parent, spec)
        self.spec: Service = spec
        answers_to = owner if owner is not None else parent
        assert answers_to is not None
        self.owner: Owner = answers_to
        self.pid: int | None = None
        self.stop_requested = False
        self.announced = False  # 'spawn' was reported for this process
        self.fail_reason: str | None = None  # set when a start failed while the process lives
        self.backoff_next: float | None = None
        self.up_for = 0.0  # how long the last process stayed up (0 after a failed start)
        self.killing = False  # kill_all: SIGKILL, not the stop signal, once the process exists
        self.unhealthy = False  # otree is stopping it because it failed its health check

    @property
    def autostart(self) -> bool:
        return self.spec.autostart

    # --- parent protocol ---------------------------------------------------

    def start(self) -> None:
        self.incarnation += 1
        self.state = State.STARTING
        self.pid = None
        self.stop_requested = False
        self.killing = False
        self.unhealthy = False
        self.announced = False
        self.fail_reason = None
        self.eng.emit(act.Spawn(self.path, self.spec))

    def stop(self) -> None:
        self.stop_requested = True
        if self.state is State.STOPPING:
            return
        self.state = State.STOPPING
        if self.pid is not None:
            self._send_stop()

    def kill_all(self) -> None:
        if not self.alive:
            return
        if self.pid is not None and self.announced and self.state is not State.STOPPING:
            self.eng.report("stop", self.path, pid=self.pid)
        self.stop_requested = True
        self.killing = True
        self.state = State.STOPPING
        if self.pid is not None:
            self.eng.emit(act.Kill(self.path, self.pid))

    def _send_stop(self) -> None:
        assert self.pid is not None
        if self.announced:
            self.eng.report("stop", self.path, pid=self.pid)
        shutdown = self.spec.shutdown
        if shutdown == BRUTAL_KILL:
            self.eng.emit(act.Kill(self.path, self.pid))
            return
        self.eng.emit(act.Signal(self.path, self.pid, self.spec.stop_signal))
        if shutdown != INFINITY:
            self.eng.emit(act.SetTimer(KillTimer(self.path, self.pid).wire, float(shutdown)))

    def backoff_delay(self) -> float:
        """The delay before this service's next restart, and advance its backoff."""
        b = self.spec.backoff
        if b is None:
            return 0.0
        if self.up_for >= b.reset_after:  # the last run was stable: start over
            self.backoff_next = None
        base = b.initial if self.backoff_next is None else self.backoff_next
        self.backoff_next = min(b.max, base * b.factor)
        if base <= 0:
            return 0.0
        jittered = base * self.eng.rng.uniform(1.0 - b.jitter, 1.0 + b.jitter)
        return min(b.max, max(0.0, jittered))

    # --- runtime events ----------------------------------------------------

    def on_spawned(self, pid: int) -> None:
        if self.pid is not None or self.state not in (State.STARTING, State.STOPPING):
            return
        self.pid = pid
        if self.killing:
            self.eng.emit(act.Kill(self.path, pid))
        elif self.state is State.STOPPING:  # asked to stop before the process existed
            self._send_stop()
        elif self.spec.ready is None:
            self._became_ready()
        else:
            self.eng.emit(act.SetTimer(ReadyTimer(self.path, pid).wire, self.spec.ready.timeout))

    def on_spawn_failed(self, reason: str) -> None:
        if self.pid is not None or self.state not in (State.STARTING, State.STOPPING):
            return
        stopping = self.state is State.STOPPING
        self.state = State.STOPPED
        if stopping:
            self.owner.child_stopped(self)
        else:
            self._start_failed(reason)

    def on_ready(self, pid: int) -> None:
        if isinstance(self.spec.ready, ReadyExited):
            return  # a one-shot step is started by its normal exit, never by a probe
        if pid == self.pid and self.state is State.STARTING:
            self.eng.emit(act.CancelTimer(ReadyTimer(self.path, pid).wire))
            self._became_ready()

    def on_ready_failed(self, pid: int, reason: str) -> None:
        if pid == self.pid and self.state is State.STARTING:
            self.eng.emit(act.CancelTimer(ReadyTimer(self.path, pid).wire))
            self.fail_reason = reason
            self.stop()

    def on_ready_timeout(self, pid: int) -> None:
        if pid == self.pid and self.state is State.STARTING:
            timeout = self.spec.ready.timeout if self.spec.ready else 0.0
            self.fail_reason = f"not ready after {timeout:g}s"
            self.stop()

    def on_unhealthy(self, pid: int, reason: str, failures: int) -> None:
        """Stop a running process that failed its health check; its end is a crash.
        Stale news (another PID, a process not running or already being stopped) is dropped."""
        if pid != self.pid or self.state is not State.RUNNING or self.stop_requested:
            return
        self.eng.report("unhealthy", self.path, pid=pid, reason=reason, failures=failures)
        self.unhealthy = True
        self.state = State.STOPPING
        self._send_stop()

    def on_kill_timer(self, pid: int) -> None:
        if pid == self.pid and self.state is State.STOPPING:
            self.eng.emit(act.Kill(self.path, pid))

    def on_exited(self, pid: int, code: int | None, signal: str | None) -> None:
        if pid != self.pid:
            return
        if self.state is State.STOPPING and self.spec.shutdown not in (BRUTAL_KILL, INFINITY):
            self.eng.emit(act.CancelTimer(KillTimer(self.path, pid).wire))
        if self.spec.ready is not None and not self.announced:
            self.eng.emit(act.CancelTimer(ReadyTimer(self.path, pid).wire))
        self.pid = None
        how: dict[str, Any] = {"code": code} if signal is None else {"signal": signal}
        if self.unhealthy:
            normal = False  # whatever its code: otree stopped it for failing its check
            how["reason"] = "unhealthy"
        elif self.stop_requested and self.fail_reason is None:
            normal = True
        else:
            normal = signal is None and code in self.spec.normal_exit_codes
        one_shot_done = (
            normal and self.state is State.STARTING and isinstance(self.spec.ready, ReadyExited)
        )
        stopped_meanwhile = False
        if one_shot_done:  # a one-shot step: its normal exit is its start, then its end
            self.pid = pid
            self._became_ready()  # may let a waiting command run, and that may stop this child
            stopped_meanwhile = self.state is State.STOPPING
            self.pid = None
        if self.announced:
            self.up_for = self.eng.now - (self.started_at or self.eng.now)
            self.last_exit = {**how, "normal": normal}
            self.eng.report("exit", self.path, pid=pid, **how, normal=normal)
        if one_shot_done and stopped_meanwhile:
            self.state = State.STOPPED  # a command taken at its start stopped it: that stop is done
            self.owner.child_stopped(self)
        elif one_shot_done:
            self.state = State.STOPPED
            self.owner.child_exited(self, normal)
        elif self.unhealthy and not self.stop_requested:
            self.state = State.STOPPED  # a crash: the parent's strategy and intensity decide
            self.owner.child_exited(self, False)
        elif self.fail_reason is not None:
            self.state = State.STOPPED
            self._start_failed(self.fail_reason)
        elif self.state is State.STOPPING:
            self.state = State.STOPPED
            self.owner.child_stopped(self)
        elif self.state is State.STARTING:
            self.state = State.STOPPED
            what = f"code {code}" if signal is None else f"signal {signal}"
            self._start_failed(f"exited ({what}) before it was ready")
        else:
            self.state = State.STOPPED  # the parent records it as dead until it handles it
            self.owner.child_exited(self, normal)

    # --- helpers -------------------------------------------------------------

    def _became_ready(self) -> None:
        assert self.pid is not None
        self.state = State.RUNNING
        self.started_at = self.eng.now
        self.announced = True
        self.eng.report("spawn", self.path, pid=self.pid)
        self.eng.report("ready", self.path, pid=self.pid)
        self.owner.child_started(self)

    def _start_failed(self, reason: str) -> None:
        self.fail_reason = None
        self.up_for = 0.0
        self.last_exit = {"start_failed": reason, "normal": False}  # `otree status` says why
        self.eng.report("start_failed", self.path, reason=reason)
        self.owner.child_start_failed(self, reason)
