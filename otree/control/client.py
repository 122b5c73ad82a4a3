"""The blocking client of the control socket, for the CLI (``otree.cli.control``)."""

from __future__ import annotations

# the C module under ``socket``: socket.py makes enums of every constant and imports
# selectors and array (about 5 ms of a client command, which needs none of them)
import _socket
import os

from otree.control.address import socket_dir
from otree.control.protocol import MAX_REPLY, Decoder, ProtocolError, encode_request
from otree.errors import ControlError

TYPE_CHECKING = False  # typing is not imported: the client commands start without it
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

_RECV = 64 * 1024


class NotRunning(ControlError):
    """No otree answers at the socket (missing, stale, or not reachable)."""


def connect(path: str, timeout: float | None = None) -> _socket.socket:
    """A connected socket, or ``NotRunning`` saying why not."""
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
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
            self.sock.sendall(encode_request(message))
        except OSError as exc:
            raise NotRunning(f"lost the connection to {self.path}: {exc.strerror or exc}") from None
        return rid

    def messages(self) -> Iterator[dict[str, Any]]:
        """Every message from the server until it closes the connection."""
        while not self._eof:
            try:
                data = self.sock.recv(_RECV)
            except TimeoutError:
                raise NotRunning(
                    f"no answer from {self.path} within {self.sock.gettimeout():g}s"
                ) from None
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
                if message.get("following"):  # lines come when they come: no time limit
                    self.sock.settimeout(None)
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


class Untrusted(NotRunning):
    """The default socket directory is not one only this user can write to."""


def check_socket_dir(directory: str) -> None:
    """Refuse (``Untrusted``) a default socket directory that is not this user's own,
    mode 0700: a socket in it could be anyone's fake server. A missing one is fine."""
    try:
        st = os.lstat(directory)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise NotRunning(f"cannot read the socket directory {directory}: {exc.strerror}") from None
    import stat

    mode = stat.S_IMODE(st.st_mode)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or mode & 0o077:
        raise Untrusted(
            f"not trusting the socket directory {directory}: it must be a directory of your"
            f" own with mode 0700 (owner uid {st.st_uid}, mode {mode:04o}); pass --socket P"
        )


def find_running(cwd: str, directory: str | None = None) -> list[dict[str, Any]]:
    """The ``info`` of each live tree in ``directory`` (default: ``socket_dir()``) that was
    run in ``cwd`` or from a tree file in ``cwd``."""
    directory = directory or socket_dir()
    check_socket_dir(directory)
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
