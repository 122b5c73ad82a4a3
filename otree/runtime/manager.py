"""otree's own service manager: the sd_notify protocol, when otree runs under one.

When otree's environment has ``NOTIFY_SOCKET`` (systemd ``Type=notify`` or
``notify-reload``, or an otree parent with ``ready = { notify = true }``),
otree tells it how the tree is doing, in datagrams of ``KEY=VALUE`` lines:

- ``READY=1`` and ``MAINPID=`` at ``tree_ready`` (and again once a reload is
  done: the PID is the same after the re-exec, so ``MAINPID`` holds);
- ``RELOADING=1`` with ``MONOTONIC_USEC=`` just before a reload's exec;
- ``STOPPING=1`` when the tree begins to stop;
- ``STATUS=`` (``3 running, 1 restarting``) when it changes, at most once a
  second;
- ``WATCHDOG=1`` every half ``WATCHDOG_USEC``, from the loop itself (a stuck
  loop misses it and the manager acts), when ``WATCHDOG_PID`` is unset or is
  otree's PID.

The variables are never passed to children (``posix.child_env`` drops
``NOTIFY_SOCKET``; the watchdog ones are otree's alone). A manager that cannot
be reached is no error: a datagram that cannot be sent is dropped.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from otree.core.actions import Report
    from otree.runtime.loop import Loop, Timer

#: at most one STATUS= a second
STATUS_EVERY = 1.0


def notify_address(value: str) -> str | None:
    """``NOTIFY_SOCKET`` as a socket address (``@name``: the abstract namespace)."""
    if not value:
        return None
    if value.startswith("@"):
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    return None  # vsock and other forms: not ours to speak


class Manager:
    """The notify client of one otree process (see the module doc)."""

    def __init__(self, loop: Loop, address: str, status: Callable[[], list[str]]) -> None:
        self.loop = loop
        self.address = address
        self.status = status  # the states of the nodes, for STATUS=
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self.sock.setblocking(False)
        self._said_status = ""
        self._status_timer: Timer | None = None
        self._status_at = 0.0
        self._stopping = False
        self._watchdog: float | None = None

    @classmethod
    def from_env(cls, loop: Loop, status: Callable[[], list[str]]) -> Manager | None:
        address = notify_address(os.environ.get("NOTIFY_SOCKET", ""))
        if address is None:
            return None
        manager = cls(loop, address, status)
        usec = os.environ.get("WATCHDOG_USEC", "")
        owner = os.environ.get("WATCHDOG_PID", "")
        if usec.isdigit() and int(usec) > 0 and (not owner or owner == str(os.getpid())):
            manager.start_watchdog(int(usec) / 1e6)
        return manager

    def send(self, *lines: str) -> None:
        with contextlib.suppress(OSError):
            self.sock.sendto("\n".join(lines).encode(), self.address)

    # --- what the tree does --------------------------------------------------------

    def on_report(self, report: Report, stopping: bool) -> None:
        """Every report of the tree (``stopping``: the engine is stopping the tree)."""
        if report.event == "tree_ready":
            self.send("READY=1", f"MAINPID={os.getpid()}", self._status_line())
        elif stopping and not self._stopping:
            self._stopping = True
            self.send("STOPPING=1")
        self._status_soon()

    def reloading(self, execing: bool) -> None:
        """Just before a reload's exec (``execing``): ``RELOADING=1``; the new image says
        ``READY=1`` when it is done. If the exec failed, this image is ready again."""
        if execing:
            usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
            self.send("RELOADING=1", f"MONOTONIC_USEC={usec}")
        else:
            self.send("READY=1", f"MAINPID={os.getpid()}")

    def close(self) -> None:
        if not self._stopping:
            self.send("STOPPING=1")
            self._stopping = True
        self.sock.close()

    # --- STATUS= -----------------------------------------------------------------------

    def _status_line(self) -> str:
        counts = Counter(self.status())
        order = ("running", "starting", "restarting", "stopping", "exited", "stopped", "dead")
        text = ", ".join(f"{counts[s]} {s}" for s in order if counts[s])
        self._said_status = text
        return f"STATUS={text}"

    def _status_soon(self) -> None:
        if self._status_timer is not None:
            return
        wait = max(0.0, self._status_at + STATUS_EVERY - self.loop.clock())
        self._status_timer = self.loop.call_later(wait, self._send_status)

    def _send_status(self) -> None:
        self._status_timer = None
        before = self._said_status
        line = self._status_line()
        if self._said_status != before:
            self._status_at = self.loop.clock()
            self.send(line)

    # --- WATCHDOG=1 ----------------------------------------------------------------------

    def start_watchdog(self, period: float) -> None:
        self._watchdog = period / 2
        self.loop.call_later(0, self._pet)

    def _pet(self) -> None:
        if self._watchdog is None or self.sock.fileno() < 0:
            return
        self.send("WATCHDOG=1")
        self.loop.call_later(self._watchdog, self._pet)
