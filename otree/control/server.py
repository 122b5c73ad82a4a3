"""The control socket: where ``otree status|start|stop|restart|logs|shutdown|reload`` meet a tree.

A Unix stream socket, mode 0600, speaking the JSON-lines protocol of
``otree.control.protocol``. The server lives in the runtime's loop: accepting, reading
and writing never block, and no client can stall it: each gets a bounded share of
every loop turn, its unsent output is bounded, it may follow logs once
(``otree.control.conn`` holds a connection's state and these limits), and a bad
request costs its sender an error reply, never the server. The client
(``otree.control.client``) is plain blocking code for the CLI; where the socket lives
is ``otree.control.sockets``'s business.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

import attrs

from otree.control.client import Client, NotRunning, connect, find_running
from otree.control.conn import MAX_OUTPUT, TURN_REQUESTS, Conn, LoopLike, accept_waiting
from otree.control.events import EventFollows
from otree.control.logview import LogView
from otree.control.nodeinfo import node_reply
from otree.control.protocol import (
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
from otree.control.usage import Costs
from otree.core.actions import Reply
from otree.core.engine import NodeStatus
from otree.core.reprs import plain_repr
from otree.core.spec import Service, Supervisor

if TYPE_CHECKING:
    from otree.control.events import EventRing
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

MAX_CLIENTS = 256
#: ``logs`` without ``n``
DEFAULT_LINES = 50


class Backend(Protocol):
    """What the server needs from the runtime (``otree.runtime.driver.Runtime`` is one)."""

    @property
    def outputs(self) -> Mapping[str, ServiceOutput]: ...
    def command(
        self,
        name: str,
        path: str = "",
        on_reply: Callable[[Reply], None] | None = None,
        count: int | None = None,
    ) -> None: ...
    def status(self) -> list[NodeStatus]: ...
    def dropped(self) -> dict[str, int]: ...
    def liveness(self) -> dict[str, dict[str, Any]]: ...
    def usage(
        self, liveness: Mapping[str, Mapping[str, Any]] | None = None
    ) -> dict[str, tuple[int, float, int]]: ...
    def node_info(self, path: str) -> tuple[Service | Supervisor, list[float], float] | None: ...
    def signal_service(
        self, path: str, name: str, group: bool = False
    ) -> tuple[int, str | None]: ...


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
    (``{"failures": n}``; None without a health check), and, in its cgroup, its number
    of processes (``procs``), ``cpu_seconds`` and ``memory`` (bytes, or None)."""
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
        if n.replicas is not None:
            row["replicas"] = n.replicas
        if outputs is not None and n.kind == "service":
            out = outputs.get(n.path)
            row["dropped"] = out.dropped if out is not None else 0
        if liveness is not None and n.kind == "service":
            live = liveness.get(n.path, {})
            row["status_text"] = live.get("status_text")
            row["health"] = live.get("health")
            for key in ("procs", "cpu_seconds", "memory"):  # a service in its cgroup
                if key in live:
                    row[key] = live[key]
        if dropped is not None and n.path == "":
            for sink, count in dropped.items():
                row[f"{sink}_dropped"] = count
        rows.append(row)
    return {"nodes": rows}


@plain_repr
@attrs.frozen(repr=False)
class HandedClient:
    """A client connection handed over across a re-exec (``ControlServer.adopt``)."""

    fd: int  #: an inheritable duplicate of its connection
    follows: tuple[tuple[int, str | None], ...]  #: the logs it follows: (request id, path)
    out: bytes  #: what it had yet to receive
    inbound: bytes  #: what it sent that was not handled yet (the start of a request, or more)
    #: it follows ``otree events``: (request id, the number of the last event line it got)
    events: tuple[int, int] | None = None


