"""otree under a service manager that speaks sd_notify (issue 15): a datagram socket stands
in for systemd. READY with MAINPID, RELOADING then READY (the PID unchanged) around a
reload, WATCHDOG=1 every half period, STATUS lines, STOPPING; children never see the
variables. And trees of trees: an otree under an otree, gated on its readiness."""

from __future__ import annotations

import os
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support.cli import otree_cli
from support.otreeproc import OtreeProc
from support.treefiles import write_tree
from support.waits import DEADLINE, wait_until

Run = Callable[..., OtreeProc]
TREE = '[a]\ncmd = "sleep 60"\n[b]\ncmd = "sleep 60"\n'


class Systemd:
    """A notify socket, and every datagram sent to it (each as its list of lines)."""

    def __init__(self, address: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.sock.setblocking(False)
        self.got: list[list[str]] = []

    def read(self) -> list[list[str]]:
        while True:
            try:
                self.got.append(self.sock.recv(65536).decode().splitlines())
            except BlockingIOError:
                return self.got

    def wait(self, line: str, count: int = 1) -> list[list[str]]:
        wait_until(lambda: sum(line in m for m in self.read()) >= count, what=line)
        return self.got


@pytest.fixture
def systemd() -> Iterator[tuple[Systemd, str]]:
    with tempfile.TemporaryDirectory(prefix="otn-", dir="/tmp") as d:
        path = os.path.join(d, "notify")
        manager = Systemd(path)
        try:
            yield manager, path
        finally:
            manager.sock.close()


def environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().partition("=")[::2] for item in raw if item)


def test_ready_reloading_ready_watchdog_status_stopping(
    otree: Run, tmp_path: Path, sock: str, systemd: tuple[Systemd, str]
) -> None:
    manager, address = systemd
    env = {"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "400000"}
    run = otree("run", write_tree(tmp_path, TREE), "--socket", sock, env=env)
    run.wait_for("tree_ready")
    got = manager.wait("READY=1")
    ready = next(m for m in got if "READY=1" in m)
    assert f"MAINPID={run.pid}" in ready and "STATUS=2 running" in ready
    # the watchdog, every half period (0.2 s), from otree's loop
    start = len([m for m in manager.read() if m == ["WATCHDOG=1"]])
    time.sleep(1.0)
    pets = len([m for m in manager.read() if m == ["WATCHDOG=1"]]) - start
    assert 3 <= pets <= 7, pets
    # the children see none of it
    child = environ(run.running_pid("a"))
    assert "NOTIFY_SOCKET" not in child and "WATCHDOG_USEC" not in child

    r = otree_cli("reload", "--socket", sock)
    assert r.returncode == 0, r.stderr
    got = manager.wait("READY=1", count=2)
    lines = [line for m in got for line in m if line.split("=")[0] in ("READY", "RELOADING")]
    assert lines[-3:] == ["READY=1", "RELOADING=1", "READY=1"]
    reloading = next(m for m in got if "RELOADING=1" in m)
    assert any(line.startswith("MONOTONIC_USEC=") for line in reloading)
    again = [m for m in got if "READY=1" in m][-1]
    assert f"MAINPID={run.pid}" in again  # the same process, re-executed

    otree_cli("stop", "b", "--socket", sock)
    manager.wait("STATUS=1 running, 1 stopped")  # at most a second later

    otree_cli("shutdown", "--socket", sock)
    assert run.wait_exit() == 0
    assert ["STOPPING=1"] in manager.read()


def test_an_abstract_notify_socket(otree: Run, tmp_path: Path, sock: str) -> None:
    name = f"otree-test-{os.getpid()}-{time.monotonic_ns()}"
    manager = Systemd("\0" + name)
    try:
        run = otree(
            "run", write_tree(tmp_path, TREE), "--socket", sock, env={"NOTIFY_SOCKET": "@" + name}
        )
        run.wait_for("tree_ready")
        manager.wait("READY=1")
    finally:
        manager.sock.close()


def test_a_tree_of_trees_waits_for_the_inner_tree(otree: Run, tmp_path: Path, sock: str) -> None:
    """An otree whose service is ``otree run inner.toml`` with ``ready = { notify = true }``:
    the outer tree starts what comes after it only once the inner tree is ready."""
    import sys

    inner = tmp_path / "inner.toml"
    inner.write_text('[slow]\ncmd = "sleep 60"\nready = { delay = 1.0 }\n')
    inner_sock = os.path.join(os.path.dirname(sock), "inner.sock")
    outer = f"""\
strategy = "rest_for_one"

[inner]
cmd = [{sys.executable!r}, "-m", "otree", "run", {str(inner)!r}, "--socket", {inner_sock!r}]
ready = {{ notify = true, timeout = {DEADLINE:g} }}

[after]
cmd = "sleep 60"
"""
    started = time.time()
    run = otree("run", write_tree(tmp_path, outer.replace("'", '"')), "--socket", sock)
    ready = run.wait_for("ready", "inner")
    assert ready["ts"] - started >= 1.0  # the inner tree's own readiness delay came first
    after = run.wait_for("spawn", "after")
    assert after["ts"] >= ready["ts"]
    otree_cli("shutdown", "--socket", sock)
    assert run.wait_exit() == 0
