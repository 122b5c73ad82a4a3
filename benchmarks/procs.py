"""Process plumbing for the harness: stats from /proc, and cleaning up.

The harness makes itself a child subreaper, so every process a benchmark
starts stays its descendant even when a supervisor dies and orphans its
children; ``cleanup()`` walks ``/proc/PID/task/*/children`` from the harness
down, SIGKILLs every descendant by PID, reaps, and checks that nothing is left.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import time
from pathlib import Path

PR_SET_CHILD_SUBREAPER = 36


def set_subreaper() -> bool:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)
    except OSError:
        return False


def children_of(pid: int) -> list[int]:
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for tid in tasks:
        try:
            text = Path(f"/proc/{pid}/task/{tid}/children").read_text()
        except OSError:
            continue
        found.extend(int(x) for x in text.split())
    return found


def descendants(pid: int) -> list[int]:
    """Every live descendant of ``pid``, parents before children."""
    out: list[int] = []
    todo = children_of(pid)
    while todo:
        p = todo.pop(0)
        out.append(p)
        todo.extend(children_of(p))
    return out


def state(pid: int) -> str | None:
    """The one-letter state from /proc/PID/stat (``Z`` zombie), None when gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2]


def alive(pid: int) -> bool:
    s = state(pid)
    return s is not None and s not in "ZX"


def cpu_ns(pid: int) -> int | None:
    """CPU time (user + system) of ``pid``'s threads in ns, from schedstat."""
    total = 0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    for tid in tasks:
        with contextlib.suppress(OSError, ValueError, IndexError):
            total += int(Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()[0])
    if not tasks:  # a zombie has no tasks listed: fall back on the leader's schedstat
        try:
            total = int(Path(f"/proc/{pid}/schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
    return total


def status_fields(pid: int) -> dict[str, str]:
    fields: dict[str, str] = {}
    try:
        for row in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = row.partition(":")
            fields[key] = value.strip()
    except OSError:
        pass
    return fields


def rss_kib(pid: int) -> int | None:
    value = status_fields(pid).get("VmRSS")
    return int(value.split()[0]) if value else None


def wakeups(pid: int) -> int | None:
    """Context switches (voluntary + involuntary): each is one wake-up of the process."""
    fields = status_fields(pid)
    try:
        return int(fields["voluntary_ctxt_switches"]) + int(fields["nonvoluntary_ctxt_switches"])
    except (KeyError, ValueError):
        return None


def reap_all() -> None:
    """Reap every exited child of the harness (its own and adopted orphans)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def cleanup(deadline_s: float = 15.0) -> list[int]:
    """SIGKILL every descendant of the harness; return the PIDs that were still
    alive (left over by whatever should have stopped them). Raises if any
    survives the deadline."""
    me = os.getpid()
    leftovers = [p for p in descendants(me) if alive(p)]
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        live = [p for p in descendants(me) if alive(p)]
        for p in live:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGKILL)
        reap_all()
        if not live and not descendants(me):
            return leftovers
        time.sleep(0.01)
    raise RuntimeError(f"processes left behind: {descendants(me)}")
