"""What processes cost, read from ``/proc``: CPU seconds and resident memory.

``group_usage(pgids)`` reads every ``/proc/PID/stat`` once and sums, per process
group asked about, the CPU time (user + system, with the time of the children its
processes have reaped, so a group's total does not drop when one of them ends) and
the resident set of the processes still in it. A service runs in a session and
process group of its own whose id is its main PID, so that is what a service costs
until cgroups account for it. ``usage_of(groups, pids)`` does the same in one pass
for ``otree status``, counting a service in a cgroup by its members' PIDs.
``own_usage()`` is otree's own process, for its
``process_*`` metrics. Nothing here blocks on anything but ``/proc`` reads.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from typing import NamedTuple

from otree.core.service import ServiceNode
from otree.runtime import cgroups

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


class Usage(NamedTuple):
    cpu_seconds: float
    rss_bytes: int


class OwnUsage(NamedTuple):
    """otree's own process: what Prometheus clients call ``process_*``."""

    cpu_seconds: float
    rss_bytes: int
    virtual_bytes: int
    open_fds: int
    max_fds: int
    start_time: float  #: unix seconds


def _stat_fields(text: str) -> list[str]:
    """The fields after ``comm`` (which may hold spaces and parentheses): [state, ppid, ...]."""
    return text[text.rindex(")") + 2 :].split()


def _read_bytes(path: str) -> bytes:
    """A small ``/proc`` file whole (one ``read``: no buffered file object)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return os.read(fd, 4096)
    finally:
        os.close(fd)


def group_usage(pgids: Iterable[int], proc: str = "/proc") -> dict[int, Usage]:
    """``{pgid: Usage}`` for each group in ``pgids`` that has a process left (one pass)."""
    found = usage_of({g: str(g) for g in pgids}, {}, proc)
    return {int(key): usage for key, usage in found.items()}


def usage_of(
    groups: Mapping[int, str], pids: Mapping[int, str], proc: str = "/proc"
) -> dict[str, Usage]:
    """``{key: Usage}`` in one pass over ``/proc``: a process counts for ``pids[its pid]``
    (a service's cgroup members) or else ``groups[its process group]`` (a service's
    group, whose id is its main PID). Keys with no process left are absent. With no
    groups to find, only the ``pids`` are read (not every process of the machine)."""
    cpu: dict[str, int] = {}
    rss: dict[str, int] = {}
    if not groups and not pids:
        return {}
    if groups:
        try:
            names = [n for n in os.listdir(proc) if n.isdigit()]
        except OSError:
            return {}
    else:
        names = [str(pid) for pid in pids]
    for name in names:
        try:
            fields = _stat_fields(_read_bytes(f"{proc}/{name}/stat").decode("ascii", "replace"))
            key = pids.get(int(name)) or groups.get(int(fields[2]))
            if key is None:
                continue
            ticks = int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])
            pages = int(fields[21])
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile, or a kernel thread's odd line
        cpu[key] = cpu.get(key, 0) + ticks
        rss[key] = rss.get(key, 0) + pages
    return {k: Usage(cpu[k] / _TICKS, rss[k] * _PAGE) for k in cpu}


def resident(pids: Iterable[int], proc: str = "/proc") -> int:
    """The resident bytes of ``pids`` summed (``/proc/PID/statm``: a few numbers, not the
    52 fields of ``stat``), for processes whose CPU time is counted elsewhere (their
    cgroup's ``cpu.stat``); a process gone meanwhile counts nothing."""
    pages = 0
    for pid in pids:
        try:
            text = _read_bytes(f"{proc}/{pid}/statm")
            pages += int(text.split(None, 2)[1])
        except (OSError, ValueError, IndexError):
            continue
    return pages * _PAGE


def services(
    nodes: Mapping[str, object],
    in_cgroup: Callable[[int], str | None],
    proc: str = "/proc",
    *,
    members: Mapping[str, list[int]] | None = None,
    cpu: Mapping[str, float] | None = None,
) -> dict[str, tuple[int, float, int]]:
    """``{path: (main pid, CPU seconds, RSS bytes)}`` of each running service among the
    engine's ``nodes``: its process group's, or its cgroup's processes' when
    ``in_cgroup(pid)`` names its cgroup directory (one pass over ``/proc`` for all).
    ``members``: a cgroup's processes by its directory, read already; ``cpu``: a cgroup's
    CPU seconds by its directory, read already (its ``cpu.stat``: then only its members'
    resident memory is read)."""
    groups: dict[int, str] = {}
    in_groups: dict[int, str] = {}
    given = members or {}
    counted = cpu or {}
    main: dict[str, int] = {}
    out: dict[str, tuple[int, float, int]] = {}
    for path, node in nodes.items():
        pid = node.pid if isinstance(node, ServiceNode) else None
        if pid is None:
            continue
        main[path] = pid
        directory = in_cgroup(pid)
        if directory is None:
            groups[pid] = path
            continue
        known = given.get(directory)
        pids = known if known is not None else cgroups.members(directory)
        seconds = counted.get(directory)
        if seconds is None:
            in_groups.update((member, path) for member in pids)
        elif pids:
            out[path] = (pid, seconds, resident(pids, proc))
    found = usage_of(groups, in_groups, proc)
    out.update((p, (main[p], u.cpu_seconds, u.rss_bytes)) for p, u in found.items())
    return out


def own_usage(proc: str = "/proc") -> OwnUsage:
    """otree's own CPU, memory, fds and start time (zeros for what cannot be read)."""
    cpu = 0.0
    rss = vsize = 0
    start = 0.0
    try:
        with open(f"{proc}/self/stat", "rb") as f:
            fields = _stat_fields(f.read().decode("ascii", "replace"))
        cpu = (int(fields[11]) + int(fields[12])) / _TICKS
        vsize = int(fields[20])
        rss = int(fields[21]) * _PAGE
        start = _boot_time(proc) + int(fields[19]) / _TICKS
    except (OSError, ValueError, IndexError):
        pass
    try:
        fds = len(os.listdir(f"{proc}/self/fd"))
    except OSError:
        fds = 0
    try:
        import resource

        max_fds = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    except (ImportError, OSError, ValueError):
        max_fds = 0
    return OwnUsage(cpu, rss, vsize, fds, max_fds, start)


def _boot_time(proc: str) -> float:
    with open(f"{proc}/stat", "rb") as f:
        for line in f:
            if line.startswith(b"btime "):
                return float(line.split()[1])
    return 0.0
