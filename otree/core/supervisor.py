"""One supervisor's state machine: its records of its children, plans, mailbox, restarts.

See ``otree.core.node`` for the protocol between a node and its parent and
for how a supervisor works through its plans (R38).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Union

from otree.core import actions as act
from otree.core.intensity import RestartWindow
from otree.core.records import (
    Call,
    ChildRecord,
    CommandMail,
    Ending,
    ExitMail,
    Mail,
    Outcome,
    PendingRestart,
    RestartMail,
    ScaleMail,
    StartChild,
    Step,
    StopChild,
)
from otree.core.rules import AUTO_SHUTDOWN_FIRES, RESTART_AFTER, Sibling, restart_plan
from otree.core.service import NodeBase, ServiceNode, State
from otree.core.spec import BRUTAL_KILL, INFINITY, Supervisor
from otree.core.timers import RestartTimer, SupKillTimer, TimerKey, never

if TYPE_CHECKING:
    from otree.core.engine import Engine


Child = Union[ServiceNode, "SupNode"]

#: a child in one of these states is gone for ``all_significant`` (it has no process,
#: no pending restart and no exit waiting to be handled)
GONE = frozenset({State.STOPPED, State.EXITED})


class SupNode(NodeBase):
    kind = "supervisor"

    def __init__(self, eng: Engine, path: str, parent: SupNode | None, spec: Supervisor) -> None:
        super().__init__(eng, path, parent, spec)
        self.spec: Supervisor = spec
        self.children: list[Child] = []
        self.records: dict[str, ChildRecord] = {}  # by the child's path
        self.window = RestartWindow(spec.intensity, spec.period)
        self.plan: deque[Step] = deque()
        self.on_fail: Callable[[Child, str], None] | None = None
        self.waiting: StartChild | StopChild | None = None
        self.advancing = False
        self.mailbox: deque[Mail] = deque()
        self.timers: set[TimerKey] = set()
        self.pending: dict[RestartTimer, PendingRestart] = {}  # by their restart timer
        self.seq = 0
        self.ending: Ending | None = None
        self.fail_reason: str | None = None
        self.failed_path: str | None = None
        self.command_running: tuple[str, int | None] | None = None  # its plan is the current one

    @property
    def busy(self) -> bool:
        return self.waiting is not None or bool(self.plan)

    def add_child(self, child: Child) -> None:
        self.children.append(child)
        self.records[child.path] = ChildRecord(held=not child.autostart)

    def mark(self, child: Child, state: State) -> None:
        """The one place a child's state is written by its parent (it is not alive)."""
        self.records[child.path].mark = state

    # --- parent protocol ---------------------------------------------------

    def start(self) -> None:
        """Start every child in declared order (temporary ones too); fail as a whole (R5, R6).

        A held child (``autostart = false``, not started by a command) is left stopped,
        and the supervisor is started (and the tree ready) without it."""
        self.incarnation += 1
        self.state = State.STARTING
        self.ending = None
        self.command_running = None
        self.window = RestartWindow(self.spec.intensity, self.spec.period)
        for rec in self.records.values():  # status shows the restarts the window counts
            rec.restart_times.clear()
        self.mailbox.clear()
        self.pending.clear()
        starts: list[Step] = [StartChild(c) for c in self.children if not self.records[c.path].held]
        self._run(starts, on_fail=self._initial_start_failed)

    def stop(self) -> None:
        """Stop every child in reverse declared order, then answer ``child_stopped`` (R9)."""
        if self.state is State.STOPPING and self.ending is Ending.STOPPED:
            return
        self.state = State.STOPPING
        self.ending = Ending.STOPPED
        self._stop_all()
        shutdown = self.spec.shutdown
        if shutdown == BRUTAL_KILL:
            self.kill_all()
        elif shutdown != INFINITY and self.parent is not None:
            key = SupKillTimer(self.path)
            self.timers.add(key)
            self.eng.emit(act.SetTimer(key.wire, float(shutdown)))
        self._advance()

    def kill_all(self) -> None:
        """SIGKILL every process below at once (a second INT, or a supervisor's shutdown timer).

        The supervisor is stopping from then on: it starts nothing more.
        """
        if not self.alive:
            return
        for child in reversed(self.children):
            child.kill_all()
        if self.state is not State.STOPPING:
            self.stop()

    # --- children's answers -------------------------------------------------

    def child_started(self, child: Child) -> None:
        if isinstance(self.waiting, StartChild) and self.waiting.child is child:
            self.waiting = None
            self._advance()

    def child_stopped(self, child: Child) -> None:
        if self.waiting is not None and self.waiting.child is child:
            self.waiting = None
            self._advance()

    def child_start_failed(self, child: Child, reason: str) -> None:
        if self.waiting is None or self.waiting.child is not child:
            return
        self.waiting = None
        if self.state is State.STOPPING or self.on_fail is None:
            self._advance()  # it was being stopped anyway
            return
        on_fail = self.on_fail
        self.plan.clear()
        on_fail(child, reason)
        self._advance()

    def child_exited(self, child: Child, normal: bool) -> None:
        if self.state is State.STOPPING:
            self.mark(child, State.STOPPED)  # consumed: we are stopping everything anyway
            return
        self.mark(child, State.DEAD)
        if self.busy or self.state is not State.RUNNING:
            self.mailbox.append(ExitMail(child, child.incarnation, normal))
            return
        self._handle_exit(child, normal)
        self._advance()

    # --- timers and commands ---------------------------------------------------

    def on_restart_timer(self, key: RestartTimer) -> None:
        if key not in self.timers:
            return
        self.timers.discard(key)
        if self.busy or self.state is not State.RUNNING:
            self.mailbox.append(RestartMail(key))
        else:
            self._restart_due(key)
            self._advance()

    def on_supkill_timer(self) -> None:
        key = SupKillTimer(self.path)
        if key in self.timers and self.state is State.STOPPING:
            self.timers.discard(key)
            self.kill_all()

    def command(self, name: str, child: Child, request: int | None) -> None:
        """``start|stop|restart`` of one child, taken in turn with everything else (R38)."""
        if self.state not in (State.RUNNING, State.STARTING):
            where = repr(self.path) if self.path else "the root"
            self.eng.reply(request, f"{where} is not running ({self.status})")
            return
        if self.busy or self.state is not State.RUNNING:
            self.mailbox.append(CommandMail(name, child, request))
            return
        self._command(name, child, request)
        self._advance()

    def scale_now(self, count: int, request: int | None) -> None:
        """A pool's scale (``core.pool``); a plain supervisor has no instances."""
        self.eng.reply(request, f"{self.path!r} is not a pool")

    # --- the plan runner ----------------------------------------------------

    def _run(self, steps: list[Step], on_fail: Callable[[Child, str], None] | None) -> None:
        self.plan = deque(steps)
        self.on_fail = on_fail
        self._advance()

    def _advance(self) -> None:
        if self.advancing:
            return
        self.advancing = True
        try:
            while True:
                while self.waiting is None and self.plan:
                    step = self.plan.popleft()
                    if isinstance(step, StopChild):
                        if step.child.alive:
                            self.waiting = step
                            step.child.stop()
                        elif step.child.status is State.DEAD:
                            self.mark(step.child, State.STOPPED)
                    elif isinstance(step, StartChild):
                        if not step.child.alive:
                            self.waiting = step
                            self.mark(step.child, State.STOPPED)  # shown once it stops again
                            step.child.start()
                    elif isinstance(step, Call):
                        step.then()
                    else:
                        never(step)
                if self.busy:
                    return
                if not self._plan_done():
                    return
        finally:
            self.advancing = False

    def _plan_done(self) -> bool:
        """The plan is finished: move on. True when there may be more to do."""
        self.on_fail = None
        if self.state is State.STARTING:
            self.state = State.RUNNING
            self.started_at = self.eng.now
            self._report_up("started")
        elif self.state is State.STOPPING:
            for key in self.timers:
                self.eng.emit(act.CancelTimer(key.wire))
            self.timers.clear()
            # exits queued while it was busy are moot now (commands were refused in
            # _stop_all); left here they would keep a stopped supervisor "busy" for good
            self.mailbox.clear()
            ending = self.ending
            for c in self.children:
                if c.status in (State.RESTARTING, State.DEAD):
                    self.mark(c, State.STOPPED)
            self.state = State.STOPPED
            if ending is Ending.INIT_FAILED:
                self._report_up("start_failed")
            elif ending is Ending.STOPPED:
                self._report_up("stopped")
            else:  # the parent records it as dead until it handles the exit
                self._report_up("exited", normal=ending is Ending.AUTO_SHUTDOWN)
            # the parent may have started this node again from inside _report_up
            # (a restart after escalation); its new plan could not advance then
            return self.busy
        while self.mailbox and not self.busy and self.state is State.RUNNING:
            item = self.mailbox.popleft()
            if isinstance(item, ExitMail):
                child = item.child
                if child.status is State.DEAD and child.incarnation == item.incarnation:
                    self._handle_exit(child, item.normal)
            elif isinstance(item, RestartMail):
                self._restart_due(item.key)
            elif isinstance(item, CommandMail):
                self._command(item.name, item.child, item.request)
            elif isinstance(item, ScaleMail):
                self.scale_now(item.size, item.request)
            else:
                never(item)
        return self.busy

    def _report_up(self, what: Outcome, normal: bool = False) -> None:
        if self.parent is None:
            self.eng.root_done(what, self)
        elif what == "started":
            self.parent.child_started(self)
        elif what == "stopped":
            self.parent.child_stopped(self)
        elif what == "start_failed":
            self.parent.child_start_failed(self, self.fail_reason or "start failed")
        else:
            self.parent.child_exited(self, normal)

    def _stop_all(self, then: Callable[[], None] | None = None) -> None:
        """Replace the plan: stop every living child in reverse order.

        Commands still waiting in the mailbox will never run: they are refused now.
        """
        self.plan.clear()
        self.on_fail = None
        where = repr(self.path) if self.path else "the root"
        refused = f"{where} is not running (stopping)"
        for item in [m for m in self.mailbox if isinstance(m, CommandMail)]:
            self.mailbox.remove(item)
            self.eng.reply(item.request, refused)
        if self.command_running is not None:  # its plan is being replaced
            name, request = self.command_running
            self.command_running = None
            if name == "stop" and isinstance(self.waiting, StopChild):
                # that child is being stopped anyway: answer once it is gone
                self.plan.append(Call(lambda: self.eng.reply(request, None)))
            else:
                self.eng.reply(request, refused)
        for key in [k for k in self.timers if isinstance(k, RestartTimer)]:
            self.timers.discard(key)
            self.eng.emit(act.CancelTimer(key.wire))
        self.pending.clear()
        for c in self.children:
            if c.status is State.RESTARTING:
                self.mark(c, State.STOPPED)
        if isinstance(self.waiting, StartChild):  # interrupt a start in progress
            self.waiting = StopChild(self.waiting.child)
            self.waiting.child.stop()
        self.plan.extend(StopChild(c) for c in reversed(self.children))
        if then is not None:
            self.plan.append(Call(then))

    # --- decisions ----------------------------------------------------------

    def _initial_start_failed(self, child: Child, reason: str) -> None:
        """R6: stop the started children in reverse order; the supervisor fails to start."""
        self.fail_reason = reason
        self.failed_path = child.failed_path if isinstance(child, SupNode) else child.path
        self.state = State.STOPPING
        self.ending = Ending.INIT_FAILED
        self._stop_all()

    def _handle_exit(self, child: Child, normal: bool) -> None:
        if RESTART_AFTER[(child.restart, normal)]:
            self._restart(child)
            return
        self.mark(child, State.EXITED)
        if child.significant:
            # OTP's do_auto_shutdown: only a child with no pid is gone; one waiting to be
            # restarted, or whose exit is not handled yet, is still there
            there = sum(1 for c in self.children if c.significant and c.status not in GONE)
            if AUTO_SHUTDOWN_FIRES[self.spec.auto_shutdown](there):
                self.eng.report("auto_shutdown", self.path, child=child.path)
                self.state = State.STOPPING
                self.ending = Ending.AUTO_SHUTDOWN
                self._stop_all()

    def _restart(self, trigger: Child, *, retry: bool = False) -> None:
        """A child must restart: count it, report it, carry out the strategy's plan.

        A retry (``retry``) comes here only when its turn in the loop came
        (``_restart_due``): it is counted when it is attempted, as OTP's
        ``try_again_restart``.
        """
        if not self.window.add(self.eng.now):
            self._give_up(trigger)
            return
        self.eng.report(
            "restart",
            self.path,
            strategy=self.spec.strategy.value,
            child=trigger.path,
            count=len(self.window.times),  # the window was pruned by add(): this one included
            intensity=self.spec.intensity,
            period=self.spec.period,
        )
        times = self.records[trigger.path].restart_times  # status shows the window: no more
        times.append(self.eng.now)
        while self.eng.now - times[0] > self.spec.period:
            del times[0]
        siblings = [Sibling(c.restart, c.alive, self.records[c.path].held) for c in self.children]
        plan = restart_plan(self.spec.strategy, siblings, self.children.index(trigger), retry=retry)
        self._carry_out(
            trigger,
            [self.children[i] for i in plan.group],
            [self.children[i] for i in plan.stop],
            [self.children[i] for i in plan.start],
            delay=trigger.backoff_delay(),
        )

    def _carry_out(
        self,
        trigger: Child,
        group: list[Child],
        stops: list[Child],
        starts: list[Child],
        delay: float,
    ) -> None:
        """Stop ``stops``, then start ``starts`` at once or when a restart timer fires."""
        key: RestartTimer | None = None
        if delay > 0:
            key = self._new_key()
            self.pending[key] = PendingRestart(trigger, retry=False)
        for c in group:
            if c.status is State.DEAD:
                self.mark(c, State.STOPPED)
        for c in starts:  # a pending restart of a member is subsumed by this one
            rec = self.records[c.path]
            if rec.restart_key is not None:
                self._drop_pending(rec.restart_key)
            rec.restart_key = key
            if not c.alive:  # shown as restarting while the stops run
                self.mark(c, State.RESTARTING)
        steps: list[Step] = [StopChild(c) for c in stops]
        if key is None:
            steps.extend(StartChild(c) for c in starts)
            self._run(steps, on_fail=self._restart_failed)
            return
        timer = key

        def arm() -> None:
            for c in starts:
                if self.records[c.path].restart_key == timer:
                    self.mark(c, State.RESTARTING)
            self.timers.add(timer)
            self.eng.emit(act.SetTimer(timer.wire, delay))

        steps.append(Call(arm))
        self._run(steps, on_fail=None)

    def _new_key(self) -> RestartTimer:
        self.seq += 1
        return RestartTimer(self.path, self.seq)

    def _drop_pending(self, key: RestartTimer) -> None:
        """Forget the pending restart of ``key`` and cancel its timer if it is still set."""
        self.pending.pop(key, None)
        if key in self.timers:
            self.timers.discard(key)
            self.eng.emit(act.CancelTimer(key.wire))

    def _cancel_restart(self, key: RestartTimer) -> None:
        """R28: the pending restart of ``key`` is cancelled: its members stay stopped."""
        self._drop_pending(key)
        for c in self.children:
            rec = self.records[c.path]
            if rec.restart_key == key:
                rec.restart_key = None
                if c.status is State.RESTARTING:
                    self.mark(c, State.STOPPED)

    def _restart_due(self, key: RestartTimer) -> None:
        """A restart timer's turn came: start the waiting group, or decide a retry."""
        pending = self.pending.pop(key, None)
        if pending is None:  # cancelled, or subsumed by a later restart
            return
        if not pending.retry:
            self._restart_group(key)
            return
        for c in self.children:
            if self.records[c.path].restart_key == key:
                self.records[c.path].restart_key = None
        if pending.trigger.status is State.RESTARTING:
            self._restart(pending.trigger, retry=True)

    def _restart_group(self, key: RestartTimer) -> None:
        members = [
            c
            for c in self.children
            if c.status is State.RESTARTING and self.records[c.path].restart_key == key
        ]
        for c in members:
            self.records[c.path].restart_key = None
        self._run([StartChild(c) for c in members], on_fail=self._restart_failed)

    def _restart_failed(self, child: Child, reason: str) -> None:
        """R26/R27: a start inside a restart failed: retry through the loop, counted again.

        The retry waits for a zero-delay timer (OTP's ``try_again_restart`` cast to
        itself), so what is already queued (a ``stop`` of that child, other exits) is
        handled first; it is decided and counted when the timer fires. The children
        of the failed plan it did not reach wait for the same retry.
        """
        key = self._new_key()
        for c in self.children:
            rec = self.records[c.path]
            if c is child or (c.status is State.RESTARTING and rec.restart_key is None):
                self.mark(c, State.RESTARTING)
                rec.restart_key = key
        self.pending[key] = PendingRestart(child, retry=True)
        self.timers.add(key)
        self.eng.emit(act.SetTimer(key.wire, 0.0))

    def _give_up(self, trigger: Child) -> None:
        """R24: too many restarts: stop everything and exit abnormally (escalation)."""
        self.eng.report(
            "give_up", self.path, restarts=len(self.window.times), period=self.spec.period
        )
        self.mark(trigger, State.STOPPED)
        self.last_exit = {"gave_up": True, "normal": False}  # `otree status`: gave up
        self.state = State.STOPPING
        self.ending = Ending.GAVE_UP
        self._stop_all()

    def _command(self, name: str, child: Child, request: int | None) -> None:
        def reply_ok() -> None:
            self.command_running = None
            self.eng.reply(request, None)

        def reply_failed(c: Child, reason: str) -> None:
            self.mark(c, State.STOPPED)
            if c is child:  # not started after all: held again if it does not autostart
                self.records[c.path].held = not c.autostart
            self.command_running = None
            self.eng.reply(request, f"{c.path}: cannot start: {reason}")

        if name == "stop":
            # an autostart = false child stopped by hand is held again (supervisord's
            # autostart=false program stays stopped until it is started again)
            self.records[child.path].held = not child.autostart
            if child.status is State.RESTARTING:
                key = self.records[child.path].restart_key
                pending = self.pending.get(key) if key is not None else None
                if key is not None and pending is not None and pending.trigger is child:
                    self._cancel_restart(key)  # R28: the whole pending restart
                self.mark(child, State.STOPPED)
                self.records[child.path].restart_key = None
            if not child.alive:
                if child.status is State.DEAD:
                    self.mark(child, State.STOPPED)
                reply_ok()
                return
            self.command_running = (name, request)
            self._run([StopChild(child), Call(reply_ok)], on_fail=None)
            return
        if child.status is State.RESTARTING:
            self.eng.reply(request, f"{child.path} is restarting")
            return
        if name == "start" and (child.alive or child.status is State.DEAD):
            # OTP's restart_child still sees the pid of a child whose exit waits in the
            # mailbox: {error, running}; the exit is handled next, by the strategy
            self.eng.reply(request, f"{child.path} is already running")
            return
        steps: list[Step] = [StopChild(child), StartChild(child), Call(reply_ok)]
        self.records[child.path].held = False  # started by hand: it restarts with its group
        self.command_running = (name, request)
        self._run(steps, on_fail=reply_failed)
