"""What /proc says about otree and its children: states, parents, groups, CPU time, RSS;
careful kills."""

from __future__ import annotations

import contextlib
import glob
import os
import signal
from typing import NamedTuple

TICKS = os.sysconf("SC_CLK_TCK")


class Stat(NamedTuple):
    state: str
    ppid: int
    pgrp: int
    session: int
    cpu_ticks: int  # utime + stime
    start: int  # start time in clock ticks since boot: (pid, start) names one process


def stat(pid: int) -> Stat | None:
    """``/proc/PID/stat``, or None if the process is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rpartition(b")")[2].split()
    except OSError:
        return None
    # fields[0] is field 3 (state) of proc(5)
    return Stat(
        state=fields[0].decode(),
        ppid=int(fields[1]),
        pgrp=int(fields[2]),
        session=int(fields[3]),
        cpu_ticks=int(fields[11]) + int(fields[12]),
        start=int(fields[19]),
    )


def proc_state(pid: int) -> str | None:
    """The state letter of ``pid`` (``Z`` for a zombie), None if it is gone."""
    st = stat(pid)
    return None if st is None else st.state


def parent_of(pid: int) -> int | None:
    """The parent PID of ``pid``, None if it is gone."""
    st = stat(pid)
    return None if st is None else st.ppid


def pid_alive(pid: int) -> bool:
    """``pid`` exists and is not a zombie."""
    return proc_state(pid) not in (None, "Z", "X")


def cmdline(pid: int) -> str:
    """The command line of ``pid`` as one string, ``?`` if it is gone."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"


def pids() -> list[int]:
    """Every PID ``/proc`` lists right now."""
    return [int(e) for e in os.listdir("/proc") if e.isdigit()]


def live_children(parent: int) -> list[int]:
    """The children of ``parent`` that are not zombies, by a scan of every stat in /proc."""
    return _children_where(parent, zombie=False)


def supervised_children(parent: int) -> list[int]:
    """The live children of otree ``parent`` but its death guard (``otree-guard``)."""
    return [p for p in live_children(parent) if " otree-guard " not in cmdline(p)]


def zombie_children(parent: int) -> list[int]:
    """The children of ``parent`` that are zombies, by a scan of every stat in /proc."""
    return _children_where(parent, zombie=True)


def _children_where(parent: int, zombie: bool) -> list[int]:
    out = []
    for pid in pids():
        st = stat(pid)
        if st is not None and st.ppid == parent and (st.state == "Z") == zombie:
            out.append(pid)
    return out


def children(pid: int) -> list[int]:
    """The children of ``pid`` (of all its threads), from ``/proc/PID/task/*/children``."""
    found: set[int] = set()
    for name in glob.glob(f"/proc/{pid}/task/*/children"):
        with contextlib.suppress(OSError), open(name) as f:
            found.update(int(p) for p in f.read().split())
    return sorted(found)


def zombies_of(pid: int) -> list[tuple[int, int]]:
    """``(pid, start)`` of each child of ``pid`` that is a zombie right now."""
    out = []
    for child in children(pid):
        st = stat(child)
        if st is not None and st.state == "Z":
            out.append((child, st.start))
    return out


def rss_kib(pid: int) -> int:
    """``VmRSS`` of ``pid`` in KiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> float:
    st = stat(pid)
    assert st is not None, f"pid {pid} is gone"
    return st.cpu_ticks / TICKS


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes whose process group is ``pgid``."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = stat(int(entry))
            if st is not None and st.pgrp == pgid and st.state not in ("Z", "X"):
                out.append(int(entry))
    return out


def kill_child(parent: int, pid: int, sig: int = signal.SIGKILL, group: bool = False) -> bool:
    """Signal ``pid`` (or its process group) only if it is a live child of ``parent``.

    The process is pinned with a pidfd before it is checked, so a PID that was
    reused meanwhile is never signalled. True if the signal was sent.
    """
    try:
        fd = os.pidfd_open(pid)
    except OSError:
        return False
    try:
        st = stat(pid)
        if st is None or st.ppid != parent or st.state in ("Z", "X"):
            return False
        if group:
            if st.pgrp != pid:
                return False
            os.killpg(pid, sig)
        else:
            signal.pidfd_send_signal(fd, sig)
        return True
    except OSError:  # gone meanwhile
        return False
    finally:
        os.close(fd)
