"""Child output capture: the prefixed console, rotating log files, the ring buffer,
and the JSON-lines event log.

Throughput first: a child's pipe is read in 64 KiB chunks and each chunk is
handled in bulk (one ``replace`` to prefix every line, one write per sink);
no per-line Python code runs. The console never blocks the loop: its fd is
non-blocking behind a bounded buffer, and when the buffer is full whole
chunks are dropped from the console only, with a marker line saying how many
lines were lost. Log files and the ring buffer always get everything.
"""

from __future__ import annotations

import itertools
import os
import re
import stat
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from otree.runtime.sinks import EventLog, RotatingFile, Sink, write_some

__all__ = [
    "Console",
    "EventLog",
    "RotatingFile",
    "ServiceOutput",
    "describe_event",
    "escape_controls",
    "prefixes",
    "same_file",
]

READ_SIZE = 64 * 1024
RING_LINES = 1000
#: ... and at most this many bytes of them (``log.ring_bytes``, whose default this is)
RING_BYTES = 256 * 1024
#: ... and all services together at most this much: each gets its share of it
TREE_RING_BYTES = 64 * 1024 * 1024
CONSOLE_LIMIT = 1 << 20  # bytes of console output held back before lines are dropped
#: the console and the ring show at most this much of a line (the log file gets it whole)
MAX_LINE = 64 * 1024

_SEQ = itertools.count()  # orders ring chunks across services (control plane: ``otree logs``)
_COLOURS = (36, 33, 32, 35, 34, 31, 96, 93, 92, 95, 94, 91)


class _Loop(Protocol):
    def add_writer(self, fd: int, callback: Callable[[], None]) -> None: ...
    def remove_writer(self, fd: int) -> None: ...


# --- console ------------------------------------------------------------------


class Console(Sink):
    """otree's stdout: written without ever blocking the loop.

    A pipe or tty is reopened through ``/proc/self/fd`` as a new, non-blocking
    open file description, so the shell's own descriptor keeps its flags. A
    regular file is written directly (it never blocks for long). A write error
    (a full disk, a closed pipe) disables it for a while (``Sink``): what it
    misses is counted in ``dropped``, with the lines a slow reader made it drop.
    """

    def __init__(self, loop: _Loop | None, fd: int = 1, limit: int = CONSOLE_LIMIT) -> None:
        super().__init__("console (stdout)")
        self.loop = loop
        self.limit = limit
        self.tty = _isatty(fd)
        self.fd = fd
        self._own_fd = False
        self._buffer: deque[bytes] = deque()
        self._size = 0
        self._unmarked = 0  # lines dropped since the last marker line
        self._watching = False
        self.blocking = True
        try:
            st = os.fstat(fd)
        except OSError:
            self.fd = -1  # no stdout at all: drop everything
            return
        mode = st.st_mode
        if stat.S_ISCHR(mode) and _is_devnull(st):
            self.fd = -1  # /dev/null: nothing is formatted for it, nothing written
            return
        if loop is not None and (stat.S_ISFIFO(mode) or stat.S_ISCHR(mode)):
            try:
                self.fd = os.open(
                    f"/proc/self/fd/{fd}", os.O_WRONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
                )
                self._own_fd = True
                self.blocking = False
            except OSError:
                pass
        elif loop is not None and stat.S_ISSOCK(mode):
            self.fd = os.dup(fd)
            self._own_fd = True
            os.set_blocking(self.fd, False)
            self.blocking = False

    @property
    def discards(self) -> bool:
        """Nothing written here is seen (no stdout, or ``/dev/null``): skip formatting it."""
        return self.fd < 0

    def write(self, data: bytes, lines: int = 1, *, keep: bool = False) -> None:
        """Queue ``data`` (``lines`` whole lines); drop it if the buffer is full,
        unless ``keep`` (otree's own lines: few, and never dropped)."""
        if self.fd < 0:
            return
        if self.failing is not None and not self.may_retry():
            self.dropped += lines
            return
        if self.blocking:
            done, exc = write_some(self.fd, data)
            if exc is not None:
                self.failed(exc, data.count(b"\n", done))
            else:
                self.recovered()
            return
        if not keep and self._size + len(data) > self.limit and self._size:
            self._unmarked += lines
            self.dropped += lines
            return
        if self._unmarked:
            self._push(b"[otree: %d lines dropped from console]\n" % self._unmarked)
            self._unmarked = 0
        self._push(data)
        if self.failing is not None and not self._buffer and self._size == 0:
            self.recovered()

    def _push(self, data: bytes) -> None:
        if self.failing is not None and self._buffer:
            return
        if not self._buffer:
            try:
                n = os.write(self.fd, data)
            except BlockingIOError:
                n = 0
            except OSError as exc:  # EPIPE, EIO, ENOSPC: dropped until it works again
                self._broken(exc, data)
                return
            if n == len(data):
                self.recovered()
                return
            data = data[n:]
        self._buffer.append(data)
        self._size += len(data)
        if not self._watching and self.loop is not None:
            self._watching = True
            self.loop.add_writer(self.fd, self._on_writable)

    def _on_writable(self) -> None:
        buffer = self._buffer
        while buffer:
            chunk = buffer[0] if len(buffer) == 1 else b"".join(buffer)
            try:
                n = os.write(self.fd, chunk)
            except BlockingIOError:
                n = 0
            except OSError as exc:
                buffer.clear()
                self._broken(exc, chunk)
                return
            buffer.clear()
            self._size = len(chunk) - n
            if n < len(chunk):
                buffer.append(chunk[n:])
                return
        if self._unmarked:
            self._unmarked, dropped = 0, self._unmarked
            self._push(b"[otree: %d lines dropped from console]\n" % dropped)
            if self._buffer:
                return
        self._watching = False
        if self.loop is not None:
            self.loop.remove_writer(self.fd)

    def _broken(self, exc: OSError, lost: bytes) -> None:
        if self._watching and self.loop is not None:
            self.loop.remove_writer(self.fd)
        self._watching = False
        lines = lost.count(b"\n") + sum(chunk.count(b"\n") for chunk in self._buffer)
        self._buffer.clear()
        self._size = 0
        self._unmarked = 0
        self.failed(exc, lines)

    def flush(self, timeout: float = 1.0) -> None:
        """Write out what is buffered, waiting at most ``timeout`` seconds."""
        if self.fd < 0 or self.failing is not None:
            return
        if self._unmarked:
            self._buffer.append(b"[otree: %d lines dropped from console]\n" % self._unmarked)
            self._unmarked = 0
        if not self._buffer:
            return
        import select

        data = b"".join(self._buffer)
        self._buffer.clear()
        self._size = 0
        deadline = time.monotonic() + timeout
        while data:
            try:
                n = os.write(self.fd, data)
                data = data[n:]
            except BlockingIOError:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                select.select([], [self.fd], [], left)
            except OSError:
                break
        self.dropped += data.count(b"\n")

    def close(self) -> None:
        self.flush()
        if self._watching and self.loop is not None:
            self.loop.remove_writer(self.fd)
            self._watching = False
        if self._own_fd and self.fd >= 0:
            os.close(self.fd)
        self.fd = -1


