"""Hostile control clients against a real ``otree run`` (issue 11, finding 5): one
connection sending 5000 ``logs -f`` requests, and one that sends far faster than it
reads. Neither may stall otree: ``status`` from another client is answered promptly
meanwhile and afterwards, and the chatty service's output keeps flowing."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from support.otreeproc import OtreeProc
from support.treefiles import prog, write_tree
from support.waits import wait_until

Run = Callable[..., OtreeProc]

#: ``status`` must be answered within this, while a hostile client is busy and after
PROMPT = 2.0


def _connect(path: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(20)
    sock.connect(path)
    return sock


def _status_time(path: str) -> float:
    """Seconds a new connection waits for the answer to ``status`` (at most 10)."""
    began = time.monotonic()
    with _connect(path) as sock:
        sock.settimeout(10)
        sock.sendall(b'{"id": 7, "cmd": "status"}\n')
        buf = b""
        try:
            while b"\n" not in buf:
                data = sock.recv(65536)
                assert data, "otree closed the connection"
                buf += data
        except TimeoutError:
            return 10.0
    reply = json.loads(buf.split(b"\n")[0])
    assert reply["id"] == 7 and reply["ok"], reply
    return time.monotonic() - began


def _start(otree: Run, tmp_path: Path, sock: str) -> OtreeProc:
    """A tree of one service writing 100 numbered lines every 10 ms."""
    tree = write_tree(tmp_path, f"[talk]\ncmd = {prog('burst', '100', '0.01')}\n")
    run = otree("run", tree, "--socket", sock)
    run.wait_for("ready", "talk")
    return run


class Reader(threading.Thread):
    """Reads everything a connection gets, as messages."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__(daemon=True)
        self.sock = sock
        self.messages: list[dict[str, Any]] = []
        self.bad: list[bytes] = []  # lines that are not JSON (a message cut in two)
        self.ended = False
        self.start()

    def run(self) -> None:
        buf = b""
        try:
            while True:
                data = self.sock.recv(1 << 20)
                if not data:
                    break
                buf += data
                *lines, buf = buf.split(b"\n")
                for line in lines:
                    try:
                        self.messages.append(json.loads(line))
                    except ValueError:
                        self.bad.append(line)
        except OSError:
            pass
        self.ended = True

    def count(self, predicate: Callable[[dict[str, Any]], bool]) -> int:
        return sum(1 for m in list(self.messages) if predicate(m))

    def last_number(self) -> int:
        for m in reversed(list(self.messages)):
            number = re.fullmatch(r"line (\d+)", m.get("line", ""))
            if number is not None:
                return int(number.group(1))
        return -1


def test_f5_5000_follows_on_one_connection_do_not_stall_otree(
    otree: Run, tmp_path: Path, sock: str
) -> None:
    """One connection sends 5000 ``logs -f`` at once (and reads what it gets): the first
    follows, the 4999 others are refused with the reason; ``status`` from another client
    is answered within 2 s all along and after the connection is closed, and the
    followed lines keep coming."""
    run = _start(otree, tmp_path, sock)
    hostile = _connect(sock)
    reader = Reader(hostile)
    hostile.sendall(
        b"".join(b'{"id": %d, "cmd": "logs", "follow": true}\n' % i for i in range(1, 5001))
    )
    times = [_status_time(sock) for _ in range(3)]
    assert max(times) < PROMPT, (times, run.describe())

    def refused(m: dict[str, Any]) -> bool:
        return m.get("ok") is False and "one follow per connection" in m.get("error", "")

    wait_until(lambda: reader.count(refused) == 4999, what="4999 refusals")
    assert reader.count(lambda m: m.get("following") is True) == 1
    first = next(m for m in reader.messages if m.get("following"))
    assert first["id"] == 1
    assert {m["id"] for m in reader.messages if "line" in m} == {1}
    seen = reader.last_number()
    wait_until(lambda: reader.last_number() > seen + 1000, what="the followed lines to go on")
    times += [_status_time(sock) for _ in range(3)]
    assert max(times) < PROMPT, times

    hostile.close()
    reader.join(10)
    times = [_status_time(sock) for _ in range(3)]
    assert max(times) < PROMPT, times
    assert run.proc.poll() is None, run.describe()


def test_f5_a_client_that_sends_faster_than_it_reads_is_disconnected_with_a_reason(
    otree: Run, tmp_path: Path, sock: str
) -> None:
    """A client sends ``logs -n 1000`` requests (60 KiB of reply each) without reading:
    past 8 MiB of unread replies otree cuts it off. When it reads at last, it gets whole
    lines only, the last of them the reason, then the end of the connection; otree
    answered ``status`` within 2 s all along."""
    run = _start(otree, tmp_path, sock)
    wait_until(lambda: run.stdout.count("\n") > 2000, what="1000 lines in the ring")
    hostile = _connect(sock)
    hostile.setblocking(False)
    count = 20000
    request = b"".join(b'{"id": %d, "cmd": "logs", "n": 1000}\n' % i for i in range(1, count + 1))
    sent, times, blocked = 0, [], None
    while sent < len(request):
        try:
            sent += hostile.send(request[sent:])
            blocked = None
        except BlockingIOError:  # otree does not read it (for now): others are served
            blocked = blocked or time.monotonic()
            if time.monotonic() - blocked > 1:
                break
            times.append(_status_time(sock))
        except OSError:
            break  # closed on it
    assert sent < len(request), "otree read every request of a client that reads nothing"
    times.append(_status_time(sock))
    assert max(times) < PROMPT, (times, run.describe())

    hostile.setblocking(True)
    reader = Reader(hostile)
    reader.join(30)
    assert reader.ended, "otree never closed the connection"
    assert not reader.bad, reader.bad[:3]
    last = reader.messages[-1]
    assert last["id"] is None and last["ok"] is False, last
    assert last["error"].startswith("disconnected: it sends requests faster than it reads"), last
    answered = {m["id"] for m in reader.messages if m.get("ok")}
    assert len(answered) < count / 10, "most requests were answered: it was not cut off"
    assert any("line" in m for m in reader.messages)  # what it got before the cut, whole
    hostile.close()
    times = [_status_time(sock) for _ in range(3)]
    assert max(times) < PROMPT, times
    assert run.proc.poll() is None, run.describe()
