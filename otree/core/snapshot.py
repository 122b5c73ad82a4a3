"""The engine's half of a self-reload: a snapshot of its state, and resuming from one.

Before ``os.execv`` the old image calls :func:`snapshot`: an
:class:`EngineSnapshot` (versioned; the handoff writes it as JSON) with every
node's state, PID, start time, restart history, backoff step and pending
restart timers. The new image builds an engine from
the re-read tree and calls :func:`resume`, which reconciles the two trees:

1. ``reexec`` is reported, then every service whose spec is unchanged, or changed
   in how it is supervised only (:mod:`otree.core.changes`), and whose process was
   running is **adopted** (same PID, never restarted: ``adopt``, then ``update``
   with the fields applied in place).
   Exited, stopped and restarting children keep their state; pending restart
   timers are set again for the time that was left. An ``autostart = false``
   service nobody had started (*held*) stays held and stopped.
2. Processes of services that were **removed**, or whose spec **changed**, are
   stopped in reverse start order, each with its *old* stop signal and
   shutdown time.
3. **Changed** services that were running and **new** nodes under running
   supervisors (a new ``autostart = false`` one aside: it is held) are started
   in declared order, one at a time, through their
   supervisor's queue like ``otree start`` (a start that fails is logged with
   ``start_failed`` and leaves the child stopped). A changed instance of a pool
   is a rolling restart: its old process is stopped only when it is next to
   start, so the instances go down one at a time, in index order.
4. ``tree_ready`` is reported.

Steps 2-4 are carried out by one :class:`Reconciliation`, attached to the
engine until ``tree_ready``: the engine itself knows nothing of reloads.
A snapshot taken while this is under way (a fatal error mid-reload) also
holds the replaced processes still being stopped and the nodes not started
yet: the next image goes on with both.

None of this is a crash: no ``restart`` event, no intensity entry. A process
that died while the exec ran is reported by the runtime as an ordinary exit
once it is watched again, and handled by its strategy. Supervisors keep their
restart windows (with the new ``intensity`` and ``period``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeAlias

import attrs

from otree.core import actions as act
from otree.core.changes import service_change
from otree.core.node import ALIVE, Child, PendingRestart, ServiceNode, State, SupNode
from otree.core.pool import PoolNode, services
from otree.core.reprs import plain_repr
from otree.core.spec import Service, Shutdown, Supervisor, walk
from otree.core.timers import RestartTimer, parse
from otree.errors import ReexecError

if TYPE_CHECKING:
    from otree.core.engine import Engine

SNAPSHOT_VERSION = 1


# --- the snapshot, typed ------------------------------------------------------------
# Plain frozen classes: the reload's converter (``otree.reload.document``) writes them
# as JSON and reads them back. A field added here is written and read with no other
# edit; the JSON keys are the field names.


@plain_repr
@attrs.frozen(repr=False)
class ServiceRecord:
    """What the old image knew of one service."""

    fp: str  #: :func:`fingerprint` of its spec (what an older otree compared)
    state: State
    started_at: float | None
    restart_times: tuple[float, ...]
    last_exit: dict[str, Any] | None
    restart_key: tuple[str, ...] | None  #: the restart timer that will start it (wire form)
    pid: int | None
    backoff_next: float | None
    stop_signal: str  #: to stop it with its *old* settings if it was removed or changed
    shutdown: Shutdown
    held: bool = False  #: autostart = false and not started (an older otree wrote none)

    kind: ClassVar[Literal["service"]] = "service"


@plain_repr
@attrs.frozen(repr=False)
class SupervisorRecord:
    """What the old image knew of one supervisor."""

    fp: str
    state: State
    started_at: float | None
    restart_times: tuple[float, ...]
    last_exit: dict[str, Any] | None
    restart_key: tuple[str, ...] | None
    window: tuple[float, ...]  #: its restart-intensity window (R21)
    seq: int  #: the sequence number of its next restart timer
    #: each pending restart: (its timer's key on the wire, the child that triggered it,
    #: whether it is a retry's turn); an older otree wrote none
    pending: tuple[tuple[tuple[str, ...], str, bool], ...] = ()
    held: bool = False  #: a pool with autostart = false, not started

    kind: ClassVar[Literal["supervisor"]] = "supervisor"


NodeRecord: TypeAlias = ServiceRecord | SupervisorRecord


@plain_repr
@attrs.frozen(repr=False)
class Orphan:
    """A process a reload replaced and was still stopping (its old settings)."""

    path: str
    pid: int
    stop_signal: str
    shutdown: Shutdown


@plain_repr
@attrs.frozen(repr=False)
class EngineSnapshot:
    """Everything the engine knows that a new image needs (:func:`snapshot`)."""

    nodes: dict[str, NodeRecord]  #: every node, in the tree's order
    #: the restart timers still to fire: (key on the wire, when, in engine time)
    timers: tuple[tuple[tuple[str, ...], float], ...] = ()
    orphans: tuple[Orphan, ...] = ()  #: being stopped by a reconciliation
    starts: tuple[str, ...] = ()  #: paths a reconciliation had yet to start
    version: int = SNAPSHOT_VERSION


#: service fields newer than the first handoff version (left out of a fingerprint when unset)
_LATER_FIELDS = ("health", "watchdog", "replicas", "intensity", "period")


def fingerprint(spec: Service | Supervisor) -> str:
    """A stable text of a node's own settings (a supervisor's children excluded)."""
    data = attrs.asdict(  # enums are str enums: JSON writes their values
        spec,
        recurse=True,
        filter=lambda a, v: not (isinstance(spec, Supervisor) and a.name == "children"),
    )
    if isinstance(spec, Service) and spec.ready is not None:
        data["ready_kind"] = type(spec.ready).__name__
    if isinstance(spec, Service):
        # fields added later count only when set, so the same tree keeps its fingerprints
        # across an upgrade from an otree that did not have them (no restart)
        for name in _LATER_FIELDS:
            if data.get(name) is None:
                data.pop(name, None)
        if spec.health is not None:
            data["health_kind"] = type(spec.health).__name__
    return json.dumps(data, sort_keys=True, default=str)


def snapshot(engine: Engine) -> EngineSnapshot:
    """Everything the engine knows that a new image needs."""
    nodes: dict[str, NodeRecord] = {}
    for path, node in engine.nodes.items():
        record = node.record
        key = None if record.restart_key is None else record.restart_key.wire
        common = (
            fingerprint(node.spec),
            node.status,
            node.started_at,
            tuple(record.restart_times),
            node.last_exit,
            key,
        )
        if isinstance(node, ServiceNode):
            spec = node.spec
            nodes[path] = ServiceRecord(
                *common,
                node.pid,
                node.backoff_next,
                spec.stop_signal,
                spec.shutdown,
                held=record.held,
            )
        else:
            assert isinstance(node, SupNode)
            # who each pending restart waits on, and whether it is a retry's turn
            pending = tuple((k.wire, p.trigger.path, p.retry) for k, p in node.pending.items())
            nodes[path] = SupervisorRecord(
                *common, tuple(node.window.times), node.seq, pending=pending, held=record.held
            )
    timers = tuple((k, due) for k, due in engine.timer_due.items() if k[0] == "restart")
    # a fatal error during a reload's reconciliation: the next image goes on stopping the
    # processes it replaced and starting what it had not started yet
    recon = engine.reconciliation
    if recon is None:
        return EngineSnapshot(nodes, timers)
    orphans = tuple(
        Orphan(o.path, o.pid, o.spec.stop_signal, o.spec.shutdown)
        for o in recon.orphans.values()
        if o.pid is not None
    )
    return EngineSnapshot(nodes, timers, orphans, tuple(n.path for n in recon.starts))


class Reconciliation:
    """A reload's reconciliation in the new image (steps 2-4 above), one step at a time.

    It owns all a reload adds to supervision: the old processes being stopped
    (``orphans``, by PID: it is their owner, they have no parent), the spawns
    held back while an old process at the same path lives (never two processes
    for one service), the nodes it has yet to start (``starts``, in order: a
    snapshot taken meanwhile keeps them) and the answers to its own start
    requests (negative ids). The engine asks it while it is attached
    (``engine.reconciliation``); it detaches itself once ``tree_ready`` is reported.
    """

    def __init__(self, engine: Engine, starts: list[Child]) -> None:
        self.engine = engine
        self.orphans: dict[int, ServiceNode] = {}
        self.held_spawns: dict[str, act.Spawn] = {}
        self.starts = starts
        self.replies: dict[int, Callable[[str | None], None]] = {}
        self._stops: list[ServiceNode] = []
        #: a changed pool instance's old process, by path: stopped just before its new one
        #: starts (a rolling restart: one instance down at a time, in index order)
        self._rolling: dict[str, ServiceNode] = {}
        self._current: ServiceNode | int | None = None
        self._token = -1

    def add_orphan(
        self, path: str, pid: int, stop_signal: str, shutdown: Shutdown, *, rolling: bool = False
    ) -> None:
        """An old process to stop with its old settings (in the order they are added);
        ``rolling``: only when the new one at its path is next to start."""
        name = path.rpartition(".")[2]
        spec = Service(name, cmd=["-"], stop_signal=stop_signal, shutdown=shutdown)
        node = ServiceNode(self.engine, path, None, spec, owner=self)
        node.pid = pid
        node.state = State.RUNNING  # even one caught mid-stop: the stop is sent again
        node.announced = True
        if rolling:
            self._rolling[path] = node
        else:
            self._stops.append(node)
        self.orphans[pid] = node

    # --- asked by the engine -------------------------------------------------

    def holds(self, spawn: act.Spawn) -> bool:
        """Hold ``spawn`` back while an old process at its path is alive."""
        if not self._orphan_at(spawn.path):
            return False
        self.held_spawns[spawn.path] = spawn
        return True

    def answered(self, request: int, error: str | None) -> None:
        callback = self.replies.pop(request, None)
        if callback is not None:
            callback(error)

    # --- the orphans' owner ----------------------------------------------------

    def child_stopped(self, child: ServiceNode) -> None:
        self._done_with(child)

    def child_exited(self, child: ServiceNode, normal: bool) -> None:
        self._done_with(child)

    def child_start_failed(self, child: ServiceNode, reason: str) -> None:
        self._done_with(child)

    def child_started(self, child: ServiceNode) -> None:  # pragma: no cover - never started
        self._done_with(child)

    # --- the steps ------------------------------------------------------------------

    def next(self) -> None:
        eng = self.engine
        while self._stops:
            orphan = self._stops.pop(0)
            if orphan.alive:
                self._current = orphan
                orphan.stop()
                return
        while self.starts:
            node = self.starts[0]  # left in the list until started: a snapshot keeps it
            parent = node.parent
            if parent is None or parent.state is not State.RUNNING or node.alive:
                self.starts.pop(0)
                continue
            old = self._rolling.pop(node.path, None)
            if old is not None and old.alive:
                self._current = old
                old.stop()
                return
            self._token -= 1
            self._current = self._token
            self.replies[self._token] = self._started
            parent.command("start", node, self._token)
            return
        self._current = None
        if any(o.alive for o in self._rolling.values()):  # its new one did not start
            self._stops.extend(self._rolling.values())
            self._rolling.clear()
            self.next()
            return
        for orphan in list(self.orphans.values()):
            self._gone(orphan)
        eng.report("tree_ready", "")
        eng.reconciliation = None

    def _orphan_at(self, path: str) -> bool:
        return any(o.path == path for o in self.orphans.values())

    def _gone(self, orphan: ServiceNode) -> None:
        """An orphan's process ended: a spawn held for its path goes out now."""
        self.orphans = {pid: o for pid, o in self.orphans.items() if o is not orphan}
        if not self._orphan_at(orphan.path):
            held = self.held_spawns.pop(orphan.path, None)
            if held is not None:
                self.engine.emit(held)

    def _done_with(self, child: ServiceNode) -> None:
        self._gone(child)
        if self._current is child:
            self._current = None
            self.next()

    def _started(self, error: str | None) -> None:
        self.starts.pop(0)
        self.next()


