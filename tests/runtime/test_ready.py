"""Readiness probes in the loop, against real sockets and commands (no engine)."""

from __future__ import annotations

import array
import os
import socket
from pathlib import Path

import pytest
from support.treefiles import free_port
from test_plumbing import run_loop

from otree.core.spec import ReadyCmd, ReadyDelay, ReadyTcp
from otree.runtime import checks, notify, posix, probes
from otree.runtime.loop import Loop
from otree.runtime.notify import NotifySocket


class Answers:
    def __init__(self) -> None:
        self.ready = 0
        self.failed: list[str] = []

    def on_ready(self) -> None:
        self.ready += 1

    def on_failed(self, reason: str) -> None:
        self.failed.append(reason)

    @property
    def answered(self) -> bool:
        return bool(self.ready or self.failed)


def test_delay() -> None:
    loop, answers = Loop(), Answers()
    probe = probes.DelayProbe(loop, ReadyDelay(delay=0.05), answers.on_ready, answers.on_failed)
    start = loop.clock()
    probe.start()
    run_loop(loop, lambda: answers.answered)
    assert loop.clock() - start >= 0.05
    assert (answers.ready, answers.failed) == (1, [])
    loop.close()


def test_tcp_retries_until_something_listens() -> None:
    loop, answers = Loop(), Answers()
    port = free_port()
    spec = ReadyTcp(tcp=f"127.0.0.1:{port}")
    probe = probes.TcpProbe(loop, spec, answers.on_ready, answers.on_failed)
    probe.start()
    server = socket.socket()
    attempts: list[bool] = []

    def listen_later() -> None:
        attempts.append(True)
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", port))
        server.listen()

    loop.call_later(0.2, listen_later)
    run_loop(loop, lambda: answers.answered)
    assert attempts and (answers.ready, answers.failed) == (1, [])
    server.close()
    loop.close()


def test_tcp_cancel_stops_the_attempts() -> None:
    loop, answers = Loop(), Answers()
    probe = probes.TcpProbe(
        loop, ReadyTcp(tcp=f"127.0.0.1:{free_port()}"), answers.on_ready, answers.on_failed
    )
    probe.start()
    loop.call_later(0.12, probe.cancel)
    loop.call_later(0.3, loop.stop)
    loop.run()
    assert not answers.answered
    assert loop._timeout() is None  # no retry timer left behind
    loop.close()


def test_tcp_unresolvable_host_fails() -> None:
    loop, answers = Loop(), Answers()
    spec = ReadyTcp(tcp="no-such-host.invalid:80")
    probes.TcpProbe(loop, spec, answers.on_ready, answers.on_failed).start()
    run_loop(loop, lambda: answers.answered)
    assert answers.failed and "cannot resolve 'no-such-host.invalid'" in answers.failed[0]
    loop.close()


def test_notify_ready_keeps_the_socket(tmp_path: Path) -> None:
    loop, answers = Loop(), Answers()
    path = str(tmp_path / "n.sock")
    sock = NotifySocket(loop, path)
    probe = probes.NotifyProbe(loop, sock, answers.on_ready, answers.on_failed)
    probe.start()
    client = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)

    def send(data: bytes) -> None:
        client.sendto(data, path)

    loop.call_later(0.01, lambda: send(b"STATUS=warming up"))
    loop.call_later(0.02, lambda: send(b"STATUS=ok\nREADY=1\n"))
    run_loop(loop, lambda: answers.answered)
    assert (answers.ready, answers.failed) == (1, [])
    send(b"STATUS=serving\nWATCHDOG=1")  # the socket outlives the readiness answer
    run_loop(loop, lambda: sock.status_text == "serving")
    sock.close()  # once the process is gone
    assert not os.path.exists(path)
    client.close()
    loop.close()


def test_notify_socket_closes_passed_fds_and_reads_in_bursts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A BARRIER=1 fd is closed at once (systemd-notify waits for that); a flood is
    taken BURST datagrams per wake-up, so the loop's other work goes on. (The kernel
    queues few datagrams per socket, net.unix.max_dgram_qlen, 10 by default: a small
    BURST here.)"""
    monkeypatch.setattr(notify, "BURST", 3)
    loop = Loop()
    path = str(tmp_path / "n.sock")
    sock = NotifySocket(loop, path)
    client = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    client.setblocking(False)
    r, w = os.pipe()
    fds = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [w]))]
    client.sendmsg([b"BARRIER=1"], fds, 0, path)
    os.close(w)
    for i in range(8):
        client.sendto(b"STATUS=%d" % i, path)
    assert [sock.read(), sock.read(), sock.read(), sock.read()] == [3, 3, 3, 0]
    assert sock.status_text == "7"
    assert os.read(r, 1) == b""  # every copy of the barrier's write end is closed
    os.close(r)
    sock.close()
    client.close()
    loop.close()


def cmd_probe(loop: Loop, spec: ReadyCmd, answers: Answers) -> probes.CmdProbe:
    env = posix.child_env({})
    return probes.CmdProbe(loop, spec, env, None, answers.on_ready, answers.on_failed)


def test_cmd_runs_until_it_succeeds(tmp_path: Path) -> None:
    loop, answers = Loop(), Answers()
    flag = tmp_path / "flag"
    spec = ReadyCmd(cmd=["sh", "-c", f"test -e {flag}"], interval=0.02)
    probe = cmd_probe(loop, spec, answers)
    probe.start()
    loop.call_later(0.15, flag.touch)
    run_loop(loop, lambda: answers.answered)
    assert (answers.ready, answers.failed) == (1, [])
    loop.close()


def test_cmd_that_cannot_run_fails() -> None:
    loop, answers = Loop(), Answers()
    spec = ReadyCmd(cmd=["no-such-checker"])
    cmd_probe(loop, spec, answers).start()
    assert answers.failed == ["ready cmd: No such file or directory: 'no-such-checker'"]
    loop.close()


def test_cmd_cancel_kills_the_running_check() -> None:
    loop, answers = Loop(), Answers()
    spec = ReadyCmd(cmd=["sleep", "30"])
    probe = cmd_probe(loop, spec, answers)
    probe.start()
    pid = probe._pid
    assert pid is not None
    probe.cancel()
    run_loop(loop, lambda: not loop.watching(pid))
    assert not answers.answered
    loop.close()


def test_a_network_check_of_a_host_name_looks_it_up_off_the_loop() -> None:
    """``localhost`` is a name: the check resolves it through the lookups' worker thread."""
    loop = Loop()
    family, _, _, _, addr = socket.getaddrinfo("localhost", 0, type=socket.SOCK_STREAM)[0]
    server = socket.socket(family)  # where 'localhost' goes first (the check tries that)
    server.bind(addr[:2])
    server.listen()
    answers: list[tuple[bool, str]] = []
    attempt = checks.tcp(
        loop, ("localhost", server.getsockname()[1]), 5.0, lambda ok, why: answers.append((ok, why))
    )
    attempt.start()
    run_loop(loop, lambda: bool(answers))
    assert answers == [(True, "")]
    refused = checks.tcp(
        loop, ("127.0.0.1", free_port()), 5.0, lambda ok, why: answers.append((ok, why))
    )
    refused.start()
    run_loop(loop, lambda: len(answers) == 2)
    assert answers[1][0] is False and "refused" in answers[1][1]
    server.close()
    loop.close()
