"""The runtime: carries out the engine's actions on real processes and feeds it events.

It never decides what to restart; that is the engine's job (``otree.core``).
It owns the loop (``loop.Loop``), the service processes with their probes
and pipes (``processes.Processes``), timers, signals, and the output
(``output``: console, log files, event log). Events the runtime produces
while it carries out actions (``Spawned`` right after a spawn, say) are queued
and fed to the engine in order once the current actions are done.

It knows nothing of the control socket or the self-reload; they plug in
(``otree.launch`` wires them) through a small public surface:
``command()``, ``status()``, ``tail()`` and ``outputs`` for the control
plane; ``add_command()`` (a command of their own, ``reload``),
``on_signal()`` (``TERM``, ``INT`` and ``USR1``, which reopens the log files, are the
runtime's own), ``set_fatal_handler()``, ``add_report_hook()``,
``set_event_hook()``, ``on_close()``, ``busy()``, ``queued()``, ``defer()``,
``exit_as()`` and ``stderr()`` for the reload; ``run(start)`` takes over a
handed-over tree instead of starting one.
"""

from __future__ import annotations

import itertools
import os
import random
import signal
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from otree.core import actions as act
from otree.core import events as ev
from otree.core.engine import Engine, NodeStatus
from otree.core.pool import services as pool_services
from otree.core.service import ServiceNode
from otree.core.spec import Service, Supervisor
from otree.errors import ExitCode, OtreeError, stderr_line
from otree.runtime import cgroups, output, posix, procstat, sinks
from otree.runtime.loop import Loop, Timer
from otree.runtime.processes import Processes

ReplyCallback = Callable[[act.Reply], None]
#: a command of a plugged-in part: ``handler(path, on_reply)`` (``add_command``)
CommandHandler = Callable[[str, ReplyCallback | None], None]
#: how many of its last output lines an abnormal exit event carries
LAST_LINES = 10
#: sees every report before it is written and shown; returns it (changed or not)
ReportHook = Callable[[act.Report], act.Report]
#: an unexpected exception escaped the loop: True to run the loop again (else it is a bug)
FatalHandler = Callable[[Exception], bool]


