"""Finding 14 of issue 11: the client trusts only its own socket directory and never hangs.

A default socket directory that another user owns, or that others may write to, is
refused before connecting (exit 3): a fake server in it is never asked. Every
answer is waited for ``--timeout`` seconds at most (default 10), then exit 3.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.cli import otree_cli
from support.harness import short_dir

from otree.control.sockets import default_socket


class FakeServer:
    """Listens at ``path``; answers each request with a forged status, or never."""

    def __init__(self, path: str, answer: bool) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen()
        self.answer = answer
        self.asked = 0
        self.conns: list[socket.socket] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            self.asked += 1
            if self.answer:
                for line in conn.makefile("rb"):
                    rid = json.loads(line)["id"]
                    forged = {"path": "FORGED\x1b[2J", "kind": "service", "state": "running"}
                    reply = {"id": rid, "ok": True, "nodes": [forged], "pid": 1}
                    conn.sendall(json.dumps(reply).encode() + b"\n")

    def close(self) -> None:
        self.sock.close()
        for conn in self.conns:
            conn.close()


@pytest.fixture
def runtime_dir() -> Iterator[str]:
    with short_dir() as d:
        yield d


@pytest.mark.parametrize(("mode", "owner"), [(0o777, None), (0o750, None), (0o700, 65534)])
def test_a_socket_directory_not_our_own_is_not_trusted(
    tmp_path: Path, runtime_dir: str, mode: int, owner: int | None
) -> None:
    tree = tmp_path / "tree.toml"
    tree.write_text('[a]\ncmd = "sleep 1"\n')
    env = {"XDG_RUNTIME_DIR": runtime_dir}
    sock_dir = os.path.join(runtime_dir, "otree")
    os.mkdir(sock_dir)
    os.chmod(sock_dir, mode)
    if owner is not None:
        os.chown(sock_dir, owner, owner)
    os.environ["XDG_RUNTIME_DIR"] = runtime_dir
    try:
        path = default_socket(str(tree))
    finally:
        del os.environ["XDG_RUNTIME_DIR"]
    fake = FakeServer(path, answer=True)
    try:
        for args in (["status", "--tree", str(tree)], ["status"]):
            r = otree_cli(*args, cwd=tmp_path, env=env, timeout=30)
            assert r.returncode == 3, (args, r.stdout, r.stderr)
            assert r.stderr.startswith(f"otree: not trusting the socket directory {sock_dir}:")
            assert "FORGED" not in r.stdout
        assert fake.asked == 0
    finally:
        fake.close()


def test_a_server_that_never_answers_is_given_up_on(runtime_dir: str) -> None:
    path = os.path.join(runtime_dir, "ctl.sock")
    fake = FakeServer(path, answer=False)
    try:
        started = time.monotonic()
        r = otree_cli("status", "--socket", path, "--timeout", "1", timeout=30)
        took = time.monotonic() - started
        assert r.returncode == 3, r.stderr
        assert r.stderr == f"otree: no answer from {path} within 1s\n"
        assert took < 8
        started = time.monotonic()
        r = otree_cli("shutdown", "--socket", path, timeout=60)  # the default: 10 s
        took = time.monotonic() - started
        assert r.returncode == 3, r.stderr
        assert r.stderr == f"otree: no answer from {path} within 10s\n"
        assert 9.5 < took < 25
    finally:
        fake.close()
