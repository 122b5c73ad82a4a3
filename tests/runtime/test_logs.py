"""Output capture: rotating files, the per-service relay and ring buffer, the console."""

from __future__ import annotations

import json
import os
from pathlib import Path

from otree.runtime.loop import Loop
from otree.runtime.output import (
    RING_BYTES,
    RING_LINES,
    TREE_RING_BYTES,
    Console,
    EventLog,
    RotatingFile,
    ServiceOutput,
    describe_event,
    prefixes,
)


def test_rotation_keeps_whole_lines_and_n_backups(tmp_path: Path) -> None:
    path = tmp_path / "svc.log"
    f = RotatingFile(str(path), max_bytes=100, backups=2)
    lines = [f"line {i:03d} ".ljust(19, "x") + "\n" for i in range(30)]  # 20 bytes each
    for i in range(0, 30, 3):
        f.write("".join(lines[i : i + 3]).encode())
    f.close()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["svc.log", "svc.log.1", "svc.log.2"]
    kept = (
        (tmp_path / "svc.log.2").read_text()
        + (tmp_path / "svc.log.1").read_text()
        + path.read_text()
    )
    assert kept == "".join(lines[-len(kept) // 20 :])
    for name in files:
        text = (tmp_path / name).read_text()
        assert len(text) <= 100
        assert text.endswith("\n") or not text


def test_rotation_without_backups_truncates(tmp_path: Path) -> None:
    path = tmp_path / "svc.log"
    f = RotatingFile(str(path), max_bytes=10, backups=0)
    f.write(b"12345\n")
    f.write(b"abcdef\n")
    f.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["svc.log"]
    assert path.read_text() == "abcdef\n"


def test_a_line_longer_than_max_bytes_gets_a_file_of_its_own(tmp_path: Path) -> None:
    path = tmp_path / "svc.log"
    f = RotatingFile(str(path), max_bytes=10, backups=3)
    f.write(b"ab\n" + b"x" * 25 + b"\ncd\n")
    f.close()
    assert (tmp_path / "svc.log.2").read_text() == "ab\n"
    assert (tmp_path / "svc.log.1").read_text() == "x" * 25 + "\n"
    assert path.read_text() == "cd\n"


def test_appends_to_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "svc.log"
    path.write_text("old\n")
    f = RotatingFile(str(path), max_bytes=0, backups=0)
    f.write(b"new\n")
    f.close()
    assert path.read_text() == "old\nnew\n"


def make_output(tmp_path: Path, fd: int) -> ServiceOutput:
    console = Console(None, fd)
    file = RotatingFile(str(tmp_path / "svc.log"), 0, 0)
    return ServiceOutput("web.api", console, b"web.api | ", file)


def test_lines_are_prefixed_and_partial_lines_wait(tmp_path: Path) -> None:
    out_path = tmp_path / "console"
    fd = os.open(out_path, os.O_WRONLY | os.O_CREAT)
    output = make_output(tmp_path, fd)
    output.feed(3, b"one\ntw")
    output.feed(3, b"o\nthree")
    assert out_path.read_bytes() == b"web.api | one\nweb.api | two\n"
    output.eof(3)
    output.close()
    os.close(fd)
    assert out_path.read_bytes() == b"web.api | one\nweb.api | two\nweb.api | three\n"
    assert (tmp_path / "svc.log").read_bytes() == b"one\ntwo\nthree\n"
    assert output.tail(2) == [b"two", b"three"]


def test_two_pipes_keep_their_own_partial_lines(tmp_path: Path) -> None:
    fd = os.open(tmp_path / "console", os.O_WRONLY | os.O_CREAT)
    output = make_output(tmp_path, fd)
    output.feed(3, b"old incarna")
    output.feed(4, b"new\n")
    output.feed(3, b"tion\n")
    output.close()
    os.close(fd)
    assert (tmp_path / "svc.log").read_bytes() == b"new\nold incarnation\n"


def test_ring_buffer_keeps_the_last_thousand_lines(tmp_path: Path) -> None:
    fd = os.open(os.devnull, os.O_WRONLY)
    output = ServiceOutput("a", Console(None, fd), b"a | ")
    for chunk in range(50):
        output.feed(3, b"".join(b"%d\n" % (chunk * 100 + i) for i in range(100)))
    os.close(fd)
    tail = output.tail()
    assert len(tail) == RING_LINES
    assert tail[-1] == b"4999"
    assert tail[0] == b"%d" % (5000 - RING_LINES)
    assert output.tail(3) == [b"4997", b"4998", b"4999"]
    assert output.tail(0) == []


def test_ring_buffer_is_bounded_in_bytes_whatever_the_lines(tmp_path: Path) -> None:
    """Finding 3 of issue 11: 1000 lines of up to 64 KiB per service made 520 MiB for 8
    services; the ring now holds at most ``ring_bytes`` (whole lines, newest kept)."""
    fd = os.open(os.devnull, os.O_WRONLY)
    output = ServiceOutput("a", Console(None, fd), b"a | ", ring_bytes=RING_BYTES)
    line = b"x" * (60 * 1024)
    for i in range(200):  # 12 MB of output
        output.feed(3, b"%04d" % i + line + b"\n")
    os.close(fd)
    assert output.ring_size <= RING_BYTES
    tail = output.tail()
    assert len(tail) == RING_BYTES // (len(line) + 5)  # as many whole lines as fit
    assert tail[-1].startswith(b"0199") and all(len(t) == len(line) + 4 for t in tail)


def test_a_chunk_over_the_bound_keeps_its_last_whole_lines() -> None:
    fd = os.open(os.devnull, os.O_WRONLY)
    output = ServiceOutput("a", Console(None, fd), b"a | ", ring_bytes=10)
    output.feed(3, b"one\ntwo\nthree\nfour\n")  # 19 bytes in one read
    assert output.tail() == [b"four"] and output.ring_size == 5  # "three\nfour\n" is 11
    output.feed(3, b"a-line-longer-than-ten\n")
    assert output.tail() == [] and output.ring_size == 0  # nothing fits: nothing kept
    none = ServiceOutput("b", Console(None, fd), b"b | ", ring_bytes=0)
    none.feed(3, b"x\n")
    os.close(fd)
    assert none.tail() == [] and none.ring_size == 0


def test_the_whole_tree_keeps_at_most_64_mib(tmp_path: Path) -> None:
    """Each service's share of ``TREE_RING_BYTES``: with 512 services, 128 KiB each."""
    from otree.core.spec import Log, Service, Supervisor
    from otree.runtime.driver import Runtime

    children = [Service(f"s{i}", cmd="true") for i in range(511)]
    children.append(Service("big", cmd="true", log=Log(ring_bytes=10**9)))
    runtime = Runtime(Supervisor("root", children=children), console=os.open(os.devnull, 1))
    try:
        caps = {p: out.ring_bytes for p, out in runtime.outputs.items()}
    finally:
        runtime.discard()
    assert set(caps.values()) == {TREE_RING_BYTES // 512}
    assert sum(caps.values()) <= TREE_RING_BYTES


def test_console_never_blocks_and_says_what_it_dropped() -> None:
    loop = Loop()
    r, w = os.pipe()
    console = Console(loop, w, limit=64 * 1024)
    assert not console.blocking
    line = b"x" * 99 + b"\n"
    for _ in range(2000):  # 200 KB into a pipe nobody reads: must not block
        console.write(line * 10, 10)
    drained = b""
    os.set_blocking(r, False)
    while True:
        try:
            chunk = os.read(r, 1 << 20)
        except BlockingIOError:
            if not console._buffer:
                break
            loop.call_later(0, loop.stop)
            loop.run()  # let the console write what it held back
            continue
        drained += chunk
    console.write(b"after\n")
    loop.call_later(0.01, loop.stop)
    loop.run()
    drained += os.read(r, 1 << 20)
    console.close()
    loop.close()
    os.close(r)
    os.close(w)
    text = drained.decode()
    assert "lines dropped from console]" in text
    dropped = int(text.split("[otree: ")[1].split(" lines")[0])
    assert text.count("x" * 99) + dropped == 20000
    assert text.endswith("after\n")


def test_console_keeps_otree_lines_when_full() -> None:
    loop = Loop()
    r, w = os.pipe()
    console = Console(loop, w, limit=1024)
    console.write(b"x" * 200_000 + b"\n")  # fills the pipe and the buffer
    console.write(b"child line\n")  # dropped
    console.write(b"otree: a: exit pid 1 code 1 (abnormal)\n", keep=True)
    os.set_blocking(r, False)
    data = b""
    while True:
        try:
            data += os.read(r, 1 << 20)
        except BlockingIOError:
            if not console._buffer:
                break
            loop.call_later(0, loop.stop)
            loop.run()
    console.close()
    loop.close()
    os.close(r)
    os.close(w)
    assert data.endswith(
        b"[otree: 1 lines dropped from console]\notree: a: exit pid 1 code 1 (abnormal)\n"
    )
    assert b"child line" not in data


def test_console_to_a_regular_file_writes_everything(tmp_path: Path) -> None:
    loop = Loop()
    fd = os.open(tmp_path / "out", os.O_WRONLY | os.O_CREAT)
    console = Console(loop, fd, limit=10)
    assert console.blocking
    for i in range(100):
        console.write(b"%d\n" % i)
    console.close()
    loop.close()
    os.close(fd)
    assert (tmp_path / "out").read_text().split() == [str(i) for i in range(100)]


def test_prefixes_are_aligned_and_coloured_only_on_a_tty() -> None:
    plain = prefixes(["db", "web.api"], tty=False)
    assert plain == {"db": b"db      | ", "web.api": b"web.api | "}
    coloured = prefixes(["db"], tty=True)
    assert coloured["db"].startswith(b"\x1b[") and b"db" in coloured["db"]


def test_event_log_lines(tmp_path: Path) -> None:
    log = EventLog(str(tmp_path / "events.jsonl"))
    log.write({"event": "spawn", "path": "web.api", "pid": 42})
    log.close()
    record = json.loads((tmp_path / "events.jsonl").read_text())
    assert list(record) == ["ts", "event", "path", "pid"]
    assert record["event"] == "spawn" and record["pid"] == 42


def test_describe_event() -> None:
    d = describe_event
    assert d("spawn", "web.api", {"pid": 12}) == "web.api: spawn pid 12"
    exit_fields = {"pid": 12, "signal": "KILL", "normal": False}
    assert d("exit", "db", exit_fields) == "db: exit pid 12 signal KILL (abnormal)"
    exit_fields = {"pid": 1, "code": 0, "normal": True}
    assert d("exit", "db", exit_fields) == "db: exit pid 1 code 0 (normal)"
    assert d("start_failed", "a", {"reason": "boom"}) == "a: cannot start: boom"
    assert d("restart", "", {"strategy": "one_for_all", "child": "a"}) == (
        "(root): restart (one_for_all) after a"
    )
    window = {"strategy": "one_for_one", "child": "a", "count": 2, "intensity": 3, "period": 5.0}
    assert d("restart", "w", window) == "w: restart (one_for_one) after a (2 of 3 in 5 s)"
    assert d("tree_stopped", "", {"exit_code": 1}) == "tree stopped (exit code 1)"


def test_long_lines_are_whole_in_the_file_and_cut_in_the_ring(tmp_path: Path) -> None:
    fd = os.open(os.devnull, os.O_WRONLY)
    file = RotatingFile(str(tmp_path / "svc.log"), max_bytes=0, backups=0)
    output = ServiceOutput("a", Console(None, fd), b"a | ", file)
    big = b"x" * 70000
    output.feed(3, b"one\n" + big + b"\ntwo\n" + big + b"\n")  # one chunk, two long lines
    output.feed(3, big)  # an unfinished long line ...
    output.eof(3)  # ... ended by the pipe's end
    output.close()
    os.close(fd)
    assert (tmp_path / "svc.log").read_bytes() == b"one\n" + big + b"\ntwo\n" + (big + b"\n") * 2
    cut = b"x" * 65536 + "…[4464 bytes]".encode()
    assert output.tail() == [b"one", cut, b"two", cut, cut]


def test_a_console_on_dev_null_formats_nothing_but_the_file_and_ring_get_every_line(
    tmp_path: Path,
) -> None:
    """stdout on /dev/null (``otree run ... >/dev/null``, systemd's ``StandardOutput=null``):
    the prefixed console text is not built at all; the log file and ``otree logs``' ring
    still get every line."""
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        console = Console(None, null)
        assert console.discards
        path = tmp_path / "a.log"
        output = ServiceOutput("a", console, b"a | ", RotatingFile(str(path), 0, 0))
        output.feed(7, b"one\ntwo\nthr")
        output.feed(7, b"ee\n")
        output.close()
        assert path.read_bytes() == b"one\ntwo\nthree\n"
        assert output.tail() == [b"one", b"two", b"three"]
        assert console.dropped == 0
    finally:
        os.close(null)
    with open(tmp_path / "out", "wb") as f:  # a real file is written to, prefixed
        seen = Console(None, f.fileno())
        assert not seen.discards
        ServiceOutput("a", seen, b"a | ").feed(7, b"x\ny\n")
    assert (tmp_path / "out").read_bytes() == b"a | x\na | y\n"
