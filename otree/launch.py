"""Where the runtime, the control socket and the self-reload are wired together.

``run(tree)`` is ``otree.run()``; ``otree run TREE`` comes to
``prepare_tree_file()`` and runs what it returns. Either way the same
:func:`_wire` builds the :class:`~otree.runtime.driver.Runtime`, the
:class:`~otree.reload.reloader.Reloader` and, when there is a socket, the
:class:`~otree.control.server.ControlServer`, and plugs the last two into the
runtime's public surface. The runtime imports neither.
"""

from __future__ import annotations

import contextlib
import os
import signal
from typing import TYPE_CHECKING

from otree.core.spec import Supervisor, check_tree
from otree.errors import ConfigError, ExitCode, OtreeError, ReexecError, stderr_line
from otree.reload import reloader as reload
from otree.runtime import posix, statefile
from otree.runtime.driver import Runtime

if TYPE_CHECKING:
    from collections.abc import Callable

    from otree.control.server import ControlServer
    from otree.core.actions import Report


class Launch:
    """A runtime wired to its reloader (and control server), ready to ``run()``."""

    def __init__(
        self, runtime: Runtime, reloader: reload.Reloader, lock: _Lock | None = None
    ) -> None:
        self.runtime = runtime
        self.reloader = reloader
        #: the tree's lock (one otree per tree), held until the tree has stopped
        self.lock = lock

    def run(self) -> int:
        """Run the tree until it stops (a re-exec takes over the handed-over children)."""
        start = self.reloader.adopt if self.reloader.handoff is not None else None
        try:
            return self.runtime.run(start)
        finally:
            self.release()

    def release(self) -> None:
        """Let go of the tree's lock (``run()`` does, once the tree has stopped)."""
        if self.lock is not None:
            self.lock.release()
            self.lock = None


class _Lock:
    """The lock of the tree served on ``socket`` (``otree.control.sockets.lock_tree``)."""

    def __init__(self, socket: str) -> None:
        from otree.control.sockets import lock_tree

        self.socket = socket
        self.fd = lock_tree(socket)
        #: the running children, written down for the next run if this otree dies
        self.state_file = os.path.abspath(socket) + ".state"

    def release(self) -> None:
        from otree.control.sockets import unlock_tree

        unlock_tree(self.socket, self.fd)


def run(
    tree: Supervisor,
    *,
    events: str | None = None,
    log_dir: str | None = None,
    socket: str | None = None,
    subreaper: bool = False,
) -> int:
    """Run ``tree`` in the foreground until it stops; return ``otree run``'s exit code.

    An invalid tree prints its issues to stderr and returns 2 (nothing starts).
    ``socket`` names the control socket (default: ``$OTREE_SOCKET``; neither: no socket).
    """
    import threading  # the Python API's check; ``otree run`` needs no threads

    if threading.current_thread() is not threading.main_thread():
        raise OtreeError("otree.run() must be called from the main thread (it handles signals)")
    socket = socket or os.environ.get("OTREE_SOCKET") or None
    try:
        check_tree(tree)
        from otree.config.pytree import finish_tree  # env files, ${VAR}: as at a load

        tree = finish_tree(tree, os.getcwd())  # relative paths: the process's directory
        launch = _wire(tree, events=events, log_dir=log_dir, subreaper=subreaper, socket=socket)
    except ConfigError as exc:
        for line in exc.lines():
            stderr_line(line)
        return ExitCode.USAGE
    except OtreeError as exc:
        stderr_line(str(exc))
        return ExitCode.USAGE
    return launch.run()


def preflight(source: str, events: str | None, log_dir: str | None) -> int:
    """``otree run SOURCE --preflight``: import all a run needs, load the tree, open the
    files it writes, exit (:mod:`otree.reload.preflight`); starts nothing."""
    from otree.reload.preflight import check

    return check(source, events, log_dir)