def resume(
    engine: Engine,
    snap: EngineSnapshot,
    now: float,
    reason: str,
    old_tree: Supervisor,
) -> list[act.Action]:
    """Take over from ``snap`` (see the module doc); returns the actions to carry out.

    ``old_tree`` is the tree the old image ran, as this code reads it: a node is
    unchanged when its spec equals the new one (children aside). A field this
    otree has and the old one had not takes its default on both sides, so an
    upgrade that adds a field restarts nothing (the snapshot's fingerprints are
    written for an older otree, which compares those)."""
    if snap.version != SNAPSHOT_VERSION:
        raise ReexecError(
            f"unknown snapshot version {snap.version!r} (expected {SNAPSHOT_VERSION})"
        )
    engine.now = now
    engine.report("reexec", "", reason=reason)
    old = snap.nodes
    orphans: list[tuple[int, str, ServiceRecord | Orphan]] = []  # (stop order, path, record)
    starts: list[Child] = []
    rolling: set[str] = set()
    order = {path: i for i, path in enumerate(old)}
    old_specs: dict[str, Service | Supervisor] = {"": old_tree, **dict(walk(old_tree))}
    old_specs.update(services(old_tree))  # a pool's instances, by their paths

    for path, node in engine.nodes.items():
        rec = old.get(path)
        was = old_specs.get(path)
        held = _held(node, rec)
        if node.parent is not None:
            node.record.held = held
        same = rec is not None and was is not None and _own(was) == _own(node.spec)
        # a supervisor caught in its initial start (a fatal re-exec): the children it had
        # not reached yet start now
        parent_rec = old.get(node.parent.path) if node.parent is not None else None
        not_reached = (
            rec is not None
            and rec.state is State.STOPPED
            and parent_rec is not None
            and parent_rec.state is State.STARTING
        )
        if isinstance(node, SupNode):
            if isinstance(rec, ServiceRecord) and rec.pid is not None:  # now a pool
                orphans.append((order[path], path, rec))
            if not_reached:
                _put(node, State.STOPPED)
                if not held:
                    starts.append(node)
                continue
            if not isinstance(rec, SupervisorRecord):
                _put(node, State.STOPPED)
                if path == "":
                    _put(node, State.RUNNING)
                elif not held:
                    starts.append(node)
                continue
            node.window.times = list(rec.window)
            node.seq = rec.seq
            _put(node, State.RUNNING if rec.state in ALIVE else rec.state)
            node.started_at = rec.started_at
            _restore_common(node, rec)
            continue
        assert isinstance(node, ServiceNode)
        srec = rec if isinstance(rec, ServiceRecord) else None
        pid = None if srec is None else srec.pid
        change = service_change(was, node.spec) if isinstance(was, Service) else None
        kept = change is not None and not change.restart  # same, or supervision-only changes
        adopt = kept and srec is not None and srec.state is State.RUNNING and pid is not None
        if srec is not None and pid is not None and not adopt:
            orphans.append((order[path], path, srec))
            if isinstance(node.parent, PoolNode) and srec.state is State.RUNNING:
                rolling.add(path)  # a changed instance of a pool: one at a time
        if srec is None:
            if not held:
                starts.append(node)
        elif adopt and pid is not None:
            _restore_common(node, srec)
            _put(node, State.RUNNING)
            node.pid = pid
            node.announced = True
            node.started_at = srec.started_at
            node.backoff_next = srec.backoff_next
            engine.report("adopt", path, pid=node.pid)
            if change is not None and change.update:  # supervised under the new spec now
                engine.report("update", path, fields=list(change.update))
        elif srec.state in (State.RESTARTING, State.EXITED, State.STOPPED) and not not_reached:
            _restore_common(node, srec)
            _put(node, srec.state)
            node.backoff_next = srec.backoff_next if same else None
        else:  # changed while running, or caught mid-start/stop by a crash: start afresh
            _restore_common(node, srec)
            _put(node, State.STOPPED)
            if not (not_reached and held):  # one its supervisor's start had passed over
                starts.append(node)

    for path, rec in old.items():
        if path not in engine.nodes and isinstance(rec, ServiceRecord) and rec.pid is not None:
            orphans.append((order[path], path, rec))
    for i, orphan in enumerate(snap.orphans):  # being stopped already: first
        orphans.append((len(order) + i, orphan.path, orphan))

    for wire, due in snap.timers:
        key = parse(wire)
        sup = engine.nodes.get(key.path) if isinstance(key, RestartTimer) else None
        if not isinstance(key, RestartTimer) or not isinstance(sup, SupNode):
            continue
        members = [c for c in sup.children if c.record.restart_key == key]
        if members:
            sup.timers.add(key)
            sup.pending[key] = _pending_of(old.get(sup.path), key, members)
            engine.emit(act.SetTimer(key.wire, max(0.0, due - now)))
    for node in engine.nodes.values():
        if node.status is State.RESTARTING and node.record.restart_key is None:
            _put(node, State.STOPPED)  # its timer is gone: leave it for a start below
            starts.append(node)
    for path in snap.starts:  # the last reconciliation had yet to start these
        left = engine.nodes.get(path)
        held = left is not None and left.record.held
        if left is not None and left.status is State.STOPPED and left not in starts and not held:
            starts.append(left)

    orphans.sort(key=lambda item: -item[0])
    reconciliation = Reconciliation(engine, _top_most(starts))
    for _, path, old_proc in orphans:
        assert old_proc.pid is not None
        reconciliation.add_orphan(
            path,
            old_proc.pid,
            old_proc.stop_signal,
            old_proc.shutdown,
            rolling=path in rolling and isinstance(old_proc, ServiceRecord),
        )
    engine.reconciliation = reconciliation
    reconciliation.next()
    return engine.flush()