def same_file(fd1: int, fd2: int) -> bool:
    """Both fds write to the same file, pipe or terminal (e.g. stdout and stderr on a tty)."""
    try:
        a, b = os.fstat(fd1), os.fstat(fd2)
    except OSError:
        return False
    return (a.st_dev, a.st_ino, a.st_rdev) == (b.st_dev, b.st_ino, b.st_rdev)


def _isatty(fd: int) -> bool:
    try:
        return os.isatty(fd)
    except OSError:
        return False


# --- one service's output -----------------------------------------------------


class ServiceOutput:
    """Where one service's lines go: console (prefixed), its log file, its ring buffer.

    One object per service path, kept across restarts; each incarnation's pipe
    feeds it through ``feed()`` and ``eof()``.
    """

    def __init__(
        self,
        path: str,
        console: Console,
        prefix: bytes,
        file: RotatingFile | None = None,
        ring_bytes: int = RING_BYTES,
    ) -> None:
        self.path = path
        self.ring_bytes = ring_bytes
        self.console = console
        self.prefix = prefix
        self._nl_prefix = b"\n" + prefix
        self.file = file
        self._ring: deque[tuple[bytes, int, int]] = deque()  # (whole lines, line count, seq)
        # control plane: called with (path, chunk of whole lines) as lines arrive (logs -f)
        self.listeners: list[Callable[[str, bytes], None]] = []
        self._ring_lines = 0
        self._ring_size = 0  # bytes in the ring
        self._partial: dict[int, bytes] = {}  # per pipe fd: an unfinished last line
        # per pipe fd inside a line longer than MAX_LINE: bytes cut so far, and its head
        self._long: dict[int, int] = {}
        self._long_head: dict[int, bytes] = {}

    def feed(self, fd: int, data: bytes) -> None:
        """A chunk read from pipe ``fd``: handle every whole line in it.

        A line longer than ``MAX_LINE`` goes to the log file whole (streamed as it
        comes); the console and the ring show its first ``MAX_LINE`` bytes and
        ``…[N bytes]``, the number of bytes cut."""
        long = self._long.get(fd)
        if long is not None:  # inside a long line: stream it to the file to its end
            nl = data.find(b"\n")
            if nl < 0:
                self._file_part(data)
                self._long[fd] = long + len(data)
                return
            del self._long[fd]
            self._file_lines(data[: nl + 1])
            self._show(self._long_head.pop(fd) + _cut_marker(long + nl))
            data = data[nl + 1 :]
            if not data:
                return
        # only the first line can be too long, unless the chunk itself is (not a pipe read)
        every = len(data) > MAX_LINE
        partial = self._partial.pop(fd, None)
        if partial:
            data = partial + data
        end = data.rfind(b"\n") + 1
        if end < len(data):
            rest = data[end:]
            if len(rest) > MAX_LINE:  # an unfinished line too long to hold: stream it
                self._long[fd] = len(rest) - MAX_LINE
                self._long_head[fd] = rest[:MAX_LINE]
                if end:
                    self._lines(data[:end], every)
                self._file_part(rest)
                return
            self._partial[fd] = rest
            if not end:
                return
            data = data[:end]
        self._lines(data, every)

    @property
    def dropped(self) -> int:
        """Lines its log file missed (0 without one)."""
        return self.file.dropped if self.file is not None else 0

    def unfinished(self, fd: int) -> bytes:
        """The unfinished last line read from pipe ``fd`` so far (a re-exec hands it over;
        of a long line, whose start is in the log file already, nothing)."""
        return self._partial.get(fd, b"")

    def eof(self, fd: int) -> None:
        long = self._long.pop(fd, None)
        if long is not None:
            self._file_lines(b"\n")
            self._show(self._long_head.pop(fd) + _cut_marker(long))
        partial = self._partial.pop(fd, None)
        if partial:
            self._lines(partial + b"\n")

    def _lines(self, data: bytes, every: bool = False) -> None:
        self._file_lines(data)
        if len(data) > MAX_LINE:
            data = _cut_long_lines(data, every)
        self._show(data)

    def _file_lines(self, data: bytes) -> None:
        if self.file is not None:
            self.file.write(data)

    def _file_part(self, data: bytes) -> None:
        if self.file is not None:
            self.file.write_part(data)

    def _show(self, data: bytes) -> None:
        """Whole lines (none longer than ``MAX_LINE`` and a marker) to the console, the
        ring and the followers. On a terminal, control characters are shown escaped."""
        count = data.count(b"\n")
        if not self.console.discards:
            shown = data
            if self.console.tty and _CONTROL.search(data) is not None:
                shown = escape_controls(data)
            # the prefix before each line: one replace, one join (no copy in between)
            text = b"".join((self.prefix, shown[:-1].replace(b"\n", self._nl_prefix), b"\n"))
            self.console.write(text, count)
        self._remember(data, count)
        if self.listeners:
            for listener in list(self.listeners):
                listener(self.path, data)

    def _remember(self, data: bytes, count: int) -> None:
        """Keep ``data`` (``count`` whole lines) in the ring: the oldest lines go first
        beyond ``RING_LINES`` lines or ``ring_bytes`` bytes (bounded in bytes, whatever
        the lines are like)."""
        cap = self.ring_bytes
        if len(data) > cap:  # one chunk over the whole bound: keep its last whole lines
            cut = data.find(b"\n", len(data) - cap - 1) + 1 if cap else len(data)
            count -= data.count(b"\n", 0, cut)
            data = data[cut:]
            if not data:
                self._ring.clear()
                self._ring_lines = self._ring_size = 0
                return
        ring = self._ring
        ring.append((data, count, next(_SEQ)))
        self._ring_lines += count
        self._ring_size += len(data)
        while len(ring) > 1 and (
            self._ring_lines - ring[0][1] >= RING_LINES or self._ring_size > cap
        ):
            old, lines, _ = ring.popleft()
            self._ring_lines -= lines
            self._ring_size -= len(old)

    @property
    def ring_size(self) -> int:
        """Bytes in the ring buffer now."""
        return self._ring_size

    def ring_chunks(self) -> list[tuple[int, bytes]]:
        """``(seq, whole lines)`` in the ring buffer, oldest first (handed over at a reload)."""
        return [(seq, chunk) for chunk, _, seq in self._ring]

    def restore(self, chunk: bytes) -> None:
        """Lines from before a reload go back into the ring buffer (and nowhere else)."""
        if chunk.endswith(b"\n"):
            self._remember(chunk, chunk.count(b"\n"))

    def tail(self, n: int = RING_LINES) -> list[bytes]:
        """The last ``n`` lines (at most ``RING_LINES``), without newlines."""
        lines: list[bytes] = []
        for chunk, _, _ in reversed(self._ring):
            lines[:0] = chunk[:-1].split(b"\n")
            if len(lines) >= n:
                break
        return lines[-n:] if n > 0 else []

    def recent(self, n: int = RING_LINES) -> list[tuple[int, bytes]]:
        """``(seq, line)`` for the last ``n`` lines; ``seq`` orders lines across services."""
        lines: list[tuple[int, bytes]] = []
        for chunk, _, seq in reversed(self._ring):
            lines[:0] = [(seq, line) for line in chunk[:-1].split(b"\n")]
            if len(lines) >= n:
                break
        return lines[-n:] if n > 0 else []

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