def prepare_tree_file(
    source: str,
    *,
    events: str | None,
    log_dir: str | None,
    socket: str | None,
    subreaper: bool,
    own_process: bool,
    metrics: str | None = None,
    metrics_public: bool = False,
) -> Launch | int:
    """``otree run SOURCE`` up to the start: load the tree, wire it, return what runs it.

    ``own_process``: this otree is its process's own command line, so it can re-exec
    itself (and may be a re-exec, with a handoff to take over). Bad input raises
    ConfigError or OtreeError (nothing started). A handoff that cannot be taken over
    stops the children it names and returns ``ExitCode.REEXEC``
    (:mod:`otree.reload.rescue`). ``metrics``: serve ``GET /metrics`` at that address
    (loopback only unless ``metrics_public``).
    """
    # the control server first, before the tree file loads cattrs: imported after that,
    # it costs 0.4 MiB more RSS (the heap packs worse), measured with one child and 200
    from otree.control.server import run_socket

    listen = None
    if metrics is not None:  # a bad address is bad input: refused before anything starts
        from otree.control.httpmetrics import parse_address

        listen = parse_address(metrics, metrics_public)
    try:
        handoff = reload.inherited() if own_process else None  # set by a re-exec
    except ReexecError as exc:
        return _rescue(str(exc))
    try:
        try:
            from otree.config.loader import load_tree

            tree = load_tree(source)
        except ConfigError as exc:
            if handoff is None:
                raise
            handoff = reload.keep_running_tree(handoff, exc)
            tree = handoff.tree
        return _wire(
            tree,
            events=events,
            log_dir=log_dir,
            subreaper=subreaper,
            socket=run_socket(source, socket),
            tree_source=source,
            argv=reload.exec_argv() if own_process else None,
            handoff=handoff,
            listen=listen,
        )
    except ConfigError:
        raise
    except OtreeError as exc:
        if handoff is None:
            raise
        return _rescue(str(exc))
    except Exception:
        if handoff is None:
            raise
        import traceback

        traceback.print_exc()
        return _rescue("an internal error while taking over (traceback above)")


def _rescue(message: str) -> int:
    from otree.reload import rescue

    return rescue.give_up(message)


def _wire(
    tree: Supervisor,
    *,
    events: str | None,
    log_dir: str | None,
    subreaper: bool,
    socket: str | None,
    tree_source: str | None = None,
    argv: list[str] | None = None,
    handoff: reload.Handoff | None = None,
    listen: tuple[str, int] | None = None,
) -> Launch:
    # one otree per tree: refused before anything opens or starts
    lock = _Lock(socket) if socket is not None else None
    try:
        launch = _wire_locked(
            tree, events, log_dir, subreaper, socket, tree_source, argv, handoff, lock
        )
    except BaseException:
        if lock is not None:
            lock.release()
        raise
    try:
        _metrics(launch, handoff, listen)
        _events(launch, handoff)
        return launch
    except BaseException:
        if launch.reloader.control is not None:
            launch.reloader.control.close()
        launch.runtime.discard()
        launch.release()
        raise


def _events(launch: Launch, handoff: reload.Handoff | None) -> None:
    """``otree events``: a ring of the event-log lines, taken over from the image before
    and handed to the next, answered from on the control socket."""
    from otree.control.events import EventRing

    ring = EventRing()
    if handoff is not None:
        ring.load(handoff.events)
    launch.runtime.add_event_watcher(ring.add)
    launch.reloader.events = ring.dump
    if launch.reloader.control is not None:
        launch.reloader.control.events = ring


def _metrics(
    launch: Launch, handoff: reload.Handoff | None, listen: tuple[str, int] | None
) -> None:
    """``otree metrics`` (and ``--metrics ADDR``): the counters as a report observer, their
    counts taken over from the image before and handed to the next, and the exposition
    on the control socket and the HTTP listener (:mod:`otree.control.metrics`)."""
    from otree.control.metrics import Counters, Metrics
    from otree.runtime import procstat

    runtime, reloader = launch.runtime, launch.reloader
    counters = Counters()
    if handoff is not None:
        counters.load(handoff.counters, runtime.engine.nodes)
    runtime.add_report_hook(counters.on_report)
    reloader.counters = counters.dump
    metrics = Metrics(counters, runtime.status, procstat.group_usage, procstat.own_usage)
    if reloader.control is not None:
        reloader.control.metrics = metrics.text
    if listen is None:
        return
    from otree.control.httpmetrics import MetricsListener

    try:
        listener = MetricsListener(runtime.loop, listen, metrics.text)
    except OtreeError as exc:
        if handoff is None:
            raise
        runtime.stderr(str(exc))  # after a reload: the tree carries on without it
        return
    runtime.on_close(listener.close)


