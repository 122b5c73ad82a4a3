"""The death guard: a small shell that sends otree's children their stop signal if
otree dies.

``PR_SET_PDEATHSIG`` can only be set by the child itself, between its fork and its
exec: from Python that is a ``preexec_fn`` (a full fork running Python in the
child, 2-3 ms a spawn) or an extra exec of util-linux's ``setpriv --pdeathsig``
(a second program start for every child: at 1000 children that was half of
otree's start time). The guard gives the same end without touching the spawn:
one ``/bin/sh`` process, in a session of its own, reads otree's messages from a
pipe, one line each:

- ``+ PID SIG``: child PID gets signal SIG (a number) should otree die;
- ``- PID``: child PID is gone (sent before it is reaped, while its PID is still
  held by the zombie, so the number the guard knows is never another process's);
- ``.``: otree ends cleanly; the guard exits at once and signals nothing.

otree holds the only write end of the pipe. If otree dies, however it dies, the
kernel closes that end, the guard reads end-of-file, and sends every child it
still knows its signal. A re-exec keeps the write end open (it is handed over
like the control socket), so a reload is not a death. The guard ignores the
signals a terminal, systemd or an operator sends to the whole tree (otree
stops it with ``.``), and uses no file, no lock and no Python.

If the guard dies or stops reading while otree runs, otree starts another and
sends it the whole table; if no guard can be started, spawns fall back to
``setpriv --pdeathsig`` or the ``preexec_fn`` (``otree.runtime.posix``).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import signal
import subprocess
from collections.abc import Callable

#: the guard's program: every line read is one message; at end-of-file, every PID it
#: still has (a variable ``p<PID>`` holding the signal number) gets its signal
SCRIPT = (
    "trap '' HUP INT QUIT TERM USR1 USR2 ALRM PIPE;"
    " while read -r op pid sig; do case $op in"
    ' +) eval "p$pid=$sig";; -) unset "p$pid";; .) exit 0;; esac; done;'
    " set | while IFS== read -r name value; do case $name in p[0-9]*)"
    ' value=${value#\\\'}; kill -"${value%\\\'}" "${name#p}" 2>/dev/null;; esac; done'
)
#: its ``$0`` (``ps`` shows ``/bin/sh -c ... otree-guard``)
NAME = "otree-guard"
SHELL = "/bin/sh"
#: the environment variable that keeps otree from starting a guard (the tests of the
#: fallbacks: ``setpriv``, then the ``preexec_fn``)
ENV_OFF = "OTREE_NO_GUARD"
#: the pipe's size asked for (``F_SETPIPE_SZ``): room for about 80 000 messages
PIPE_SIZE = 1 << 20
#: what may wait for the guard to read before it is taken for stuck and replaced
PENDING_MAX = 1 << 20
#: how long ``close`` waits for the guard to exit after ``.``
EXIT_WAIT = 2.0
_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)


class DeathGuard:
    """otree's side of the guard: the write end of its pipe and the table it was sent.

    ``table`` is ``{pid: signal}``: what a replacement guard is sent. ``on_blocked``
    is called with ``(fd, flush)`` when a message waits for the pipe to have room
    (the loop's ``add_writer``), ``on_unblocked`` with ``fd`` once it is written.
    """

    def __init__(self, pid: int, fd: int, table: dict[int, int] | None = None) -> None:
        self.pid = pid
        self.fd = fd
        self.table: dict[int, int] = dict(table or {})
        self._pending = bytearray()
        self.on_blocked: Callable[[int, Callable[[], None]], None] | None = None
        self.on_unblocked: Callable[[int], None] | None = None
        #: called with the replacement when this guard had to be replaced
        self.on_replaced: Callable[[DeathGuard], None] | None = None

    @classmethod
    def start(cls, table: dict[int, int] | None = None) -> DeathGuard | None:
        """Start a guard (sent ``table``); None if none can be started here."""
        if os.environ.get(ENV_OFF) or not os.access(SHELL, os.X_OK):
            return None
        try:
            r, w = os.pipe2(os.O_CLOEXEC)
        except OSError:
            return None
        try:
            with contextlib.suppress(OSError):
                fcntl.fcntl(w, _F_SETPIPE_SZ, PIPE_SIZE)
            with open(os.devnull, "rb") as null:
                proc = subprocess.Popen(
                    [SHELL, "-c", SCRIPT, NAME],
                    stdin=r,
                    stdout=null.fileno(),
                    stderr=null.fileno(),
                    env={"PATH": os.defpath, "LC_ALL": "C"},
                    cwd="/",
                    start_new_session=True,
                    close_fds=True,
                )
        except (OSError, subprocess.SubprocessError):
            os.close(w)
            return None
        finally:
            os.close(r)
        proc.returncode = 0  # otree reaps it itself (its loop watches it)
        os.set_blocking(w, False)
        guard = cls(proc.pid, w)
        for pid, signum in (table or {}).items():
            guard.add(pid, signum)
        return guard

    # --- messages ------------------------------------------------------------------

    def add(self, pid: int, signum: int) -> None:
        """Child ``pid`` gets ``signum`` should otree die."""
        self.table[pid] = signum
        self._send(b"+ %d %d\n" % (pid, signum))

    def remove(self, pid: int) -> None:
        """Child ``pid`` exited (call before reaping it); nothing if it was not sent."""
        if self.table.pop(pid, None) is not None:
            self._send(b"- %d\n" % pid)

    def __contains__(self, pid: int) -> bool:
        return pid in self.table

    def _send(self, line: bytes) -> None:
        if self.fd < 0:
            return
        if self._pending:
            self._pending += line
            if len(self._pending) > PENDING_MAX:
                self.replace()
            return
        try:
            done = os.write(self.fd, line)
        except BlockingIOError:
            done = 0
        except OSError as exc:  # EPIPE: the guard is gone
            if exc.errno == errno.EPIPE:
                self.replace()
            return
        if done < len(line):
            self._pending += line[done:]
            if self.on_blocked is not None:
                self.on_blocked(self.fd, self.flush)

    def flush(self) -> None:
        """Write what waits (the pipe has room again)."""
        while self._pending and self.fd >= 0:
            try:
                done = os.write(self.fd, self._pending)
            except BlockingIOError:
                return
            except OSError:
                self.replace()
                return
            del self._pending[:done]
        if self.on_unblocked is not None and self.fd >= 0:
            self.on_unblocked(self.fd)

    # --- its life ----------------------------------------------------------------------

    def replace(self) -> DeathGuard | None:
        """This guard died or stopped reading: kill it, start another with the table."""
        self._drop(kill=True)
        new = DeathGuard.start(self.table)
        if new is not None:
            new.on_blocked, new.on_unblocked = self.on_blocked, self.on_unblocked
            new.on_replaced = self.on_replaced
        if self.on_replaced is not None and new is not None:
            self.on_replaced(new)
        return new

    def _drop(self, *, kill: bool) -> None:
        if self.fd >= 0:
            if self._pending and self.on_unblocked is not None:
                self.on_unblocked(self.fd)
            os.close(self.fd)
            self.fd = -1
        self._pending.clear()
        if kill and self.pid > 0:
            with contextlib.suppress(OSError):
                os.kill(self.pid, signal.SIGKILL)

    def reaped(self) -> None:
        """Its exit was reaped (by the loop): its PID is no longer to be signalled."""
        self.pid = 0

    def close(self) -> None:
        """otree ends cleanly: the guard is told so, exits, and is reaped here."""
        if self.fd >= 0:
            said = False
            if not self._pending:  # else it is stuck: killed, it signals nothing either
                with contextlib.suppress(OSError):
                    said = os.write(self.fd, b".\n") == 2
            self._drop(kill=not said)
        if self.pid > 0:
            _reap(self.pid, EXIT_WAIT)
            self.pid = 0

    def handoff(self) -> tuple[int, int, tuple[tuple[int, int], ...]]:
        """Before ``os.execv``: (its PID, the pipe's write end, the table)."""
        self.flush()
        return self.pid, self.fd, tuple(self.table.items())


def _reap(pid: int, timeout: float) -> None:
    """Wait up to ``timeout`` seconds for the guard ``pid`` to exit, reaping it; SIGKILL
    it after that."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return
        if done:
            return
        if time.monotonic() > deadline:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
            return
        time.sleep(0.002)
