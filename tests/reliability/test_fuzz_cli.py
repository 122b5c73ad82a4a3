"""Fuzzing through the real CLI boundary.

* random tree files to ``otree check`` in a subprocess: exit 0 with a drawn
  tree, or exit 2 with ``otree: ...`` lines; never a traceback;
* random bytes, JSON and near-miss requests to the control socket of a live
  ``otree run``, each followed by a successful ``otree status``: the server
  never dies, and never re-executes itself (that would hide a crash).

Short version: 30 examples each; long version (``OTREE_LONG=1``): 500.
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.otreeproc import OtreeProc
from support.waits import DEADLINE

from otree.cli.main import run_cli
from otree.control.client import Client

from . import fuzzdata

RunOtree = Callable[..., OtreeProc]
SLOW_OK = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture]


def check_cli_output(rc: int, out: str, err: str) -> None:
    assert "Traceback" not in err, err
    assert rc in (0, 2), (rc, err)
    if rc == 0:
        assert out.startswith("root"), out
    else:
        assert err, "exit 2 without a message"
        for line in err.splitlines():
            assert line.startswith("otree: "), f"stray stderr line {line!r} in:\n{err}"


def fuzz_check_subprocess(tmp_path: Path, examples: int) -> None:
    file = tmp_path / "tree.toml"

    @settings(max_examples=examples, deadline=None, suppress_health_check=SLOW_OK)
    @given(fuzzdata.tree_files)
    def check(data: bytes) -> None:
        file.write_bytes(data)
        r = subprocess.run(
            [sys.executable, "-m", "otree", "check", str(file)],
            capture_output=True,
            timeout=DEADLINE,
            stdin=subprocess.DEVNULL,
            env={"PATH": "/usr/bin:/bin", "NO_COLOR": "1"},
        )
        check_cli_output(r.returncode, r.stdout.decode(), r.stderr.decode())

    check()


def test_random_tree_files_to_otree_check(tmp_path: Path) -> None:
    fuzz_check_subprocess(tmp_path, 30)


@pytest.mark.slow
def test_random_tree_files_to_otree_check_long(tmp_path: Path) -> None:
    fuzz_check_subprocess(tmp_path, 500)


@settings(max_examples=300, deadline=None, suppress_health_check=SLOW_OK)
@given(fuzzdata.tree_files)
def test_random_tree_files_to_the_cli_in_process(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], data: bytes
) -> None:
    """The same through ``run_cli`` in this process: many more examples, cheaply."""
    file = tmp_path / "tree.toml"
    file.write_bytes(data)
    capsys.readouterr()
    rc = run_cli(["check", str(file)])
    out, err = capsys.readouterr()
    check_cli_output(rc, out, err)


TREE = """\
[db]
cmd = ["sleep", "600"]

[web]
strategy = "one_for_all"

[web.api]
cmd = ["sh", "-c", "echo api up; exec sleep 600"]

[web.cache]
cmd = ["sleep", "600"]
"""


def send_and_end(path: str, chunks: list[bytes], ending: str) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        s.connect(path)
        for chunk in chunks:
            try:
                s.sendall(chunk)
            except OSError:  # the server may close on us after a bad line: fine
                return
        with contextlib.suppress(OSError):
            if ending == "shutdown_read":
                s.shutdown(socket.SHUT_WR)
                s.settimeout(2)
                while s.recv(65536):
                    pass
            elif ending == "read_some":
                s.settimeout(0.05)
                s.recv(65536)


def fuzz_socket(tmp_path: Path, otree: RunOtree, sock: str, examples: int) -> None:
    (tmp_path / "tree.toml").write_text(TREE)
    run = otree("run", "tree.toml", "--socket", sock)
    run.wait_for("tree_ready")

    @settings(max_examples=examples, deadline=None, suppress_health_check=SLOW_OK)
    @given(st.lists(fuzzdata.messages, min_size=1, max_size=6), fuzzdata.endings)
    def check(chunks: list[bytes], ending: str) -> None:
        send_and_end(sock, chunks, ending)
        r = subprocess.run(
            [sys.executable, "-m", "otree", "status", "--json", "--socket", sock],
            capture_output=True,
            text=True,
            timeout=DEADLINE,
            stdin=subprocess.DEVNULL,
        )
        assert r.returncode == 0, (r.stderr, run.describe())
        paths = [n["path"] for n in json.loads(r.stdout)["nodes"]]
        assert paths == ["", "db", "web", "web.api", "web.cache"]
        assert run.proc.poll() is None

    check()
    with Client(sock, timeout=DEADLINE) as client:
        assert client.call("info")["pid"] == run.pid
    assert not run.find("reexec"), "otree re-executed itself (an internal error?)"
    assert "Traceback" not in run.stderr and "bug" not in run.stderr, run.stderr


def test_random_traffic_to_a_live_control_socket(
    tmp_path: Path, otree: RunOtree, sock: str
) -> None:
    fuzz_socket(tmp_path, otree, sock, 30)


@pytest.mark.slow
def test_random_traffic_to_a_live_control_socket_long(
    tmp_path: Path, otree: RunOtree, sock: str
) -> None:
    fuzz_socket(tmp_path, otree, sock, 500)