def _wire_locked(
    tree: Supervisor,
    events: str | None,
    log_dir: str | None,
    subreaper: bool,
    socket: str | None,
    tree_source: str | None,
    argv: list[str] | None,
    handoff: reload.Handoff | None,
    lock: _Lock | None,
) -> Launch:
    dead = 0
    if lock is not None and handoff is None:  # not a re-exec: what a dead otree left?
        dead = stop_leftovers(tree, lock.state_file)
    runtime = Runtime(tree, events=events, log_dir=log_dir, subreaper=subreaper)
    if dead and runtime.processes.cgroups is not None:  # and what escaped into its cgroups
        runtime.processes.cgroups.reclaim(dead, runtime.stderr)
    if lock is not None:
        runtime.processes.state_file = lock.state_file
    reloader = reload.Reloader(runtime, argv=argv, tree_source=tree_source, handoff=handoff)
    runtime.add_command("reload", lambda path, on_reply: reloader.request("reload", on_reply))
    runtime.on_signal(signal.SIGHUP, _hangup(runtime, reloader))
    runtime.set_fatal_handler(reloader.fatal)
    runtime.add_report_hook(reloader.on_report)
    if reloader.fault is not None:  # test-only (OTREE_TEST_FAULT)
        runtime.set_event_hook(reloader.check_fault)
    control = None
    if socket is not None:  # the control plane: listening before the tree starts
        try:
            control = _control(runtime, socket, tree_source, handoff)
        except OtreeError:
            runtime.discard()
            raise
        reloader.control = control
        control.reload_plan = reloader.plan  # otree reload --dry-run
        runtime.on_close(control.close)
    _stray_signals(runtime, control)
    _service_manager(runtime, reloader)
    return Launch(runtime, reloader, lock)


def _service_manager(runtime: Runtime, reloader: reload.Reloader) -> None:
    """Tell otree's own manager (``NOTIFY_SOCKET``: systemd, an otree parent) how the tree
    is doing: :mod:`otree.runtime.manager`."""
    if "NOTIFY_SOCKET" not in os.environ:  # no manager: nothing to import (RSS)
        return
    from otree.runtime.manager import Manager

    manager = Manager.from_env(
        runtime.loop, lambda: [n.state for n in runtime.status() if n.kind == "service"]
    )
    if manager is None:
        return

    def on_report(report: Report) -> Report:
        manager.on_report(report, runtime.engine.stopping())
        return report

    runtime.add_report_hook(on_report)
    reloader.exec_hooks.append(manager.reloading)
    runtime.on_close(manager.close)


def stop_leftovers(tree: Supervisor, state_file: str) -> int:
    """Stop what a dead otree of this tree left running (its state file names the PIDs
    and their start times), in reverse start order, each as the tree stops it (its
    ``stop_signal``, its ``shutdown``, then SIGKILL), and say so on stderr. The PID of
    that otree (0: none)."""
    from otree.core.pool import services as pool_services

    owner, left = statefile.read_state(state_file)
    if left:
        names = ", ".join(f"{name} (pid {pid})" for pid, name in left)
        stderr_line(
            f"a previous otree (pid {owner}) of this tree died; stopping what it left: {names}"
        )
        services = dict(pool_services(tree))
        for pid, name in reversed(left):
            spec = services.get(name)
            signum = posix.signal_number(spec.stop_signal) if spec else signal.SIGTERM
            timeout = spec.shutdown if spec else 5.0
            if timeout == "brutal_kill":
                signum, timeout = signal.SIGKILL, 0.0
            killed = statefile.stop_leftover(
                pid, signum, None if timeout == "infinity" else float(timeout)
            )
            how = "killed" if killed else "stopped"
            stderr_line(f"{name} (pid {pid}), left by the previous otree: {how}")
    with contextlib.suppress(OSError):
        os.unlink(state_file)
    return owner