def _held(node: Child, rec: NodeRecord | None) -> bool:
    """Whether ``node`` is held (``autostart = false``, not started) in the new image:
    as the old image had it while it does not autostart, and a new node by its spec.
    A node set to autostart is held no more (it starts at its next group restart); one
    set to ``autostart = false`` is held if it was stopped, and keeps running if it ran."""
    if node.autostart:
        return False
    if rec is None:
        return True
    return rec.held or rec.state is State.STOPPED


def _own(spec: Service | Supervisor) -> Service | Supervisor:
    """A node's own settings: a supervisor without its children."""
    return attrs.evolve(spec, children=()) if isinstance(spec, Supervisor) else spec


def _pending_of(rec: NodeRecord | None, key: RestartTimer, members: list[Child]) -> PendingRestart:
    """The pending restart of ``key`` as the old image kept it (a snapshot without it:
    a delayed restart of its first member)."""
    entries = rec.pending if isinstance(rec, SupervisorRecord) else ()
    for wire, trigger, retry in entries:
        if wire == key.wire:
            chosen = [c for c in members if c.path == trigger]
            if chosen:
                return PendingRestart(chosen[0], retry=retry)
    return PendingRestart(members[0], retry=False)


def _restore_common(node: Child, rec: NodeRecord) -> None:
    record = node.record
    record.restart_times = list(rec.restart_times)
    node.last_exit = rec.last_exit
    key = parse(rec.restart_key) if rec.restart_key else None
    record.restart_key = key if isinstance(key, RestartTimer) else None


def _put(node: Child, state: State) -> None:
    """``node`` in ``state`` as the old image showed it: its own lifecycle while alive,
    else stopped with its parent's record saying which."""
    if state in ALIVE:
        node.state = state
        return
    node.state = State.STOPPED
    if node.parent is None:
        node.record.mark = state
    else:
        node.parent.mark(node, state)


def _top_most(starts: list[Child]) -> list[Child]:
    """Drop nodes whose supervisor is itself in the list: starting it starts them."""
    chosen = {id(n) for n in starts}
    out = []
    for node in sorted(starts, key=lambda n: list(n.eng.nodes).index(n.path)):
        parent = node.parent
        covered = False
        while parent is not None:
            if id(parent) in chosen:
                covered = True
                break
            parent = parent.parent
        if not covered:
            out.append(node)
    return out
