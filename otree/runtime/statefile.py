"""The state file next to the control socket: this otree's PID and its children's (PIDs
and start times, so a number used again is never taken for one of them), written as
they change; read by the next ``otree run`` of the tree if this otree died, which
stops what it left (``launch.stop_leftovers``)."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Sequence

from otree.runtime import posix

__all__ = ["read_state", "start_time", "stop_leftover", "write_state"]


def start_time(pid: int) -> int | None:
    """When ``pid`` started, in clock ticks since boot (``/proc/PID/stat`` field 22): with
    the PID it names one process; None if it is gone (or a zombie)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rpartition(b")")[2].split()
    except OSError:
        return None
    if len(fields) < 20 or fields[0] in (b"Z", b"X"):
        return None
    return int(fields[19])


def write_state(path: str, children: Sequence[tuple[int, int, str]]) -> None:
    """Write the state file: this otree and its ``(pid, start time, path)`` children in
    start order (replaced whole, by a rename)."""
    lines = [f"otree {os.getpid()} {start_time(os.getpid()) or 0}"]
    lines += [f"{pid} {when} {name}" for pid, when, name in children]
    tmp = f"{path}.{os.getpid()}.new"
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(tmp, flags, 0o600)
    try:
        try:
            os.write(fd, ("\n".join(lines) + "\n").encode("utf-8", "surrogateescape"))
        finally:
            os.close(fd)
        os.rename(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def read_state(path: str) -> tuple[int, list[tuple[int, str]]]:
    """From a state file: the PID of the otree that wrote it and its children that still
    run (the same PID *and* start time), in start order. Nothing left: ``(0, [])``."""
    try:
        with open(path, "rb") as f:
            text = f.read(1 << 20).decode("utf-8", "surrogateescape")
    except OSError:
        return 0, []
    owner, alive = 0, []
    for line in text.splitlines():
        pid_text, _, rest = line.partition(" ")
        when_text, _, name = rest.partition(" ")
        if pid_text == "otree" and when_text.isdigit():
            owner = int(when_text)
        elif pid_text.isdigit() and when_text.isdigit() and name:
            pid = int(pid_text)
            if pid != os.getpid() and start_time(pid) == int(when_text):
                alive.append((pid, name))
    return owner, alive


def stop_leftover(pid: int, signum: int, timeout: float | None) -> bool:
    """Stop the process group ``pid`` leads (not our child: a dead otree's): ``signum``,
    up to ``timeout`` seconds (None: no limit), then SIGKILL. True if it was killed."""
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:
        return False  # gone already
    try:
        if signum != signal.SIGKILL:
            posix.kill_group(pid, signum)
            if _gone(pidfd, timeout):
                return False
        posix.kill_group(pid, signal.SIGKILL)
        _gone(pidfd, 5.0)
        return True
    finally:
        os.close(pidfd)


def _gone(pidfd: int, timeout: float | None) -> bool:
    import select

    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    return bool(poller.poll(None if timeout is None else int(timeout * 1000)))
