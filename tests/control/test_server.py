"""The control server and client over real Unix sockets (with a fake runtime behind)."""

from __future__ import annotations

import errno
import json
import os
import socket
import stat
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.harness import FakeBackend, ManualLoop, Served, short_dir
from support.waits import wait_until

from otree.control.conn import TURN_REQUESTS
from otree.control.protocol import encode
from otree.control.server import Client, ControlServer, NotRunning, bind_socket, status_payload
from otree.errors import ControlError


@pytest.fixture
def sockdir() -> Iterator[str]:
    with short_dir() as d:
        yield d


@pytest.fixture
def served(sockdir: str) -> Iterator[Served]:
    s = Served(os.path.join(sockdir, "ctl.sock"))
    yield s
    s.stop()


def raw(path: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(20)
    sock.connect(path)
    return sock


def read_messages(sock: socket.socket, count: int) -> list[dict[str, Any]]:
    buf = b""
    while buf.count(b"\n") < count:
        data = sock.recv(65536)
        assert data, f"connection closed after {buf!r}"
        buf += data
    return [json.loads(line) for line in buf.splitlines()]


# --- the socket file ------------------------------------------------------------


def test_socket_is_mode_0600(served: Served) -> None:
    st_ = os.stat(served.path)
    assert stat.S_ISSOCK(st_.st_mode)
    assert stat.S_IMODE(st_.st_mode) == 0o600


def test_umask_is_restored(sockdir: str) -> None:
    before = os.umask(0o022)
    os.umask(before)
    sock = bind_socket(os.path.join(sockdir, "a.sock"))
    sock.close()
    after = os.umask(0o022)
    os.umask(after)
    assert after == before


def test_a_live_socket_is_refused_with_the_owner_pid(served: Served) -> None:
    with pytest.raises(ControlError) as info:
        bind_socket(served.path)
    assert str(info.value) == (
        f"another otree (pid {os.getpid()}) is already running on {served.path};"
        " stop it first or pass --socket"
    )
    with Client(served.path, timeout=20) as c:  # and the live one is untouched
        assert c.call("status")["ok"]


def test_a_stale_socket_is_replaced(sockdir: str) -> None:
    path = os.path.join(sockdir, "ctl.sock")
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(path)
    dead.close()  # the file stays, nobody listens: what a killed otree leaves
    assert os.path.exists(path)
    with pytest.raises(NotRunning, match="stale socket"):
        Client(path)
    s = Served(path)
    try:
        with Client(path, timeout=20) as c:
            assert c.call("status")["ok"]
    finally:
        s.stop()


def test_a_file_that_is_not_a_socket_is_left_alone(sockdir: str) -> None:
    path = os.path.join(sockdir, "ctl.sock")
    with open(path, "w") as f:
        f.write("precious")
    with pytest.raises(ControlError, match="it exists and is not a socket"):
        bind_socket(path)
    with open(path) as f:
        assert f.read() == "precious"


def test_missing_directory_and_long_path(sockdir: str) -> None:
    with pytest.raises(ControlError, match="no directory"):
        bind_socket(os.path.join(sockdir, "nope", "ctl.sock"))
    with pytest.raises(ControlError, match="too long"):
        bind_socket(os.path.join(sockdir, "x" * 120 + ".sock"))


def test_close_removes_the_socket_file(sockdir: str) -> None:
    s = Served(os.path.join(sockdir, "ctl.sock"))
    s.stop()
    assert not os.path.exists(s.path)
    with pytest.raises(NotRunning, match="no such socket"):
        Client(s.path)


def test_close_leaves_a_newer_socket_at_the_same_path(sockdir: str) -> None:
    path = os.path.join(sockdir, "ctl.sock")
    loop = ManualLoop()
    backend = FakeBackend(loop)
    old = ControlServer(loop, backend, path)
    os.unlink(path)  # someone removed it and another tree took the path
    newer = bind_socket(path)
    old.close()
    assert os.path.exists(path)
    newer.close()
    backend.close()


def test_handoff_keeps_the_socket_for_a_new_server(sockdir: str) -> None:
    path = os.path.join(sockdir, "ctl.sock")
    loop = ManualLoop()
    backend = FakeBackend(loop)
    old = ControlServer(loop, backend, path)
    connected = raw(path)
    loop.pump()
    fd = old.handoff()
    assert os.get_inheritable(fd)
    assert connected.recv(10) == b""  # clients are let go
    waiting = raw(path)  # a client arriving during the exec waits in the backlog
    waiting.sendall(encode({"id": 1, "cmd": "info"}))
    new = ControlServer(loop, backend, path, sock=socket.socket(fileno=fd))
    loop.pump()
    assert read_messages(waiting, 1)[0]["ok"] is True
    new.close()
    assert not os.path.exists(path)
    for s in (connected, waiting):
        s.close()
    backend.close()


# --- requests and replies ---------------------------------------------------------


def test_status(served: Served) -> None:
    served.loop.clock = lambda: 100.0  # type: ignore[method-assign]
    with Client(served.path, timeout=20) as c:
        reply = c.call("status")
    assert reply["ok"] is True
    assert reply["nodes"][0] == {
        "path": "",
        "kind": "supervisor",
        "state": "running",
        "pid": None,
        "uptime": 100.0,
        "restarts": 0,
        "last_exit": None,
        "console_dropped": 0,
        "events_dropped": 0,
        "cpu_seconds": 0.0,  # the sum of its services' (none runs in this fake backend)
        "cpu_percent": 0.0,
        "rss_bytes": 0,
    }
    assert [n["path"] for n in reply["nodes"]] == ["", "db", "web", "web.cache", "web.api"]
    assert reply["nodes"][3]["uptime"] is None
    assert reply["nodes"][4] == {
        "path": "web.api",
        "kind": "service",
        "state": "running",
        "pid": 103,
        "uptime": 9.5,
        "restarts": 2,
        "last_exit": {"signal": "KILL", "normal": False},
        "dropped": 0,
        "status_text": None,
        "health": None,
        "cpu_seconds": None,  # no process of its in /proc
        "cpu_percent": None,
        "cpu_percent_over": None,
        "rss_bytes": None,
    }


def test_status_payload_rounds_uptime() -> None:
    backend = FakeBackend(None)
    payload = status_payload(backend.status(), 10.123456)
    assert payload["nodes"][1]["uptime"] == 0.123
    backend.close()


def test_info(served: Served) -> None:
    with Client(served.path, timeout=20) as c:
        info = c.call("info")
    assert info["pid"] == os.getpid()
    assert info["socket"] == served.path
    assert info["cwd"] == os.getcwd()
    assert info["uptime"] >= 0


def test_commands_go_to_the_backend_and_errors_come_back(served: Served) -> None:
    served.backend.refuse["web.api"] = "web.api is already running"
    with Client(served.path, timeout=20) as c:
        assert c.call("stop", path="db") == {"id": 1, "ok": True}
        with pytest.raises(ControlError) as info:
            c.call("start", path="web.api")
        assert str(info.value) == "web.api is already running"
        assert c.call("restart", path="web") == {"id": 3, "ok": True}
        assert c.call("shutdown")["ok"]
    assert served.backend.commands == [
        ("stop", "db"),
        ("start", "web.api"),
        ("restart", "web"),
        ("shutdown", ""),
    ]


def test_a_late_reply_does_not_hold_up_other_clients(served: Served) -> None:
    served.backend.delay["db"] = 0.5
    results: list[Any] = []

    def slow() -> None:
        with Client(served.path, timeout=20) as c:
            results.append(c.call("stop", path="db"))

    t = threading.Thread(target=slow)
    start = time.monotonic()
    t.start()
    wait_until(lambda: served.backend.commands, what="the stop to arrive")
    with Client(served.path, timeout=20) as c:
        assert c.call("status")["ok"]
    assert not results  # status was answered while the stop was still pending
    t.join(20)
    assert results == [{"id": 1, "ok": True}]
    assert time.monotonic() - start >= 0.5


def test_pipelined_requests_on_one_connection(served: Served) -> None:
    sock = raw(served.path)
    sock.sendall(b"".join(encode({"id": i, "cmd": "info"}) for i in range(1, 51)))
    replies = read_messages(sock, 50)
    assert [r["id"] for r in replies] == list(range(1, 51))
    sock.close()


def test_many_clients_at_once(served: Served) -> None:
    socks = [raw(served.path) for _ in range(40)]
    for i, s in enumerate(socks):  # every client sends half a request first
        s.sendall(encode({"id": i, "cmd": "stop", "path": f"p{i}"})[:10])
    for i, s in enumerate(socks):
        s.sendall(encode({"id": i, "cmd": "stop", "path": f"p{i}"})[10:])
    for i, s in enumerate(socks):
        assert read_messages(s, 1) == [{"id": i, "ok": True}]
        s.close()
    assert sorted(served.backend.commands) == sorted(("stop", f"p{i}") for i in range(40))


def test_a_half_sent_request_does_not_block_others(served: Served) -> None:
    stuck = raw(served.path)
    stuck.sendall(b'{"id": 1, "cmd": "sta')  # and never the rest
    with Client(served.path, timeout=20) as c:
        assert c.call("status")["ok"]
    stuck.close()


def test_malformed_messages_get_errors_and_the_connection_goes_on(served: Served) -> None:
    sock = raw(served.path)
    sock.sendall(
        b"not json\n"
        b"[1]\n"
        b'{"id": 5}\n'
        b'{"id": 6, "cmd": "reboot"}\n'
        b'{"id": 7, "cmd": "stop"}\n'
        b'{"id": 8, "cmd": "logs", "path": "\\udfff"}\n'
        b'{"id": 9, "cmd": "status"}\n'
    )
    r = read_messages(sock, 7)
    assert r[0]["id"] is None and r[0]["ok"] is False
    assert r[0]["error"].startswith("message is not valid JSON")
    assert r[1] == {"id": None, "ok": False, "error": "message must be a JSON object, not an array"}
    assert r[2] == {"id": 5, "ok": False, "error": "request has no 'cmd'"}
    assert r[3]["id"] == 6 and r[3]["error"].startswith("unknown command 'reboot'")
    assert r[4] == {"id": 7, "ok": False, "error": "stop: 'path' is required"}
    assert r[5] == {"id": 8, "ok": False, "error": "no service or supervisor at path '\\udfff'"}
    assert r[6]["id"] == 9 and r[6]["ok"] is True
    sock.close()


def test_an_oversized_message_gets_an_error_and_the_server_goes_on(served: Served) -> None:
    sock = raw(served.path)
    sock.sendall(b'{"id": 1, "cmd": "status", "x": "' + b"x" * (200 * 1024) + b'"}\n')
    sock.sendall(encode({"id": 2, "cmd": "info"}))
    r = read_messages(sock, 2)
    assert r[0] == {"id": None, "ok": False, "error": "message too long (more than 65536 bytes)"}
    assert r[1]["id"] == 2 and r[1]["ok"] is True
    sock.close()


def test_a_vanished_client_is_forgotten(served: Served) -> None:
    served.backend.delay["db"] = 0.2
    sock = raw(served.path)
    sock.sendall(encode({"id": 1, "cmd": "stop", "path": "db"}))
    wait_until(lambda: served.backend.commands, what="the stop to arrive")
    sock.close()  # gone before the reply
    wait_until(lambda: served.call(lambda: served.server.clients) == 0, what="the drop")
    time.sleep(0.3)  # the late reply finds nobody to answer: no error
    with Client(served.path, timeout=20) as c:
        assert c.call("status")["ok"]


def test_a_client_that_never_reads_its_replies_is_dropped(sockdir: str) -> None:
    s = Served(os.path.join(sockdir, "ctl.sock"), max_output=64 * 1024)
    try:
        sock = raw(s.path)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        request = encode({"id": 1, "cmd": "status"})
        sent = 0
        sock.settimeout(0.05)
        # status replies pile up; the server drops the client instead of buffering forever
        while sent < 20_000:
            try:
                sock.send(request * 50)
            except (BlockingIOError, TimeoutError):
                pass
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += 50
            if s.call(lambda: s.server.clients) == 0:
                break
        assert s.call(lambda: s.server.clients) == 0
        sock.close()
        with Client(s.path, timeout=20) as c:  # and the server goes on
            assert c.call("status")["ok"]
    finally:
        s.stop()


def test_too_many_clients(sockdir: str) -> None:
    s = Served(os.path.join(sockdir, "ctl.sock"), max_clients=2)
    try:
        a, b = raw(s.path), raw(s.path)
        wait_until(lambda: s.call(lambda: s.server.clients) == 2, what="two clients")
        c = raw(s.path)
        assert read_messages(c, 1) == [
            {"id": None, "ok": False, "error": "too many control clients"}
        ]
        assert c.recv(10) == b""
        for x in (a, b, c):
            x.close()
    finally:
        s.stop()


def test_close_ends_every_connection(sockdir: str) -> None:
    s = Served(os.path.join(sockdir, "ctl.sock"))
    sock = raw(s.path)
    sock.sendall(encode({"id": 1, "cmd": "logs", "follow": True}))
    assert read_messages(sock, 1)[-1] == {"id": 1, "ok": True, "following": True}
    s.stop()
    assert sock.recv(100) == b""
    sock.close()


def test_the_client_reports_a_tree_that_stops_before_answering(sockdir: str) -> None:
    s = Served(os.path.join(sockdir, "ctl.sock"))
    s.backend.delay["db"] = 30
    try:

        def close_when_asked() -> None:
            wait_until(lambda: s.backend.commands, what="the stop to arrive")
            s.call(s.server.close)

        t = threading.Thread(target=close_when_asked)
        t.start()
        with Client(s.path, timeout=20) as c, pytest.raises(NotRunning) as info:
            c.call("stop", path="db")
        t.join(20)
        assert str(info.value) == f"the tree at {s.path} stopped before answering"
    finally:
        s.stop()


# --- logs ---------------------------------------------------------------------------


def test_logs_of_one_service(served: Served) -> None:
    served.feed("db", b"one\ntwo\nthree\n")
    with Client(served.path, timeout=20) as c:
        msgs = list(c.stream("logs", path="db", n=2))
    assert msgs == [
        {"id": 1, "path": "db", "line": "two"},
        {"id": 1, "path": "db", "line": "three"},
        {"id": 1, "ok": True},
    ]


def test_logs_of_everything_in_arrival_order(served: Served) -> None:
    served.feed("web.api", b"a1\n")
    served.feed("db", b"d1\nd2\n")
    served.feed("web.api", b"a2\n")
    served.feed("web.cache", b"c1\n")
    with Client(served.path, timeout=20) as c:
        every = [(m["path"], m["line"]) for m in c.stream("logs") if "line" in m]
        web = [(m["path"], m["line"]) for m in c.stream("logs", path="web") if "line" in m]
        last3 = [(m["path"], m["line"]) for m in c.stream("logs", n=3) if "line" in m]
    assert every == [
        ("web.api", "a1"),
        ("db", "d1"),
        ("db", "d2"),
        ("web.api", "a2"),
        ("web.cache", "c1"),
    ]
    assert web == [("web.api", "a1"), ("web.api", "a2"), ("web.cache", "c1")]
    assert last3 == [("db", "d2"), ("web.api", "a2"), ("web.cache", "c1")]


def test_logs_of_an_unknown_path(served: Served) -> None:
    with Client(served.path, timeout=20) as c, pytest.raises(ControlError) as info:
        list(c.stream("logs", path="nope"))
    assert str(info.value) == "no service or supervisor at path 'nope'"


def test_logs_are_text_even_when_the_output_is_not_utf8(served: Served) -> None:
    served.feed("db", b"caf\xe9\n")
    with Client(served.path, timeout=20) as c:
        [line, _] = list(c.stream("logs", path="db"))
    assert line["line"] == "caf\ufffd"


def test_logs_follow(served: Served) -> None:
    served.feed("db", b"old\n")
    with Client(served.path, timeout=20) as c:
        stream = c.stream("logs", path="db", n=5, follow=True)
        assert next(stream) == {"id": 1, "path": "db", "line": "old"}
        assert next(stream) == {"id": 1, "ok": True, "following": True}
        served.feed("db", b"new 1\nnew 2\n")
        served.feed("web.api", b"not followed\n")
        assert next(stream)["line"] == "new 1"
        assert next(stream)["line"] == "new 2"
    # the follower is gone: its listener is removed
    wait_until(lambda: served.call(lambda: served.server.clients) == 0, what="the drop")
    assert served.call(lambda: served.backend.outputs["db"].listeners) == []


def test_one_follow_per_connection(served: Served) -> None:
    """A second ``logs -f`` on a connection that follows already is refused with the
    reason (the first goes on); another connection may follow."""
    with raw(served.path) as a, raw(served.path) as b:
        a.sendall(
            encode({"id": 1, "cmd": "logs", "path": "db", "follow": True})
            + encode({"id": 2, "cmd": "logs", "follow": True})
        )
        following, refused = read_messages(a, 2)
        assert following == {"id": 1, "ok": True, "following": True}
        assert refused["id"] == 2 and refused["ok"] is False
        assert "follows logs already (request 1): one follow per connection" in refused["error"]
        b.sendall(encode({"id": 9, "cmd": "logs", "path": "db", "follow": True}))
        assert read_messages(b, 1) == [{"id": 9, "ok": True, "following": True}]
        served.feed("db", b"new\n")
        assert read_messages(a, 1) == [{"id": 1, "path": "db", "line": "new"}]
        assert read_messages(b, 1) == [{"id": 9, "path": "db", "line": "new"}]
    assert len(served.call(lambda: served.backend.outputs["db"].listeners)) <= 2


def test_a_pipelined_flood_gets_a_bounded_share_of_each_turn(sockdir: str) -> None:
    """100 requests sent at once on one connection: 32 are answered per loop turn, and a
    request of another client sent meanwhile is answered in the first turn."""
    loop = ManualLoop()
    backend = FakeBackend(loop)
    server = ControlServer(loop, backend, os.path.join(sockdir, "s.sock"))
    flood, other = raw(server.path), raw(server.path)
    try:
        loop.pump()
        flood.sendall(b"".join(encode({"id": i, "cmd": "info"}) for i in range(100)))
        other.sendall(encode({"id": 1000, "cmd": "info"}))
        loop.pump(rounds=1)
        assert [m["id"] for m in read_messages(other, 1)] == [1000]
        assert len(read_messages(flood, TURN_REQUESTS)) == TURN_REQUESTS
        flood.setblocking(False)
        with pytest.raises(BlockingIOError):
            flood.recv(65536)  # nothing more yet
        flood.setblocking(True)
        loop.pump()
        rest = read_messages(flood, 100 - TURN_REQUESTS)
        assert [m["id"] for m in rest] == list(range(TURN_REQUESTS, 100))
    finally:
        flood.close()
        other.close()
        server.close()
        backend.close()


def test_a_client_that_never_reads_is_cut_off_with_the_reason(sockdir: str) -> None:
    """Past ``max_output`` unread bytes of replies, what the client has not received is
    discarded (but the end of the line it was inside) and its last line is the reason."""
    loop = ManualLoop()
    backend = FakeBackend(loop)
    server = ControlServer(loop, backend, os.path.join(sockdir, "s.sock"), max_output=64 * 1024)
    client = raw(server.path)
    try:
        backend.outputs["db"].feed(0, b"".join(b"%d %s\n" % (i, b"x" * 200) for i in range(900)))
        client.sendall(b"".join(encode({"id": i, "cmd": "logs", "path": "db"}) for i in range(60)))
        loop.pump()  # every request read and handled before the client reads a byte
        client.setblocking(False)
        buf = b""
        while True:
            try:
                data = client.recv(65536)
            except BlockingIOError:
                loop.pump()
                continue
            if not data:
                break
            buf += data
        messages = [json.loads(line) for line in buf.splitlines()]  # whole lines only
        assert messages[-1]["id"] is None
        assert messages[-1]["error"].startswith(
            "disconnected: it sends requests faster than it reads its replies"
        )
        assert max(m["id"] for m in messages if m.get("ok")) < 59
        assert server.clients == 0
    finally:
        client.close()
        server.close()
        backend.close()


def test_a_slow_follower_skips_lines_and_never_blocks_the_loop(sockdir: str) -> None:
    s = Served(os.path.join(sockdir, "ctl.sock"), max_output=32 * 1024)
    try:
        slow = raw(s.path)
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        slow.sendall(encode({"id": 1, "cmd": "logs", "path": "db", "n": 0, "follow": True}))
        assert read_messages(slow, 1) == [{"id": 1, "ok": True, "following": True}]
        chunk = b"".join(b"line %06d padding padding padding\n" % i for i in range(1000))
        for _ in range(20):  # 20k lines, far more than the buffer holds
            s.feed("db", chunk)
            with Client(s.path, timeout=5) as c:  # the loop still answers others at once
                assert c.call("status")["ok"]
        assert s.call(lambda: s.server.clients) == 1  # kept, not dropped
        # now it reads: what it gets is bounded, and says how much it missed
        slow.settimeout(20)
        buf = b""
        lines: list[dict[str, Any]] = []
        dropped = 0
        while len(lines) + dropped < 20_000:
            data = slow.recv(65536)
            assert data, "connection closed"
            buf += data
            *complete, rest = buf.split(b"\n")
            buf = rest
            for raw_line in complete:
                msg = json.loads(raw_line)
                if "line" in msg:
                    lines.append(msg)
                dropped += msg.get("dropped", 0)
        total_bytes = sum(len(json.dumps(m)) for m in lines)
        assert dropped > 0
        assert len(lines) + dropped == 20_000
        assert total_bytes < 32 * 1024 + 300_000  # our buffer + the kernel's socket buffers
        slow.close()
    finally:
        s.stop()


def test_accepting_pauses_when_out_of_fds(sockdir: str) -> None:
    loop = ManualLoop()
    backend = FakeBackend(loop)
    server = ControlServer(loop, backend, os.path.join(sockdir, "s.sock"))
    fd = server.sock.fileno()

    class Exhausted:
        def accept(self) -> Any:
            raise OSError(errno.EMFILE, "Too many open files")

        def fileno(self) -> int:
            return fd

    real = server.sock
    server.sock = Exhausted()  # type: ignore[assignment]
    server._accept()
    assert fd not in loop.readers  # no busy loop on a listening socket it cannot serve
    [(delay, resume)] = loop.later
    assert delay > 0
    server.sock = real
    resume()
    assert loop.readers[fd] == server._accept
    client = raw(server.path)
    loop.pump()
    assert server.clients == 1
    client.close()
    server.close()
    backend.close()


# --- garbage never raises --------------------------------------------------------


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.binary(max_size=400) | st.sampled_from([b"\n", b"{}", b'{"id":1}\n']), max_size=12)
)
def test_the_server_survives_any_bytes(chunks: list[bytes]) -> None:
    with short_dir() as d:
        loop = ManualLoop()
        backend = FakeBackend(loop)
        server = ControlServer(loop, backend, os.path.join(d, "s.sock"))
        try:
            client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            client.connect(server.path)
            client.setblocking(False)
            loop.pump()
            for chunk in chunks:
                client.send(chunk)
                loop.pump()
                try:
                    while client.recv(65536):
                        pass
                except BlockingIOError:
                    pass
            # after the garbage, a newline ends whatever was open, then a real request
            client.send(b"\n" + encode({"id": 424242, "cmd": "status"}))
            loop.pump()
            client.setblocking(True)
            client.settimeout(5)
            buf = b""
            while b'"id":424242' not in buf:
                data = client.recv(65536)
                assert data
                buf += data
            last = json.loads(buf[buf.rindex(b'{"id":424242') :].split(b"\n")[0])
            assert last["ok"] is True
            for line in buf.splitlines():
                msg = json.loads(line)
                assert set(msg) <= {"id", "ok", "error", "nodes", "path", "line", "following"}
            client.close()
        finally:
            server.close()
            backend.close()


