"""A service's sd_notify socket: bound before the spawn, open as long as its process.

The child finds the path in ``NOTIFY_SOCKET`` and may send to it at any time
(``READY=1``, ``STATUS=``, ``WATCHDOG=1``, ``STOPPING=1`` ...): the socket is
closed and removed only once the process is gone, so no datagram sent while
it runs fails. A datagram is newline-separated ``KEY=value`` fields; otree acts
on ``READY=1``, ``STATUS=``, ``WATCHDOG=1`` and ``WATCHDOG=trigger`` and
ignores the rest. File descriptors a datagram carries are closed at once:
that answers ``BARRIER=1`` (``systemd-notify`` waits for it) and keeps no
``FDSTORE=1`` fd open. A service flooding its socket cannot stall the loop: each
wake-up reads at most ``BURST`` datagrams, the rest waits for the next turn.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Callable

from otree.runtime.loop import Loop

#: datagrams read per wake-up (the kernel queue holds the rest until the next turn)
BURST = 64
#: the longest datagram read whole (sd_notify messages are short; longer ones are cut)
DATAGRAM = 4096
#: the longest STATUS= text kept
STATUS_MAX = 256
#: room for the file descriptors a datagram may carry (``BARRIER=1``, ``FDSTORE=1``)
_FDS_SPACE = socket.CMSG_SPACE(16 * 4)
#: the name of the notify directory of the services run as uid N starts with this + N
USER_NOTIFY_PREFIX = "otree-u"


class NotifySocket:
    """The datagram socket at ``path``; call ``start()`` once the child exists."""

    def __init__(self, loop: Loop, path: str, fd: int | None = None) -> None:
        """Bind a new socket at ``path``, or (``fd``) take over the one bound there
        that the image before a re-exec handed over."""
        self.loop = loop
        self.path = path
        #: the latest ``STATUS=`` text (None: none received)
        self.status_text: str | None = None
        #: called once per ``READY=1`` datagram
        self.on_ready: Callable[[], None] | None = None
        #: called with ``"1"`` for ``WATCHDOG=1`` and ``"trigger"`` for ``WATCHDOG=trigger``
        self.on_watchdog: Callable[[str], None] | None = None
        self._sock: socket.socket | None = None
        self._reading = False
        if fd is not None:
            os.set_inheritable(fd, False)
            self._sock = socket.socket(fileno=fd)
            self._sock.setblocking(False)
            return
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        try:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            sock.bind(path)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self._sock = sock
        self._reading = False

    @property
    def fd(self) -> int | None:
        """The socket's fd (to hand over across a re-exec), None once closed."""
        return self._sock.fileno() if self._sock is not None else None

    @property
    def open(self) -> bool:
        return self._sock is not None

    def start(self) -> None:
        if self._sock is not None and not self._reading:
            self._reading = True
            self.loop.add_reader(self._sock.fileno(), self._readable)

    def _readable(self) -> None:
        self.read()

    def read(self) -> int:
        """Take up to ``BURST`` datagrams waiting now; return how many were taken."""
        for n in range(BURST):
            sock = self._sock
            if sock is None:
                return n
            try:
                data, ancdata, _, _ = sock.recvmsg(DATAGRAM, _FDS_SPACE)
            except OSError:  # nothing waiting (EAGAIN), or the socket is unusable
                return n
            _close_fds(ancdata)
            self._message(data)
        return BURST

    def _message(self, data: bytes) -> None:
        ready = False
        watchdog: list[str] = []
        for line in data.split(b"\n"):
            key, sep, value = line.partition(b"=")
            if not sep:
                continue
            if key == b"READY" and value == b"1":
                ready = True
            elif key == b"STATUS":
                self.status_text = value[:STATUS_MAX].decode("utf-8", "replace")
            elif key == b"WATCHDOG" and value in (b"1", b"trigger"):
                watchdog.append(value.decode())
        for kind in watchdog:
            if self.on_watchdog is not None:
                self.on_watchdog(kind)
        if ready and self.on_ready is not None:
            self.on_ready()

    def close(self) -> None:
        """Stop reading, close the socket and remove its path (the process is gone)."""
        sock, self._sock = self._sock, None
        if sock is None:
            return
        if self._reading:
            self.loop.remove_reader(sock.fileno())
            self._reading = False
        sock.close()
        with contextlib.suppress(OSError):
            os.unlink(self.path)
        directory = os.path.dirname(self.path)
        if os.path.basename(directory).startswith(USER_NOTIFY_PREFIX):
            with contextlib.suppress(OSError):  # a user's directory goes with its last socket
                os.rmdir(directory)


def _close_fds(ancdata: list[tuple[int, int, bytes]]) -> None:
    """Close every file descriptor passed with a datagram (SCM_RIGHTS)."""
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            usable = len(data) - len(data) % 4
            for fd in memoryview(data[:usable]).cast("i"):
                with contextlib.suppress(OSError):
                    os.close(fd)
