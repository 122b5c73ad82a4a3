"""The client side in-process: finding the socket, rendering status, exit codes, paths."""

from __future__ import annotations

import os
import socket
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.harness import Served, short_dir

from otree.cli import control
from otree.cli.main import run_cli
from otree.control.logview import file_tail
from otree.control.server import (
    NotRunning,
    default_socket,
    ensure_private_dir,
    run_socket,
    socket_dir,
    tree_identity,
    tree_info,
)
from otree.errors import ControlError


@pytest.fixture
def runtime_dir(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """XDG_RUNTIME_DIR pointing at a fresh private directory; OTREE_SOCKET unset."""
    with short_dir() as d:
        monkeypatch.setenv("XDG_RUNTIME_DIR", d)
        monkeypatch.delenv("OTREE_SOCKET", raising=False)
        yield d


# --- default paths -----------------------------------------------------------------


def test_socket_dir_prefers_xdg_runtime_dir(
    runtime_dir: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert socket_dir() == os.path.join(runtime_dir, "otree")
    monkeypatch.delenv("TMPDIR", raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", "relative/dir")
    assert socket_dir() == f"/tmp/otree-{os.getuid()}"
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    assert socket_dir() == f"/tmp/otree-{os.getuid()}"


def test_default_socket_depends_on_the_real_file(
    runtime_dir: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "tree.toml").write_text("")
    (tmp_path / "app.py").write_text("")
    os.symlink(tmp_path / "tree.toml", tmp_path / "link.toml")
    monkeypatch.chdir(tmp_path)
    a = default_socket("tree.toml")
    assert a == default_socket(str(tmp_path / "tree.toml")) == default_socket("link.toml")
    assert os.path.dirname(a) == os.path.join(runtime_dir, "otree")
    assert os.path.basename(a).startswith("tree-") and a.endswith(".sock")
    # a Python file: one socket per file, whatever the attribute
    assert default_socket("app.py:tree") == default_socket("app.py:other") != a
    assert tree_identity("app.py:tree") == ("app", str((tmp_path / "app.py").resolve()))
    # a module path is known by the argument and the directory
    stem, key = tree_identity("pkg.mod:tree")
    assert (stem, key) == ("pkg.mod", f"pkg.mod:tree@{os.path.realpath(tmp_path)}")
    assert len(os.fsencode(default_socket("x" * 300 + ".toml"))) < 108


def test_run_socket_precedence(
    runtime_dir: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    assert run_socket("tree.toml", "/tmp/given.sock") == "/tmp/given.sock"
    monkeypatch.setenv("OTREE_SOCKET", "/tmp/env.sock")
    assert run_socket("tree.toml", None) == "/tmp/env.sock"
    assert run_socket("tree.toml", "/tmp/given.sock") == "/tmp/given.sock"
    monkeypatch.delenv("OTREE_SOCKET")
    path = run_socket("tree.toml", None)
    assert path == default_socket("tree.toml")
    assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700


def test_a_socket_dir_open_to_others_is_refused(tmp_path: Path) -> None:
    d = tmp_path / "shared"
    d.mkdir()
    d.chmod(0o777)
    with pytest.raises(ControlError) as info:
        ensure_private_dir(str(d))
    assert str(info.value) == (
        f"the socket directory {d} is open to other users (mode 0777, expected 0700)"
    )
    f = tmp_path / "file"
    f.write_text("")
    with pytest.raises(ControlError, match="cannot create the socket directory"):
        ensure_private_dir(str(f))


def test_tree_info(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "app.py").write_text("")
    monkeypatch.chdir(tmp_path)
    assert tree_info("app.py:tree") == {
        "tree": "app.py:tree",
        "tree_file": str(tmp_path / "app.py"),
    }
    assert tree_info("pkg.mod:tree") == {"tree": "pkg.mod:tree", "tree_file": None}
    assert tree_info(None) == {"tree": None, "tree_file": None}


# --- finding the running tree --------------------------------------------------------


def test_resolve_precedence(runtime_dir: str, monkeypatch: pytest.MonkeyPatch) -> None:
    assert control.resolve_socket("/s/given", "tree.toml") == "/s/given"
    monkeypatch.setenv("OTREE_SOCKET", "/s/env")
    assert control.resolve_socket(None, "tree.toml") == "/s/env"
    monkeypatch.delenv("OTREE_SOCKET")
    assert control.resolve_socket(None, "tree.toml") == default_socket("tree.toml")


def test_discovery_finds_the_tree_run_here(runtime_dir: str, tmp_path: Path) -> None:
    d = os.path.join(runtime_dir, "otree")
    ensure_private_dir(d)
    with pytest.raises(NotRunning, match="no otree is running for"):
        control.resolve_socket(None, None)
    first = Served(os.path.join(d, "a.sock"))  # its info says: run in os.getcwd()
    try:
        assert control.resolve_socket(None, None) == first.path
        with pytest.raises(NotRunning):
            control.resolve_socket(None, None, cwd=str(tmp_path))  # not from there
        # a stale socket beside it is ignored
        stale = os.path.join(d, "stale.sock")
        s = socket.socket(socket.AF_UNIX)
        s.bind(stale)
        s.close()
        assert control.resolve_socket(None, None) == first.path
        second = Served(os.path.join(d, "b.sock"))
        try:
            with pytest.raises(ControlError, match="several trees run from here"):
                control.resolve_socket(None, None)
            assert run_cli(["status"]) == 2
        finally:
            second.stop()
    finally:
        first.stop()


# --- exit codes ------------------------------------------------------------------------


def test_not_running_exits_3(runtime_dir: str, capsys: pytest.CaptureFixture[str]) -> None:
    sock = os.path.join(runtime_dir, "none.sock")
    for args in (["status"], ["stop", "x"], ["logs"], ["shutdown"]):
        assert run_cli([*args, "--socket", sock]) == 3
        err = capsys.readouterr().err
        assert err == f"otree: no otree is running at {sock} (no such socket)\n"


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(["start"]) == 2
    assert "the following arguments are required: PATH" in capsys.readouterr().err
    assert run_cli(["logs", "-n", "x"]) == 2
    assert "not a number of lines: 'x'" in capsys.readouterr().err


def test_refusal_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    with short_dir() as d:
        served = Served(os.path.join(d, "s.sock"))
        served.backend.refuse["web"] = "'web' is not running (stopped)"
        try:
            assert run_cli(["start", "web", "--socket", served.path]) == 1
            assert capsys.readouterr() == ("", "otree: 'web' is not running (stopped)\n")
            assert run_cli(["stop", "db", "--socket", served.path]) == 0
            assert capsys.readouterr() == ("db: stopped\n", "")
            assert run_cli(["start", "db", "--socket", served.path]) == 0
            assert capsys.readouterr().out == "db: started (pid 101)\n"
        finally:
            served.stop()


# --- rendering --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (None, ""),
        (0.04, "0.0s"),
        (4.25, "4.2s"),
        (10, "10s"),
        (59.9, "59s"),
        (62, "1m 02s"),
        (3599, "59m 59s"),
        (3600 * 3 + 300, "3h 05m"),
        (86400 * 2 + 3600 * 3, "2d 03h"),
    ],
)
def test_human_duration(seconds: float | None, text: str) -> None:
    assert control.human_duration(seconds) == text


def test_describe_exit() -> None:
    assert control.describe_exit(None) == ""
    assert control.describe_exit({"code": 0, "normal": True}) == "code 0"
    assert control.describe_exit({"code": 3, "normal": False}) == "code 3 (crash)"
    assert control.describe_exit({"signal": "TERM", "normal": True}) == "signal TERM"
    assert control.describe_exit({"signal": "KILL", "normal": False}) == "signal KILL (crash)"


NODES = [
    {
        "path": "",
        "kind": "supervisor",
        "state": "running",
        "pid": None,
        "uptime": 3725.0,
        "restarts": 0,
        "last_exit": None,
    },
    {
        "path": "db",
        "kind": "service",
        "state": "running",
        "pid": 4242,
        "uptime": 3725.0,
        "restarts": 0,
        "last_exit": None,
    },
    {
        "path": "web",
        "kind": "supervisor",
        "state": "running",
        "pid": None,
        "uptime": 65.0,
        "restarts": 0,
        "last_exit": None,
    },
    {
        "path": "web.api",
        "kind": "service",
        "state": "running",
        "pid": 4300,
        "uptime": 5.5,
        "restarts": 2,
        "last_exit": {"signal": "KILL", "normal": False},
    },
    {
        "path": "web.jobs",
        "kind": "service",
        "state": "stopped",
        "pid": None,
        "uptime": None,
        "restarts": 0,
        "last_exit": {"code": 0, "normal": True},
    },
]


def test_render_status_plain() -> None:
    assert control.render_status(NODES) == (
        "PATH          STATE    PID   UPTIME  RESTARTS  LAST EXIT\n"
        "(root)        running        1h 02m  0\n"
        "  db          running  4242  1h 02m  0\n"
        "  web         running        1m 05s  0\n"
        "    web.api   running  4300  5.5s    2         signal KILL (crash)\n"
        "    web.jobs  stopped                0         code 0"
    )
    lines = control.render_status(NODES).splitlines()
    assert [line.split()[0] for line in lines[1:]] == ["(root)", "db", "web", "web.api", "web.jobs"]
    starts = [line.index(line.split()[1]) for line in lines]  # the STATE column lines up
    assert len(set(starts)) == 1
    assert lines[4].endswith("2         signal KILL (crash)")
    assert lines[5].split() == ["web.jobs", "stopped", "0", "code", "0"]


def test_render_status_colour() -> None:
    text = control.render_status(NODES, colour=True)
    assert "\x1b[32mrunning\x1b[0m" in text
    assert "\x1b[2mstopped\x1b[0m" in text
    assert "\x1b[31msignal KILL (crash)\x1b[0m" in text
    plain = [line.replace("\x1b[0m", "") for line in text.splitlines()]
    for code in ("\x1b[1m", "\x1b[2m", "\x1b[31m", "\x1b[32m"):
        plain = [line.replace(code, "") for line in plain]
    assert plain == control.render_status(NODES).splitlines()  # same layout, only colour added


def test_render_header() -> None:
    assert control.render_header({"tree": "tree.toml", "pid": 7, "uptime": 62.0}) == (
        "tree.toml: otree pid 7, up 1m 02s"
    )


# --- log files -----------------------------------------------------------------------------


def test_file_tail(tmp_path: Path) -> None:
    f = tmp_path / "x.log"
    f.write_bytes(b"".join(b"%d\n" % i for i in range(100_000)) + b"partial")
    assert file_tail(str(f), 3) == [b"99997", b"99998", b"99999"]
    assert file_tail(str(f), 0) == []
    assert len(file_tail(str(f), 200_000)) == 100_000
    assert file_tail(str(f), 50_000, limit=1000)[-1] == b"99999"
    assert len(file_tail(str(f), 50_000, limit=1000)) < 50_000  # bounded reading
    assert file_tail(str(tmp_path / "missing"), 5) == []
