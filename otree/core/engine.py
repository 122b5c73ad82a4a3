"""The supervision engine: events in, actions out, no I/O (docs/architecture.md).

``Engine(tree, rng)`` holds one state machine per node (``node.py``);
``start(now)`` begins the initial start and ``handle(event, now)`` feeds one
event. Both return the actions to carry out, in order. The clock is an
input: ``now`` is float monotonic seconds from the caller; randomness (backoff
jitter) comes from the injected ``rng``.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

import attrs

from otree.core import actions as act
from otree.core import events as ev
from otree.core.fields import MAX_REPLICAS
from otree.core.node import Child, ChildRecord, Ending, ServiceNode, State, SupNode
from otree.core.pool import PoolNode
from otree.core.reprs import plain_repr
from otree.core.spec import Supervisor, check_tree
from otree.core.timers import KillTimer, ReadyTimer, RestartTimer, SupKillTimer, never, parse
from otree.errors import ExitCode

if TYPE_CHECKING:
    from otree.core.snapshot import Reconciliation

#: the states a reload waits for no node to leave
_QUIET = frozenset({State.RUNNING, State.STOPPED, State.EXITED, State.RESTARTING})


@plain_repr
@attrs.frozen(repr=False)
class NodeStatus:
    """One node as ``otree status`` shows it."""

    path: str
    kind: str  # "service" | "supervisor" | "pool"
    state: str  # running | starting | stopping | stopped | exited | restarting | dead
    pid: int | None
    started_at: float | None  # engine clock (the ``now`` passed in) of the last start
    restarts: int  # automatic restarts of this node inside its parent's window
    last_exit: dict[str, Any] | None  # {"code"|"signal", "normal"} of the last exit
    replicas: int | None = None  # a pool's number of instances


class Engine:
    """Pure OTP supervision: ``start(now)`` then ``handle(event, now)`` -> actions.

    ``done`` is set once an ``Exit`` action was emitted; ``exit_code`` is its code.
    """

    def __init__(self, tree: Supervisor, rng: random.Random | None = None) -> None:
        check_tree(tree)
        self.tree = tree
        self.rng = rng if rng is not None else random.Random()
        self.done = False
        self.exit_code: int | None = None  # an ExitCode
        self.now = 0.0
        self._out: list[act.Action] = []
        #: when each set timer is due (engine clock): carried across a re-exec
        self.timer_due: dict[tuple[str, ...], float] = {}
        self.nodes: dict[str, Child] = {}
        #: a reload's reconciliation while it is under way (``core.snapshot``): it owns the
        #: processes left from the old image, the spawns held for them, what it has yet
        #: to start, and the answers to its own requests (negative ids)
        self.reconciliation: Reconciliation | None = None
        #: the root's record: the engine is its parent (a dead root has given up)
        self.root_record = ChildRecord()
        self.root = SupNode(self, "", None, tree)
        self.nodes[""] = self.root
        self._build(self.root)

    def _build(self, sup: SupNode) -> None:
        for spec in sup.spec.children:
            path = f"{sup.path}.{spec.name}" if sup.path else spec.name
            child: Child
            if isinstance(spec, Supervisor):
                child = SupNode(self, path, sup, spec)
                self.nodes[path] = child
                self._build(child)
            elif spec.replicas is not None:  # a pool: its instances are built with it
                child = PoolNode(self, path, sup, spec)
                self.nodes[path] = child
                self.nodes.update((c.path, c) for c in child.children)
            else:
                child = ServiceNode(self, path, sup, spec)
                self.nodes[path] = child
            sup.add_child(child)

    # --- used by the nodes ------------------------------------------------

    def renumber(self) -> None:
        """``nodes`` in start order again, after a pool added or dropped instances."""

        def below(node: Child) -> list[tuple[str, Child]]:
            out: list[tuple[str, Child]] = [(node.path, node)]
            if isinstance(node, SupNode):
                for c in node.children:
                    out.extend(below(c))
            return out

        self.nodes = dict(below(self.root))

    def emit(self, action: act.Action) -> None:
        rec = self.reconciliation
        if isinstance(action, act.Spawn) and rec is not None and rec.holds(action):
            return  # sent once the old process at that path is gone
        if isinstance(action, act.SetTimer):
            self.timer_due[action.key] = self.now + action.delay
        elif isinstance(action, act.CancelTimer):
            self.timer_due.pop(action.key, None)
        self._out.append(action)

    def report(self, event: str, path: str, **fields: Any) -> None:
        self._out.append(act.Report(event, path, fields))

    def reply(self, request: int | None, error: str | None) -> None:
        if request is not None and request < 0:
            if self.reconciliation is not None:
                self.reconciliation.answered(request, error)
        elif request is not None:
            self._out.append(act.Reply(request, error is None, error))

    def root_done(self, what: str, root: SupNode) -> None:
        """The root supervisor finished starting, failed to start, stopped or exited."""
        if what == "started":
            self.report("tree_ready", "")
            return
        if what == "exited":
            root.record.mark = State.DEAD
        if what == "start_failed":
            message = f"{root.failed_path}: cannot start: {root.fail_reason}"
            self._exit(ExitCode.START_FAILED, message)
        elif what == "stopped":
            self._exit(ExitCode.OK)
        elif root.ending is Ending.AUTO_SHUTDOWN:
            self._exit(ExitCode.OK)
        else:
            message = "the root supervisor reached its restart intensity and gave up"
            self._exit(ExitCode.GAVE_UP, message)

    def _exit(self, code: int, message: str | None = None) -> None:
        self.report("tree_stopped", "", exit_code=int(code))  # the event log keeps a number
        self.done = True
        self.exit_code = code
        self._out.append(act.Exit(code, message))

    # --- the public interface ---------------------------------------------

    def start(self, now: float) -> list[act.Action]:
        """Start the tree: children one at a time in declared order (R5)."""
        self.now = now
        self.root.start()
        return self.flush()

    def handle(self, event: ev.Event, now: float) -> list[act.Action]:
        """Feed one event; return the actions it calls for."""
        self.now = now
        if self.done:
            if isinstance(event, ev.Command):
                self.reply(event.request, "the tree has stopped")
            return self.flush()
        if isinstance(event, ev.Command):
            self._command(event)
        elif isinstance(event, ev.TimerFired):
            self.timer_due.pop(event.key, None)
            self._timer(event.key)
        else:
            node: Child | None = self.nodes.get(event.path)
            pid = getattr(event, "pid", None)
            if pid is not None:
                node = self._orphan(pid) or node
            if isinstance(node, ServiceNode):
                self._service_event(node, event)
        return self.flush()

    def status(self, now: float) -> list[NodeStatus]:
        """Every node in start order, root first."""
        out = []
        for path, node in self.nodes.items():
            parent = node.parent
            if parent is not None:
                times = node.record.restart_times
                restarts = sum(1 for t in times if now - t <= parent.spec.period)
            else:
                restarts = self.root.window.count(now)
            out.append(
                NodeStatus(
                    path=path,
                    kind=node.kind,
                    state=node.status.value,
                    pid=node.pid if isinstance(node, ServiceNode) else None,
                    started_at=node.started_at if node.alive else None,
                    restarts=restarts,
                    last_exit=node.last_exit,
                    replicas=node.replicas if isinstance(node, PoolNode) else None,
                )
            )
        return out

    def stopping(self) -> bool:
        """Whether the tree is going down (or is down): it takes no reload then."""
        return self.done or self.root.state not in (State.RUNNING, State.STARTING)

    def busy(self) -> str | None:
        """What keeps the tree from being quiet now (None: it is quiet, a reload may go)."""
        if self.done:
            return "the tree has stopped"
        for path, node in self.nodes.items():
            if node.status not in _QUIET:
                return f"{repr(path) if path else 'the root'} is {node.status}"
        for path, node in self.nodes.items():
            if isinstance(node, SupNode) and (node.busy or node.mailbox):
                return f"{repr(path) if path else 'the root'} is busy"
        if self.reconciliation is not None and self.reconciliation.orphans:
            return "processes replaced by the last reload are still stopping"
        return None

    def _orphan(self, pid: int) -> ServiceNode | None:
        """The process left from before a re-exec with this PID, if it is being stopped."""
        rec = self.reconciliation
        return rec.orphans.get(pid) if rec is not None else None

    # --- dispatch -----------------------------------------------------------

    def flush(self) -> list[act.Action]:
        """The actions emitted since the last call, in order."""
        out, self._out = self._out, []
        return out

    def _service_event(self, node: ServiceNode, event: ev.Event) -> None:
        if isinstance(event, ev.Spawned):
            node.on_spawned(event.pid)
        elif isinstance(event, ev.SpawnFailed):
            node.on_spawn_failed(event.reason)
        elif isinstance(event, ev.Ready):
            node.on_ready(event.pid)
        elif isinstance(event, ev.ReadyFailed):
            node.on_ready_failed(event.pid, event.reason)
        elif isinstance(event, ev.Exited):
            node.on_exited(event.pid, event.code, event.signal)
        elif isinstance(event, ev.Unhealthy):
            node.on_unhealthy(event.pid, event.reason, event.failures)

    def _timer(self, wire: tuple[str, ...]) -> None:
        key = parse(wire)
        if key is None:
            return
        node = self.nodes.get(key.path)
        if isinstance(key, (KillTimer, ReadyTimer)):
            service = self._orphan(key.pid) or node
            if not isinstance(service, ServiceNode):
                return
            if isinstance(key, KillTimer):
                service.on_kill_timer(key.pid)
            else:
                service.on_ready_timeout(key.pid)
        elif isinstance(key, RestartTimer):
            if isinstance(node, SupNode):
                node.on_restart_timer(key)
        elif isinstance(key, SupKillTimer):
            if isinstance(node, SupNode):
                node.on_supkill_timer()
        else:
            never(key)

    def _scale(self, cmd: ev.Command) -> None:
        pool = self.nodes.get(cmd.path)
        count = cmd.count
        if not isinstance(pool, PoolNode):
            what = "no node" if pool is None else "not a pool"
            self.reply(cmd.request, f"{cmd.path!r}: {what} (scale takes a service with replicas)")
        elif isinstance(count, bool) or not isinstance(count, int) or count < 0:
            self.reply(cmd.request, f"the count must be an integer >= 0, got {count!r}")
        elif count > MAX_REPLICAS:
            self.reply(cmd.request, f"the count must be at most {MAX_REPLICAS}, got {count!r}")
        else:
            pool.scale(count, cmd.request)

    def _command(self, cmd: ev.Command) -> None:
        if cmd.name in ("shutdown", "kill_all"):
            self.reply(cmd.request, None)
            if cmd.name == "kill_all":
                self.root.kill_all()  # every process at once; the root is stopping after it
            elif (
                self.root.state is not State.STOPPING
            ):  # already going down: keep why (gave up: exit 1)
                self.root.stop()
            return
        if cmd.name == "scale":
            self._scale(cmd)
            return
        if cmd.name not in ("start", "stop", "restart"):
            self.reply(cmd.request, f"unknown command {cmd.name!r}")
            return
        node = self.nodes.get(cmd.path)
        if node is None:
            self.reply(cmd.request, f"no node at path {cmd.path!r}")
            return
        parent = node.parent
        if parent is None:
            self.reply(cmd.request, "the root cannot be started or stopped: use shutdown")
            return
        parent.command(cmd.name, node, cmd.request)
