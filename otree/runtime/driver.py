"""The runtime: carries out the engine's actions on real processes and feeds it events.

It never decides what to restart; that is the engine's job (``otree.core``).
It owns the loop (``_loop.Loop``), the service processes with their probes
and pipes (``_services.Processes``), timers, signals, and the output
(``logs``: console, log files, event log). Events the runtime produces
while it carries out actions (``Spawned`` right after a spawn, say) are queued
and fed to the engine in order once the current actions are done.

The control plane plugs in through ``register()`` (extra fds with callbacks),
``command()`` (a Command in, a Reply to a callback out), ``status()`` and
``tail()``.
"""

from __future__ import annotations

import itertools
import os
import random
import signal
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from otree.core import actions as act
from otree.core import events as ev
from otree.core.engine import Engine, NodeStatus
from otree.core.spec import Service, Supervisor, walk
from otree.errors import OtreeError
from otree.reload import reloader
from otree.runtime import output, posix
from otree.runtime.loop import Loop, Timer
from otree.runtime.processes import Processes

if TYPE_CHECKING:
    from otree.control.server import ControlServer

ReplyCallback = Callable[[act.Reply], None]

EXIT_BUG = 70
BUG_LINE = "otree: this is a bug in otree; please report it with the traceback above"


class Runtime:
    """Run ``tree`` with real processes: ``run()`` returns the exit code.

    ``events``: path of the JSON-lines event log; ``log_dir``: a directory for
    ``<path>.log`` files of every service; ``console``: the fd the prefixed
    output goes to (stdout); ``subreaper``: adopt and reap orphaned descendants.
    ``reexec_argv``: how to run otree again for a self-reload (None: no re-exec);
    ``handoff``: the state left by the image before, when this one is a re-exec.
    """

    def __init__(
        self,
        tree: Supervisor,
        *,
        events: str | None = None,
        log_dir: str | None = None,
        subreaper: bool = False,
        console: int = 1,
        rng: random.Random | None = None,
        socket: str | None = None,
        tree_source: str | None = None,
        reexec_argv: list[str] | None = None,
        handoff: reloader.Handoff | None = None,
    ) -> None:
        self.tree = tree
        self.engine = Engine(tree, rng)
        self.loop = Loop()
        self.subreaper = subreaper
        self.exit_code: int | None = None
        self.exit_message: str | None = None
        self._queue: deque[ev.Event] = deque()
        self._busy = False
        self._timers: dict[tuple[str, ...], Timer] = {}
        self._replies: dict[int, ReplyCallback] = {}
        self._requests = itertools.count(1)
        self._interrupts = 0
        self._stderr_lines: set[str] = set()
        self.console = output.Console(self.loop, console)
        self._stderr_is_console = output.same_file(console, 2)
        self.event_log: output.EventLog | None = None
        self.outputs: dict[str, output.ServiceOutput] = {}
        try:
            if events is not None:
                self.event_log = output.EventLog(events)
            services = [(p, n) for p, n in walk(tree) if isinstance(n, Service)]
            posix.raise_fd_limit(4 * len(services) + 64)
            colour = self.console.tty and not os.environ.get("NO_COLOR")
            prefixes = output.prefixes([p for p, _ in services], colour)
            for path, svc in services:
                self.outputs[path] = output.ServiceOutput(
                    path, self.console, prefixes[path], _log_file(path, svc, log_dir)
                )
        except OSError as exc:
            self._close_files()
            raise OtreeError(f"cannot open {exc.filename}: {exc.strerror}") from None
        self.processes = Processes(self.loop, self._feed, self.console, self.outputs)
        self.reloader = reloader.Reloader(
            self, argv=reexec_argv, tree_source=tree_source, handoff=handoff
        )
        self._fault = self.reloader.fault  # test-only (OTREE_TEST_FAULT); None otherwise
        # control plane (otree.control.server): listening before the tree starts
        self.control: ControlServer | None = None
        if socket is not None:
            from otree.control.server import ControlServer, tree_info

            inherited = None
            if handoff is not None and handoff.control_fd is not None:  # kept across the exec
                import socket as socket_module

                inherited = socket_module.socket(fileno=handoff.control_fd)
                inherited.set_inheritable(False)
            try:
                self.control = ControlServer(
                    self.loop, self, socket, info=tree_info(tree_source), sock=inherited
                )
                if handoff is not None and handoff.control_started is not None:
                    self.control.info["started"] = handoff.control_started
            except OtreeError:
                self._close_files()
                raise

    # --- the control plane's interface --------------------------------------

    def register(self, fd: int, callback: Callable[[], None]) -> None:
        """Call ``callback()`` in the loop whenever ``fd`` is readable."""
        self.loop.add_reader(fd, callback)

    def register_writer(self, fd: int, callback: Callable[[], None]) -> None:
        self.loop.add_writer(fd, callback)

    def unregister(self, fd: int) -> None:
        self.loop.remove_reader(fd)
        self.loop.remove_writer(fd)

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        return self.loop.call_later(delay, callback)

    def command(self, name: str, path: str = "", on_reply: ReplyCallback | None = None) -> None:
        """Feed ``Command(name, path)`` to the engine; ``on_reply(Reply)`` gets its answer.

        ``reload`` is the runtime's own: it re-execs otree (``otree.reload.reloader``)."""
        if name == "reload":
            self.reloader.request("reload", on_reply)
            return
        request = None
        if on_reply is not None:
            request = next(self._requests)
            self._replies[request] = on_reply
        self._feed(ev.Command(name, path, request))

    def status(self) -> list[NodeStatus]:
        """Every node in start order, root first (``started_at`` is ``loop.clock()`` time)."""
        return self.engine.status(self.loop.clock())

    def tail(self, path: str, n: int = output.RING_LINES) -> list[bytes]:
        """The last ``n`` output lines of service ``path`` (KeyError if no such service)."""
        return self.outputs[path].tail(n)

    # --- running ------------------------------------------------------------

    def run(self) -> int:
        """Start the tree and run until the engine says Exit; return the exit code."""
        try:
            self._install_signals()
            self._recovering(self._first_start)
            while self.exit_code is None:
                self._recovering(self.loop.run)
        except BaseException:
            self._kill_everything()
            raise
        finally:
            self._shutdown()
        if self.exit_message:
            self._stderr(self.exit_message)
        return self.exit_code if self.exit_code is not None else EXIT_BUG

    def _first_start(self) -> None:
        if self.reloader.handoff is not None:  # a re-exec: take over the running children
            self._run_actions(self.reloader.adopt())
        else:
            self._run_actions(self.engine.start(self.loop.clock()))

    def _recovering(self, body: Callable[[], None]) -> None:
        """Run ``body``; an unexpected exception re-execs otree (``Reloader.fatal``)."""
        try:
            body()
        except Exception as exc:
            if not self.reloader.fatal(exc):
                raise

    def _install_signals(self) -> None:
        loop = self.loop
        loop.on_signal(signal.SIGTERM, self._on_term)
        loop.on_signal(signal.SIGINT, self._on_int)
        loop.on_signal(signal.SIGHUP, lambda _: self.reloader.request("SIGHUP", None))
        reloader.unblock_signals()  # held back across a re-exec: delivered now
        if self.subreaper or os.getpid() == 1:
            if self.subreaper:
                posix.set_subreaper()
            loop.enable_sigchld()
        elif not hasattr(os, "pidfd_open"):
            loop.enable_sigchld()

    def _on_term(self, signum: int) -> None:
        self.command("shutdown")

    def _on_int(self, signum: int) -> None:
        self._interrupts += 1
        self.command("shutdown" if self._interrupts == 1 else "kill_all")

    # --- engine plumbing --------------------------------------------------------

    def _feed(self, event: ev.Event) -> None:
        self._queue.append(event)
        if not self._busy:
            self._run_actions([])

    def _run_actions(self, actions: list[act.Action]) -> None:
        self._busy = True
        try:
            for action in actions:
                self._do(action)
            queue = self._queue
            while queue and self.exit_code is None:
                event = queue.popleft()
                if self._fault is not None and self._fault.hits(event):
                    self._fault = None
                    os.environ.pop(reloader.ENV_FAULT, None)
                    queue.appendleft(event)  # not handled: in flight across the re-exec
                    raise reloader.InjectedFault(f"{reloader.ENV_FAULT}: {event!r}")
                for action in self.engine.handle(event, self.loop.clock()):
                    self._do(action)
        finally:
            self._busy = False

    def _do(self, action: act.Action) -> None:
        if isinstance(action, act.Spawn):
            self.processes.spawn(action.path, action.spec)
        elif isinstance(action, act.Report):
            self._report(action)
        elif isinstance(action, act.Signal):
            self.processes.signal(action.pid, posix.signal_number(action.signal))
        elif isinstance(action, act.Kill):
            self.processes.signal(action.pid, signal.SIGKILL)
        elif isinstance(action, act.SetTimer):
            self._set_timer(action.key, action.delay)
        elif isinstance(action, act.CancelTimer):
            timer = self._timers.pop(action.key, None)
            if timer is not None:
                timer.cancel()
        elif isinstance(action, act.Reply):
            callback = self._replies.pop(action.request, None)
            if callback is not None:
                callback(action)
        elif isinstance(action, act.Exit):
            self.exit_code = action.code
            self.exit_message = action.message
            if self.reloader.guard_message is not None:
                self.exit_code = reloader.EXIT_REEXEC
                self.exit_message = self.reloader.guard_message
            self.loop.stop()

    def _set_timer(self, key: tuple[str, ...], delay: float) -> None:
        old = self._timers.pop(key, None)
        if old is not None:
            old.cancel()

        def fire() -> None:
            if self._timers.get(key) is timer:
                del self._timers[key]
                self._feed(ev.TimerFired(key))

        timer = self.loop.call_later(delay, fire)
        self._timers[key] = timer

    def _report(self, report: act.Report) -> None:
        report = self.reloader.on_report(report)
        if self.event_log is not None:
            self.event_log.write(report.as_dict())
        text = output.describe_event(report.event, report.path, report.fields)
        pid = report.fields.get("pid", -1)
        probing = self.processes.probing
        if report.event == "spawn" and pid in probing:
            text = ""  # its exec was shown already; 'ready' follows at once
        elif report.event == "ready":
            # without a readiness check, 'spawn' said it all; with one, say it is ready now
            text = text if probing.pop(pid, None) is not None else ""
        if report.event == "start_failed":
            self._stderr(text)  # and on the console too, unless it is the same terminal/file
            if self._stderr_is_console:
                return
        if text:
            self.console.write(f"otree: {text}\n".encode(), keep=True)

    def _stderr(self, text: str) -> None:
        if text not in self._stderr_lines:
            self._stderr_lines.add(text)
            self.console.flush()
            output.stderr_line(text)

    # --- the end ---------------------------------------------------------------

    def _kill_everything(self) -> None:
        """Last resort (an otree bug): SIGKILL every process group we started."""
        self.processes.kill_all()

    def _shutdown(self) -> None:
        if self.control is not None:  # control plane: clients see the connection close
            self.control.close()
        self.processes.close()
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        self._close_files()
        self.loop.close()

    def _close_files(self) -> None:
        for out in self.outputs.values():
            out.close()
        if self.event_log is not None:
            self.event_log.close()
        self.console.close()


def _log_file(path: str, svc: Service, log_dir: str | None) -> output.RotatingFile | None:
    spec = svc.log
    file = spec.file if spec is not None else None
    if file is None and log_dir is not None:
        file = os.path.join(log_dir, f"{path}.log")
    if file is None:
        return None
    if spec is None:
        return output.RotatingFile(file, 10 * 1024 * 1024, 3)
    return output.RotatingFile(file, spec.max_bytes, spec.backups)
