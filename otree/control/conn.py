"""One control client's connection: what it sent that waits its turn, what it has yet to
receive, and the limits that keep one client from stalling the loop.

- **Bounded work per turn**: the server handles at most ``TURN_REQUESTS`` requests
  of one client per loop turn (``take``); while some wait, its socket is not read,
  so a client that pipelines thousands of requests holds one read's worth of bytes
  (``RECV``) and shares the loop with everyone else.
- **Bounded output**: a client's unsent replies may reach ``max_output`` bytes. One
  that keeps asking while it does not read them is cut off (``cut``): what it has not
  received is discarded (except the end of the line it is inside), the reason is its
  last line, and it is closed once that is read (or after ``CLOSE_GRACE`` seconds).
  Lines it follows are never a reason: past the limit they are skipped and counted,
  and it is told how many once it catches up.
"""

from __future__ import annotations

import contextlib
import errno
import socket
from collections.abc import Callable, Iterator
from typing import Protocol

from otree.control.protocol import MAX_REQUEST, Decoder, encode

#: unsent bytes a client may have queued (lines it follows are skipped past it)
MAX_OUTPUT = 8 * 1024 * 1024
#: requests of one client handled per loop turn
TURN_REQUESTS = 32
#: bytes read from a client at a time
RECV = 64 * 1024
#: seconds a client that was cut off has to read its last line
CLOSE_GRACE = 5.0


class LoopLike(Protocol):
    def add_reader(self, fd: int, callback: Callable[[], None]) -> None: ...
    def remove_reader(self, fd: int) -> None: ...
    def add_writer(self, fd: int, callback: Callable[[], None]) -> None: ...
    def remove_writer(self, fd: int) -> None: ...
    def call_later(self, delay: float, callback: Callable[[], None]) -> object: ...
    def clock(self) -> float: ...


def accept_waiting(
    listener: socket.socket, pause: Callable[[], None], full: Callable[[], bool], refusal: bytes
) -> Iterator[socket.socket]:
    """The connections waiting on ``listener``, at most 32 a turn, each non-blocking. One
    that finds ``full()`` true gets ``refusal`` and is closed instead; running out of fds
    or memory calls ``pause()`` (stop accepting for a moment rather than spin: the
    clients wait in the backlog) and ends the turn."""
    for _ in range(32):
        try:
            sock, _ = listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            if exc.errno in (errno.ECONNABORTED, errno.EPROTO):
                continue  # that client gave up already
            pause()
            return
        sock.setblocking(False)
        if full():
            with contextlib.suppress(OSError):  # a fresh socket takes this at once
                sock.send(refusal)
            sock.close()
            continue
        yield sock