# --- handing clients over to a new server (a re-exec) ------------------------------


def test_a_follower_is_handed_over_with_its_unsent_lines_and_half_a_request(sockdir: str) -> None:
    old = Served(os.path.join(sockdir, "old.sock"))
    new = Served(os.path.join(sockdir, "new.sock"))
    try:
        client = raw(old.path)
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        client.sendall(encode({"id": 1, "cmd": "logs", "path": "web", "n": 0, "follow": True}))
        assert read_messages(client, 1) == [{"id": 1, "ok": True, "following": True}]
        idle = raw(old.path)  # connected, no request yet: handed over too
        busy = raw(old.path)  # follows too, but waits for a command: not handed over
        busy.sendall(encode({"id": 1, "cmd": "logs", "path": "db", "n": 0, "follow": True}))
        assert read_messages(busy, 1) == [{"id": 1, "ok": True, "following": True}]
        old.backend.delay["db"] = 60.0
        busy.sendall(encode({"id": 2, "cmd": "stop", "path": "db"}))
        wait_until(lambda: ("stop", "db") in old.backend.commands, what="the stop")
        # the client does not read: lines pile up unsent; it starts a request meanwhile
        old.feed("web.api", b"".join(b"old %05d\n" % i for i in range(20_000)))
        client.sendall(b'{"id": 2, "cmd": "st')
        wait_until(lambda: old.call(lambda: old.server.clients) == 3, what="the clients")

        handed = old.call(old.server.handoff_clients)
        assert len(handed) == 2
        f = next(c for c in handed if c.follows)
        assert f.follows == ((1, "web"),) and f.inbound == b'{"id": 2, "cmd": "st'
        assert len(f.out) > 0  # lines it had yet to receive
        assert [(c.follows, c.out, c.inbound) for c in handed if c is not f] == [((), b"", b"")]
        assert old.call(lambda: old.server.clients) == 1  # only the busy one is left
        for c in handed:
            new.call(lambda c=c: new.server.adopt(c))
        idle.sendall(encode({"id": 7, "cmd": "info"}))
        idle.settimeout(20)
        (info,) = read_messages(idle, 1)
        assert info["id"] == 7 and info["ok"] and info["socket"] == new.path
        new.feed("web.cache", b"new line\n")
        new.feed("db", b"not followed\n")
        client.sendall(b'atus"}\n')  # the rest of the request, to the new server

        client.settimeout(20)
        lines: list[str] = []
        replies: list[dict[str, Any]] = []
        buf = b""
        while not replies or "new line" not in lines:
            data = client.recv(65536)
            assert data, "connection closed"
            buf += data
            *complete, buf = buf.split(b"\n")
            for raw_line in complete:
                msg = json.loads(raw_line)
                assert "dropped" not in msg
                if "line" in msg:
                    lines.append(msg["line"])
                elif msg["id"] == 2:
                    replies.append(msg)
        assert lines == [*(f"old {i:05d}" for i in range(20_000)), "new line"]
        assert replies[0]["ok"] and "nodes" in replies[0]
        client.close()
        idle.close()
        busy.close()
    finally:
        old.stop()
        new.stop()


def test_a_follower_of_a_path_the_reload_removed_is_told_and_closed(sockdir: str) -> None:
    old = Served(os.path.join(sockdir, "old.sock"))
    new = Served(os.path.join(sockdir, "new.sock"))
    try:
        client = raw(old.path)
        client.sendall(encode({"id": 4, "cmd": "logs", "path": "db", "n": 0, "follow": True}))
        assert read_messages(client, 1) == [{"id": 4, "ok": True, "following": True}]
        (f,) = old.call(old.server.handoff_clients)
        new.call(lambda: new.backend.outputs.pop("db"))
        new.call(lambda: new.server.adopt(f))
        client.settimeout(20)
        assert read_messages(client, 1) == [
            {"id": 4, "ok": False, "error": "'db' was removed by a reload"}
        ]
        assert client.recv(100) == b""  # closed
        wait_until(lambda: new.call(lambda: new.server.clients) == 0, what="the close")
        client.close()
    finally:
        old.stop()
        new.stop()
