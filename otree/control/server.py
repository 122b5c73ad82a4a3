"""The control socket: where ``otree status|start|stop|restart|logs|shutdown|reload`` meet a tree.

A Unix stream socket, mode 0600, speaking the JSON-lines protocol of
``otree.control.protocol``. The server lives in the runtime's loop: accepting, reading
and writing never block, each client's unsent output is bounded (a client
that stops reading while replies pile up is dropped; lines it follows are
skipped and counted instead), and a bad request costs its sender an error
reply, never the server. The client (``otree.control.client``) is plain blocking
code for the CLI; where the socket lives is ``otree.control.sockets``'s business.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

import attrs

from otree.control.client import Client, NotRunning, connect, find_running
from otree.control.logview import LogView
from otree.control.protocol import (
    MAX_REQUEST,
    Decoder,
    ProtocolError,
    Request,
    encode,
    error_reply,
    ok_reply,
    parse_request,
)
from otree.control.sockets import (
    bind_socket,
    default_socket,
    ensure_private_dir,
    run_socket,
    socket_dir,
    tree_identity,
    tree_info,
)
from otree.core.actions import Reply
from otree.core.engine import NodeStatus

if TYPE_CHECKING:
    from otree.runtime.output import ServiceOutput

__all__ = [
    "Backend",
    "Client",
    "ControlServer",
    "HandedClient",
    "NotRunning",
    "bind_socket",
    "connect",
    "default_socket",
    "ensure_private_dir",
    "find_running",
    "run_socket",
    "socket_dir",
    "status_payload",
    "tree_identity",
    "tree_info",
]

#: unsent bytes a client may have queued before it is dropped (lines it follows are skipped)
MAX_OUTPUT = 8 * 1024 * 1024
MAX_CLIENTS = 256
#: ``logs`` without ``n``
DEFAULT_LINES = 50
_RECV = 64 * 1024


class LoopLike(Protocol):
    def add_reader(self, fd: int, callback: Callable[[], None]) -> None: ...
    def remove_reader(self, fd: int) -> None: ...
    def add_writer(self, fd: int, callback: Callable[[], None]) -> None: ...
    def remove_writer(self, fd: int) -> None: ...
    def call_later(self, delay: float, callback: Callable[[], None]) -> object: ...
    def clock(self) -> float: ...


class Backend(Protocol):
    """What the server needs from the runtime (``otree.runtime.driver.Runtime`` is one)."""

    @property
    def outputs(self) -> Mapping[str, ServiceOutput]: ...
    def command(
        self, name: str, path: str = "", on_reply: Callable[[Reply], None] | None = None
    ) -> None: ...
    def status(self) -> list[NodeStatus]: ...
    def dropped(self) -> dict[str, int]: ...
    def liveness(self) -> dict[str, dict[str, Any]]: ...


def status_payload(
    nodes: list[NodeStatus],
    now: float,
    outputs: Mapping[str, ServiceOutput] | None = None,
    dropped: Mapping[str, int] | None = None,
    liveness: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """``{"nodes": [...]}`` as ``otree status --json`` prints it (start order, root first).

    With ``outputs``, a service says how many lines its log file missed (``dropped``);
    with ``dropped`` (``{"console": N, "events": N}``), the root says it for the tree's
    console and event log (``console_dropped``, ``events_dropped``). With ``liveness``
    (``{path: {"status_text", "health"}}`` of the running services), a service says
    its latest sd_notify ``STATUS=`` text and its health check's failures in a row
    (``{"failures": n}``; None without a health check)."""
    rows = []
    for n in nodes:
        row: dict[str, Any] = {
            "path": n.path,
            "kind": n.kind,
            "state": n.state,
            "pid": n.pid,
            "uptime": round(now - n.started_at, 3) if n.started_at is not None else None,
            "restarts": n.restarts,
            "last_exit": n.last_exit,
        }
        if outputs is not None and n.kind == "service":
            out = outputs.get(n.path)
            row["dropped"] = out.dropped if out is not None else 0
        if liveness is not None and n.kind == "service":
            live = liveness.get(n.path, {})
            row["status_text"] = live.get("status_text")
            row["health"] = live.get("health")
        if dropped is not None and n.path == "":
            for sink, count in dropped.items():
                row[f"{sink}_dropped"] = count
        rows.append(row)
    return {"nodes": rows}


@attrs.frozen
class HandedClient:
    """A client connection handed over across a re-exec (``ControlServer.adopt``)."""

    fd: int  #: an inheritable duplicate of its connection
    follows: tuple[tuple[int, str | None], ...]  #: the logs it follows: (request id, path)
    out: bytes  #: what it had yet to receive
    inbound: bytes  #: the start of a request it had not finished sending


class _Conn:
    """One client: its socket, what it sent so far, what it has yet to receive."""

    __slots__ = (
        "closing",
        "decoder",
        "dropped",
        "fd",
        "followed",
        "follows",
        "out",
        "pending",
        "sock",
        "writing",
    )

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.decoder = Decoder(MAX_REQUEST)
        self.out = bytearray()
        self.writing = False
        self.follows: dict[int, Callable[[], None]] = {}  # request id -> unsubscribe
        self.followed: dict[int, str | None] = {}  # request id -> the path it asked for
        self.pending = 0  # commands sent to the runtime, not answered yet
        self.closing = False  # closed once ``out`` is sent
        self.dropped: dict[tuple[int, str], int] = {}  # (request id, path) -> lines skipped


class ControlServer:
    """Serve control requests on ``path`` from ``loop``, acting through ``backend``.

    ``info`` is what ``info`` requests answer (the tree's file, the run's
    directory: how clients find the tree of their directory). ``sock`` adopts
    a socket that is already listening (inherited across a re-exec).
    """

    def __init__(
        self,
        loop: LoopLike,
        backend: Backend,
        path: str,
        *,
        info: Mapping[str, Any] | None = None,
        sock: socket.socket | None = None,
        max_output: int = MAX_OUTPUT,
        max_clients: int = MAX_CLIENTS,
    ) -> None:
        self.loop = loop
        self.backend = backend
        self.path = os.path.abspath(path)
        self.max_output = max_output
        self.max_clients = max_clients
        self.sock = sock if sock is not None else bind_socket(self.path)
        self.sock.setblocking(False)
        try:
            self._ino: int | None = os.stat(self.path).st_ino
        except OSError:
            self._ino = None
        self.info: dict[str, Any] = {
            "pid": os.getpid(),
            "socket": self.path,
            "cwd": os.getcwd(),
            "started": time.time(),
            **(info or {}),
        }
        self.logs = LogView(backend.outputs)
        self._conns: dict[int, _Conn] = {}
        #: clients waiting for the answer to ``reload`` (given by the new image after a re-exec)
        self._reloads: list[tuple[_Conn, int]] = []
        self._closed = False
        loop.add_reader(self.sock.fileno(), self._accept)

    @property
    def clients(self) -> int:
        return len(self._conns)

    # --- connections --------------------------------------------------------

    def _accept(self) -> None:
        for _ in range(32):
            try:
                sock, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in (errno.ECONNABORTED, errno.EPROTO):
                    continue  # that client gave up already
                # out of fds or memory: stop accepting for a moment rather than spin;
                # the clients wait in the backlog
                self._pause_accepting()
                return
            sock.setblocking(False)
            conn = _Conn(sock)
            if len(self._conns) >= self.max_clients:
                with contextlib.suppress(OSError):
                    sock.send(encode(error_reply(None, "too many control clients")))
                sock.close()
                continue
            self._conns[conn.fd] = conn
            self.loop.add_reader(conn.fd, lambda c=conn: self._read(c))  # type: ignore[misc]

    def _pause_accepting(self, delay: float = 0.5) -> None:
        fd = self.sock.fileno()
        self.loop.remove_reader(fd)

        def resume() -> None:
            if not self._closed:
                self.loop.add_reader(fd, self._accept)

        self.loop.call_later(delay, resume)

    def _read(self, conn: _Conn) -> None:
        try:
            data = conn.sock.recv(_RECV)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._drop(conn)
            return
        self._received(conn, data)

    def _received(self, conn: _Conn, data: bytes) -> None:
        for message in conn.decoder.feed(data):
            if self._conns.get(conn.fd) is not conn:
                return  # dropped while handling an earlier message
            if isinstance(message, ProtocolError):
                self._send(conn, message.reply())
                continue
            request = parse_request(message)
            if isinstance(request, ProtocolError):
                self._send(conn, request.reply())
            else:
                self._handle(conn, request)

    def _send(self, conn: _Conn, message: dict[str, Any], *, droppable: bool = False) -> None:
        """Queue ``message``; a follow line is skipped (and counted) while the client lags."""
        if self._conns.get(conn.fd) is not conn:
            return
        if droppable and len(conn.out) >= self.max_output:
            key = (message["id"], message["path"])
            conn.dropped[key] = conn.dropped.get(key, 0) + 1
            return
        if conn.dropped and droppable:
            self._flush_dropped(conn)
        self._send_raw(conn, encode(message), droppable=droppable)

    def _send_raw(self, conn: _Conn, data: bytes, *, droppable: bool = False) -> None:
        if not conn.out:
            try:
                sent = conn.sock.send(data)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                self._drop(conn)
                return
            if sent == len(data):
                return
            data = data[sent:]
        conn.out += data
        if len(conn.out) > self.max_output + MAX_REQUEST and not droppable:
            self._drop(conn)  # a client that does not read its replies
            return
        if not conn.writing:
            conn.writing = True
            self.loop.add_writer(conn.fd, lambda: self._write(conn))

    def _flush_dropped(self, conn: _Conn) -> None:
        dropped, conn.dropped = conn.dropped, {}
        for (rid, path), count in dropped.items():
            conn.out += encode({"id": rid, "path": path, "dropped": count})

    def _write(self, conn: _Conn) -> None:
        try:
            sent = conn.sock.send(conn.out)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._drop(conn)
            return
        del conn.out[:sent]
        if conn.dropped and len(conn.out) < self.max_output // 2:
            self._flush_dropped(conn)
        if not conn.out:
            conn.writing = False
            self.loop.remove_writer(conn.fd)
            if conn.closing:
                self._drop(conn)

    def _close_after_sending(self, conn: _Conn) -> None:
        if conn.out:
            conn.closing = True
        else:
            self._drop(conn)

    def _drop(self, conn: _Conn) -> None:
        if self._conns.pop(conn.fd, None) is not conn:
            return
        for unsubscribe in conn.follows.values():
            unsubscribe()
        conn.follows.clear()
        with contextlib.suppress(Exception):  # the loop may already be closed
            self.loop.remove_reader(conn.fd)
            self.loop.remove_writer(conn.fd)
        conn.sock.close()

    # --- requests -------------------------------------------------------------

    def _handle(self, conn: _Conn, req: Request) -> None:
        rid = req.id
        if req.cmd == "status":
            backend = self.backend
            payload = status_payload(
                backend.status(),
                self.loop.clock(),
                backend.outputs,
                backend.dropped(),
                backend.liveness(),
            )
            self._send(conn, ok_reply(rid, **payload))
        elif req.cmd == "info":
            self._send(conn, ok_reply(rid, **self.info, uptime=time.time() - self.info["started"]))
        elif req.cmd == "logs":
            self._logs(conn, req)
        else:  # start | stop | restart | shutdown | reload: the runtime decides and answers
            waiting = (conn, rid)
            if req.cmd == "reload":
                self._reloads.append(waiting)
            conn.pending += 1

            def answer(reply: Reply) -> None:
                conn.pending -= 1
                if waiting in self._reloads:
                    self._reloads.remove(waiting)
                if reply.ok:
                    self._send(conn, ok_reply(rid))
                else:
                    self._send(conn, error_reply(rid, reply.error or "refused"))

            self.backend.command(req.cmd, req.path or "", answer)

    def _logs(self, conn: _Conn, req: Request) -> None:
        rid = req.id
        try:
            paths = self.logs.select(req.path)
        except KeyError as exc:
            self._send(conn, error_reply(rid, str(exc.args[0])))
            return
        n = req.n if req.n is not None else DEFAULT_LINES
        for path, line in self.logs.recent(paths, n):
            self._send(conn, {"id": rid, "path": path, "line": line})
        if not req.follow:
            self._send(conn, ok_reply(rid))
            return
        self._follow(conn, rid, req.path, paths)
        self._send(conn, ok_reply(rid, following=True))

    def _follow(self, conn: _Conn, rid: int, asked: str | None, paths: list[str]) -> None:
        if rid in conn.follows:
            conn.follows.pop(rid)()

        def on_line(path: str, line: str) -> None:
            self._send(conn, {"id": rid, "path": path, "line": line}, droppable=True)

        conn.follows[rid] = self.logs.follow(paths, on_line)
        conn.followed[rid] = asked

    # --- the end -----------------------------------------------------------------

    def close(self) -> None:
        """Stop: flush what can go at once, close every client, remove the socket file."""
        if self._stop_serving():
            self.sock.close()
            try:
                if self._ino is not None and os.stat(self.path).st_ino == self._ino:
                    os.unlink(self.path)
            except OSError:
                pass

    def handoff(self) -> int:
        """Stop serving but keep the socket listening, for a re-exec: close every client
        and return the listening fd, made inheritable. The new image passes
        ``sock=socket.socket(fileno=fd)`` to a new ``ControlServer`` on the same path;
        clients meanwhile wait in the backlog and never see the socket missing."""
        self._stop_serving()
        self.sock.set_inheritable(True)
        return self.sock.detach()

    def resume(self, fd: int) -> None:
        """Serve again on the listening socket ``handoff()`` returned: the re-exec failed
        and this image carries on (the clients it closed reconnect)."""
        self.sock = socket.socket(fileno=fd)
        self.sock.set_inheritable(False)
        self.sock.setblocking(False)
        self.logs = LogView(self.backend.outputs)
        self._closed = False
        self.loop.add_reader(self.sock.fileno(), self._accept)

    def handoff_waiting(self) -> list[tuple[int, int]]:
        """For a re-exec, before ``handoff()``: ``(fd, request id)`` of each client waiting for
        the answer to ``reload``, as an inheritable duplicate of its connection. The new image
        answers on it (``otree.reload.reloader``) once the reloaded tree is ready."""
        out = []
        for conn, rid in self._reloads:
            if self._conns.get(conn.fd) is conn:
                fd = os.dup(conn.fd)
                os.set_inheritable(fd, True)
                out.append((fd, rid))
        self._reloads.clear()
        return out

    def handoff_clients(self) -> list[HandedClient]:
        """For a re-exec, before ``handoff()``: every client with no command in flight (one
        following logs, one between two requests, one that just connected), each as an
        inheritable duplicate of its connection with what it had yet to receive and the
        start of a request it had not finished sending. The new image serves them on
        (``adopt``): they never notice the re-exec, and a follower misses no line."""
        out = []
        for conn in list(self._conns.values()):
            if conn.pending:  # its answer would be lost: it is closed instead
                continue
            if conn.dropped:
                self._flush_dropped(conn)
            fd = os.dup(conn.fd)
            os.set_inheritable(fd, True)
            follows = tuple(conn.followed.items())
            out.append(HandedClient(fd, follows, bytes(conn.out), conn.decoder.buffered))
            conn.out.clear()
            self._drop(conn)
        return out

    def adopt(self, client: HandedClient) -> None:
        """Serve a client handed over by the old image (see ``handoff_clients``). A
        follower whose every followed path went away with the reload is told so, and
        closed."""
        sock = socket.socket(fileno=client.fd)
        sock.set_inheritable(False)
        sock.setblocking(False)
        conn = _Conn(sock)
        self._conns[conn.fd] = conn
        self.loop.add_reader(conn.fd, lambda: self._read(conn))
        if client.out:
            self._send_raw(conn, client.out, droppable=True)
        for rid, asked in client.follows:
            try:
                self._follow(conn, rid, asked, self.logs.select(asked))
            except KeyError:
                self._send(conn, error_reply(rid, f"{asked!r} was removed by a reload"))
        if client.follows and not conn.follows:
            self._close_after_sending(conn)
        elif client.inbound:
            self._received(conn, client.inbound)

    def _stop_serving(self) -> bool:
        if self._closed:
            return False
        self._closed = True
        for conn in list(self._conns.values()):
            if conn.out:
                with contextlib.suppress(OSError):
                    conn.sock.send(conn.out)
            self._drop(conn)
        with contextlib.suppress(Exception):
            self.loop.remove_reader(self.sock.fileno())
        return True
