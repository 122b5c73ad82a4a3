"""The control socket: where ``otree status|start|stop|restart|logs|shutdown`` meet a running tree.

A Unix stream socket, mode 0600, speaking the JSON-lines protocol of
``otree._codec``. The server lives in the runtime's loop: accepting, reading
and writing never block, each client's unsent output is bounded (a client
that stops reading while replies pile up is dropped; lines it follows are
skipped and counted instead), and a bad request costs its sender an error
reply, never the server. The client is plain blocking code for the CLI.

Where the socket lives: ``--socket P``, else ``OTREE_SOCKET``, else a default
derived from the tree file (``default_socket``) in a private directory:
``$XDG_RUNTIME_DIR/otree/`` or ``/tmp/otree-<uid>/`` (mode 0700).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import socket
import stat
import struct
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol

from otree._codec import (
    MAX_REPLY,
    MAX_REQUEST,
    Decoder,
    ProtocolError,
    Request,
    encode,
    error_reply,
    ok_reply,
    parse_request,
)
from otree._logtail import LogView
from otree.core.actions import Reply
from otree.core.engine import NodeStatus
from otree.errors import ControlError
from otree.logs import ServiceOutput

#: unsent bytes a client may have queued before it is dropped (lines it follows are skipped)
MAX_OUTPUT = 8 * 1024 * 1024
MAX_CLIENTS = 256
#: ``logs`` without ``n``
DEFAULT_LINES = 50
_RECV = 64 * 1024
_SUN_PATH_MAX = 107  # sizeof(sockaddr_un.sun_path) - 1 on Linux


class NotRunning(ControlError):
    """No otree answers at the socket (missing, stale, or not reachable)."""


# --- where the socket lives ---------------------------------------------------


def socket_dir() -> str:
    """The per-user directory of default sockets (not created here)."""
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and os.path.isabs(xdg) and os.path.isdir(xdg):
        return os.path.join(xdg, "otree")
    tmp = os.environ.get("TMPDIR")
    if not (tmp and os.path.isabs(tmp) and os.path.isdir(tmp)):
        tmp = "/tmp"
    return os.path.join(tmp, f"otree-{os.getuid()}")


def tree_identity(tree: str) -> tuple[str, str]:
    """``(stem, key)`` for a TREE argument: a file is known by its real path.

    ``tree.toml`` and ``app/tree.py:tree`` name files (the attribute is not
    part of the key: one socket per file); ``pkg.mod:attr`` is known by the
    argument and the directory it was given in.
    """
    file = tree
    if not os.path.isfile(file) and ":" in tree:
        file = tree.rsplit(":", 1)[0]
    if os.path.isfile(file):
        real = os.path.realpath(file)
        return os.path.splitext(os.path.basename(real))[0], real
    return tree.split(":", 1)[0], f"{tree}@{os.path.realpath(os.getcwd())}"


def default_socket(tree: str) -> str:
    """The socket ``otree run TREE`` listens on when neither --socket nor OTREE_SOCKET is set."""
    stem, key = tree_identity(tree)
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in stem)[:24] or "tree"
    digest = hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()[:12]
    return os.path.join(socket_dir(), f"{stem}-{digest}.sock")


def ensure_private_dir(path: str) -> None:
    """Create ``path`` mode 0700 if needed; refuse one that others could write to."""
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
        st = os.lstat(path)
    except OSError as exc:
        raise ControlError(f"cannot create the socket directory {path}: {exc.strerror}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise ControlError(f"{path} is not a directory")
    if st.st_uid != os.getuid():
        raise ControlError(f"the socket directory {path} belongs to another user")
    if st.st_mode & 0o077:
        raise ControlError(
            f"the socket directory {path} is open to other users"
            f" (mode {stat.S_IMODE(st.st_mode):04o}, expected 0700)"
        )


@contextlib.contextmanager
def _dir_lock(directory: str) -> Iterator[None]:
    """Hold an exclusive lock on ``directory`` so two servers never both see a stale socket."""
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        yield
        return
    try:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _peer_pid(sock: socket.socket) -> int | None:
    try:
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except (OSError, AttributeError):
        return None
    pid: int = struct.unpack("3i", creds)[0]
    return pid or None


def _check_existing(path: str) -> None:
    """Remove a stale socket at ``path``; refuse a live one or anything that is not a socket."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise ControlError(
            f"cannot use {path} as the control socket: it exists and is not a socket"
        )
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(2.0)
        probe.connect(path)
    except ConnectionRefusedError:
        os.unlink(path)  # left by an otree that is gone
        return
    except OSError as exc:
        if exc.errno == errno.EAGAIN:  # backlog full: alive but swamped
            raise ControlError(f"another otree is already running on {path}") from None
        raise ControlError(f"cannot use {path} as the control socket: {exc.strerror}") from None
    else:
        pid = _peer_pid(probe)
        who = f"another otree (pid {pid})" if pid else "another otree"
        raise ControlError(
            f"{who} is already running on {path}; stop it first or pass --socket"
        ) from None
    finally:
        probe.close()


