"""One attempt of a network check, non-blocking inside the loop: a TCP connect, or an
HTTP GET to a loopback address, each answered once with ``(ok, reason)``.

The HTTP request is HTTP/1.0 with ``Connection: close``, written and read on a
non-blocking socket (``http.client`` blocks, and one slow service must not
stall every other service's supervision); the answer's status line is all that
is read: 2xx and 3xx are healthy, and a redirect is never followed. Each
attempt has its own timeout timer; ``cancel()`` ends it without an answer. A
host name (not an address) is looked up off the loop, by the readiness probes'
``LOOKUPS``; a lookup slower than the timeout is a failed attempt.
"""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Callable
from typing import Any

from otree.runtime.loop import Loop, Timer

#: ``on_done(ok, reason)``: reason says what failed ("" when ok)
OnDone = Callable[[bool, str], None]
#: the most of an answer read before its status line must have come
_STATUS_MAX = 4096


class Attempt:
    """A connect to ``address`` (then, for HTTP, one request); answered once."""

    def __init__(
        self,
        loop: Loop,
        address: tuple[str, int],
        timeout: float,
        on_done: OnDone,
        *,
        what: str,
        request: bytes | None = None,
    ) -> None:
        self.loop = loop
        self.address = address
        self.timeout = timeout
        self.what = what  # "tcp 127.0.0.1:80" or "http": the start of each reason
        self._request = request
        self._on_done: OnDone | None = on_done
        self._sock: socket.socket | None = None
        self._timer: Timer | None = None
        self._answer = b""
        self._registered: str | None = None  # "reader" | "writer"
        self._looking = False  # a host name lookup is in flight for it

    def start(self) -> None:
        host, port = self.address
        self._timer = self.loop.call_later(self.timeout, self._timed_out)
        try:  # an address: no lookup
            infos = socket.getaddrinfo(
                host, port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST
            )
        except socket.gaierror:  # a name: looked up off the loop, as readiness does
            from otree.runtime.probes import LOOKUPS

            if not LOOKUPS.resolve(self.loop, host, port, self._resolved):
                self._done(False, f"{self.what}: too many host name lookups in flight")
            else:
                self._looking = True
            return
        self._connect(infos[0][0], infos[0][4])

    def _resolved(self, addrs: list[tuple[int, tuple[str, int]]] | None, why: str | None) -> None:
        self._looking = False
        if self._on_done is None:
            return  # timed out or cancelled meanwhile
        if not addrs:
            self._done(False, f"{self.what}: {why or 'cannot resolve'}")
        else:
            self._connect(*addrs[0])

    def _connect(self, family: int, addr: Any) -> None:
        try:
            sock = socket.socket(family, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        except OSError as exc:
            self._done(False, f"{self.what}: {exc.strerror or exc}")
            return
        sock.setblocking(False)
        self._sock = sock
        err = sock.connect_ex(addr)
        if err == 0:
            self._connected()
        elif err in (errno.EINPROGRESS, errno.EAGAIN, errno.EWOULDBLOCK):
            self._wait("writer", self._connect_done)
        else:
            self._done(False, f"{self.what}: {_strerror(err)}")

    def _wait(self, kind: str, callback: Callable[[], None]) -> None:
        sock = self._sock
        assert sock is not None
        self._unregister()
        if kind == "writer":
            self.loop.add_writer(sock.fileno(), callback)
        else:
            self.loop.add_reader(sock.fileno(), callback)
        self._registered = kind

    def _unregister(self) -> None:
        if self._sock is not None and self._registered is not None:
            if self._registered == "writer":
                self.loop.remove_writer(self._sock.fileno())
            else:
                self.loop.remove_reader(self._sock.fileno())
        self._registered = None

    def _connect_done(self) -> None:
        sock = self._sock
        assert sock is not None
        err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            self._done(False, f"{self.what}: {_strerror(err)}")
        else:
            self._connected()

    def _connected(self) -> None:
        if self._request is None:
            self._done(True, "")
            return
        sock = self._sock
        assert sock is not None
        try:  # a request this small fits in an empty socket buffer
            sock.send(self._request)
        except OSError as exc:
            self._done(False, f"{self.what}: {exc.strerror or exc}")
            return
        self._wait("reader", self._readable)

    def _readable(self) -> None:
        sock = self._sock
        assert sock is not None
        try:
            data = sock.recv(_STATUS_MAX)
        except BlockingIOError:
            return
        except OSError as exc:
            self._done(False, f"{self.what}: {exc.strerror or exc}")
            return
        self._answer += data
        line, sep, _ = self._answer.partition(b"\r\n")
        if not sep and data and len(self._answer) < _STATUS_MAX:
            return  # the status line is not complete yet
        self._done(*_judge(line, self.what))

    def _timed_out(self) -> None:
        self._timer = None
        self._done(False, f"{self.what}: no answer within {self.timeout:g}s")

    def _done(self, ok: bool, reason: str) -> None:
        on_done, self._on_done = self._on_done, None
        self.cancel()
        if on_done is not None:
            on_done(ok, reason)

    def cancel(self) -> None:
        self._on_done = None
        if self._looking:
            from otree.runtime.probes import LOOKUPS

            self._looking = False
            LOOKUPS.forget(self.loop, *self.address, self._resolved)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._unregister()
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _judge(status_line: bytes, what: str) -> tuple[bool, str]:
    parts = status_line.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
        return False, f"{what}: not an HTTP answer"
    code = int(parts[1])
    if 200 <= code < 400:
        return True, ""
    return False, f"{what} {code}"


def _strerror(err: int) -> str:
    return os.strerror(err)


def tcp(loop: Loop, address: tuple[str, int], timeout: float, on_done: OnDone) -> Attempt:
    host, port = address
    return Attempt(loop, address, timeout, on_done, what=f"tcp {host}:{port}")


def http_get(loop: Loop, url: str, timeout: float, on_done: OnDone) -> Attempt:
    """A GET of ``url`` (checked at load: ``http://`` to a loopback address)."""
    import urllib.parse  # only for an http check: kept off otree's start-up

    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    port = parts.port or 80
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    netloc = parts.netloc.rpartition("@")[2]
    request = (
        f"GET {target} HTTP/1.0\r\nHost: {netloc}\r\nUser-Agent: otree\r\nConnection: close\r\n\r\n"
    ).encode("latin-1", "replace")
    return Attempt(loop, (host, port), timeout, on_done, what="http", request=request)
