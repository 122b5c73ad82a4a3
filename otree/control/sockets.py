"""Binding the control socket safely, and the lock of the tree it serves.

``otree run TREE`` listens on ``--socket P``, else ``$OTREE_SOCKET``, else a
default derived from the tree file (``otree.control.address``) in a private
directory: ``$XDG_RUNTIME_DIR/otree/`` or ``/tmp/otree-<uid>/`` (mode 0700).
The socket is created mode 0600; a stale one (nothing answers) is replaced,
a live one is refused, and anything that is not a socket is left alone.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
import stat
import struct
from collections.abc import Iterator

from otree.control.address import default_socket, socket_dir, tree_identity
from otree.errors import ControlError

__all__ = [  # the addresses are otree.control.address's (the client needs no more)
    "bind_socket",
    "default_socket",
    "ensure_private_dir",
    "lock_path",
    "lock_tree",
    "run_socket",
    "socket_dir",
    "tree_identity",
    "tree_info",
    "unlock_tree",
]

TYPE_CHECKING = False  # typing is not imported: the client commands start without it
if TYPE_CHECKING:
    from typing import Any

_SUN_PATH_MAX = 107  # sizeof(sockaddr_un.sun_path) - 1 on Linux


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
        # bound and listening under a private name first, then renamed into place: a
        # client never finds a socket file that refuses connections
        staging = os.path.join(parent, f".otree-{os.getpid()}.new")
        try:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(staging)
            sock.bind(staging)
            os.chmod(staging, 0o600)
            sock.listen(64)
            os.rename(staging, path)
        except OSError as exc:
            sock.close()
            with contextlib.suppress(OSError):
                os.unlink(staging)
            raise ControlError(f"cannot create the control socket {path}: {exc.strerror}") from None
        finally:
            os.umask(old_umask)
    sock.setblocking(False)
    return sock


#: the environment variable naming the lock fd an otree hands to its re-exec
LOCK_ENV = "OTREE_LOCK_FD"


def lock_path(socket_path: str) -> str:
    """The lock file of the tree served on ``socket_path``: next to it."""
    return os.path.abspath(socket_path) + ".lock"


def lock_tree(socket_path: str) -> int:
    """Take the lock that keeps one otree per tree (the one on ``socket_path``); return its
    fd, held for the life of the tree and inherited across a re-exec (``OTREE_LOCK_FD``).

    Another otree holding it is refused (``ControlError``), even when its socket file
    was deleted: the lock is on a file of its own, ``P.lock``, removed by
    ``unlock_tree()`` when the tree has stopped.
    """
    path = lock_path(socket_path)
    for _ in range(8):
        fd = _open_lock(path)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _read_pid(fd)
            os.close(fd)
            who = f"another otree (pid {pid})" if pid else "another otree"
            raise ControlError(
                f"{who} is already running on {os.path.abspath(socket_path)} (it holds"
                f" {path}); stop it first or pass --socket"
            ) from None
        except OSError as exc:
            os.close(fd)
            raise ControlError(f"cannot lock {path}: {exc.strerror}") from None
        if _same_file(fd, path):
            break
        os.close(fd)  # the otree before removed it as it ended: lock the new one
    else:
        raise ControlError(f"cannot lock {path}: it keeps being replaced")
    with contextlib.suppress(OSError):
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    os.set_inheritable(fd, True)  # kept by os.execv; subprocess closes it in children
    os.environ[LOCK_ENV] = str(fd)
    return fd


def unlock_tree(socket_path: str, fd: int) -> None:
    """Remove the lock file (still locked, so no other otree holds it) and let go of it."""
    path = lock_path(socket_path)
    if _same_file(fd, path):
        with contextlib.suppress(OSError):
            os.unlink(path)
    os.close(fd)
    if os.environ.get(LOCK_ENV) == str(fd):
        del os.environ[LOCK_ENV]


def _open_lock(path: str) -> int:
    flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW
    try:
        fd = os.open(path, flags, 0o600)
    except OSError as exc:
        raise ControlError(f"cannot open the lock file {path}: {exc.strerror}") from None
    inherited = _inherited_lock(fd)
    if inherited is not None:  # this is a re-exec: the image before holds it for us
        os.close(fd)
        fd = inherited
    return fd


def _same_file(fd: int, path: str) -> bool:
    try:
        mine, there = os.fstat(fd), os.stat(path, follow_symlinks=False)
    except OSError:
        return False
    return (mine.st_dev, mine.st_ino) == (there.st_dev, there.st_ino)


def _inherited_lock(fd: int) -> int | None:
    """The lock fd named in ``OTREE_LOCK_FD`` if it is open on the same file as ``fd``."""
    text = os.environ.pop(LOCK_ENV, None)
    if text is None or not text.isdigit():
        return None
    try:
        mine, theirs = os.fstat(fd), os.fstat(int(text))
    except OSError:
        return None
    if (mine.st_dev, mine.st_ino) != (theirs.st_dev, theirs.st_ino):
        return None
    return int(text)


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


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