class Conn:
    """One client: its socket, the requests it sent, what it has yet to receive.

    ``gone(conn)`` is called once the connection is over (the peer went away, a write
    failed, or what was left to send after ``close_after_sending`` is sent); the
    server forgets it then (and calls ``close``)."""

    __slots__ = (
        "closing",
        "decoder",
        "dropped",
        "event_follow",
        "fd",
        "followed",
        "follows",
        "gone",
        "inbound",
        "loop",
        "max_output",
        "mid_line",
        "out",
        "pending",
        "reading",
        "scheduled",
        "sock",
        "writing",
    )

    def __init__(
        self,
        sock: socket.socket,
        loop: LoopLike,
        gone: Callable[[Conn], None],
        max_output: int = MAX_OUTPUT,
    ) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.loop = loop
        self.gone = gone
        self.max_output = max_output
        self.decoder = Decoder(MAX_REQUEST)
        self.inbound = bytearray()  # received, not handled yet (at most one read)
        self.reading = False  # its socket is watched for reading
        self.scheduled = False  # a turn to handle ``inbound`` is due
        self.out = bytearray()
        self.mid_line = False  # ``out`` starts inside a line partly sent already
        self.writing = False
        self.follows: dict[int, Callable[[], None]] = {}  # request id -> unsubscribe
        self.followed: dict[int, str | None] = {}  # request id -> the path it asked for
        self.pending = 0  # commands sent to the runtime, not answered yet
        self.closing = False  # closed once ``out`` is sent
        self.dropped: dict[tuple[int, str], int] = {}  # (request id, path) -> lines skipped
        #: ``otree events -f``: [request id, the number of the last event line sent]
        self.event_follow: list[int] | None = None

    # --- input ------------------------------------------------------------------

    def read(self) -> bytes | None:
        """One read from the socket: the bytes (``b""`` at the end), None if none yet."""
        try:
            return self.sock.recv(RECV)
        except (BlockingIOError, InterruptedError):
            return None
        except OSError:
            return b""

    def take(self, count: int = TURN_REQUESTS) -> bytes:
        """The next bytes of ``inbound`` to decode: up to ``count`` lines (all of it when
        what is left after them has no newline: an unfinished line goes to the decoder)."""
        data = self.inbound
        end = 0
        for _ in range(count):
            nl = data.find(b"\n", end)
            if nl < 0:
                end = len(data)
                break
            end = nl + 1
        if data.find(b"\n", end) < 0:
            end = len(data)
        chunk = bytes(data[:end])
        del data[:end]
        return chunk

    def watch(self, on_readable: Callable[[], None]) -> None:
        if not self.reading:
            self.reading = True
            self.loop.add_reader(self.fd, on_readable)

    def unwatch(self) -> None:
        if self.reading:
            self.reading = False
            self.loop.remove_reader(self.fd)

    # --- output -----------------------------------------------------------------

    def send(self, data: bytes, *, droppable: bool = False) -> bool:
        """Send ``data`` or queue what the socket does not take now. False when the
        client's unsent replies are past its limit (``droppable`` data never is)."""
        if not self.out:
            try:
                sent = self.sock.send(data)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                self.gone(self)
                return True
            if sent == len(data):
                return True
            if sent:
                self.mid_line = data[sent - 1] != ord("\n")
                data = data[sent:]
        self.out += data
        if not self.writing:
            self.writing = True
            self.loop.add_writer(self.fd, self._write)
        return droppable or len(self.out) <= self.max_output + MAX_REQUEST

    def flush_dropped(self) -> None:
        """Tell the client how many followed lines it missed, per request and path."""
        dropped, self.dropped = self.dropped, {}
        for (rid, path), count in dropped.items():
            self.out += encode({"id": rid, "path": path, "dropped": count})

    def _write(self) -> None:
        try:
            sent = self.sock.send(self.out)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.gone(self)
            return
        if sent:
            self.mid_line = self.out[sent - 1] != ord("\n")
            del self.out[:sent]
        if self.dropped and len(self.out) < self.max_output // 2 and not self.closing:
            self.flush_dropped()
        if not self.out:
            self.writing = False
            self.loop.remove_writer(self.fd)
            if self.closing:
                self.gone(self)

    def close_after_sending(self) -> None:
        """Close once what is queued is sent; nothing more is read from it meanwhile."""
        if self.out:
            self.closing = True
            self.unwatch()
        else:
            self.gone(self)

    def cut(self, last: bytes) -> None:
        """Cut the client off: discard what it has not received but the end of the line it
        is inside, send ``last``, then close (or after ``CLOSE_GRACE`` s if it never reads)."""
        self.unwatch()
        self.inbound.clear()
        self.dropped.clear()
        keep = b""
        if self.mid_line:
            keep = bytes(self.out[: self.out.find(b"\n") + 1])
        self.out.clear()
        self.out += keep
        self.mid_line = False
        self.send(last, droppable=True)
        self.close_after_sending()
        if self.closing:
            self.loop.call_later(CLOSE_GRACE, lambda: self.gone(self))

    def close(self) -> None:
        """Stop watching the socket and close it (the server calls it once, from ``gone``)."""
        self.reading = self.writing = False
        with contextlib.suppress(Exception):  # the loop may already be closed
            self.loop.remove_reader(self.fd)
            self.loop.remove_writer(self.fd)
        self.sock.close()