#: what a terminal would act on in a child's line: C0 controls but tab (and the newline
#: between lines), DEL, and the C1 controls (U+0080-U+009F) as UTF-8
_CONTROL = re.compile(rb"[\x00-\x08\x0b-\x1f\x7f]|\xc2[\x80-\x9f]")


def _escaped(match: re.Match[bytes]) -> bytes:
    code = match.group()
    char = code[-1] if len(code) == 1 else code[1]  # C1 as UTF-8: its code point
    return _NAMED.get(char) or b"\\x%02x" % char


_NAMED = {0x0D: b"\\r", 0x0B: b"\\v", 0x0C: b"\\f", 0x08: b"\\b", 0x07: b"\\a", 0x00: b"\\0"}


def escape_controls(data: bytes) -> bytes:
    """``data`` with the control characters a terminal would act on written out: ``\\r``,
    ``\\x1b``, ... (tab and newline stay), so a child cannot forge or hide lines."""
    return _CONTROL.sub(_escaped, data)


def _cut_marker(cut: int) -> bytes:
    return "…[%d bytes]\n".encode() % cut


def _is_devnull(st: os.stat_result) -> bool:
    try:
        null = os.stat(os.devnull)
    except OSError:
        return False
    return st.st_rdev == null.st_rdev and stat.S_ISCHR(null.st_mode)