class ControlServer(EventFollows):
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
        self._conns: dict[int, Conn] = {}
        #: clients waiting for the answer to ``reload`` (given by the new image after a re-exec)
        self._reloads: list[tuple[Conn, int]] = []
        #: ``reload_plan``'s answer: the plan, or why a reload would be refused (launch sets it)
        self.reload_plan: Callable[[], dict[str, Any] | str] | None = None
        self._closed = False
        #: what ``metrics`` answers (``otree.control.metrics.Metrics.text``, set by launch)
        self.metrics: Callable[[], str] | None = None
        #: what ``events`` answers from (``otree.control.events.EventRing``, set by launch)
        self.events: EventRing | None = None
        self.costs = Costs()  #: the CPU readings of ``otree status``' CPU%
        loop.add_reader(self.sock.fileno(), self._accept)

    @property
    def clients(self) -> int:
        return len(self._conns)

    # --- connections --------------------------------------------------------

    def _accept(self) -> None:
        refusal = encode(error_reply(None, "too many control clients"))
        waiting = accept_waiting(
            self.sock, self._pause_accepting, lambda: len(self._conns) >= self.max_clients, refusal
        )
        for sock in waiting:
            conn = Conn(sock, self.loop, self._drop, self.max_output)
            self._conns[conn.fd] = conn
            conn.watch(lambda c=conn: self._read(c))  # type: ignore[misc]

    def _pause_accepting(self, delay: float = 0.5) -> None:
        fd = self.sock.fileno()
        self.loop.remove_reader(fd)

        def resume() -> None:
            if not self._closed:
                self.loop.add_reader(fd, self._accept)

        self.loop.call_later(delay, resume)

    def _alive(self, conn: Conn) -> bool:
        return self._conns.get(conn.fd) is conn

    def _read(self, conn: Conn) -> None:
        data = conn.read()
        if data is None:
            return
        if not data:
            self._drop(conn)
            return
        conn.inbound += data
        self._serve(conn)

    def _serve(self, conn: Conn) -> None:
        """Handle the next ``TURN_REQUESTS`` requests of ``conn``; if more wait, stop reading
        its socket and come back at the next loop turn (other clients go first)."""
        conn.scheduled = False
        if not self._alive(conn) or conn.closing:
            return
        self._received(conn, conn.take(TURN_REQUESTS))
        if not self._alive(conn) or conn.closing:
            return
        if conn.inbound:
            conn.unwatch()
            if not conn.scheduled:
                conn.scheduled = True
                self.loop.call_later(0, lambda: self._serve(conn))
        else:
            conn.watch(lambda: self._read(conn))

    def _received(self, conn: Conn, data: bytes) -> None:
        for message in conn.decoder.feed(data):
            if not self._alive(conn) or conn.closing:
                return  # dropped or cut off while handling an earlier message
            if isinstance(message, ProtocolError):
                self._send(conn, message.reply())
                continue
            request = parse_request(message)
            if isinstance(request, ProtocolError):
                self._send(conn, request.reply())
            else:
                self._handle(conn, request)

    def _send(self, conn: Conn, message: dict[str, Any], *, droppable: bool = False) -> None:
        """Queue ``message``; a follow line is skipped (and counted) while the client lags,
        and a client that asks for more while it does not read its replies is cut off."""
        if not self._alive(conn) or conn.closing:
            return
        if droppable and len(conn.out) >= self.max_output:
            key = (message["id"], message.get("path", ""))
            conn.dropped[key] = conn.dropped.get(key, 0) + 1
            return
        if conn.dropped and droppable:
            conn.flush_dropped()
        if not conn.send(encode(message), droppable=droppable):
            unread = len(conn.out)
            self._cut(
                conn, f"it sends requests faster than it reads its replies ({unread} B unread)"
            )

    def _cut(self, conn: Conn, reason: str) -> None:
        """Disconnect ``conn`` with ``reason`` as the last line it gets."""
        self._unfollow(conn)
        conn.cut(encode(error_reply(None, f"disconnected: {reason}")))

    def _unfollow(self, conn: Conn) -> None:
        for unsubscribe in conn.follows.values():
            unsubscribe()
        conn.follows.clear()
        conn.followed.clear()
        conn.event_follow = None

    def _drop(self, conn: Conn) -> None:
        if not self._alive(conn):
            return  # gone already (its fd may be another client's by now)
        del self._conns[conn.fd]
        self._unfollow(conn)
        conn.close()

    # --- requests -------------------------------------------------------------

    def _handle(self, conn: Conn, req: Request) -> None:
        rid = req.id
        if req.cmd == "status":
            backend = self.backend
            live = backend.liveness()
            payload = status_payload(
                backend.status(), self.loop.clock(), backend.outputs, backend.dropped(), live
            )
            # the cgroups' members, read once for their counts and their usage
            self.costs.fill(payload["nodes"], backend.usage(live), self.loop.clock())
            if req.path is not None:
                self._send(conn, node_reply(rid, req.path, payload["nodes"], backend, self.events))
            else:
                self._send(conn, ok_reply(rid, **payload))
        elif req.cmd == "info":
            self._send(conn, ok_reply(rid, **self.info, uptime=time.time() - self.info["started"]))
        elif req.cmd == "logs":
            self._logs(conn, req)
        elif req.cmd == "events":
            self._events(conn, req)
        elif req.cmd == "reload_plan":
            plan = self.reload_plan() if self.reload_plan is not None else None
            if isinstance(plan, dict):
                self._send(conn, ok_reply(rid, **plan))
            else:
                self._send(conn, error_reply(rid, plan or "this tree cannot reload"))
        elif req.cmd in ("metrics", "signal"):
            self._send(conn, self._observe(req))
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

            if req.cmd == "scale":  # its count goes with it
                self.backend.command(req.cmd, req.path or "", answer, count=req.n)
            else:
                self.backend.command(req.cmd, req.path or "", answer)

    def _observe(self, req: Request) -> dict[str, Any]:
        """The reply to ``metrics`` (the exposition as ``text``) or ``signal``."""
        if req.cmd == "metrics":
            if self.metrics is None:
                return error_reply(req.id, "this tree serves no metrics")
            return ok_reply(req.id, text=self.metrics())
        name = req.signal or ""
        pid, error = self.backend.signal_service(req.path or "", name, req.group)
        if error is not None:
            return error_reply(req.id, error)
        return ok_reply(req.id, pid=pid, signal=name.upper().removeprefix("SIG"), group=req.group)

    def _logs(self, conn: Conn, req: Request) -> None:
        rid = req.id
        if req.follow and conn.follows:
            held = ", ".join(str(r) for r in conn.follows)
            message = (
                f"this connection follows logs already (request {held}): one follow per connection"
            )
            self._send(conn, error_reply(rid, message))
            return
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

    def _follow(self, conn: Conn, rid: int, asked: str | None, paths: list[str]) -> None:
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

    def rebind(self) -> bool:
        """Bind the socket again if its file was deleted or replaced by something else
        (``SIGUSR1``): clients reach the tree again. True if it was bound anew."""
        if self._closed:
            return False
        try:
            if os.lstat(self.path).st_ino == self._ino:
                return False  # still ours
        except OSError:
            pass
        new = bind_socket(self.path)  # a file in the way that is not a socket: refused
        self.loop.remove_reader(self.sock.fileno())
        self.sock.close()  # clients connected already are served on
        self.sock = new
        self._ino = os.stat(self.path).st_ino
        self.loop.add_reader(new.fileno(), self._accept)
        return True

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
            if conn.pending or conn.closing:  # an answer would be lost, or it is cut off
                continue
            if conn.dropped:
                conn.flush_dropped()
            fd = os.dup(conn.fd)
            os.set_inheritable(fd, True)
            follows = tuple(conn.followed.items())
            inbound = conn.decoder.buffered + bytes(conn.inbound)  # requests not handled yet
            events = conn.event_follow
            ev_follow = (events[0], events[1]) if events is not None else None
            out.append(HandedClient(fd, follows, bytes(conn.out), inbound, ev_follow))
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
        conn = Conn(sock, self.loop, self._drop, self.max_output)
        self._conns[conn.fd] = conn
        conn.watch(lambda: self._read(conn))
        if client.out:
            conn.send(client.out, droppable=True)
        for rid, asked in client.follows:
            try:
                self._follow(conn, rid, asked, self.logs.select(asked))
            except KeyError:
                self._send(conn, error_reply(rid, f"{asked!r} was removed by a reload"))
        if client.events is not None and self.events is not None:
            self._follow_events(conn, *client.events)  # every line after its last one
        if (client.follows or client.events is not None) and not conn.follows:
            conn.close_after_sending()
        elif client.inbound:
            conn.inbound += client.inbound
            self._serve(conn)

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
