"""One supervisor's state machine: plans, mailbox, restart decisions by strategy.

See ``otree.core.node`` for the protocol between a node and its parent and
for how a supervisor works through its plans (R38).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Union

from otree.core import actions as act
from otree.core.intensity import RestartWindow
from otree.core.rules import AUTO_SHUTDOWN_FIRES, RESTART_AFTER, Sibling, restart_plan
from otree.core.service import (
    DEAD,
    EXITED,
    RESTARTING,
    RUNNING,
    STARTING,
    STOPPED,
    STOPPING,
    NodeBase,
    ServiceNode,
    Step,
)
from otree.core.spec import BRUTAL_KILL, INFINITY, Supervisor

if TYPE_CHECKING:
    from otree.core.engine import Engine


Child = Union[ServiceNode, "SupNode"]


class SupNode(NodeBase):
    kind = "supervisor"

    def __init__(self, eng: Engine, path: str, parent: SupNode | None, spec: Supervisor) -> None:
        super().__init__(eng, path, parent, spec)
        self.spec: Supervisor = spec
        self.children: list[Child] = []
        self.window = RestartWindow(spec.intensity, spec.period)
        self.plan: deque[Step] = deque()
        self.on_fail: Callable[[Child, str], None] | None = None
        self.waiting: tuple[Child, str] | None = None
        self.advancing = False
        self.mailbox: deque[tuple[Any, ...]] = deque()
        self.timers: set[tuple[str, ...]] = set()
        self.seq = 0
        self.ending: str | None = None  # why it is stopping: stopped | gave_up | auto_shutdown
        self.fail_reason: str | None = None
        self.failed_path: str | None = None
        self.command_running: tuple[str, int | None] | None = None  # its plan is the current one

    @property
    def busy(self) -> bool:
        return self.waiting is not None or bool(self.plan)

    # --- parent protocol ---------------------------------------------------

    def start(self) -> None:
        """Start every child in declared order (temporary ones too); fail as a whole (R5, R6)."""
        self.incarnation += 1
        self.state = STARTING
        self.ending = None
        self.command_running = None
        self.window = RestartWindow(self.spec.intensity, self.spec.period)
        self.mailbox.clear()
        self._run([("start", c) for c in self.children], on_fail=self._initial_start_failed)

    def stop(self) -> None:
        """Stop every child in reverse declared order, then answer ``child_stopped`` (R9)."""
        if self.state == STOPPING and self.ending == "stopped":
            return
        self.state = STOPPING
        self.ending = "stopped"
        self._stop_all()
        shutdown = self.spec.shutdown
        if shutdown == BRUTAL_KILL:
            self.kill_all()
        elif shutdown != INFINITY and self.parent is not None:
            key = ("supkill", self.path)
            self.timers.add(key)
            self.eng.emit(act.SetTimer(key, float(shutdown)))
        self._advance()

    def kill_all(self) -> None:
        """SIGKILL every process below at once (a second INT, or a supervisor's shutdown timer).

        The supervisor is stopping from then on: it starts nothing more.
        """
        if not self.alive:
            return
        for child in reversed(self.children):
            child.kill_all()
        if self.state != STOPPING:
            self.stop()

    # --- children's answers -------------------------------------------------

    def child_started(self, child: Child) -> None:
        if self.waiting == (child, "start"):
            self.waiting = None
            self._advance()

    def child_stopped(self, child: Child) -> None:
        if self.waiting is not None and self.waiting[0] is child:
            self.waiting = None
            self._advance()

    def child_start_failed(self, child: Child, reason: str) -> None:
        if self.waiting is None or self.waiting[0] is not child:
            return
        self.waiting = None
        if self.state == STOPPING or self.on_fail is None:
            self._advance()  # it was being stopped anyway
            return
        on_fail = self.on_fail
        self.plan.clear()
        on_fail(child, reason)
        self._advance()

    def child_exited(self, child: Child, normal: bool) -> None:
        if self.state == STOPPING:
            child.state = STOPPED  # consumed: we are stopping everything anyway
            return
        if self.busy or self.state != RUNNING:
            self.mailbox.append(("exit", child, child.incarnation, normal))
            return
        self._handle_exit(child, normal)
        self._advance()

    # --- timers and commands ---------------------------------------------------

    def on_restart_timer(self, key: tuple[str, ...]) -> None:
        if key not in self.timers:
            return
        self.timers.discard(key)
        if self.busy or self.state != RUNNING:
            self.mailbox.append(("restart", key))
        else:
            self._restart_group(key)
            self._advance()

    def on_supkill_timer(self) -> None:
        key = ("supkill", self.path)
        if key in self.timers and self.state == STOPPING:
            self.timers.discard(key)
            self.kill_all()

    def command(self, name: str, child: Child, request: int | None) -> None:
        """``start|stop|restart`` of one child, taken in turn with everything else (R38)."""
        if self.state not in (RUNNING, STARTING):
            where = repr(self.path) if self.path else "the root"
            self.eng.reply(request, f"{where} is not running ({self.state})")
            return
        if self.busy or self.state != RUNNING:
            self.mailbox.append(("command", name, child, request))
            return
        self._command(name, child, request)
        self._advance()

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
                    kind, arg = self.plan.popleft()
                    if kind == "stop":
                        child: Child = arg
                        if child.alive:
                            self.waiting = (child, "stop")
                            child.stop()
                        elif child.state == DEAD:
                            child.state = STOPPED
                    elif kind == "start":
                        child = arg
                        if not child.alive:
                            self.waiting = (child, "start")
                            child.start()
                    else:
                        arg()
                if self.busy:
                    return
                if not self._plan_done():
                    return
        finally:
            self.advancing = False

    def _plan_done(self) -> bool:
        """The plan is finished: move on. True when there may be more to do."""
        self.on_fail = None
        if self.state == STARTING:
            self.state = RUNNING
            self.started_at = self.eng.now
            self._report_up("started")
        elif self.state == STOPPING:
            for key in self.timers:
                self.eng.emit(act.CancelTimer(key))
            self.timers.clear()
            # exits queued while it was busy are moot now (commands were refused in
            # _stop_all); left here they would keep a stopped supervisor "busy" for good
            self.mailbox.clear()
            ending = self.ending
            for c in self.children:
                if c.state in (RESTARTING, DEAD):
                    c.state = STOPPED
            if ending == "init_failed":
                self.state = STOPPED
                self._report_up("start_failed")
            elif ending == "stopped":
                self.state = STOPPED
                self._report_up("stopped")
            else:
                self.state = DEAD
                self._report_up("exited", normal=ending == "auto_shutdown")
            # the parent may have started this node again from inside _report_up
            # (a restart after escalation); its new plan could not advance then
            return self.busy
        while self.mailbox and not self.busy and self.state == RUNNING:
            item = self.mailbox.popleft()
            if item[0] == "exit":
                _, child, incarnation, normal = item
                if child.state == DEAD and child.incarnation == incarnation:
                    self._handle_exit(child, normal)
            elif item[0] == "restart":
                self._restart_group(item[1])
            else:
                _, name, child, request = item
                self._command(name, child, request)
        return self.busy

    def _report_up(self, what: str, normal: bool = False) -> None:
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
        for item in [m for m in self.mailbox if m[0] == "command"]:
            self.mailbox.remove(item)
            self.eng.reply(item[3], refused)
        if self.command_running is not None:  # its plan is being replaced
            name, request = self.command_running
            self.command_running = None
            if name == "stop" and self.waiting is not None and self.waiting[1] == "stop":
                # that child is being stopped anyway: answer once it is gone
                self.plan.append(("call", lambda: self.eng.reply(request, None)))
            else:
                self.eng.reply(request, refused)
        for key in [k for k in self.timers if k[0] == "restart"]:
            self.timers.discard(key)
            self.eng.emit(act.CancelTimer(key))
        for c in self.children:
            if c.state == RESTARTING:
                c.state = STOPPED
        if self.waiting is not None:
            child, what = self.waiting
            if what == "start":  # interrupt a start in progress
                self.waiting = (child, "stop")
                child.stop()
        self.plan.extend(("stop", c) for c in reversed(self.children))
        if then is not None:
            self.plan.append(("call", then))

    # --- decisions ----------------------------------------------------------

    def _initial_start_failed(self, child: Child, reason: str) -> None:
        """R6: stop the started children in reverse order; the supervisor fails to start."""
        self.fail_reason = reason
        self.failed_path = child.failed_path if isinstance(child, SupNode) else child.path
        self.state = STOPPING
        self.ending = "init_failed"
        self._stop_all()

    def _handle_exit(self, child: Child, normal: bool) -> None:
        if RESTART_AFTER[(child.restart, normal)]:
            self._restart(child)
            return
        child.state = EXITED
        if child.significant:
            significant_left = sum(1 for c in self.children if c.significant and c.alive)
            if AUTO_SHUTDOWN_FIRES[self.spec.auto_shutdown](significant_left):
                self.eng.report("auto_shutdown", self.path, child=child.path)
                self.state = STOPPING
                self.ending = "auto_shutdown"
                self._stop_all()

    def _restart(self, trigger: Child, *, retry: bool = False) -> None:
        """A child must restart: count it, then stop and start its group by the strategy."""
        if not self.window.add(self.eng.now):
            self._give_up(trigger)
            return
        self.eng.report("restart", self.path, strategy=self.spec.strategy.value, child=trigger.path)
        times = trigger.restart_times  # shown by status within the window: keep no more
        times.append(self.eng.now)
        while self.eng.now - times[0] > self.spec.period:
            del times[0]
        siblings = [Sibling(c.restart, c.alive) for c in self.children]
        plan = restart_plan(self.spec.strategy, siblings, self.children.index(trigger), retry=retry)
        group = [self.children[i] for i in plan.group]
        to_start = [self.children[i] for i in plan.start]
        delay = trigger.backoff_delay()
        steps: list[Step] = [("stop", self.children[i]) for i in plan.stop]
        key: tuple[str, ...] | None = None
        if delay > 0 or retry:  # R26: a retry goes through the loop, even with no delay
            self.seq += 1
            key = ("restart", self.path, str(self.seq))
        for c in group:
            if c.state == DEAD:
                c.state = STOPPED
        for c in to_start:  # a pending delayed restart of a member is subsumed by this one
            if c.restart_key is not None and c.restart_key in self.timers:
                self.timers.discard(c.restart_key)
                self.eng.emit(act.CancelTimer(c.restart_key))
            c.restart_key = key
            if not c.alive:  # shown as restarting while the stops run
                c.state = RESTARTING
        if key is None:
            steps.extend(("start", c) for c in to_start)
            self._run(steps, on_fail=self._restart_failed)
            return
        timer = key

        def arm() -> None:
            for c in to_start:
                if c.restart_key == timer:
                    c.state = RESTARTING
            self.timers.add(timer)
            self.eng.emit(act.SetTimer(timer, delay))

        steps.append(("call", arm))
        self._run(steps, on_fail=None)

    def _restart_group(self, key: tuple[str, ...]) -> None:
        members = [c for c in self.children if c.state == RESTARTING and c.restart_key == key]
        for c in members:
            c.restart_key = None
        self._run([("start", c) for c in members], on_fail=self._restart_failed)

    def _restart_failed(self, child: Child, reason: str) -> None:
        """R26/R27: a start inside a restart failed: retry through the loop, counted again."""
        child.state = RESTARTING
        self._restart(child, retry=True)

    def _give_up(self, trigger: Child) -> None:
        """R24: too many restarts: stop everything and exit abnormally (escalation)."""
        self.eng.report(
            "give_up", self.path, restarts=len(self.window.times), period=self.spec.period
        )
        trigger.state = STOPPED
        self.state = STOPPING
        self.ending = "gave_up"
        self._stop_all()

    def _command(self, name: str, child: Child, request: int | None) -> None:
        def reply_ok() -> None:
            self.command_running = None
            self.eng.reply(request, None)

        def reply_failed(c: Child, reason: str) -> None:
            c.state = STOPPED
            self.command_running = None
            self.eng.reply(request, f"{c.path}: cannot start: {reason}")

        if name == "stop":
            if child.state == RESTARTING:
                child.state = STOPPED
                child.restart_key = None
            if not child.alive:
                if child.state == DEAD:
                    child.state = STOPPED
                reply_ok()
                return
            self.command_running = (name, request)
            self._run([("stop", child), ("call", reply_ok)], on_fail=None)
            return
        if child.state == RESTARTING:
            self.eng.reply(request, f"{child.path} is restarting")
            return
        if name == "start" and child.alive:
            self.eng.reply(request, f"{child.path} is already running")
            return
        steps: list[Step] = [("stop", child), ("start", child), ("call", reply_ok)]
        self.command_running = (name, request)
        self._run(steps, on_fail=reply_failed)