def bind_socket(path: str) -> socket.socket:
    """A listening, non-blocking Unix socket at ``path``, mode 0600."""
    path = os.path.abspath(path)
    if len(os.fsencode(path)) > _SUN_PATH_MAX:
        raise ControlError(
            f"the socket path {path} is too long ({len(os.fsencode(path))} bytes,"
            f" at most {_SUN_PATH_MAX}); pass a shorter --socket"
        )
    parent = os.path.dirname(path)
    if not os.path.isdir(parent):
        raise ControlError(f"cannot create the control socket {path}: no directory {parent}")
    with _dir_lock(parent):
        _check_existing(path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o177)
        try:
            sock.bind(path)
            os.chmod(path, 0o600)
            sock.listen(64)
        except OSError as exc:
            sock.close()
            raise ControlError(f"cannot create the control socket {path}: {exc.strerror}") from None
        finally:
            os.umask(old_umask)
    sock.setblocking(False)
    return sock


# --- the server ------------------------------------------------------------------


class LoopLike(Protocol):
    def add_reader(self, fd: int, callback: Callable[[], None]) -> None: ...
    def remove_reader(self, fd: int) -> None: ...
    def add_writer(self, fd: int, callback: Callable[[], None]) -> None: ...
    def remove_writer(self, fd: int) -> None: ...
    def call_later(self, delay: float, callback: Callable[[], None]) -> object: ...
    def clock(self) -> float: ...


class Backend(Protocol):
    """What the server needs from the runtime (``otree.runtime.Runtime`` is one)."""

    @property
    def outputs(self) -> Mapping[str, ServiceOutput]: ...
    def command(
        self, name: str, path: str = "", on_reply: Callable[[Reply], None] | None = None
    ) -> None: ...
    def status(self) -> list[NodeStatus]: ...


def status_payload(nodes: list[NodeStatus], now: float) -> dict[str, Any]:
    """``{"nodes": [...]}`` as ``otree status --json`` prints it (start order, root first)."""
    return {
        "nodes": [
            {
                "path": n.path,
                "kind": n.kind,
                "state": n.state,
                "pid": n.pid,
                "uptime": round(now - n.started_at, 3) if n.started_at is not None else None,
                "restarts": n.restarts,
                "last_exit": n.last_exit,
            }
            for n in nodes
        ]
    }


class _Conn:
    """One client: its socket, what it sent so far, what it has yet to receive."""

    __slots__ = ("decoder", "dropped", "fd", "follows", "out", "sock", "writing")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.decoder = Decoder(MAX_REQUEST)
        self.out = bytearray()
        self.writing = False
        self.follows: dict[int, Callable[[], None]] = {}  # request id -> unsubscribe
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
        data = encode(message)
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
            payload = status_payload(self.backend.status(), self.loop.clock())
            self._send(conn, ok_reply(rid, **payload))
        elif req.cmd == "info":
            self._send(conn, ok_reply(rid, **self.info, uptime=time.time() - self.info["started"]))
        elif req.cmd == "logs":
            self._logs(conn, req)
        else:  # start | stop | restart | shutdown: the engine decides and answers

            def answer(reply: Reply) -> None:
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
        if rid in conn.follows:
            conn.follows.pop(rid)()

        def on_line(path: str, line: str) -> None:
            self._send(conn, {"id": rid, "path": path, "line": line}, droppable=True)

        conn.follows[rid] = self.logs.follow(paths, on_line)
        self._send(conn, ok_reply(rid, following=True))

    # --- the end -----------------------------------------------------------------

    def close(self) -> None:
        """Stop: flush what can go at once, close every client, remove the socket file."""
        if self._closed:
            return
        self._closed = True
        for conn in list(self._conns.values()):
            if conn.out:
                with contextlib.suppress(OSError):
                    conn.sock.send(conn.out)
            self._drop(conn)
        with contextlib.suppress(Exception):
            self.loop.remove_reader(self.sock.fileno())
        self.sock.close()
        try:
            if self._ino is not None and os.stat(self.path).st_ino == self._ino:
                os.unlink(self.path)
        except OSError:
            pass


# --- the client -----------------------------------------------------------------