def _cut_long_lines(data: bytes, every: bool) -> bytes:
    """``data`` (whole lines) with its lines past ``MAX_LINE`` cut, each with its marker:
    the first line only, or ``every`` line."""
    first = data.find(b"\n")
    if not every:
        if first <= MAX_LINE:
            return data
        return data[:MAX_LINE] + _cut_marker(first - MAX_LINE) + data[first + 1 :]
    out = []
    start = 0
    while start < len(data):
        nl = data.find(b"\n", start)
        if nl - start > MAX_LINE:
            out.append(data[start : start + MAX_LINE] + _cut_marker(nl - start - MAX_LINE))
        else:
            out.append(data[start : nl + 1])
        start = nl + 1
    return b"".join(out)


def prefixes(paths: Iterable[str], tty: bool) -> dict[str, bytes]:
    """``web.api | `` for each path, padded to one width; coloured on a tty."""
    paths = list(paths)
    width = max((len(p) for p in paths), default=0)
    result = {}
    for i, path in enumerate(paths):
        text = f"{path:<{width}} | "
        if tty:
            text = f"\x1b[{_COLOURS[i % len(_COLOURS)]}m{path:<{width}}\x1b[0m | "
        result[path] = text.encode()
    return result


# --- supervision events ------------------------------------------------------


def describe_event(event: str, path: str, fields: dict[str, Any]) -> str:
    """One readable console line for a supervision event (without ``otree: ``)."""
    who = path or "(root)"
    pid = fields.get("pid")
    if event == "exit":
        how = f"code {fields['code']}" if fields.get("code") is not None else ""
        if fields.get("signal") is not None:
            how = f"signal {fields['signal']}"
        kind = "normal" if fields.get("normal") else "abnormal"
        if fields.get("reason") == "unhealthy":
            kind += ", unhealthy"
        return f"{who}: exit pid {pid} {how} ({kind})"
    if event == "unhealthy":
        failures = fields.get("failures")
        times = f" ({failures} failures in a row)" if failures else ""
        return f"{who}: unhealthy pid {pid}: {fields.get('reason')}{times}"
    if event in ("spawn", "ready", "stop", "adopt"):
        return f"{who}: {event} pid {pid}"
    if event == "restart":
        text = f"{who}: restart ({fields.get('strategy')}) after {fields.get('child')}"
        if fields.get("count") is None:
            return text
        return f"{text} ({fields['count']} of {fields['intensity']} in {fields['period']:g} s)"
    if event == "update":
        return f"{who}: updated in place ({', '.join(fields.get('fields') or ())})"
    if event == "give_up":
        return (
            f"{who}: giving up after {fields.get('restarts')} restarts in {fields.get('period')} s"
        )
    if event == "start_failed":
        return f"{who}: cannot start: {fields.get('reason')}"
    if event == "auto_shutdown":
        return f"{who}: auto shutdown after {fields.get('child')} ended"
    if event == "tree_ready":
        return "tree ready"
    if event == "tree_stopped":
        return f"tree stopped (exit code {fields.get('exit_code')})"
    extra = " ".join(f"{k}={v}" for k, v in fields.items())
    return f"{who}: {event} {extra}".rstrip()
