"""The harness end of the children's start stamps: a unix datagram socket.

Each child sends ``S NAME PID T`` when it starts (T on CLOCK_MONOTONIC, the
clock the harness reads too) and output children ``D NAME PID T`` when done.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Stamp:
    kind: str  # "S" started, "W" about to write, "D" done writing
    name: str
    pid: int
    t: float  # CLOCK_MONOTONIC seconds, taken by the child


def now() -> float:
    return time.clock_gettime(time.CLOCK_MONOTONIC)


class Stamps:
    def __init__(self, path: str) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.sock.bind(path)
        self.sock.setblocking(False)
        self.all: list[Stamp] = []
        self.latest: dict[str, Stamp] = {}  # name -> last start stamp
        self.other: dict[tuple[str, str], Stamp] = {}  # (kind, name) -> last such stamp

    def drain(self, timeout: float) -> int:
        """Receive what arrives within ``timeout`` seconds (returns at the first batch)."""
        ready, _, _ = select.select([self.sock], [], [], max(0.0, timeout))
        count = 0
        while ready:
            try:
                data = self.sock.recv(512)
            except BlockingIOError:
                break
            kind, name, pid, t = data.decode().split()
            stamp = Stamp(kind, name, int(pid), float(t))
            self.all.append(stamp)
            if kind == "S":
                self.latest[name] = stamp
            else:
                self.other[kind, name] = stamp
            count += 1
        return count

    def wait(self, predicate, timeout: float) -> bool:
        """Receive until ``predicate()`` holds or ``timeout`` seconds pass."""
        end = now() + timeout
        while not predicate():
            left = end - now()
            if left <= 0:
                return False
            self.drain(min(left, 0.5))
        return True

    def starts(self, name: str | None = None) -> list[Stamp]:
        return [s for s in self.all if s.kind == "S" and (name is None or s.name == name)]

    def close(self) -> None:
        self.sock.close()
        with contextlib.suppress(OSError):
            os.unlink(self.path)
