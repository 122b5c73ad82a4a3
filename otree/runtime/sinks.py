"""The files otree writes: rotating log files and the JSON-lines event log.

A sink never takes the tree down. A write that fails (ENOSPC, EIO, EFBIG, a
file removed under it) disables that one sink: one line on stderr (at most one
a minute per sink after that), and the lines it misses are counted in
``dropped``. It tries again by itself at the next write once ``RETRY_EVERY``
seconds have passed, reopening its path. A log file also notices when its
path no longer names the file it has open (logrotate's ``mv`` or ``rm``
without ``copytruncate``) and reopens it; ``reopen()`` (``SIGUSR1``) does so
at once.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
import time
from collections.abc import Callable
from typing import Any

from otree.errors import stderr_line
from otree.paths import DEVICES, KERNEL_FS, unsafe_directory

#: a failing sink is tried again at its next write once this many seconds have passed
RETRY_EVERY = 2.0
#: how often (at most) a log file checks, at a write, that its path is still its file
CHECK_EVERY = 1.0
#: at most one stderr line a minute per sink after its first
WARN_EVERY = 60.0

Clock = Callable[[], float]
Warn = Callable[[str], None]


def write_some(fd: int, data: bytes) -> tuple[int, OSError | None]:
    """Write ``data`` to ``fd``: ``(bytes written, the error that stopped it or None)``."""
    view = memoryview(data)
    done = 0
    while done < len(data):
        try:
            done += os.write(fd, view[done:])
        except InterruptedError:
            continue
        except OSError as exc:
            return done, exc
    return done, None


def _reason(exc: OSError) -> str:
    return exc.strerror or errno.errorcode.get(exc.errno or 0, str(exc))


class Sink:
    """The failure state a sink shares: ``failing`` (the reason, or None) and ``dropped``."""

    def __init__(self, name: str, clock: Clock = time.monotonic, warn: Warn = stderr_line):
        self.name = name
        self.clock = clock
        self.warn = warn
        self.dropped = 0  #: lines this sink missed since otree started
        self.failing: str | None = None  #: why writes fail now (None: they work)
        self._retry_at = 0.0
        self._warned_at: float | None = None
        self._dropped_at_failure = 0

    def _say(self, text: str) -> None:
        now = self.clock()
        if self._warned_at is None or now - self._warned_at >= WARN_EVERY:
            self._warned_at = now
            self.warn(text)

    def failed(self, exc: OSError, lines: int) -> None:
        """A write failed and ``lines`` lines were lost: disable the sink for a while."""
        self.dropped += lines
        self._retry_at = self.clock() + RETRY_EVERY
        if self.failing is None:
            self._dropped_at_failure = self.dropped - lines
            self.failing = _reason(exc)
            self._say(
                f"{self.name}: {self.failing}; its lines are dropped (and counted) "
                "until it can be written again"
            )

    def recovered(self) -> None:
        if self.failing is not None:
            self.failing = None
            missed = self.dropped - self._dropped_at_failure
            self._say(f"{self.name}: written again ({missed} lines dropped)")

    def may_retry(self) -> bool:
        """A failing sink may be tried again now."""
        return self.clock() >= self._retry_at


# --- opening -----------------------------------------------------------------


#: otree's own streams, taken as they are (a duplicate of fd 1 or 2)
STREAMS = {"/dev/stdout": 1, "/dev/stderr": 2}


class UnsafePath(OSError):
    """A log path otree refuses to write (``strerror`` says why)."""


def open_append(path: str, truncate: bool = False) -> int:
    """Open ``path`` to append to it (created 0644; emptied first with ``truncate``).

    Never through a symbolic link (``O_NOFOLLOW``), never a FIFO, a socket or a device
    but ``/dev/null``/``/dev/full``, nothing under /proc or /sys, and not in a directory
    another user could swap files in: those raise ``UnsafePath``."""
    if path in STREAMS:
        return os.dup(STREAMS[path])
    full = os.path.abspath(path)
    real = os.path.realpath(full)
    for top in KERNEL_FS:
        if real == top or real.startswith(top + "/"):
            raise UnsafePath(errno.EPERM, f"under {top}: not a file to write logs to", path)
    problem = unsafe_directory(os.path.dirname(full))
    if problem is not None:
        raise UnsafePath(errno.EPERM, problem, path)
    link = "a symbolic link (log files are opened without following links)"
    if os.path.islink(full):  # said plainly (the kernel may say EACCES, protected_symlinks)
        raise UnsafePath(errno.ELOOP, link, path)
    flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC | os.O_NOFOLLOW
    flags |= os.O_NONBLOCK | os.O_NOCTTY  # a FIFO must not block the open
    try:
        fd = os.open(full, flags | os.O_TRUNC if truncate else flags, 0o644)
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # a link planted since: O_NOFOLLOW refused it
            raise UnsafePath(errno.ELOOP, link, path) from None
        raise
    try:
        mode, rdev = (st := os.fstat(fd)).st_mode, st.st_rdev
        if not (stat.S_ISREG(mode) or (stat.S_ISCHR(mode) and rdev in DEVICES)):
            raise UnsafePath(errno.EPERM, "not a regular file", path)
        os.set_blocking(fd, True)
    except OSError:
        os.close(fd)
        raise
    return fd


def _identity(fd: int) -> tuple[int, int]:
    st = os.fstat(fd)
    return st.st_dev, st.st_ino


def _path_identity(path: str) -> tuple[int, int] | None:
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


# --- log files ----------------------------------------------------------------


class RotatingFile(Sink):
    """An append-only file rotated by size: ``file`` -> ``file.1`` ... ``file.N``.

    Rotation happens on line boundaries; ``max_bytes = 0`` never rotates, and
    ``backups = 0`` truncates instead of keeping old files. Opening it at start
    raises OSError; after that, nothing it does raises.
    """

    def __init__(
        self,
        path: str,
        max_bytes: int,
        backups: int,
        *,
        clock: Clock = time.monotonic,
        warn: Warn = stderr_line,
    ) -> None:
        super().__init__(f"log file {path}", clock, warn)
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups
        self.fd = -1
        self._ident = (0, 0)
        self.regular = True
        self._midline = False  # a failed write cut a line: end it before writing again
        self._open_line = False  # the start of a long line is written, its end is not yet
        self._skip_line = False  # a failure cut a long line: drop the rest of it
        parent = os.path.dirname(path)
        if parent:
            os.makedirs(parent, exist_ok=True)
        self._open()
        self._check_at = clock() + CHECK_EVERY

    def _open(self, truncate: bool = False) -> None:
        fd = open_append(self.path, truncate)
        try:
            st = os.fstat(fd)
        except OSError:
            os.close(fd)
            raise
        self._close_fd()
        self.fd = fd
        self._ident = (st.st_dev, st.st_ino)
        self.size = st.st_size
        # a device or otree's own stream: never renamed, never rotated, never reopened
        self.regular = stat.S_ISREG(st.st_mode)
        if not self.regular:
            self.max_bytes = 0

    def _close_fd(self) -> None:
        if self.fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = -1

    def write_part(self, data: bytes) -> None:
        """The start of a line too long to hold, without its newline: written at once, and
        the file is not rotated before the line's end (``write()``) is written too."""
        if self._skip_line:
            return
        if self.failing is None:
            done, exc = write_some(self.fd, data)
            self.size += done
            if exc is None:
                self._open_line = True
                return
            self._midline = self._midline or done > 0 or self._open_line
            self._close_fd()
            self.failed(exc, 0)
        self._skip_line = True  # the rest of this line is lost with it (counted at its end)

    def write(self, data: bytes) -> None:
        """Write whole lines (``data`` ends with a newline), rotating as needed."""
        if self._skip_line:  # the end of a long line a failure cut: one line lost
            nl = data.find(b"\n") + 1
            self._skip_line = self._open_line = False
            self.dropped += 1
            data = data[nl:]
            if not data:
                return
        if self.failing is None:
            now = self.clock()
            if now >= self._check_at:
                self._check_at = now + CHECK_EVERY
                self._follow_path()
        if self.failing is not None and not (self.may_retry() and self._resume()):
            self.dropped += data.count(b"\n")
            return
        before = self.dropped
        try:
            if self._open_line:  # the end of a long line: no rotation inside it
                nl = data.find(b"\n") + 1
                self._put(data[:nl])
                self._open_line = False
                data = data[nl:]
                if self.max_bytes and self.size >= self.max_bytes:
                    self._rotate()
            self._write_lines(data)
        except OSError as exc:
            self._open_line = False
            lost, self.dropped = self.dropped - before, before
            self._close_fd()  # opened again when it is tried again
            self.failed(exc, lost)
            return
        self.recovered()

    def _put(self, data: bytes) -> None:
        """Write ``data`` (whole lines), or count the lines lost and raise."""
        done, exc = write_some(self.fd, data)
        self.size += done
        if exc is not None:
            self._midline = done > 0 and data[done - 1] != 0x0A
            self.dropped += data[done:].count(b"\n")
            raise exc

    def _write_lines(self, data: bytes) -> None:
        limit = self.max_bytes
        if not limit:
            self._put(data)
            return
        while data:
            room = limit - self.size
            if len(data) <= room:
                self._put(data)
                if self.size >= limit:
                    self._rotate()
                return
            cut = data.rfind(b"\n", 0, room) + 1 if room > 0 else 0
            if cut == 0 and self.size == 0:
                cut = data.find(b"\n") + 1 or len(data)  # one line longer than the limit
            if cut:
                head, data = data[:cut], data[cut:]
                try:
                    self._put(head)
                except OSError:
                    self.dropped += data.count(b"\n")
                    raise
            try:
                self._rotate()
            except OSError:
                self.dropped += data.count(b"\n")
                raise

    def _rotate(self) -> None:
        self._close_fd()
        self._midline = False
        if self.backups > 0:
            for i in range(self.backups - 1, 0, -1):
                src = f"{self.path}.{i}"
                if os.path.exists(src):
                    os.replace(src, f"{self.path}.{i + 1}")
            # moved or removed under us (logrotate): then a new file it is
            with contextlib.suppress(FileNotFoundError):
                os.replace(self.path, f"{self.path}.1")
            self._open()
        else:
            self._open(truncate=True)

    def rotate(self) -> None:
        """Rotate now (never raises: a failure disables the file until it is retried)."""
        try:
            self._rotate()
        except OSError as exc:
            self.failed(exc, 0)

    def _follow_path(self) -> None:
        """The path names another file, or none (moved or removed): reopen it."""
        if self.regular and _path_identity(self.path) != self._ident:
            self.reopen()

    def reopen(self) -> None:
        """Open the path again (``SIGUSR1``, or the file was moved); never raises."""
        if self.failing is not None:
            self._retry_at = 0.0  # at the next write
            return
        try:
            self._open()
        except OSError as exc:
            self._close_fd()
            self.failed(exc, 0)
            return
        self._midline = False

    def _resume(self) -> bool:
        """Try a failing file again: open it, end a cut line. True if it can be written."""
        try:
            self._open()
            if self._midline and self.size > 0:
                done, exc = write_some(self.fd, b"\n")
                self.size += done
                if exc is not None:
                    raise exc
            self._midline = False
        except OSError:
            self._close_fd()
            self._retry_at = self.clock() + RETRY_EVERY
            return False
        return True

    def close(self) -> None:
        self._close_fd()


