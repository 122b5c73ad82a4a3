"""Who listens on a TCP port: so a readiness or health check is answered by the service.

A connect to ``127.0.0.1:8000`` succeeds whoever listens there; if another
program holds the port, the service's own bind failed and the check must
fail too. ``/proc/net/tcp`` and ``tcp6`` give the listening sockets' inodes;
``/proc/PID/fd`` links (``socket:[INODE]``) say which process holds them. A
service's processes are those of its process group or session (it leads
both). The scan of every process is done only when the port's listener is new
(a cached inode needs one read of ``/proc/net/tcp``) or to name the holder.
"""

from __future__ import annotations

import contextlib
import os

_LISTEN = "0A"


def http_port(url: str) -> int:
    """The TCP port an ``http://`` URL goes to."""
    import urllib.parse  # only for http checks: 8 ms of start-up (it imports ipaddress)

    return urllib.parse.urlsplit(url).port or 80


def listening_inodes(port: int) -> set[int]:
    """The inodes of the sockets listening on TCP ``port`` (any address), IPv4 and IPv6."""
    out: set[int] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f, None)
                for line in f:
                    fields = line.split()
                    if len(fields) < 10 or fields[3] != _LISTEN:
                        continue
                    local_port = int(fields[1].rpartition(":")[2], 16)
                    if local_port == port:
                        out.add(int(fields[9]))
        except OSError:
            continue
    return out


def _socket_inodes(pid: int) -> set[int]:
    inodes: set[int] = set()
    fd_dir = f"/proc/{pid}/fd"
    try:
        names = os.listdir(fd_dir)
    except OSError:
        return inodes
    for name in names:
        with contextlib.suppress(OSError):
            target = os.readlink(f"{fd_dir}/{name}")
            if target.startswith("socket:["):
                inodes.add(int(target[8:-1]))
    return inodes


def _group_and_session(pid: int) -> tuple[int, int] | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            rest = f.read().rpartition(")")[2].split()
        return int(rest[2]), int(rest[3])
    except (OSError, IndexError, ValueError):
        return None


def _pids() -> list[int]:
    try:
        return [int(n) for n in os.listdir("/proc") if n.isdigit()]
    except OSError:
        return []


def holders(inodes: set[int]) -> list[int]:
    """The processes that hold one of ``inodes`` open, lowest PID first."""
    return sorted(pid for pid in _pids() if _socket_inodes(pid) & inodes)


def held_by_service(leader: int, inodes: set[int]) -> bool:
    """Whether a process of the group or session ``leader`` leads holds one of ``inodes``."""
    for pid in _pids():
        ids = _group_and_session(pid)
        if ids is not None and leader in ids and _socket_inodes(pid) & inodes:
            return True
    return False


class Ownership:
    """Checks that the listener on ``port`` belongs to the service led by ``leader``."""

    def __init__(self, port: int, leader: int, path: str) -> None:
        self.port = port
        self.leader = leader
        self.path = path
        self._known: set[int] = set()  # listener inodes already found to be the service's

    def check(self) -> str | None:
        """None if the service holds the port's listener, else why not (one line)."""
        inodes = listening_inodes(self.port)
        if not inodes:
            return None  # nothing is listening any more, or /proc says nothing: no verdict
        if inodes & self._known:
            return None
        if held_by_service(self.leader, inodes):
            self._known = inodes
            return None
        pids = holders(inodes)
        if not pids:
            return None  # no holder otree may look at (another user's): no verdict
        return f"port {self.port} is held by pid {pids[0]} (not {self.path})"
