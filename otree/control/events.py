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
from typing import Any

from otree.control.conn import Conn
from otree.control.protocol import Request, error_reply, ok_reply

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


class EventFollows:
    """The ``events`` request, for ``ControlServer`` (which it is a part of): the ring's
    last ``n`` lines (all it keeps by default), then with ``follow`` each new one, as
    ``{"id", "event": line}``, the line exactly as the event log has it."""

    events: EventRing | None

    def _send(self, conn: Conn, message: dict[str, Any], *, droppable: bool = False) -> None:
        raise NotImplementedError  # the server's

    def _events(self, conn: Conn, req: Request) -> None:
        rid, ring = req.id, self.events
        if ring is None:
            self._send(conn, error_reply(rid, "this tree keeps no events"))
            return
        if req.follow and conn.follows:
            held = ", ".join(str(r) for r in conn.follows)
            message = f"this connection follows already (request {held}): one follow per connection"
            self._send(conn, error_reply(rid, message))
            return
        for _, line in ring.recent(req.n):
            self._send(conn, {"id": rid, "event": line})
        if not req.follow:
            self._send(conn, ok_reply(rid))
            return
        self._follow_events(conn, rid, ring.seq)
        self._send(conn, ok_reply(rid, following=True))

    def _follow_events(self, conn: Conn, rid: int, since: int) -> None:
        """Send ``conn`` every event line numbered after ``since``, then each new one (the
        lines the ring no longer has, if any, are counted as skipped)."""
        ring = self.events
        assert ring is not None
        state = conn.event_follow = [rid, since]

        def on_line(seq: int, line: str) -> None:
            state[1] = seq  # skipped or sent, it is behind this client now
            self._send(conn, {"id": rid, "event": line}, droppable=True)

        missed = ring.since(since)
        gone = (missed[0][0] if missed else ring.seq + 1) - since - 1
        if gone > 0:
            key = (rid, "")
            conn.dropped[key] = conn.dropped.get(key, 0) + gone
        for seq, line in missed:
            on_line(seq, line)
        conn.follows[rid] = ring.follow(on_line)
