"""The death guard: a small shell that sends otree's children their stop signal if
otree dies.

``PR_SET_PDEATHSIG`` can only be set by the child itself, between its fork and its
exec: from Python that is a ``preexec_fn`` (a full fork running Python in the
child, 2-3 ms a spawn) or an extra exec of util-linux's ``setpriv --pdeathsig``
(a second program start for every child: at 1000 children that was half of
otree's start time). The guard gives the same end without touching the spawn.
It is one ``/bin/sh`` process, in a session of its own, with two fds from otree:

- the read end of a pipe whose only write end otree holds, and never writes
  but once: ``.`` when it ends cleanly (the guard exits at once, signalling
  nothing). However otree dies, the kernel closes that end, the guard's
  ``read`` returns at end-of-file, and it acts;
- the table, an anonymous file (``memfd``) otree appends one line to per change:
  ``+ PID SIG`` (child PID gets signal SIG, a number, should otree die) and
  ``- PID`` (it is gone: written before the child is reaped, while its zombie
  still holds the PID, so the guard never has a number another process could
  have now). The guard reads it only when otree died: it replays the lines
  and sends every child still in it its signal.

So a change costs otree one ``write`` to memory and wakes nobody. A re-exec keeps
both fds open (they are handed over like the control socket): a reload is not a
death. The guard ignores the signals a terminal, systemd or an operator sends
to the whole tree. When the table has grown to several times what it holds,
or the guard died, otree starts another with the table written anew and ends
the old one; if no guard can be started, spawns fall back to ``setpriv
--pdeathsig`` or the ``preexec_fn`` (``otree.runtime.posix``).
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable

from otree.runtime import posix

#: what the guard ignores: the signals sent to a whole tree (a terminal, systemd, an
#: operator), and PIPE; blocked from its fork until its ``trap`` ignores them
IGNORED = ("HUP", "INT", "QUIT", "TERM", "USR1", "USR2", "ALRM", "PIPE")
#: the guard's program (``$1``: the fd of the table, read from its start through
#: ``/proc/self/fd``: ``sh`` redirects only fds 0-9). It waits on the pipe (stdin);
#: ``.`` ends it; at end-of-file it replays the table into variables ``p<PID>`` (the
#: signal number) and sends each its signal
SCRIPT = (
    f"trap '' {' '.join(IGNORED)}; read -r end; [ \"$end\" = . ] && exit 0;"
    " while read -r op pid sig; do case $op in"
    ' +) eval "p$pid=$sig";; -) unset "p$pid";; esac; done < "/proc/self/fd/$1";'
    " set | while IFS== read -r name value; do case $name in p[0-9]*)"
    ' value=${value#\\\'}; kill -"${value%\\\'}" "${name#p}" 2>/dev/null;; esac; done'
)
#: its ``$0`` (``ps`` shows ``/bin/sh -c ... otree-guard N``)
NAME = "otree-guard"
SHELL = "/bin/sh"
_BLOCKED = {getattr(signal, f"SIG{name}") for name in IGNORED}
#: the environment variable that keeps otree from starting a guard (the tests of the
#: fallbacks: ``setpriv``, then the ``preexec_fn``)
ENV_OFF = "OTREE_NO_GUARD"
#: the table is written anew (a new guard) past this size and 4x what it holds
COMPACT_AT = 64 * 1024
#: the length of a line of the table, for that estimate
LINE = 12
#: how long ``close`` waits for the guard to exit after ``.``
EXIT_WAIT = 2.0


class DeathGuard:
    """otree's side of the guard: the pipe's write end (``end``), the table file opened
    for appending (``log``) and what it holds (``table``: ``{pid: signal}``)."""

    def __init__(self, pid: int, end: int, log: int, table: dict[int, int] | None = None):
        self.pid = pid
        self.end = end
        self.log = log
        self.table: dict[int, int] = dict(table or {})
        #: bytes in the table file (its lines of exits included)
        self.size = os.fstat(log).st_size if log >= 0 else 0
        #: called with the replacement when this guard had to be replaced
        self.on_replaced: Callable[[DeathGuard], None] | None = None

    @classmethod
    def start(cls, table: dict[int, int] | None = None) -> DeathGuard | None:
        """Start a guard with ``table`` written; None if none can be started here."""
        if os.environ.get(ENV_OFF) or not os.access(SHELL, os.X_OK):
            return None
        opened: list[int] = []
        try:
            log = os.memfd_create(NAME, os.MFD_CLOEXEC)
            opened.append(log)
            # the guard's own open file: it reads from the start whatever otree appended
            reader = os.open(f"/proc/self/fd/{log}", os.O_RDONLY | os.O_CLOEXEC)
            opened.append(reader)
            r, w = os.pipe2(os.O_CLOEXEC)
            opened += [r, w]
            lines = b"".join(b"+ %d %d\n" % kv for kv in (table or {}).items())
            if lines:
                os.write(log, lines)
            # blocked from its fork until its ``trap`` ignores them: one sent to the whole
            # tree as it starts waits, and is dropped (the mask is inherited by the exec)
            mask = signal.pthread_sigmask(signal.SIG_BLOCK, _BLOCKED)
            try:
                pid = posix.spawn(
                    [SHELL, "-c", SCRIPT, NAME, str(reader)],
                    {"PATH": os.defpath, "LC_ALL": "C"},
                    "/",
                    stdin=r,
                    pass_fds=(reader,),
                )
            finally:
                signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        except (OSError, posix.SpawnError):
            for fd in opened:
                os.close(fd)
            return None
        os.close(reader)
        os.close(r)
        return cls(pid, w, log, table)

    # --- the table -------------------------------------------------------------------

    def add(self, pid: int, signum: int) -> None:
        """Child ``pid`` gets ``signum`` should otree die."""
        self.table[pid] = signum
        self._append(b"+ %d %d\n" % (pid, signum))

    def remove(self, pid: int) -> None:
        """Child ``pid`` exited (call before reaping it); nothing if it was not added."""
        if self.table.pop(pid, None) is None:
            return
        self._append(b"- %d\n" % pid)
        if self.size > COMPACT_AT and self.size > 4 * LINE * len(self.table):
            self.replace()  # the table written anew, with what it holds now

    def __contains__(self, pid: int) -> bool:
        return pid in self.table

    def _append(self, line: bytes) -> None:
        if self.log < 0:
            return
        try:
            self.size += os.write(self.log, line)
        except OSError:  # no memory for the file: a new guard, if one can start
            self.replace()

    # --- its life ----------------------------------------------------------------------

    def replace(self) -> DeathGuard | None:
        """Start another guard with the table (this one died, or its file grew too long);
        ``on_replaced`` ends this one."""
        new = DeathGuard.start(self.table)
        if new is not None:
            new.on_replaced = self.on_replaced
            if self.on_replaced is not None:
                self.on_replaced(new)
        return new

    def reaped(self) -> None:
        """Its exit was reaped (by the loop): its PID is no longer to be waited for."""
        self.pid = 0

    def close(self) -> None:
        """This guard is to end without a signal sent (otree ends cleanly, or another
        guard took over): it is told so, exits, and is reaped here."""
        if self.end >= 0:
            with contextlib.suppress(OSError):  # EPIPE: it is gone already
                os.write(self.end, b".\n")
        for fd in (self.end, self.log):
            if fd >= 0:
                os.close(fd)
        self.log = self.end = -1
        if self.pid > 0:
            _reap(self.pid, EXIT_WAIT)
            self.pid = 0

    def handoff(self) -> tuple[int, int, int, tuple[tuple[int, int], ...]]:
        """Before ``os.execv``: (its PID, the pipe's write end, the table file, the table)."""
        return self.pid, self.end, self.log, tuple(self.table.items())


def _reap(pid: int, timeout: float) -> None:
    """Wait up to ``timeout`` seconds for the guard ``pid`` to exit, reaping it; SIGKILL
    it after that (a stopped one: killed, it signals nothing)."""
    import time

    deadline = time.monotonic() + timeout
    while posix.reap(pid) is None:
        if time.monotonic() > deadline:
            posix.send_signal(pid, signal.SIGKILL)
            posix.reap(pid, block=True)
            return
        time.sleep(0.002)
