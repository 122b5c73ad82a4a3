"""``otree events``: the ring of a running tree's recent supervision events.

Every line the event log gets (``--events F`` or not) is numbered and kept here,
the last ``RING_EVENTS`` of them (and no more than ``RING_BYTES``): a request for
``events`` is answered from the ring, and a follower gets each new line as it
comes (``follow``). The numbers are what make a follow exact across a re-exec: the
ring crosses the exec in the handoff with its numbers (``dump``, ``load``), a
handed-over follower says the number of the last line it was given, and the new
image sends it every line after that one (``since``): none lost, none twice.
Nothing here blocks; a slow reader is the server's business (its lines are
skipped and counted, ``otree.control.conn``).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable

#: events the ring keeps
RING_EVENTS = 1000
#: bytes the ring keeps at most (an abnormal exit carries its last output lines)
RING_BYTES = 4 * 1024 * 1024

#: ``watcher(seq, line)``: a new line and its number
Watcher = Callable[[int, str], None]


class EventRing:
    """The last ``size`` event-log lines, each with its number (1, 2, ... per tree)."""

    def __init__(self, size: int = RING_EVENTS, max_bytes: int = RING_BYTES) -> None:
        self.size = size
        self.max_bytes = max_bytes
        self.seq = 0  #: the number of the last line
        self._lines: deque[tuple[int, str]] = deque()
        self._bytes = 0
        self._watchers: dict[int, Watcher] = {}
        self._next = 0

    def add(self, line: str) -> None:
        """A new event-log line (a runtime event watcher): kept, and given to followers."""
        self.seq += 1
        self._keep(self.seq, line)
        for watcher in list(self._watchers.values()):
            watcher(self.seq, line)

    def _keep(self, seq: int, line: str) -> None:
        self._lines.append((seq, line))
        self._bytes += len(line)
        while len(self._lines) > self.size or (
            self._bytes > self.max_bytes and len(self._lines) > 1
        ):
            self._bytes -= len(self._lines.popleft()[1])

    def recent(self, n: int | None = None) -> list[tuple[int, str]]:
        """The last ``n`` lines (every line kept when None), oldest first."""
        if n is None or n >= len(self._lines):
            return list(self._lines)
        if n <= 0:
            return []
        return list(self._lines)[-n:]

    def since(self, seq: int) -> list[tuple[int, str]]:
        """The lines numbered after ``seq``, oldest first (those still kept)."""
        return [item for item in self._lines if item[0] > seq]

    def follow(self, watcher: Watcher) -> Callable[[], None]:
        """Call ``watcher`` with every new line; returns the unsubscribe function."""
        key = self._next
        self._next += 1
        self._watchers[key] = watcher
        return lambda: self._watchers.pop(key, None) and None

    def dump(self) -> tuple[tuple[int, str], ...]:
        """What crosses a re-exec (``Handoff.events``)."""
        return tuple(self._lines)

    def load(self, lines: Iterable[tuple[int, str]]) -> None:
        """Take the ring over from the image before (its numbers go on)."""
        for seq, line in lines:
            self._keep(seq, line)
            self.seq = max(self.seq, seq)
