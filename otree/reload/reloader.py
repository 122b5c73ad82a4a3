"""Self-reload: the root re-execs itself with ``os.execv`` and keeps its children.

Triggers: ``otree reload`` (a control command), ``SIGHUP``, and an unexpected
exception inside otree's own loop (a fatal internal error).

**Old image** (:class:`Reloader`). A reload first re-reads and validates the
tree file (an invalid one is refused with its errors; nothing changes), then
tries the new image's start-up in a child (:mod:`otree.reload.preflight`: a
broken upgrade is refused before the exec, never found after it), then
waits until the tree is quiet (nothing starting or stopping, no supervisor
busy: at most ``QUIET_WAIT`` seconds, else it is refused as busy); requests
that come meanwhile join it (a burst of them is one reload). A fatal error
cannot wait: it re-execs at once, and the new image restarts whatever was
caught mid-start or mid-stop. The loop guard counts fatal re-execs only (a
fourth within ``GUARD_WINDOW`` seconds stops the tree in order and ``otree
run`` exits 4): an operator's reloads are not crashes and never stop the tree.
The handoff (:mod:`otree.reload.document`): the engine snapshot
(:func:`otree.core.snapshot.snapshot`), the running tree, every output pipe
with its unfinished last line and the PID writing it, exits seen but not yet
handled, the control socket, the clients waiting for ``reload``'s answer,
every other client with no command in flight (what it had yet to receive,
what it follows), ``otree logs``' ring buffers, and the fatal re-exec history.
Those fds are made inheritable, ``TERM``, ``INT`` and ``HUP`` are blocked
(the mask survives the exec, so a signal that comes meanwhile waits instead
of killing otree), and ``os.execv(sys.executable,
[sys.executable, *sys.orig_argv[1:]])`` runs otree again exactly as it was
started.

**New image** (:meth:`Reloader.adopt`): ``otree run`` reads the handoff
first, re-reads the tree file (if it is invalid now, it keeps the tree that
was running), builds the runtime on the inherited control socket, watches
every inherited PID again (a child that died meanwhile is a zombie of ours:
its exit is seen at once), refills the ring buffers, serves the handed-over
clients again, re-registers the pipes, unblocks the signals and
feeds :func:`otree.core.snapshot.resume`'s actions: ``reexec``, an ``adopt``
per kept child, stops, starts, ``tree_ready``. Then the waiting ``otree
reload`` clients get their answer.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
import time
from typing import TYPE_CHECKING, Any

import attrs

from otree.control.protocol import encode, error_reply, ok_reply
from otree.core import actions as act
from otree.core import events as ev
from otree.errors import ConfigError, ExitCode, OtreeError, ReexecError, stderr_line

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from otree.control.server import ControlServer, HandedClient
    from otree.reload.document import Handoff
    from otree.reload.faults import ENV_FAULT, InjectedFault
    from otree.reload.preflight import Preflight
    from otree.runtime.driver import Runtime

    ReplyCallback = Callable[[act.Reply], None]

__all__ = [
    "ENV_FAULT",
    "GUARD_COUNT",
    "GUARD_WINDOW",
    "QUIET_WAIT",
    "Handoff",
    "InjectedFault",
    "Reloader",
    "exec_argv",
    "inherited",
    "keep_running_tree",
]

#: at most this many fatal re-execs within GUARD_WINDOW seconds; one more stops the tree
GUARD_COUNT = 3
GUARD_WINDOW = 60.0
#: how long a reload waits for the tree to be quiet before it is refused as busy
QUIET_WAIT = 30.0
_QUIET_POLL = 0.02
#: signals held back across the exec (the mask survives it; the new image unblocks them):
#: every signal otree handles, since a handler does not survive the exec and the default
#: action of most of them would end the new image before it installs its own
BLOCKED = frozenset(
    {
        signal.SIGTERM,
        signal.SIGINT,
        signal.SIGHUP,
        signal.SIGQUIT,
        signal.SIGUSR1,
        signal.SIGUSR2,
        signal.SIGALRM,
        signal.SIGVTALRM,
        signal.SIGPROF,
        signal.SIGIO,
        signal.SIGPWR,
        *range(signal.SIGRTMIN, signal.SIGRTMAX + 1),
    }
)
#: the first line of a reload refused for an invalid tree file (the issues follow)
INVALID = "the tree file is invalid; the running tree carries on:"


def exec_argv() -> list[str] | None:
    """How to run this otree again: this Python with the arguments it was started with."""
    orig = getattr(sys, "orig_argv", None) or []
    if len(orig) < 2 or not sys.executable:
        return None
    return [sys.executable, *orig[1:]]


# The handoff module is loaded only when a re-exec happens (or a test asks for a
# fault): it is otree's RSS at start-up that pays for it otherwise.
_HANDOFF_ENV = ("OTREE_HANDOFF_FD", "OTREE_TEST_FAULT")


def __getattr__(name: str) -> object:
    if name == "Handoff":
        from otree.reload import document

        return document.Handoff
    if name in ("ENV_FAULT", "InjectedFault"):
        from otree.reload import faults

        return getattr(faults, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def inherited() -> Handoff | None:
    """The handoff of the image before, if this process is a re-exec (see ``_handoff``)."""
    if _HANDOFF_ENV[0] not in os.environ:
        return None
    from otree.reload import document

    return document.read_inherited()


def _clip(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


class Reloader:
    """The runtime's re-exec machinery, both sides of ``os.execv`` (see the module doc).

    ``argv`` is what to exec (None: this run cannot re-exec itself, e.g.
    ``otree.run()`` called from a Python program); ``tree_source`` is the TREE
    argument that ``reload`` re-reads; ``handoff`` is set in a new image;
    ``control`` is the control server whose socket and clients go across.
    ``otree.launch`` plugs it into the runtime (``reload``, ``SIGHUP``, the fatal
    handler, the report hook, the fault hook).
    """

    def __init__(
        self,
        runtime: Runtime,
        *,
        argv: list[str] | None,
        tree_source: str | None,
        handoff: Handoff | None,
        control: ControlServer | None = None,
    ) -> None:
        self.rt = runtime
        self.control = control
        self.argv = argv
        self.tree_source = tree_source
        self.handoff = handoff
        self.history: list[float] = list(handoff.history) if handoff else []
        self.fault = None
        if _HANDOFF_ENV[1] in os.environ:
            from otree.reload import faults

            self.fault = faults.FaultHook.from_env()
        #: why the tree is being stopped by the guard (then ``otree run`` exits 4)
        self.guard_message: str | None = None
        #: called with True just before the exec, and with False if it failed (the service
        #: manager's RELOADING=1, and READY=1 again)
        self.exec_hooks: list[Callable[[bool], None]] = []
        #: the metrics' counters to hand over (``otree.control.metrics.Counters.dump``)
        self.counters: Callable[[], tuple[tuple[str, str, str, int], ...]] | None = None
        #: ``otree events``' ring to hand over (``otree.control.events.EventRing.dump``)
        self.events: Callable[[], tuple[tuple[int, str], ...]] | None = None
        self._waiters: list[tuple[str, ReplyCallback | None]] = []
        self._preflight: Preflight | None = None  # the new image's start-up, being tried
        self._deadline: float | None = None  # waiting until quiet, after the preflight
        self._told = False  # the console was told the reload waits
        # new image: what the reconciliation did, for the waiting clients' answer
        self._summary: dict[str, list[str]] | None = None
        self._answer_to: list[tuple[int, int]] = []
        self._config_errors: list[str] = []

    # --- old image: a reload request --------------------------------------------

    def request(self, reason: str, on_reply: ReplyCallback | None) -> None:
        """``otree reload`` (``on_reply`` gets the refusal; success is answered by the
        new image) or ``SIGHUP`` (no one to answer: a refusal goes to stderr)."""
        error = self._stopping() or self._refusal()
        if error is not None:
            self._refuse([(reason, on_reply)], error)
            return
        self._waiters.append((reason, on_reply))
        if self._deadline is None and self._preflight is None:
            from otree.reload.preflight import Preflight

            assert self.argv is not None  # else _refusal() said so
            self._preflight = Preflight(self.rt.loop, self.argv, self._preflight_done)

    def _preflight_done(self, error: str | None) -> None:
        """The new image's start-up was tried (:mod:`otree.reload.preflight`): wait until
        the tree is quiet and exec, or refuse every request waiting."""
        self._preflight = None
        if error is not None:
            waiters, self._waiters = self._waiters, []
            self._refuse(waiters, error)
            return
        self._deadline = time.monotonic() + QUIET_WAIT
        self._told = False
        self._when_quiet()

    def _stopping(self) -> str | None:
        if self.guard_message is not None or self.rt.engine.stopping():
            return "the tree is stopping"
        return None

    def _refusal(self) -> str | None:
        if self.argv is None:
            return (
                "this tree cannot re-exec itself: it was started from Python with otree.run();"
                " run it with 'otree run TREE' to reload it"
            )
        if self.tree_source is not None:
            from otree.config.loader import load_tree

            try:
                load_tree(self.tree_source)
            except ConfigError as exc:
                return "\n".join([INVALID, *exc.lines()])
        return None

    def plan(self) -> dict[str, Any] | str:
        """``otree reload --dry-run``: what a reload would do now, computed by the reload's
        own reconciliation on a scratch engine (:mod:`otree.core.plan`), or why it would be
        refused. Nothing changes, and nothing is started or signalled."""
        error = self._stopping() or self._refusal()
        if error is not None:
            return error
        from otree.config.loader import load_tree
        from otree.core.plan import reload_plan

        try:
            tree = self.rt.tree if self.tree_source is None else load_tree(self.tree_source)
            plan = reload_plan(self.rt.engine, tree, self.rt.loop.clock())
        except ConfigError as exc:  # changed again since _refusal() read it
            return "\n".join([INVALID, *exc.lines()])
        except Exception as exc:  # a dry run never takes the tree down
            return f"cannot plan the reload: {type(exc).__name__}: {_clip(str(exc))}"
        busy = self.busy()
        return {**plan, "busy": busy} if busy is not None else plan

    def _refuse(self, waiters: list[tuple[str, ReplyCallback | None]], error: str) -> None:
        for reason, on_reply in waiters:
            if on_reply is not None:
                on_reply(act.Reply(0, False, error))
            else:
                first, _, rest = error.partition("\n")
                stderr_line(f"reload ({reason}) refused: {first}")
                for line in rest.splitlines():
                    stderr_line(line)

    def _when_quiet(self) -> None:
        if not self._waiters:
            self._deadline = None
            return
        stopping = self._stopping()
        if stopping is not None:
            waiters, self._waiters = self._waiters, []
            self._deadline = None
            self._refuse(waiters, stopping)
            return
        busy = self.busy()
        if busy is None:
            waiters, self._waiters = self._waiters, []
            self._deadline = None
            self._reexec(waiters[0][0], waiters)
            return
        assert self._deadline is not None
        if time.monotonic() >= self._deadline:
            waiters, self._waiters = self._waiters, []
            self._deadline = None
            self._refuse(waiters, f"busy: {busy} (waited {QUIET_WAIT:g} s); try again")
            return
        if not self._told:
            self._told = True
            line = f"otree: reload: waiting until the tree is quiet ({busy})\n"
            self.rt.console.write(line.encode(), keep=True)
        self.rt.loop.call_later(_QUIET_POLL, self._when_quiet)

    def busy(self) -> str | None:
        """What keeps the tree from being quiet now (None: it is quiet)."""
        rt = self.rt
        doing = rt.busy()
        if doing is not None:
            return doing
        return rt.engine.busy()

    def _reexec(self, reason: str, waiters: list[tuple[str, ReplyCallback | None]]) -> None:
        try:  # an operator's reload: not counted by the guard
            self._exec(reason, self._recent())
        except Exception as exc:  # the exec failed: otree carries on as before
            self._refuse(waiters, f"cannot re-exec: {_clip(str(exc))}")

    def _recent(self) -> list[float]:
        """When the fatal re-execs of the last ``GUARD_WINDOW`` seconds were."""
        now = time.monotonic()
        return [t for t in self.history if now - t < GUARD_WINDOW]

    def _trip(self, reason: str, count: int) -> None:
        self.guard_message = (
            f"re-exec guard: {count} fatal re-execs within {GUARD_WINDOW:g} s"
            f" (the last: {reason});"
            f" stopping the tree (exit {ExitCode.REEXEC:d})"
        )
        self.rt.stderr(self.guard_message)  # once: run() prints the exit message through it
        self.rt.exit_as(ExitCode.REEXEC, self.guard_message)
        self.rt.command("shutdown")

    # --- old image: a fatal error -------------------------------------------------

    def fatal(self, exc: Exception) -> bool:
        """An unexpected exception escaped the loop. Re-exec (does not return), or stop
        the tree in order when the guard trips (True: run the loop again), or give up
        (False: the caller kills everything and reports the bug)."""
        if self.argv is None or self.guard_message is not None:
            return False  # the caller reports it as a bug
        import traceback

        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
        reason = _clip(f"fatal: {type(exc).__name__}: {exc}")
        recent = self._recent()
        stderr_line(f"internal error; re-executing to recover ({reason})")
        if len(recent) >= GUARD_COUNT:
            self._trip(reason, len(recent) + 1)
            return True
        try:
            self._exec(reason, [*recent, time.monotonic()])
        except Exception:
            import traceback

            traceback.print_exc()
        return False

    # --- old image: the exec ---------------------------------------------------------

    def _exec(self, reason: str, history: list[float]) -> None:
        from otree.core.snapshot import snapshot  # only at a re-exec: its classes cost RSS
        from otree.reload import document
        from otree.reload.document import Handoff

        rt = self.rt
        assert self.argv is not None
        pipes, strays = rt.processes.handoff()
        exits = [e for e in rt.queued() if isinstance(e, ev.Exited)]
        # a fatal error during a reload: its clients still wait, now for the next image
        waiting, self._answer_to = list(self._answer_to), []
        clients: list[HandedClient] = []
        control_socket = None
        control = self.control
        if control is not None:  # last: from here on, clients wait in the backlog
            waiting += control.handoff_waiting()
            clients = control.handoff_clients()
            started = control.info.get("started")
            control_socket = document.ControlSocket(control.handoff(), started)
        guard = rt.processes.guard
        h = Handoff(
            reason=reason,
            engine=snapshot(rt.engine),
            tree=rt.tree,
            procs=tuple(
                document.Inherited(
                    p, pid, fd, part, rt.processes.carried(pid), rt.processes.in_cgroup(pid)
                )
                for p, pid, fd, part in pipes
            ),
            exits=tuple(exits),
            strays=tuple(strays),
            history=tuple(history),
            control=control_socket,
            waiting=tuple(waiting),
            notify_dir=rt.processes.notify_dir,
            ring=_rings(rt),
            clients=tuple(clients),
            counters=self.counters() if self.counters is not None else (),
            cgroup=rt.processes.cgroups.base if rt.processes.cgroups is not None else None,
            events=self.events() if self.events is not None else (),
            guard=document.Guard(*guard.handoff()) if guard is not None else None,
        )
        fds = [fd for fd in h.fds() if fd >= 0]
        memfd = -1
        old_mask: set[int | signal.Signals] | None = None
        try:
            memfd = document.write_fd(document.encode(h))
            for fd in fds:
                os.set_inheritable(fd, True)
            rt.console.flush()
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(Exception):
                    stream.flush()
            old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, BLOCKED)
            os.environ[document.ENV_FD] = str(memfd)
            for hook in self.exec_hooks:
                hook(True)
            os.execv(self.argv[0], self.argv)
        except BaseException as exc:
            for hook in self.exec_hooks:
                hook(False)
            os.environ.pop(document.ENV_FD, None)
            if old_mask is not None:
                signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
            if memfd >= 0:
                os.close(memfd)
            for fd in fds:
                with contextlib.suppress(OSError):
                    os.set_inheritable(fd, False)
            for fd, rid in h.waiting:  # their connections left the server: answer here
                _send_and_close(fd, encode(error_reply(rid, f"cannot re-exec: {_clip(str(exc))}")))
            if control is not None and h.control is not None:
                control.resume(h.control.fd)
            self._adopt_clients(h.clients)
            raise

    def _adopt_clients(self, clients: Iterable[HandedClient]) -> None:
        """Serve the control clients handed over (or kept when the exec failed)."""
        for client in clients:
            if self.control is not None:
                self.control.adopt(client)
            else:
                with contextlib.suppress(OSError):
                    os.close(client.fd)

    # --- new image ----------------------------------------------------------------------

    def adopt(self) -> list[act.Action]:
        """Take over from the handoff: watch the children and pipes again, reconcile."""
        h = self.handoff
        assert h is not None
        rt = self.rt
        from otree.core.snapshot import resume
        from otree.reload import faults

        faults.hold_for_tests()
        for fd, _ in h.waiting:
            with contextlib.suppress(OSError):
                os.set_inheritable(fd, False)
        self._answer_to = list(h.waiting)
        self._config_errors = list(h.config_errors)
        self._summary = {"adopted": [], "stopped": [], "started": [], "failed": []}
        if h.notify_dir is not None and rt.processes.notify_dir is None:
            rt.processes.notify_dir = h.notify_dir  # cleaned up at the end as before
        if h.cgroup is not None:  # the services' cgroups: kept, whatever this tree says
            rt.processes.keep_cgroups(h.cgroup)
        if h.guard is not None:  # before a child is reaped: it is told of each exit
            g = h.guard
            rt.processes.adopt_guard(g.pid, g.end, g.log, dict(g.table))
        known = h.known_pids()  # which process the engine thinks each service runs
        for path, chunk in h.ring:  # before the half-read lines the pipes hand over
            output = rt.outputs.get(path)
            if output is not None:
                output.restore(chunk)
        self._adopt_clients(h.clients)  # before the pipes: followers miss no line
        pending = {e.pid: e for e in h.exits}
        live: set[int] = set()
        for p in h.procs:
            pid = p.pid if p.pid is not None and p.pid not in pending else None
            pipe = p.pipe if p.pipe is not None else -1
            rt.processes.adopt(p.path, pid, pipe, p.partial, p.liveness, p.cgroup)
            if pid is not None:
                live.add(pid)
        for pid in h.strays:  # readiness commands killed at the exec: reap them
            rt.processes.reap_stray(pid)
        for pid in live - set(known):  # started, but the engine never heard of it: not ours
            rt.processes.signal(pid, signal.SIGKILL)
        try:
            actions = resume(rt.engine, h.engine, rt.loop.clock(), h.reason, h.tree)
        except (KeyError, TypeError, ValueError) as exc:
            raise ReexecError(f"the engine snapshot cannot be used ({exc!r})") from None
        # exits seen before the exec, then any process lost track of (an exit whose
        # status was lost with the old image): the engine handles them after the resume
        for pid, path in known.items():
            if pid in pending:
                rt.defer(pending[pid])
            elif pid not in live:
                rt.defer(ev.Exited(path, pid, None, None))
        self.handoff = None
        from otree.reload import bootstrap

        bootstrap.taken()  # the children are watched again: ours to supervise, not to stop
        return actions

    def check_fault(self, event: ev.Event) -> None:
        """Test-only (the runtime's event hook): raise the fault ``OTREE_TEST_FAULT``
        asked for when ``event`` is the one; it fires once (in each image: ``always``)."""
        fault = self.fault
        if fault is not None and fault.hits(event):
            self.fault = None
            from otree.reload.faults import ENV_FAULT, InjectedFault

            if not fault.always:
                os.environ.pop(ENV_FAULT, None)
            raise InjectedFault(f"{ENV_FAULT}: {event!r}")

    def on_report(self, report: act.Report) -> act.Report:
        """Every report passes here: the guard's exit code, and the answer to ``reload``."""
        if report.event == "tree_stopped" and self.guard_message is not None:
            fields = {**report.fields, "exit_code": int(ExitCode.REEXEC)}
            report = act.Report(report.event, report.path, fields)
        summary = self._summary
        if summary is not None:
            key = {"adopt": "adopted", "stop": "stopped", "spawn": "started"}.get(report.event)
            if key is not None:
                summary[key].append(report.path)
            elif report.event == "update":
                summary.setdefault("updated", []).append(report.path)
            elif report.event == "start_failed":
                summary["failed"].append(f"{report.path}: {report.fields.get('reason')}")
            elif report.event == "tree_ready":
                self._answer(ok=True)
            elif report.event == "tree_stopped":
                self._answer(ok=False, error="the tree stopped during the reload")
        return report

    def _answer(self, ok: bool, error: str | None = None) -> None:
        summary, self._summary = self._summary or {}, None
        errors = self._config_errors
        if ok and errors:
            ok, error = False, "\n".join([INVALID, *errors])
        for fd, rid in self._answer_to:
            message = (
                ok_reply(rid, pid=os.getpid(), **summary)
                if ok
                else error_reply(rid, error or "refused")
            )
            _send_and_close(fd, encode(message))
        self._answer_to = []


def _send_and_close(fd: int, data: bytes) -> None:
    try:
        sock = socket.socket(fileno=fd)
    except OSError:
        with contextlib.suppress(OSError):
            os.close(fd)
        return
    with sock:
        try:
            sock.settimeout(2.0)
            sock.sendall(data)
        except OSError:
            pass


def keep_running_tree(h: Handoff, exc: OtreeError) -> Handoff:
    """The re-read tree cannot be used in the new image: say why, keep the one that ran
    (``h.tree``; the answer to ``otree reload`` carries the issues)."""
    issues = exc.lines() if isinstance(exc, ConfigError) else [str(exc)]
    for line in issues:
        stderr_line(line)
    stderr_line("the tree file is invalid now; keeping the tree that was running")
    return attrs.evolve(h, config_errors=tuple(issues))


def _rings(rt: Runtime) -> tuple[tuple[str, bytes], ...]:
    """Every service's ring buffer as (path, whole lines), in the order the lines came."""
    chunks = sorted((seq, p, c) for p, out in rt.outputs.items() for seq, c in out.ring_chunks())
    return tuple((path, chunk) for _, path, chunk in chunks)