#: asynchronous signals whose default action would end otree, and that otree only logs
LOGGED_SIGNALS = tuple(
    getattr(signal, name)
    for name in ("SIGUSR2", "SIGALRM", "SIGVTALRM", "SIGPROF", "SIGIO", "SIGPWR", "SIGSTKFLT")
    if hasattr(signal, name)
)


def _hangup(runtime: Runtime, reloader: reload.Reloader) -> Callable[[int], None]:
    """``SIGHUP``: a reload, unless otree was started from a terminal: then the hangup is
    the terminal closing, and the tree stops in order (as honcho and foreman do)."""
    if not posix.has_controlling_terminal():
        return lambda _: reloader.request("SIGHUP", None)

    def stop(_: int) -> None:
        runtime.console.write(
            b"otree: SIGHUP: the terminal hung up; stopping the tree\n", keep=True
        )
        runtime.command("shutdown")

    return stop


def _stray_signals(runtime: Runtime, control: ControlServer | None) -> None:
    """No signal's default action may end otree while it has children (Faults, DESIGN.md):
    ``QUIT`` is an orderly shutdown like ``TERM``, ``USR1`` reopens the log files (and binds
    a deleted socket again), ``PIPE`` and ``XFSZ`` are ignored (the write fails instead; a
    child gets both back at its default, ``subprocess`` restores them), and every other
    asynchronous signal that would end otree (``USR2``, ``ALRM``, the real-time ones ...)
    is logged on the console and ignored. ``TERM``, ``INT`` and ``HUP`` are handled already."""
    for ignored in (signal.SIGPIPE, signal.SIGXFSZ):
        signal.signal(ignored, signal.SIG_IGN)
    runtime.on_signal(signal.SIGQUIT, lambda _: runtime.command("shutdown"))
    runtime.on_signal(signal.SIGUSR1, lambda _: on_usr1(runtime, control))
    realtime = range(signal.SIGRTMIN, signal.SIGRTMAX + 1)
    valid = signal.valid_signals()
    for signum in (*LOGGED_SIGNALS, *realtime):
        if signum in valid:
            runtime.on_signal(signum, lambda n: _ignored(runtime, n))


def _ignored(runtime: Runtime, signum: int) -> None:
    runtime.console.write(f"otree: {_signal_name(signum)} received: ignored\n".encode(), keep=True)


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"SIGRTMIN+{signum - signal.SIGRTMIN}"


def on_usr1(runtime: Runtime, control: ControlServer | None) -> None:
    """``SIGUSR1``: reopen the log files (logrotate's ``postrotate``) and bind the control
    socket again if it was deleted."""
    runtime.reopen_logs()
    if control is not None:
        rebind_socket(runtime, control)


def rebind_socket(runtime: Runtime, control: ControlServer) -> None:
    """Bind the control socket again if its file is gone, and say so on the console."""
    try:
        rebound = control.rebind()
    except OtreeError as exc:
        runtime.stderr(f"cannot bind the control socket again: {exc}")
        return
    if rebound:
        runtime.console.write(
            f"otree: control socket {control.path} bound again\n".encode(), keep=True
        )


def _control(
    runtime: Runtime, path: str, tree_source: str | None, handoff: reload.Handoff | None
) -> ControlServer:
    from otree.control.server import ControlServer, tree_info

    inherited = None
    kept = handoff.control if handoff is not None else None  # kept across the exec
    if kept is not None:
        import socket

        inherited = socket.socket(fileno=kept.fd)
        inherited.set_inheritable(False)
    control = ControlServer(
        runtime.loop, runtime, path, info=tree_info(tree_source), sock=inherited
    )
    if kept is not None and kept.started is not None:
        control.info["started"] = kept.started
    return control
