"""``otree run --metrics ADDR``: the exposition over HTTP, ``GET /metrics`` and nothing else.

A listener in the runtime's loop, as small as a scraper needs: a request is read
without blocking up to ``MAX_REQUEST`` bytes (more is a ``431``), each client has
``CLIENT_TIMEOUT`` seconds from its connection to its last byte (a slow one is cut
off), at most ``MAX_CLIENTS`` are served at once (more get a ``503`` at once), and the
answer is ``200`` with the text for ``GET /metrics`` (a query string is ignored),
``405`` for another method, ``404`` for another path, ``400`` for what is not
HTTP; every connection is closed after its answer. The address must be loopback
unless the user asked for a public one (``--metrics-public``): metrics say what runs
and how it fails, which is not for the network by default.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
from collections.abc import Callable
from typing import Any

from otree.control.conn import LoopLike, accept_waiting
from otree.control.metrics import CONTENT_TYPE
from otree.errors import OtreeError

#: the most a request (its line and headers) may take
MAX_REQUEST = 8192
#: how long a client has, from its connection to the end of the answer
CLIENT_TIMEOUT = 5.0
#: clients served at once
MAX_CLIENTS = 16


def parse_address(text: str, public: bool) -> tuple[str, int]:
    """``127.0.0.1:9464``, ``[::1]:9464``, ``localhost:9464`` -> (host, port). OtreeError if
    it is not an address with a port, or not loopback without ``public``."""
    where = f"--metrics {text}"
    host, sep, port_text = text.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise OtreeError(f"{where}: expected HOST:PORT with a port from 1 to 65535")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if host == "localhost":
        host = "127.0.0.1"
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise OtreeError(
            f"{where}: {host!r} is not an IP address (give 127.0.0.1, ::1 or an address"
            " of this host)"
        ) from None
    if not ip.is_loopback and not public:
        raise OtreeError(
            f"{where}: {host} is not a loopback address; metrics are served to this host"
            " only unless --metrics-public is given"
        )
    return str(ip), int(port_text)


def _response(status: str, body: bytes, content_type: str, extra: str = "") -> bytes:
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n{extra}Connection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


def answer(request: bytes, text: Callable[[], str]) -> bytes:
    """The whole HTTP answer to ``request`` (its line and headers)."""
    line = request.split(b"\r\n", 1)[0].split(b"\n", 1)[0]
    parts = line.split()
    plain = "text/plain; charset=utf-8"
    if len(parts) != 3 or not parts[2].startswith(b"HTTP/"):
        return _response("400 Bad Request", b"not an HTTP request\n", plain)
    method, target = parts[0], parts[1].split(b"?", 1)[0]
    if target != b"/metrics":
        return _response("404 Not Found", b"only /metrics is served here\n", plain)
    if method != b"GET":
        return _response(
            "405 Method Not Allowed", b"only GET is allowed\n", plain, "Allow: GET\r\n"
        )
    return _response("200 OK", text().encode(), CONTENT_TYPE)


#: the answer past ``MAX_CLIENTS``
BUSY = _response("503 Service Unavailable", b"too many clients\n", "text/plain; charset=utf-8")


class _Client:
    __slots__ = ("inbound", "out", "sock", "timer", "writing")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.inbound = bytearray()
        self.out = b""
        self.timer: Any = None  #: the cut-off of a slow client
        self.writing = False


class MetricsListener:
    """Serve ``text()`` at ``http://HOST:PORT/metrics`` from ``loop``."""

    def __init__(self, loop: LoopLike, address: tuple[str, int], text: Callable[[], str]) -> None:
        self.loop = loop
        self.text = text
        host, port = address
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            sock.listen(64)
        except OSError as exc:
            sock.close()
            shown = f"[{host}]:{port}" if family == socket.AF_INET6 else f"{host}:{port}"
            raise OtreeError(f"--metrics {shown}: cannot listen: {exc.strerror}") from None
        sock.setblocking(False)
        self.sock = sock
        self.address: tuple[str, int] = sock.getsockname()[:2]
        self._clients: dict[int, _Client] = {}
        self._closed = False
        loop.add_reader(sock.fileno(), self._accept)

    def _accept(self) -> None:
        for sock in accept_waiting(
            self.sock, self._pause, lambda: len(self._clients) >= MAX_CLIENTS, BUSY
        ):
            client = _Client(sock)
            fd = sock.fileno()
            self._clients[fd] = client
            self._watch(client, fd)

    def _watch(self, client: _Client, fd: int) -> None:
        client.timer = self.loop.call_later(CLIENT_TIMEOUT, lambda: self._drop(client))
        self.loop.add_reader(fd, lambda: self._read(client))

    def _pause(self) -> None:
        fd = self.sock.fileno()
        self.loop.remove_reader(fd)

        def resume() -> None:
            if not self._closed:
                self.loop.add_reader(fd, self._accept)

        self.loop.call_later(0.5, resume)

    def _read(self, client: _Client) -> None:
        try:
            data = client.sock.recv(MAX_REQUEST + 1)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._drop(client)
            return
        if not data:
            self._drop(client)
            return
        client.inbound += data
        end = client.inbound.find(b"\r\n\r\n")
        if end < 0:
            end = client.inbound.find(b"\n\n")
        if end < 0 and len(client.inbound) <= MAX_REQUEST:
            return  # the rest of its headers are on the way
        self.loop.remove_reader(client.sock.fileno())
        if end < 0 or end > MAX_REQUEST:
            body = b"request too large\n"
            client.out = _response(
                "431 Request Header Fields Too Large", body, "text/plain; charset=utf-8"
            )
        else:
            client.out = answer(bytes(client.inbound[:end]), self.text)
        self._write(client)

    def _write(self, client: _Client) -> None:
        fd = client.sock.fileno()
        try:
            sent = client.sock.send(client.out)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self._drop(client)
            return
        client.out = client.out[sent:]
        if not client.out:
            with contextlib.suppress(OSError):
                client.sock.shutdown(socket.SHUT_WR)
            self._drop(client)
            return
        if not client.writing:  # the rest when the socket can take it
            client.writing = True
            self.loop.add_writer(fd, lambda: self._write(client))

    def _drop(self, client: _Client) -> None:
        fd = client.sock.fileno()
        if fd < 0 or self._clients.get(fd) is not client:
            return
        del self._clients[fd]
        self.loop.remove_reader(fd)
        self.loop.remove_writer(fd)
        if client.timer is not None:
            client.timer.cancel()
        client.sock.close()

    def close(self) -> None:
        """Stop listening and close every client."""
        if self._closed:
            return
        self._closed = True
        for client in list(self._clients.values()):
            self._drop(client)
        with contextlib.suppress(Exception):
            self.loop.remove_reader(self.sock.fileno())
        self.sock.close()