class Runtime:
    """Run ``tree`` with real processes: ``run()`` returns the exit code.

    ``events``: path of the JSON-lines event log; ``log_dir``: a directory for
    ``<path>.log`` files of every service; ``console``: the fd the prefixed
    output goes to (stdout); ``subreaper``: adopt and reap orphaned descendants.
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
        self._commands: dict[str, CommandHandler] = {}
        self._signals: dict[int, Callable[[int], None]] = {
            signal.SIGTERM: self._on_term,
            signal.SIGINT: self._on_int,
            signal.SIGUSR1: self._on_usr1,
        }
        self._report_hooks: list[ReportHook] = []
        self._event_watchers: list[Callable[[str], None]] = []
        self._event_hook: Callable[[ev.Event], None] | None = None
        self._fatal: FatalHandler | None = None
        self._closers: list[Callable[[], None]] = []
        self._exit_as: tuple[int, str] | None = None
        self.console = output.Console(self.loop, console)
        self._stderr_is_console = output.same_file(console, 2)
        self.event_log: output.EventLog | None = None
        self.outputs: dict[str, output.ServiceOutput] = {}
        try:
            if events is not None:
                try:
                    self.event_log = output.EventLog(events)
                except OSError as exc:
                    raise OtreeError(f"--events {events}: {exc.strerror}") from None
            services = list(pool_services(tree))  # a pool's instances, one by one
            posix.raise_fd_limit(4 * len(services) + 64)
            colour = self.console.tty and not os.environ.get("NO_COLOR")
            prefixes = output.prefixes([p for p, _ in services], colour)
            share = output.TREE_RING_BYTES // max(1, len(services))
            for path, svc in services:
                ring = svc.log.ring_bytes if svc.log is not None else output.RING_BYTES
                self.outputs[path] = output.ServiceOutput(
                    path,
                    self.console,
                    prefixes[path],
                    _log_file(path, svc, log_dir),
                    ring_bytes=min(ring, share),
                )
        except OSError as exc:
            self._close_files()
            raise OtreeError(f"cannot open {exc.filename}: {exc.strerror}") from None
        self.processes = Processes(self.loop, self._feed, self.console, self.outputs)
        try:  # the kill mode: a cgroup per service, or process groups
            self.processes.use_cgroups(cgroups.setup(tree.cgroups.value, self._stderr))
        except cgroups.Unavailable as exc:
            self.discard()
            hint = 'cgroups = "auto" falls back to process groups'
            raise OtreeError(f'cgroups = "on", but {exc} ({hint})') from None

    def discard(self) -> None:
        """Close what ``__init__`` opened, for a runtime that will not ``run()``."""
        if self.processes.cgroups is not None:
            self.processes.cgroups.discard()
        self.processes.end_guard()
        self._close_files()
        self.loop.close()

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

    def command(
        self,
        name: str,
        path: str = "",
        on_reply: ReplyCallback | None = None,
        count: int | None = None,
    ) -> None:
        """Feed ``Command(name, path)`` to the engine; ``on_reply(Reply)`` gets its answer
        (``count``: a ``scale``'s).

        A command given to ``add_command`` (``reload``) goes to its handler instead."""
        handler = self._commands.get(name)
        if handler is not None:
            handler(path, on_reply)
            return
        request = None
        if on_reply is not None:
            request = next(self._requests)
            self._replies[request] = on_reply
        self._feed(ev.Command(name, path, request, count))

    def status(self) -> list[NodeStatus]:
        """Every node in start order, root first (``started_at`` is ``loop.clock()`` time)."""
        return self.engine.status(self.loop.clock())

    def dropped(self) -> dict[str, int]:
        """Lines the tree's own sinks missed: ``{"console": N, "events": N}`` (a service's
        log file says its own: ``outputs[path].dropped``)."""
        events = self.event_log.dropped if self.event_log is not None else 0
        return {"console": self.console.dropped, "events": events}

    def liveness(self) -> dict[str, dict[str, Any]]:
        """Per running service: its latest ``STATUS=`` text and its health failures."""
        return self.processes.liveness()

    def usage(
        self, liveness: Mapping[str, Mapping[str, Any]] | None = None
    ) -> dict[str, tuple[int, float, int]]:
        """Per running service: ``(pid, CPU seconds, RSS bytes)`` (``procstat.services``);
        with ``liveness`` (what :meth:`liveness` just said), the cgroups' members and CPU
        seconds listed there are not read again."""
        members: dict[str, list[int]] = {}
        cpu: dict[str, float] = {}
        for live in (liveness or {}).values():
            if "cgroup" in live:
                members[live["cgroup"]] = live["members"]
                if live.get("cpu_seconds") is not None:
                    cpu[live["cgroup"]] = live["cpu_seconds"]
        return procstat.services(
            self.engine.nodes, self.processes.in_cgroup, members=members, cpu=cpu
        )

    def node_info(self, path: str) -> tuple[Service | Supervisor, list[float], float] | None:
        """``otree status PATH``: the spec of node ``path``, the unix times of its automatic
        restarts inside its supervisor's window (the root: its own), and that window
        (seconds); None if there is no such node."""
        node = self.engine.nodes.get(path)
        if node is None:
            return None
        now = self.loop.clock()
        if node.parent is not None:
            window = node.parent.spec.period
            times = node.record.restart_times
        else:
            window = self.engine.root.spec.period
            times = self.engine.root.window.times
        wall = time.time()
        recent = [round(wall - (now - t), 3) for t in times if now - t <= window]
        return node.spec, recent, window

    def signal_service(self, path: str, name: str, group: bool = False) -> tuple[int, str | None]:
        """``otree signal``: send signal ``name`` to service ``path``'s main process (with
        ``group``: to its whole process group). Not a stop: the engine is not told, and
        whatever the process does with it is supervised as ever. ``(pid, None)`` once sent,
        else ``(0, the reason it was refused)``."""
        node = self.engine.nodes.get(path)
        if node is None:
            return 0, f"no node at path {path!r}"
        if not isinstance(node, ServiceNode):
            return 0, f"{path or '(root)'} is a {node.kind}: only a service can be signalled"
        signum = posix.parse_signal(name)
        if signum is None:
            return 0, f"unknown signal {name!r}"
        pid = node.pid
        if pid is None:
            return 0, f"{path} is not running ({node.status.value})"
        if group:
            sent = posix.kill_group(pid, signum)
        else:
            sent = posix.signal_main(pid, signum, self.loop.pidfd(pid))
        if not sent:
            return 0, f"{path} (pid {pid}) is gone"
        return pid, None

    def tail(self, path: str, n: int = output.RING_LINES) -> list[bytes]:
        """The last ``n`` output lines of service ``path`` (KeyError if no such service)."""
        return self.outputs[path].tail(n)

    # --- what plugs in (otree.launch wires the control socket and the reload) ---

    def add_command(self, name: str, handler: CommandHandler) -> None:
        """``command(name, path, on_reply)`` calls ``handler(path, on_reply)`` instead of
        feeding the engine (the reload's ``reload``)."""
        self._commands[name] = handler

    def on_signal(self, signum: int, handler: Callable[[int], None]) -> None:
        """Run ``handler(signum)`` in the loop when ``signum`` arrives (installed by
        ``run()``; ``TERM`` and ``INT`` are the runtime's own)."""
        self._signals[signum] = handler

    def set_fatal_handler(self, handler: FatalHandler | None) -> None:
        """Who gets an unexpected exception from the loop (the reload re-execs otree)."""
        self._fatal = handler

    def add_report_hook(self, hook: ReportHook) -> None:
        """Pass every report through ``hook`` before it is logged and shown."""
        self._report_hooks.append(hook)

    def add_event_watcher(self, watcher: Callable[[str], None]) -> None:
        """Call ``watcher(line)`` with each event-log line (JSON, no newline), written or
        not (``otree events`` works without ``--events``); it must not block."""
        self._event_watchers.append(watcher)

    def set_event_hook(self, hook: Callable[[ev.Event], None] | None) -> None:
        """Call ``hook(event)`` just before the engine handles each event. If it raises,
        the event stays queued (in flight: ``queued()`` hands it over) and the exception
        leaves the loop as any other would (a test-only fault)."""
        self._event_hook = hook

    def on_close(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` first when ``run()`` ends (the control socket closes)."""
        self._closers.append(callback)

    def busy(self) -> str | None:
        """What the runtime is in the middle of (None: it is idle)."""
        if self._queue or self._busy:
            return "events are being handled"
        if self._replies:
            return "a control command is being carried out"
        return None

    def queued(self) -> list[ev.Event]:
        """The events waiting to be handled, oldest first."""
        return list(self._queue)

    def defer(self, event: ev.Event) -> None:
        """Queue ``event`` behind the others; it is handled once the actions being carried
        out (or the first ones ``run(start)`` carries out) are done."""
        self._queue.append(event)

    def exit_as(self, code: int, message: str) -> None:
        """When the tree has stopped, ``run()`` returns ``code`` and prints ``message``
        instead of the engine's (the re-exec guard's exit)."""
        self._exit_as = (code, message)

    def stderr(self, text: str) -> None:
        """``otree: text`` on stderr, once: the same line again is not printed."""
        self._stderr(text)

    # --- running ------------------------------------------------------------

    def run(self, start: Callable[[], list[act.Action]] | None = None) -> int:
        """Start the tree and run until the engine says Exit; return the exit code.

        ``start()`` gives the first actions instead of the engine's start (a re-exec
        takes over the running children)."""
        try:
            self._install_signals()
            self._recovering(lambda: self._first_start(start))
            while self.exit_code is None:
                self._recovering(self.loop.run)
        except BaseException:
            self._kill_everything()
            raise
        finally:
            self._shutdown()
        if self.exit_message:
            self._stderr(self.exit_message)
        return self.exit_code if self.exit_code is not None else ExitCode.BUG

    def _first_start(self, start: Callable[[], list[act.Action]] | None) -> None:
        if start is not None:
            self._run_actions(start())
        else:
            self._run_actions(self.engine.start(self.loop.clock()))

    def _recovering(self, body: Callable[[], None]) -> None:
        """Run ``body``; an unexpected exception goes to the fatal handler (the reload)."""
        try:
            body()
        except Exception as exc:
            if self._fatal is None or not self._fatal(exc):
                raise

    def _install_signals(self) -> None:
        loop = self.loop
        for signum, handler in self._signals.items():
            loop.on_signal(signum, handler)
        # what otree inherited ignored would be its children's too: not so (DESIGN.md)
        posix.reset_inherited_signals()
        # held back across a re-exec (the mask survives it): delivered now; and nothing
        # stays blocked, so every child starts with an empty mask
        signal.pthread_sigmask(signal.SIG_UNBLOCK, set(self._signals))
        signal.pthread_sigmask(signal.SIG_SETMASK, set())
        if self.subreaper or os.getpid() == 1:
            if self.subreaper:
                posix.set_subreaper()
            loop.enable_sigchld()
        elif not hasattr(os, "pidfd_open"):
            loop.enable_sigchld()

    def _on_term(self, signum: int) -> None:
        self.command("shutdown")

    def _on_usr1(self, signum: int) -> None:
        self.reopen_logs()

    def reopen_logs(self) -> None:
        """logrotate's ``postrotate`` (``SIGUSR1``): open every log file and the event log
        again, and say so on the console."""
        count = self.reopen_files()
        self.console.write(f"otree: SIGUSR1: {count} log files reopened\n".encode(), keep=True)

    def reopen_files(self) -> int:
        """Open every log file and the event log again at its path; how many there are."""
        files: list[output.RotatingFile | output.EventLog] = [
            out.file for out in self.outputs.values() if out.file is not None
        ]
        if self.event_log is not None:
            files.append(self.event_log)
        for file in files:
            file.reopen()
        return len(files)

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
                if self._event_hook is not None:
                    try:
                        self._event_hook(event)
                    except BaseException:
                        queue.appendleft(event)  # not handled: still in flight
                        raise
                for action in self.engine.handle(event, self.loop.clock()):
                    self._do(action)
        finally:
            self._busy = False
            self.processes.settle()  # never waits for work inside a service's cgroup

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
            if self._exit_as is not None:
                self.exit_code, self.exit_message = self._exit_as
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
        if report.event == "exit" and report.fields.get("normal") is False:
            report = self._with_last_lines(report)
        for hook in self._report_hooks:
            report = hook(report)
        record = {"ts": time.time(), **report.as_dict()}  # one ts for the file and the ring
        if self.event_log is not None or self._event_watchers:
            line = sinks.event_line(record)  # one JSON text for the file and the ring
            if self.event_log is not None:
                self.event_log.write_line(line)
            for watcher in self._event_watchers:
                watcher(line)
        text = output.describe_event(report.event, report.path, report.fields)
        pid = report.fields.get("pid", -1)
        probing = self.processes.probing
        if report.event == "spawn" and pid in probing:
            text = ""  # its exec was shown already; 'ready' follows at once
        elif report.event == "ready":
            # without a readiness check, 'spawn' said it all; with one, say it is ready now
            text = text if probing.pop(pid, None) is not None else ""
            self.processes.ready(pid)  # its health probes and watchdog start
        elif report.event == "adopt":  # kept across a re-exec: its liveness goes on
            node = self.engine.nodes.get(report.path)
            if node is not None and isinstance(node.spec, Service):
                self.processes.resume(pid, node.spec)
        if report.event == "start_failed":
            self._stderr(text)  # and on the console too, unless it is the same terminal/file
            if self._stderr_is_console:
                return
        if text:
            self.console.write(f"otree: {text}\n".encode(), keep=True)

    def _with_last_lines(self, report: act.Report) -> act.Report:
        """An abnormal exit carries the last lines its process wrote (the cause, often)."""
        output_of = self.outputs.get(report.path)
        if output_of is None:
            return report
        lines = [line.decode("utf-8", "replace") for line in output_of.tail(LAST_LINES)]
        return act.Report(report.event, report.path, {**report.fields, "last_lines": lines})

    def _stderr(self, text: str) -> None:
        if text not in self._stderr_lines:
            self._stderr_lines.add(text)
            self.console.flush()
            stderr_line(text)

    # --- the end ---------------------------------------------------------------

    def _kill_everything(self) -> None:
        """Last resort (an otree bug): SIGKILL every process group we started."""
        self.processes.kill_all()

    def _shutdown(self) -> None:
        for callback in self._closers:  # the control plane: clients see the connection close
            callback()
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