# --- supervision events ------------------------------------------------------


def event_line(record: dict[str, Any]) -> str:
    """One line of the event log (without its newline): ``record`` as JSON, ``ts`` first
    (now, unless ``record`` has one: ``otree events`` sends the file's very lines)."""
    return json.dumps({"ts": time.time(), **record}, separators=(", ", ": "))


class EventLog(Sink):
    """``--events F``: one JSON object per line, appended and flushed per line."""

    def __init__(
        self, path: str, *, clock: Clock = time.monotonic, warn: Warn = stderr_line
    ) -> None:
        super().__init__(f"event log {path}", clock, warn)
        self.path = path
        self.fd = -1
        self._ident = (0, 0)
        self._open()
        self._check_at = clock() + CHECK_EVERY

    def write(self, record: dict[str, Any]) -> None:
        self.write_line(event_line(record))

    def write_line(self, line: str) -> None:
        """One line :func:`event_line` made (the runtime makes it once for the file and
        the event watchers)."""
        if self.failing is None:
            now = self.clock()
            if now >= self._check_at:
                self._check_at = now + CHECK_EVERY
                if self.path not in STREAMS and _path_identity(self.path) != self._ident:
                    self.reopen()
        if self.failing is not None and not (self.may_retry() and self._resume()):
            self.dropped += 1
            return
        data = line.encode() + b"\n"
        done, exc = write_some(self.fd, data)
        if exc is not None:
            if done:  # end the cut line, or the next one would be glued to it
                write_some(self.fd, b"\n")
            self.failed(exc, 1)
            return
        self.recovered()

    def _open(self) -> None:
        fd = open_append(self.path)
        try:
            ident = _identity(fd)
        except OSError:
            os.close(fd)
            raise
        self.close()
        self.fd, self._ident = fd, ident

    def reopen(self) -> None:
        """Open the path again (``SIGUSR1``, or the file was moved); never raises."""
        if self.failing is not None:
            self._retry_at = 0.0  # at the next write
            return
        try:
            self._open()
        except OSError as exc:
            self.failed(exc, 0)

    def _resume(self) -> bool:
        try:
            self._open()
        except OSError:
            self._retry_at = self.clock() + RETRY_EVERY
            return False
        return True

    def close(self) -> None:
        if self.fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = -1