def connect(path: str, timeout: float | None = None) -> socket.socket:
    """A connected socket, or ``NotRunning`` saying why not."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(path)
    except FileNotFoundError:
        sock.close()
        raise NotRunning(f"no otree is running at {path} (no such socket)") from None
    except ConnectionRefusedError:
        sock.close()
        raise NotRunning(f"no otree is running at {path} (stale socket)") from None
    except OSError as exc:
        sock.close()
        raise NotRunning(f"cannot connect to {path}: {exc.strerror or exc}") from None
    return sock


class Client:
    """A blocking client: ``call()`` for one reply, ``stream()`` for ``logs``."""

    def __init__(self, path: str, timeout: float | None = None) -> None:
        self.path = path
        self.sock = connect(path, timeout)
        self.sock.settimeout(timeout)
        self._decoder = Decoder(MAX_REPLY)
        self._next_id = 1
        self._eof = False

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def send(self, cmd: str, **fields: Any) -> int:
        """Send one request; return its id."""
        rid = self._next_id
        self._next_id += 1
        message = {"id": rid, "cmd": cmd, **{k: v for k, v in fields.items() if v is not None}}
        try:
            self.sock.sendall(encode(message))
        except OSError as exc:
            raise NotRunning(f"lost the connection to {self.path}: {exc.strerror or exc}") from None
        return rid

    def messages(self) -> Iterator[dict[str, Any]]:
        """Every message from the server until it closes the connection."""
        while not self._eof:
            try:
                data = self.sock.recv(_RECV)
            except TimeoutError:
                raise ControlError(f"no answer from {self.path} in time") from None
            except OSError as exc:
                raise NotRunning(f"lost the connection to {self.path}: {exc.strerror}") from None
            if not data:
                self._eof = True
                batch = self._decoder.close()
            else:
                batch = self._decoder.feed(data)
            for message in batch:
                if isinstance(message, ProtocolError):
                    raise ControlError(f"bad message from the server: {message.reason}")
                yield message

    def stream(self, cmd: str, **fields: Any) -> Iterator[dict[str, Any]]:
        """Send a request; yield its messages, the final reply (with ``ok``) last.

        A refusal raises ``ControlError(reason)``. Messages after the final
        reply (``logs`` with ``follow``) keep coming until the server closes.
        """
        rid = self.send(cmd, **fields)
        answered = False
        for message in self.messages():
            if message.get("id") not in (rid, None):
                continue
            if "ok" in message:
                if not message["ok"]:
                    raise ControlError(str(message.get("error") or "refused"))
                answered = True
            yield message
            if answered and not message.get("following") and "ok" in message:
                return
        if not answered:
            raise NotRunning(f"the tree at {self.path} stopped before answering")

    def call(self, cmd: str, **fields: Any) -> dict[str, Any]:
        """Send a request and return its final reply (``ControlError`` if refused)."""
        for message in self.stream(cmd, **fields):
            if "ok" in message:
                return message
        raise NotRunning(f"the tree at {self.path} stopped before answering")  # pragma: no cover


def find_running(cwd: str, directory: str | None = None) -> list[dict[str, Any]]:
    """The ``info`` of each live tree in ``directory`` (default: ``socket_dir()``) that was
    run in ``cwd`` or from a tree file in ``cwd``."""
    directory = directory or socket_dir()
    try:
        names = sorted(os.listdir(directory))
    except OSError:
        return []
    cwd = os.path.realpath(cwd)
    found = []
    for name in names:
        if not name.endswith(".sock"):
            continue
        path = os.path.join(directory, name)
        try:
            with Client(path, timeout=2.0) as client:
                info = client.call("info")
        except (ControlError, OSError):
            continue
        tree_file = info.get("tree_file")
        here = os.path.realpath(str(info.get("cwd", "")))
        if here == cwd or (
            isinstance(tree_file, str) and os.path.dirname(os.path.realpath(tree_file)) == cwd
        ):
            info["socket"] = path
            found.append(info)
    return found


def run_socket(tree: str, socket_arg: str | None) -> str:
    """The socket ``otree run TREE`` listens on: --socket, OTREE_SOCKET, else the default
    for TREE (whose private directory is created here)."""
    explicit = socket_arg or os.environ.get("OTREE_SOCKET")
    if explicit:
        return explicit
    path = default_socket(tree)
    ensure_private_dir(os.path.dirname(path))
    return path


def tree_info(tree: str | None) -> dict[str, Any]:
    """What ``info`` tells about the tree being run: the TREE argument and its file."""
    if tree is None:
        return {"tree": None, "tree_file": None}
    file = tree if os.path.isfile(tree) else tree.rsplit(":", 1)[0]
    return {"tree": tree, "tree_file": os.path.realpath(file) if os.path.isfile(file) else None}
