"""The running service processes: spawn, readiness probes, output pipes, signals, exits.

``Processes`` carries out the engine's process actions for the runtime and
reports what happens through ``feed(event)``: ``Spawned``/``SpawnFailed`` at
once, ``Ready``/``ReadyFailed`` from the probe, ``Exited`` once the main
process is reaped (its group's leftovers SIGKILLed first, its pipe drained
so its last lines come before the exit). Probing stops when the process
exits or is signalled.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import sys
from collections.abc import Callable
from typing import Any

from otree.core import events as ev
from otree.core.spec import (
    HealthHttp,
    HealthTcp,
    ReadyCmd,
    ReadyDelay,
    ReadyExited,
    ReadyHttp,
    ReadyNotify,
    ReadyTcp,
    Service,
    service_argv,
)
from otree.runtime import identity, posix, probes, statefile
from otree.runtime.cgroups import Cgroups, Group
from otree.runtime.guard import DeathGuard
from otree.runtime.health import Carried, Liveness
from otree.runtime.listeners import Ownership, http_port
from otree.runtime.loop import Loop
from otree.runtime.notify import USER_NOTIFY_PREFIX, NotifySocket
from otree.runtime.output import READ_SIZE, Console, ServiceOutput

Feed = Callable[[ev.Event], None]


#: how often at most the state file is written again
STATE_EVERY = 0.2


class Process:
    """One running incarnation of a service: its main PID, output pipe and probe."""

    __slots__ = (
        "carried",
        "group",
        "liveness",
        "notify",
        "output",
        "path",
        "pid",
        "pipe",
        "probe",
        "spec",
        "started",
    )

    def __init__(self, path: str, pid: int, pipe: int, output: ServiceOutput) -> None:
        self.path = path
        self.pid = pid
        self.pipe = pipe
        self.output = output
        self.probe: probes.Probe | None = None
        #: its start time (``/proc/PID/stat``), read once, for the state file
        self.started: int | None = None
        #: its sd_notify socket, open until the process is gone (None: it has none)
        self.notify: NotifySocket | None = None
        self.spec: Service | None = None  # None: adopted after a re-exec
        #: its health probes and watchdog, from ready on (None: none, or not ready yet)
        self.liveness: Liveness | None = None
        #: what the image before a re-exec knew of its liveness (until it is resumed)
        self.carried: Carried | None = None
        #: its cgroup (None: kill mode process group)
        self.group: Group | None = None


class Processes:
    """Every live main process by PID (``procs``) and every open output pipe (``pipes``)."""

    def __init__(
        self,
        loop: Loop,
        feed: Feed,
        console: Console,
        outputs: dict[str, ServiceOutput],
    ) -> None:
        self.loop = loop
        self.feed = feed
        self.console = console
        self.outputs = outputs
        self.procs: dict[int, Process] = {}
        self.pipes: dict[int, ServiceOutput] = {}
        #: PIDs whose readiness check runs (shown as 'waiting until ready' on the console)
        self.probing: dict[int, str] = {}
        #: the directory of the notify sockets (made at the first notify service; a re-exec
        #: hands it over, and the image that ends removes it)
        self.notify_dir: str | None = None
        self._notify_seq = itertools.count(1)
        #: uid -> the notify directory of that user's services (removed with its last
        #: socket: ``NotifySocket.close``)
        self.user_notify_dirs: dict[int, str] = {}
        #: where the running children are written down (PIDs and start times), for the
        #: next ``otree run`` of the tree if this otree dies (None: nowhere)
        self.state_file: str | None = None
        self._state_due = False
        #: a cgroup per service (None: process groups); see ``use_cgroups``
        self.cgroups: Cgroups | None = None
        #: the process that sends the children their death signal if otree dies (None:
        #: not started yet, or none can run: each child sets ``PR_SET_PDEATHSIG``)
        self.guard: DeathGuard | None = None
        self._guard_tried = False

    def use_cgroups(self, cgroups: Cgroups | None) -> None:
        """Start each service in a cgroup of its own from now on (None: no longer)."""
        if self.cgroups is not None:
            self.cgroups.settle()
            self.loop.remove_reader(self.cgroups.epoll_fd())
        self.cgroups = cgroups
        posix.use_settle(cgroups.settle if cgroups is not None else None)
        if cgroups is not None:
            self.loop.add_reader(cgroups.epoll_fd(), cgroups.changed)

    def settle(self) -> None:
        """The end of a batch of actions: otree back in its own cgroup if its last spawn
        left it in a service's (``Cgroups.enter``)."""
        if self.cgroups is not None:
            self.cgroups.settle()

    # --- actions --------------------------------------------------------------

    def spawn(self, path: str, spec: Service) -> None:
        """Start ``spec``; feed Spawned or SpawnFailed, then start its readiness probe."""
        if not self._guard_tried:
            self._guard_tried = True
            self.use_guard(DeathGuard.start())
        output = self._output(path)
        try:
            setup = identity.setup_of(spec)
        except posix.SpawnError as exc:
            self.feed(ev.SpawnFailed(path, str(exc)))
            return
        account = setup.account if setup is not None else None
        notify: NotifySocket | None = None
        if isinstance(spec.ready, ReadyNotify) or spec.watchdog is not None:
            try:
                notify = self._notify_socket(account)
            except OSError as exc:
                self.feed(ev.SpawnFailed(path, f"cannot create the notify socket: {exc}"))
                return
        env = posix.child_env(
            identity.identity_env(setup, spec.environ), notify.path if notify else None
        )
        argv = service_argv(spec, sys.executable)
        group = None
        try:
            if self.cgroups is not None:
                group = self.cgroups.group(path)
            r, w = posix.pipe()
        except OSError as exc:  # EMFILE, ENFILE, ENOMEM: a start failure, retried as any
            if notify is not None:
                notify.close()
            what = "its output pipe" if group is not None or self.cgroups is None else "its cgroup"
            self.feed(ev.SpawnFailed(path, f"cannot create {what}: {exc.strerror}"))
            return
        try:
            if spec.watchdog is not None:
                env["WATCHDOG_USEC"] = str(round(spec.watchdog * 1_000_000))
                argv = posix.with_own_pid("WATCHDOG_PID", argv, env)
            death = posix.signal_number(spec.stop_signal)
            if group is not None and self.cgroups is not None:
                self.cgroups.enter(group)
            pid = posix.spawn(
                argv,
                env,
                spec.cwd,
                output=w,
                death_signal=death,
                umask=spec.umask,
                prepare=setup.apply if setup is not None and setup.needs_fork else None,
                placed=group is not None,
            )
        except (posix.SpawnError, OSError) as exc:
            os.close(r)
            if notify is not None:
                notify.close()
            if group is not None and self.cgroups is not None:
                self.cgroups.remove(group)
            reason = str(exc)
            if isinstance(exc, OSError):  # the move into its cgroup (or back) failed
                reason = f"cannot start it in its cgroup: {exc.strerror}"
            self.feed(ev.SpawnFailed(path, reason))
            return
        finally:
            os.close(w)
        proc = Process(path, pid, r, output)
        proc.notify = notify
        proc.spec = spec
        proc.group = group
        self.procs[pid] = proc
        self.pipes[r] = output
        self.loop.add_reader(r, lambda: self._read(r))
        self.loop.watch_child(pid, lambda status: self._exited(proc, status), kill_group=True)
        self._state_changed()
        self.feed(ev.Spawned(path, pid))
        if spec.ready is not None:
            self.probing[pid] = path
            line = f"otree: {path}: exec pid {pid}, waiting until ready\n"
            self.console.write(line.encode(), keep=True)
            proc.probe = self._probe(proc, spec, env)
            proc.probe.start()
        if notify is not None:
            notify.start()  # STATUS= and WATCHDOG= from now on, READY=1 too

    # --- the death guard ------------------------------------------------------------

    def use_guard(self, guard: DeathGuard | None) -> None:
        """Register the children spawned from now on with ``guard`` (its death watched:
        a guard that dies is replaced, and sent the table again)."""
        old = self.guard
        if old is not None and old is not guard:
            self.loop.unwatch(old.pid)
            old.close()  # told to go (or gone already), reaped
        self.guard = guard
        posix.use_guard(guard)
        if guard is None:
            return
        guard.on_replaced = self.use_guard
        self.loop.watch_child(guard.pid, lambda status: self._guard_exited(guard))

    def _guard_exited(self, guard: DeathGuard) -> None:
        guard.reaped()
        if self.guard is not guard:
            return  # replaced already (its table had grown long)
        self.console.write(b"otree: the death guard exited; starting another\n", keep=True)
        if guard.replace() is None:
            self.use_guard(None)
            line = b"otree: no death guard can be started: spawns set PR_SET_PDEATHSIG\n"
            self.console.write(line, keep=True)

    def end_guard(self) -> None:
        """otree ends: the guard is told so (it signals nothing) and reaped."""
        self.use_guard(None)

    def adopt_guard(self, pid: int, end: int, log: int, table: dict[int, int]) -> None:
        """After ``os.execv``: the guard of the image before (its pipe's write end ``end``,
        its table file ``log``)."""
        for fd in (end, log):
            os.set_inheritable(fd, False)
        self._guard_tried = True
        self.use_guard(DeathGuard(pid, end, log, table))

    def signal(self, pid: int, signum: int) -> None:
        """Send ``signum`` to the group of ``pid`` if it is still ours; stop its probe."""
        proc = self.procs.get(pid)
        if proc is None:
            return  # already gone: its Exited is on the way or was handled
        if proc.probe is not None:
            proc.probe.cancel()
        if proc.liveness is not None:
            proc.liveness.stop()
        if proc.group is not None and proc.group.signal(signum):
            return  # every process of its cgroup
        posix.send_signal(pid, signum, self.loop.pidfd(pid))

    def ready(self, pid: int) -> None:
        """The engine took ``pid`` as ready: its health probes and watchdog start now."""
        proc = self.procs.get(pid)
        if proc is not None and proc.spec is not None and proc.liveness is None:
            self._start_liveness(proc, 0, None)

    def _start_liveness(self, proc: Process, failures: int, deadline: float | None) -> None:
        spec = proc.spec
        if spec is None or (spec.health is None and spec.watchdog is None):
            return
        path, pid = proc.path, proc.pid

        def unhealthy(reason: str, failures: int) -> None:
            self.feed(ev.Unhealthy(path, pid, reason, failures))

        def say(text: str) -> None:
            self.console.write(f"otree: {path}: {text}\n".encode(), keep=True)

        env = posix.child_env(spec.environ)
        owner = None
        if isinstance(spec.health, HealthTcp):
            owner = Ownership(spec.health.address[1], pid, path)
        elif isinstance(spec.health, HealthHttp):
            owner = Ownership(http_port(spec.health.http), pid, path)
        proc.liveness = Liveness(
            self.loop,
            spec.health,
            spec.watchdog,
            proc.notify,
            unhealthy,
            env=env,
            cwd=spec.cwd,
            say=say,
            owner=owner,
        )
        proc.liveness.start(failures=failures, deadline=deadline)

    def liveness(self) -> dict[str, dict[str, Any]]:
        """``{path: {"status_text": text or None, "health": {"failures": n} or None}}``, and
        for a service in its cgroup its ``Group.stats``, ``members`` (its PIDs) and
        ``cgroup`` (the directory they were read from)."""
        out: dict[str, dict[str, Any]] = {}
        for proc in self.procs.values():
            text = proc.notify.status_text if proc.notify is not None else None
            live = proc.liveness
            health = None
            if proc.spec is not None and proc.spec.health is not None:
                health = {"failures": live.failures if live is not None else 0}
            out[proc.path] = {"status_text": text, "health": health}
            if proc.group is not None:  # procs, cpu_seconds, memory (and the members read)
                members = proc.group.members()
                out[proc.path].update(
                    proc.group.stats(members), members=members, cgroup=proc.group.directory
                )
        return out

    def kill_all(self) -> None:
        """SIGKILL every process group (and cgroup) still alive (last resort)."""
        for pid, proc in list(self.procs.items()):
            if proc.group is not None:
                proc.group.signal(signal.SIGKILL)
            posix.send_signal(pid, signal.SIGKILL)

    def close(self) -> None:
        """Kill and reap what is left (normally nothing), drain and close every pipe."""
        for pid, proc in list(self.procs.items()):
            if proc.probe is not None:
                proc.probe.cancel()
            if proc.liveness is not None:
                proc.liveness.stop()
            if proc.notify is not None:
                proc.notify.close()
            posix.send_signal(pid, signal.SIGKILL)
            posix.reap(pid, block=True)
        self.procs.clear()
        self.end_guard()
        for fd in list(self.pipes):
            self._drain(fd)
            if fd in self.pipes:
                self._close_pipe(fd)
        if self.notify_dir is not None:
            import shutil  # sockets left by processes handed over, other users' directories

            shutil.rmtree(self.notify_dir, ignore_errors=True)
            self.notify_dir = None
        if self.state_file is not None:  # nothing is left running
            with contextlib.suppress(OSError):
                os.unlink(self.state_file)
            self.state_file = None
        if self.cgroups is not None:  # what is left in them is killed, the directories go
            cgroups = self.cgroups
            self.use_cgroups(None)
            cgroups.close()

    # --- the state file ----------------------------------------------------------

    def _state_changed(self) -> None:
        """Write the state file again soon: at most once every ``STATE_EVERY`` seconds (a
        start of 200 children is one or two writes, not 200 of a growing list). What
        starts meanwhile has ``PR_SET_PDEATHSIG`` should otree die before the write."""
        if self.state_file is not None and not self._state_due:
            self._state_due = True
            self.loop.call_later(STATE_EVERY, self.write_state)

    def write_state(self) -> None:
        """Write down the running children now (``state_file``), in start order."""
        self._state_due = False
        if self.state_file is None:
            return
        children = []
        for p in self.procs.values():
            if p.started is None:
                p.started = statefile.start_time(p.pid)
            if p.started is not None:
                children.append((p.pid, p.started, p.path))
        with contextlib.suppress(OSError):  # best effort: PR_SET_PDEATHSIG stops them anyway
            statefile.write_state(self.state_file, children)

    # --- self-reload (otree.reload.reloader) ---------------------------------------------------

    def handoff(self) -> tuple[list[tuple[str, int | None, int, bytes]], list[int]]:
        """Before ``os.execv``: every open output pipe as ``(path, main pid or None, fd,
        unfinished last line)``, and the PIDs of readiness-command processes (killed
        here: probes do not survive a re-exec) for the new image to reap."""
        self.settle()  # the next image starts where this one is
        strays = []
        for proc in self.procs.values():
            if proc.probe is not None:
                pid = proc.probe.command_pid
                proc.probe.cancel()
                if pid is not None:
                    strays.append(pid)
            if proc.liveness is not None and proc.liveness.command_pid is not None:
                strays.append(proc.liveness.command_pid)  # killed at its timeout or reaped
        out: list[tuple[str, int | None, int, bytes]] = []
        for proc in self.procs.values():
            # its pipe, unless it was closed already (the number may be another pipe's now)
            fd = proc.pipe if self.pipes.get(proc.pipe) is proc.output else -1
            out.append((proc.path, proc.pid, fd, b""))
        taken = {fd for _, _, fd, _ in out}
        out += [(o.path, None, fd, b"") for fd, o in self.pipes.items() if fd not in taken]
        # the unfinished last line of each pipe goes along, so no line is cut in two
        return [(p, pid, fd, self._unfinished(fd)) for p, pid, fd, _ in out], strays

    def _unfinished(self, fd: int) -> bytes:
        output = self.pipes.get(fd)
        return output.unfinished(fd) if output is not None else b""

    def carried(self, pid: int | None) -> Carried | None:
        """Before ``os.execv``: the liveness of process ``pid`` to hand over (its notify
        socket's fd goes along: it stays bound, so the process can go on sending)."""
        proc = self.procs.get(pid) if pid is not None else None
        if proc is None or (proc.notify is None and proc.liveness is None):
            return None
        live = proc.liveness
        left = None
        if live is not None and live.deadline is not None:
            left = max(0.0, live.deadline - self.loop.clock())
        notify = proc.notify
        return Carried(
            notify_fd=notify.fd if notify is not None else None,
            notify_path=notify.path if notify is not None else None,
            status_text=notify.status_text if notify is not None else None,
            failures=live.failures if live is not None else 0,
            watchdog_left=left,
        )

    def resume(self, pid: int, spec: Service) -> None:
        """After ``os.execv``, once the engine kept ``pid``: its health probes and watchdog
        go on under ``spec``, from the counts and the deadline handed over."""
        proc = self.procs.get(pid)
        if proc is None or proc.liveness is not None:
            return
        proc.spec = spec
        carried, proc.carried = proc.carried, None
        left = carried.watchdog_left if carried is not None else None
        deadline = None if left is None else self.loop.clock() + left
        failures = carried.failures if carried is not None else 0
        self._start_liveness(proc, failures, deadline)

    def in_cgroup(self, pid: int | None) -> str | None:
        """The cgroup directory process ``pid`` runs in (None: none), for a count of its
        members or before ``os.execv``: otree is back in its own cgroup first."""
        self.settle()
        proc = self.procs.get(pid) if pid is not None else None
        return proc.group.directory if proc is not None and proc.group is not None else None

    def keep_cgroups(self, base: str) -> None:
        """After ``os.execv``: the cgroups of the image before (``base``) go on."""
        if self.cgroups is None or self.cgroups.base != base:
            self.use_cgroups(Cgroups.resume(base))

    def adopt(
        self,
        path: str,
        pid: int | None,
        pipe: int,
        partial: bytes = b"",
        carried: Carried | None = None,
        cgroup: str | None = None,
    ) -> None:
        """After ``os.execv``: take over process ``pid`` (None: it is gone) and its output
        pipe (-1: none) from the image before. Its exit is fed as for a spawned one.
        ``cgroup``: the cgroup directory the image before started it in."""
        output = self._output(path)
        if pipe >= 0:
            os.set_inheritable(pipe, False)
            self.pipes[pipe] = output
            if partial:
                output.feed(pipe, partial)
            self.loop.add_reader(pipe, lambda: self._read(pipe))
        if pid is not None:
            proc = Process(path, pid, pipe, output)
            if cgroup is not None and self.cgroups is not None:
                proc.group = self.cgroups.adopt(path, cgroup)
            self.procs[pid] = proc
            self.loop.watch_child(pid, lambda status: self._exited(proc, status), kill_group=True)
            if carried is not None and carried.notify_fd is not None and carried.notify_path:
                proc.notify = NotifySocket(self.loop, carried.notify_path, carried.notify_fd)
                proc.notify.status_text = carried.status_text
                proc.notify.start()
            proc.carried = carried
            self._state_changed()

    def reap_stray(self, pid: int) -> None:
        """After ``os.execv``: reap ``pid`` (a readiness command the image before killed)
        and its group once it is gone; nothing is fed."""
        self.loop.watch_child(pid, lambda status: None, kill_group=True)

    def _output(self, path: str) -> ServiceOutput:
        output = self.outputs.get(path)
        if output is None:  # a service the tree did not have at start (a reload, later)
            output = self.outputs[path] = ServiceOutput(path, self.console, f"{path} | ".encode())
        return output

    # --- probes -----------------------------------------------------------------

    def _probe(self, proc: Process, spec: Service, env: dict[str, str]) -> probes.Probe:
        path, pid = proc.path, proc.pid

        def ready() -> None:
            self.feed(ev.Ready(path, pid))

        def failed(reason: str) -> None:
            self.feed(ev.ReadyFailed(path, pid, reason))

        ready_spec = spec.ready
        if isinstance(ready_spec, ReadyNotify):
            assert proc.notify is not None
            return probes.NotifyProbe(self.loop, proc.notify, ready, failed)
        if isinstance(ready_spec, ReadyHttp):
            owner = Ownership(http_port(ready_spec.http), pid, path)
            return probes.HttpProbe(self.loop, ready_spec, ready, failed, owner)
        if isinstance(ready_spec, ReadyExited):
            return probes.ExitedProbe(self.loop, ready, failed)
        if isinstance(ready_spec, ReadyDelay):
            return probes.DelayProbe(self.loop, ready_spec, ready, failed)
        if isinstance(ready_spec, ReadyTcp):
            owner = Ownership(ready_spec.address[1], pid, path)
            return probes.TcpProbe(self.loop, ready_spec, ready, failed, owner)
        assert isinstance(ready_spec, ReadyCmd)
        return probes.CmdProbe(self.loop, ready_spec, env, spec.cwd, ready, failed)

    def _notify_socket(self, account: identity.Account | None = None) -> NotifySocket:
        """A new notify socket in otree's private directory; for a service run as another
        user, in a directory of that user's own (0700, in the temporary directory, which
        every user may pass: otree's own may sit in a root-only ``XDG_RUNTIME_DIR``), so
        that the service and nobody else's can reach it."""
        import tempfile  # only with notify services: it is slow to import

        if account is not None and account.change:
            directory = self.user_notify_dirs.get(account.uid)
            if directory is None or not os.path.isdir(directory):
                directory = tempfile.mkdtemp(prefix=f"{USER_NOTIFY_PREFIX}{account.uid}-")
                os.chown(directory, account.uid, account.gid)
                self.user_notify_dirs[account.uid] = directory
            sock_path = os.path.join(directory, f"{next(self._notify_seq)}.sock")
            sock = NotifySocket(self.loop, sock_path)
            try:
                os.chown(sock_path, account.uid, account.gid)
            except OSError:
                sock.close()
                raise
            return sock
        if self.notify_dir is None:
            base = os.environ.get("XDG_RUNTIME_DIR")
            if not base or not os.path.isdir(base):
                base = None
            self.notify_dir = tempfile.mkdtemp(prefix="otree-", dir=base)
        sock_path = os.path.join(self.notify_dir, f"{next(self._notify_seq)}.sock")
        return NotifySocket(self.loop, sock_path)

    # --- output and exits ----------------------------------------------------------

    def _read(self, fd: int) -> None:
        self._pull(fd, self.pipes[fd], rounds=4, until_short=True)

    def _drain(self, fd: int) -> None:
        """Read what is in the pipe now (up to 1 MiB), without waiting for more."""
        output = self.pipes.get(fd)
        if output is not None:
            self._pull(fd, output, rounds=16, until_short=False)

    def _pull(self, fd: int, output: ServiceOutput, rounds: int, until_short: bool) -> None:
        """Read up to ``rounds`` chunks of ``fd`` into ``output`` (stop early at a short read
        when ``until_short``); close the pipe at its end."""
        for _ in range(rounds):
            try:
                data = os.read(fd, READ_SIZE)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                self._close_pipe(fd)
                return
            output.feed(fd, data)
            if until_short and len(data) < READ_SIZE:
                return

    def _close_pipe(self, fd: int) -> None:
        output = self.pipes.pop(fd)
        self.loop.remove_reader(fd)
        os.close(fd)
        output.eof(fd)

    def _exited(self, proc: Process, status: int) -> None:
        del self.procs[proc.pid]
        self._state_changed()
        self.probing.pop(proc.pid, None)
        if proc.probe is not None:
            proc.probe.cancel()
        if proc.liveness is not None:
            proc.liveness.stop()
        if proc.notify is not None:
            proc.notify.close()
        group, cgroups = proc.group, self.cgroups
        if group is not None and cgroups is not None:  # its leftovers killed, then over

            def say(text: str) -> None:
                self.console.write(f"otree: {proc.path}: {text}\n".encode(), keep=True)

            def done() -> None:
                self._over(proc, status)

            if cgroups.end(group, self.loop.call_later, done, say):
                return
        self._over(proc, status)

    def _over(self, proc: Process, status: int) -> None:
        """The main process is reaped and its cgroup (if any) empty: feed its exit."""
        self._drain(proc.pipe)
        code, sig = posix.describe_status(status)
        self.feed(ev.Exited(proc.path, proc.pid, code, sig))
