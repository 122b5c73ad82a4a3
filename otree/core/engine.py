"""The supervision engine: events in, actions out, no I/O (docs/architecture.md).

``Engine(tree, rng)`` holds one state machine per node (``nodes.py``);
``start(now)`` begins the initial start and ``handle(event, now)`` feeds one
event. Both return the actions to carry out, in order. The clock is an
input: ``now`` is float monotonic seconds from the caller; randomness (backoff
jitter) comes from the injected ``rng``.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import attrs

from otree.core import actions as act
from otree.core import events as ev
from otree.core.node import ALIVE, STOPPING, Child, NodeBase, ServiceNode, SupNode
from otree.core.spec import Supervisor, check_tree


@attrs.frozen
class NodeStatus:
    """One node as ``otree status`` shows it."""

    path: str
    kind: str  # "service" | "supervisor"
    state: str  # running | starting | stopping | stopped | exited | restarting | dead
    pid: int | None
    started_at: float | None  # engine clock (the ``now`` passed in) of the last start
    restarts: int  # automatic restarts of this node inside its parent's window
    last_exit: dict[str, Any] | None  # {"code"|"signal", "normal"} of the last exit


class Engine:
    """Pure OTP supervision: ``start(now)`` then ``handle(event, now)`` -> actions.

    ``done`` is set once an ``Exit`` action was emitted; ``exit_code`` is its code.
    """

    def __init__(self, tree: Supervisor, rng: random.Random | None = None) -> None:
        check_tree(tree)
        self.tree = tree
        self.rng = rng if rng is not None else random.Random()
        self.done = False
        self.exit_code: int | None = None
        self.now = 0.0
        self._out: list[act.Action] = []
        #: when each set timer is due (engine clock): carried across a re-exec
        self.timer_due: dict[tuple[str, ...], float] = {}
        self.nodes: dict[str, NodeBase] = {}
        #: processes left from before a re-exec that are being stopped, by PID
        self.orphans: dict[int, ServiceNode] = {}
        #: spawns held back while an orphan at the same path is still alive, by path:
        #: never two processes for one service (released by ``orphan_gone``)
        self.held_spawns: dict[str, act.Spawn] = {}
        #: nodes a reload's reconciliation has yet to start (``core.handoff``), in order
        self.pending_starts: list[NodeBase] = []
        #: engine-internal requests (negative ids) and who waits for their reply
        self.internal_replies: dict[int, Callable[[str | None], None]] = {}
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
            else:
                child = ServiceNode(self, path, sup, spec)
                self.nodes[path] = child
            sup.children.append(child)

    # --- used by the nodes ------------------------------------------------

    def emit(self, action: act.Action) -> None:
        if isinstance(action, act.Spawn) and self._orphan_at(action.path):
            self.held_spawns[action.path] = action  # sent once the old process is gone
            return
        if isinstance(action, act.SetTimer):
            self.timer_due[action.key] = self.now + action.delay
        elif isinstance(action, act.CancelTimer):
            self.timer_due.pop(action.key, None)
        self._out.append(action)

    def _orphan_at(self, path: str) -> bool:
        return any(o.path == path for o in self.orphans.values())

    def orphan_gone(self, orphan: ServiceNode) -> None:
        """An orphan's process ended: a spawn held for its path goes out now."""
        self.orphans = {pid: o for pid, o in self.orphans.items() if o is not orphan}
        if not self._orphan_at(orphan.path):
            held = self.held_spawns.pop(orphan.path, None)
            if held is not None:
                self.emit(held)

    def report(self, event: str, path: str, **fields: Any) -> None:
        self._out.append(act.Report(event, path, fields))

    def reply(self, request: int | None, error: str | None) -> None:
        if request is not None and request < 0:
            callback = self.internal_replies.pop(request, None)
            if callback is not None:
                callback(error)
        elif request is not None:
            self._out.append(act.Reply(request, error is None, error))

    def root_done(self, what: str, root: SupNode) -> None:
        """The root supervisor finished starting, failed to start, stopped or exited."""
        if what == "started":
            self.report("tree_ready", "")
            return
        if what == "start_failed":
            self._exit(3, f"{root.failed_path}: cannot start: {root.fail_reason}")
        elif what == "stopped":
            self._exit(0)
        elif root.ending == "auto_shutdown":
            self._exit(0)
        else:
            self._exit(1, "the root supervisor reached its restart intensity and gave up")

    def _exit(self, code: int, message: str | None = None) -> None:
        self.report("tree_stopped", "", exit_code=code)
        self.done = True
        self.exit_code = code
        self._out.append(act.Exit(code, message))

    # --- the public interface ---------------------------------------------

    def start(self, now: float) -> list[act.Action]:
        """Start the tree: children one at a time in declared order (R5)."""
        self.now = now
        self.root.start()
        return self._flush()

    def handle(self, event: ev.Event, now: float) -> list[act.Action]:
        """Feed one event; return the actions it calls for."""
        self.now = now
        if self.done:
            if isinstance(event, ev.Command):
                self.reply(event.request, "the tree has stopped")
            return self._flush()
        if isinstance(event, ev.Command):
            self._command(event)
        elif isinstance(event, ev.TimerFired):
            self.timer_due.pop(event.key, None)
            self._timer(event.key)
        else:
            node = self.nodes.get(event.path)
            pid = getattr(event, "pid", None)
            if pid is not None and pid in self.orphans:
                node = self.orphans[pid]
            if isinstance(node, ServiceNode):
                self._service_event(node, event)
        return self._flush()

    def status(self, now: float) -> list[NodeStatus]:
        """Every node in start order, root first."""
        out = []
        for path, node in self.nodes.items():
            parent = node.parent
            period = parent.spec.period if parent is not None else 0.0
            out.append(
                NodeStatus(
                    path=path,
                    kind=node.kind,
                    state=node.state,
                    pid=node.pid if isinstance(node, ServiceNode) else None,
                    started_at=node.started_at if node.state in ALIVE else None,
                    restarts=sum(1 for t in node.restart_times if now - t <= period)
                    if parent is not None
                    else node.window.count(now)
                    if isinstance(node, SupNode)
                    else 0,
                    last_exit=node.last_exit,
                )
            )
        return out

    # --- dispatch -----------------------------------------------------------

    def _flush(self) -> list[act.Action]:
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

    def _timer(self, key: tuple[str, ...]) -> None:
        kind, path = key[0], key[1]
        node = self.nodes.get(path)
        if kind in ("kill", "ready"):
            pid = int(key[2])
            node = self.orphans.get(pid, node)
        if kind in ("kill", "ready") and isinstance(node, ServiceNode):
            if kind == "kill":
                node.on_kill_timer(pid)
            else:
                node.on_ready_timeout(pid)
        elif kind == "restart" and isinstance(node, SupNode):
            node.on_restart_timer(key)
        elif kind == "supkill" and isinstance(node, SupNode):
            node.on_supkill_timer()

    def _command(self, cmd: ev.Command) -> None:
        if cmd.name in ("shutdown", "kill_all"):
            self.reply(cmd.request, None)
            if cmd.name == "kill_all":
                self.root.kill_all()  # every process at once; the root is stopping after it
            elif self.root.state != STOPPING:  # already going down: keep why (gave up: exit 1)
                self.root.stop()
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
        assert isinstance(node, (ServiceNode, SupNode))
        parent.command(cmd.name, node, cmd.request)
