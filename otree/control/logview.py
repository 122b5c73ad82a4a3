"""What ``otree logs`` reads: the ring buffers of the services, and their log files.

``select(path)`` turns a path into the services it covers (one service, every
service under a supervisor, or all of them). ``recent`` merges their last
lines in the order they arrived; ``follow`` calls back with each new line.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from otree.runtime.output import ServiceOutput


#: at most this much of a log file is read to find its last lines
FILE_TAIL_BYTES = 8 * 1024 * 1024


#: what a terminal would act on: C0 controls but tab, DEL, C1 controls
_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f]")
_NAMED = {"\r": "\\r", "\n": "\\n", "\v": "\\v", "\f": "\\f", "\b": "\\b", "\a": "\\a", "\0": "\\0"}


def _escaped(match: re.Match[str]) -> str:
    char = match.group()
    return _NAMED.get(char) or f"\\x{ord(char):02x}"


def _text(line: bytes) -> str:
    """A line as ``otree logs`` shows it: text, control characters written out (``\\r``,
    ``\\x1b``), so that a service cannot forge or hide lines on the reader's terminal."""
    text = line.decode("utf-8", "replace")
    if _CONTROL.search(text) is not None:
        text = _CONTROL.sub(_escaped, text)
    return text


def file_tail(path: str, n: int, limit: int = FILE_TAIL_BYTES) -> list[bytes]:
    """The last ``n`` whole lines of the file at ``path`` (reading at most ``limit`` bytes)."""
    if n <= 0:
        return []
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return []
    try:
        size = os.fstat(fd).st_size
        data = b""
        pos = size
        block = 64 * 1024
        while pos > 0 and data.count(b"\n") <= n and size - pos < limit:
            step = min(block, pos)
            pos -= step
            data = os.pread(fd, step, pos) + data
            block *= 2
    except OSError:
        return []
    finally:
        os.close(fd)
    if not data.endswith(b"\n"):
        data = data[: data.rfind(b"\n") + 1]  # an unfinished last line is not shown yet
    lines = data.split(b"\n")[:-1]
    if pos > 0 and lines:
        lines = lines[1:]  # the first one may be cut
    return lines[-n:]


class LogView:
    """The services' output as the control server shows it."""

    def __init__(self, outputs: Mapping[str, ServiceOutput]) -> None:
        self.outputs = outputs

    def select(self, path: str | None) -> list[str]:
        """The service paths ``path`` covers, in start order; KeyError(message) if none."""
        if path is None or path == "":
            return list(self.outputs)
        if path in self.outputs:
            return [path]
        below = [p for p in self.outputs if p.startswith(path + ".")]
        if not below:
            raise KeyError(f"no service or supervisor at path {path!r}")
        return below

    def recent(self, paths: list[str], n: int) -> list[tuple[str, str]]:
        """``(path, line)`` of the last ``n`` lines of ``paths`` together, oldest first.

        One service with a log file is read from the file when it holds more
        lines than the ring buffer (older output, or more than ``RING_LINES``).
        """
        if n <= 0:
            return []
        if len(paths) == 1:
            output = self.outputs[paths[0]]
            lines = [line for _, line in output.recent(n)]
            if len(lines) < n and output.file is not None:
                from_file = file_tail(output.file.path, n)
                if len(from_file) > len(lines):
                    lines = from_file
            return [(paths[0], _text(line)) for line in lines]
        merged: list[tuple[int, int, str, bytes]] = []
        for path in paths:
            for i, (seq, line) in enumerate(self.outputs[path].recent(n)):
                merged.append((seq, i, path, line))
        merged.sort(key=lambda item: (item[0], item[1]))
        return [(path, _text(line)) for _, _, path, line in merged[-n:]]

    def follow(self, paths: list[str], callback: Callable[[str, str], None]) -> Callable[[], None]:
        """Call ``callback(path, line)`` for each new line of ``paths``; returns unsubscribe."""

        def listener(path: str, chunk: bytes) -> None:
            for line in chunk[:-1].split(b"\n"):
                callback(path, _text(line))

        outputs = [self.outputs[p] for p in paths]
        for output in outputs:
            output.listeners.append(listener)

        def unsubscribe() -> None:
            for output in outputs:
                if listener in output.listeners:
                    output.listeners.remove(listener)

        return unsubscribe
