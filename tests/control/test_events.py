"""``otree events``: the ring of event-log lines on the control socket (a real loop and
sockets, a fake runtime behind), and its slow followers."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from support.harness import Served, short_dir

from otree.control.events import EventRing
from otree.control.protocol import encode
from otree.control.server import Client, HandedClient
from otree.errors import ControlError


@pytest.fixture
def sockdir() -> Iterator[str]:
    with short_dir() as d:
        yield d


def _line(i: int) -> str:
    return json.dumps({"ts": float(i), "event": "spawn", "path": "db", "pid": i})


def test_the_ring_keeps_the_last_lines_numbered_and_bounded() -> None:
    ring = EventRing(size=3, max_bytes=10_000)
    for i in range(5):
        ring.add(_line(i))
    assert ring.seq == 5
    assert ring.recent() == [(3, _line(2)), (4, _line(3)), (5, _line(4))]
    assert ring.recent(1) == [(5, _line(4))]
    assert ring.recent(0) == []
    assert ring.since(4) == [(5, _line(4))]
    small = EventRing(size=100, max_bytes=len(_line(0)) * 2)
    for i in range(5):
        small.add(_line(i))
    assert [seq for seq, _ in small.recent()] == [4, 5]  # the byte bound
    again = EventRing()
    again.load(ring.dump())  # across a re-exec: the numbers go on
    again.add(_line(9))
    assert [seq for seq, _ in again.recent()] == [3, 4, 5, 6]


def test_events_answers_the_ring_then_follows(sockdir: str) -> None:
    s = Served(os.path.join(sockdir, "ctl.sock"))
    try:
        ring = EventRing()
        s.call(lambda: setattr(s.server, "events", ring))
        for i in range(3):
            s.call(lambda i=i: ring.add(_line(i)))  # type: ignore[misc]
        with Client(s.path, timeout=10) as c:
            got = [m["event"] for m in c.stream("events", n=2) if "event" in m]
            assert got == [_line(1), _line(2)]
            follow = c.stream("events", n=0, follow=True)
            assert next(follow) == {"id": 2, "ok": True, "following": True}
            s.call(lambda: ring.add(_line(7)))
            assert next(follow) == {"id": 2, "event": _line(7)}
    finally:
        s.stop()


def test_a_tree_without_a_ring_says_so(sockdir: str) -> None:
    s = Served(os.path.join(sockdir, "ctl.sock"))
    try:
        with Client(s.path, timeout=10) as c, pytest.raises(ControlError, match="keeps no events"):
            c.call("events")
    finally:
        s.stop()


def test_a_slow_events_follower_skips_lines_with_a_count_never_blocking(sockdir: str) -> None:
    s = Served(os.path.join(sockdir, "ctl.sock"), max_output=32 * 1024)
    try:
        ring = EventRing()
        s.call(lambda: setattr(s.server, "events", ring))
        slow = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        slow.settimeout(20)
        slow.connect(s.path)
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        slow.sendall(encode({"id": 1, "cmd": "events", "n": 0, "follow": True}))
        assert slow.recv(4096) == encode({"id": 1, "ok": True, "following": True})
        total = 20_000

        def burst() -> None:
            for i in range(1000):
                ring.add(_line(i))

        for _ in range(total // 1000):
            s.call(burst)
            with Client(s.path, timeout=5) as c:  # the loop still answers others at once
                assert c.call("status")["ok"]
        buf = b""
        seen: list[dict[str, Any]] = []
        dropped = 0
        while len(seen) + dropped < total:
            data = slow.recv(65536)
            assert data, "connection closed"
            buf += data
            *complete, buf = buf.split(b"\n")
            for raw_line in complete:
                msg = json.loads(raw_line)
                if "event" in msg:
                    seen.append(msg)
                dropped += msg.get("dropped", 0)
        assert dropped > 0 and len(seen) + dropped == total
        slow.close()
    finally:
        s.stop()


def test_a_handed_over_follower_gets_every_line_after_its_last_and_a_count_of_lost_ones(
    sockdir: str,
) -> None:
    """After a re-exec the new image sends a follower the lines numbered after the last
    one it got; those the ring no longer holds are counted as skipped, never silent."""
    s = Served(os.path.join(sockdir, "ctl.sock"))
    ours, theirs = socket.socketpair()
    try:
        ring = EventRing(size=3)
        for i in range(10):
            ring.add(_line(i))  # numbers 1..10; the ring keeps 8, 9, 10
        s.call(lambda: setattr(s.server, "events", ring))
        fd = os.dup(theirs.fileno())
        client = HandedClient(fd, (), b"", b"", events=(5, 2))  # it had line 2
        s.call(lambda: s.server.adopt(client))
        ours.settimeout(20)
        buf = b""
        while buf.count(b"\n") < 4:
            buf += ours.recv(65536)
        got = [json.loads(line) for line in buf.splitlines()]
        assert got == [
            {"id": 5, "path": "", "dropped": 5},  # 3 .. 7 left the ring meanwhile
            *({"id": 5, "event": _line(i)} for i in (7, 8, 9)),
        ]
        s.call(lambda: ring.add(_line(10)))  # and it follows on
        buf = b""
        while not buf.endswith(b"\n"):
            buf += ours.recv(65536)
        assert json.loads(buf) == {"id": 5, "event": _line(10)}
    finally:
        s.stop()
        ours.close()
        theirs.close()
