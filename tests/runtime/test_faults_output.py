"""Faults in otree's output sinks (issue 11): a full disk, /dev/full, logrotate's moves,
long lines, symlinks, forged console lines. Each test is named after its finding."""

from __future__ import annotations

import json
import os
import pty
import pwd
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from support.cli import otree_cli, status
from support.disk import SmallDisk
from support.otreeproc import OtreeProc
from support.treefiles import write_tree
from support.waits import wait_until

Run = Callable[..., OtreeProc]

#: a service printing a numbered line every 10 ms
TICKER = """["sh", "-c", "i=0; while :; do echo \\"line $i\\"; i=$((i+1)); sleep 0.01; done"]"""


def _numbers(text: str) -> list[int]:
    return [int(m) for m in re.findall(r"^line (\d+)$", text, re.M)]


def _whole_lines(text: str) -> bool:
    return all(re.fullmatch(r"line \d+", line) for line in text.splitlines())


def _node(sock: str, path: str) -> dict[str, Any]:
    return status(sock)[path]


def test_f1_a_full_disk_under_every_sink_is_not_fatal(
    small_disk: SmallDisk, otree: Run, tmp_path: Path, sock: str
) -> None:
    """--log-dir, --events and the console all on a full disk: otree supervises on, counts
    what each sink missed, says so once per sink, and writes again once there is room."""
    disk = small_disk.path
    tree = write_tree(tmp_path, f"[talk]\ncmd = {TICKER}\n")
    small_disk.fill()
    run = otree(
        command=[
            "sh",
            "-c",
            'exec "$0" -m otree run "$1" --socket "$2" --log-dir "$3" --events "$4" > "$5"',
            sys.executable,
            str(tree),
            sock,
            str(disk / "logs"),
            str(disk / "events.jsonl"),
            str(disk / "console.txt"),
        ]
    )
    wait_until(lambda: run.proc.poll() is not None or Path(sock).exists(), what="the socket")
    assert run.proc.poll() is None, run.stderr

    def counts() -> tuple[int, int, int]:
        root, talk = _node(sock, ""), _node(sock, "talk")
        return talk["dropped"], root["events_dropped"], root["console_dropped"]

    wait_until(lambda: min(counts()) > 0, what="every sink to drop lines")
    assert _node(sock, "talk")["state"] == "running"
    for sink in ("log file", "event log", "console (stdout)"):
        said = [line for line in run.stderr.splitlines() if f"otree: {sink}" in line]
        assert len(said) == 1, run.stderr  # one line per sink, not one per failed write
        assert "No space left on device" in said[0]

    small_disk.empty()
    log = disk / "logs" / "talk.log"
    wait_until(lambda: log.exists() and len(_numbers(log.read_text())) > 20, what="the log file")
    r = otree_cli("restart", "talk", "--socket", sock)  # a few events to write
    assert r.returncode == 0, r.stderr
    events = disk / "events.jsonl"
    wait_until(lambda: events.exists() and '"event": "spawn"' in events.read_text())
    wait_until(lambda: "talk | line" in (disk / "console.txt").read_text())
    dropped = counts()
    run.send(signal.SIGTERM)
    assert run.wait_exit() == 0, run.stderr
    assert _whole_lines(log.read_text())
    for line in events.read_text().splitlines():
        json.loads(line)  # whole records only
    assert "written again" in run.stderr
    assert min(dropped) > 0


def test_f1_log_file_dev_full_supervises_on(otree: Run, tmp_path: Path, sock: str) -> None:
    """``log.file = "/dev/full"``: every write fails (ENOSPC), the tree runs on."""
    tree = write_tree(
        tmp_path,
        f'[talk]\ncmd = {TICKER}\nlog = {{ file = "/dev/full", max_bytes = 1000 }}\n'
        '[quiet]\ncmd = "sleep 60"\n',
    )
    run = otree("run", tree, "--socket", sock)
    run.wait_for("tree_ready")
    wait_until(lambda: _node(sock, "talk")["dropped"] > 50, what="lines dropped")
    first = run.running_pid("talk")
    r = otree_cli("restart", "talk", "--socket", sock)
    assert r.returncode == 0, r.stderr
    run.wait_for("spawn", "talk", count=2)
    nodes = status(sock)
    assert nodes["talk"]["state"] == "running" and nodes["talk"]["pid"] != first
    assert nodes["quiet"]["dropped"] == 0
    assert run.stderr.count("log file /dev/full: No space left on device") == 1, run.stderr
    run.send(signal.SIGTERM)
    assert run.wait_exit() == 0, run.stderr
    assert not run.find("reexec")


def test_f11_logrotate_without_copytruncate_moves_and_removes(otree: Run, tmp_path: Path) -> None:
    """logrotate's ``mv`` (and a plain ``rm``) of a log file and of the event log: otree
    notices and writes a new file at the path; no line is lost, nothing is fatal."""
    tree = write_tree(
        tmp_path,
        f'[talk]\ncmd = {TICKER}\nlog = {{ file = "talk.log", max_bytes = 0 }}\n'
        f'[small]\ncmd = {TICKER}\nlog = {{ file = "small.log", max_bytes = 3000, backups = 2 }}\n',
    )
    run = otree("run", tree)
    run.wait_for("tree_ready")
    log = tmp_path / "talk.log"
    wait_until(lambda: len(_numbers(log.read_text())) > 10, what="lines in talk.log")
    killed = run.running_pid("talk")
    log.rename(tmp_path / "talk.log.moved")  # logrotate without copytruncate
    run.events_file.rename(tmp_path / "events.moved")
    small = tmp_path / "small.log"
    small.unlink()  # removed, then rotated by size when it fills up
    wait_until(lambda: log.exists() and len(_numbers(log.read_text())) > 10, what="a new talk.log")
    wait_until(lambda: (tmp_path / "small.log.1").exists(), what="small.log rotated")
    os.kill(killed, signal.SIGKILL)
    wait_until(lambda: run.events_file.exists() and run.find("spawn", "talk"), what="new events")
    run.send(signal.SIGTERM)
    assert run.wait_exit() == 0, run.stderr
    numbers = _numbers((tmp_path / "talk.log.moved").read_text() + log.read_text())
    # the first incarnation's lines, then the second's: each one without a gap
    restart = next(i for i in range(1, len(numbers)) if numbers[i] < numbers[i - 1])
    assert numbers[:restart] == list(range(restart))
    assert numbers[restart:] == list(range(len(numbers) - restart))
    assert _whole_lines((tmp_path / "small.log.1").read_text())
    assert "Traceback" not in run.stderr and "reexec" not in run.stdout


def test_sigusr1_reopens_every_log_file(otree: Run, tmp_path: Path) -> None:
    """logrotate's ``postrotate``: ``mv`` the files, then ``kill -USR1`` otree: it opens
    them again at their paths (and lives on; USR1's default action would kill it)."""
    tree = write_tree(
        tmp_path, f'[talk]\ncmd = {TICKER}\nlog = {{ file = "talk.log", max_bytes = 0 }}\n'
    )
    run = otree("run", tree)
    run.wait_for("tree_ready")
    log = tmp_path / "talk.log"
    wait_until(lambda: len(_numbers(log.read_text())) > 10, what="lines in talk.log")
    for turn in range(1, 4):
        log.rename(tmp_path / f"talk.log.{turn}")
        run.send(signal.SIGUSR1)
        wait_until(
            lambda turn=turn: run.stdout.count("otree: SIGUSR1: 2 log files reopened") == turn,
            what="the reopen",
        )
        wait_until(lambda: log.exists() and len(_numbers(log.read_text())) > 5, what="new lines")
    assert run.proc.poll() is None
    run.send(signal.SIGTERM)
    assert run.wait_exit() == 0, run.stderr
    kept = "".join((tmp_path / f"talk.log.{turn}").read_text() for turn in range(1, 4))
    numbers = _numbers(kept + log.read_text())
    assert numbers == list(range(len(numbers)))  # in order, none lost
    assert len(run.find("spawn", "talk")) == 1


LONG_LINES = (
    "import sys, time; o = sys.stdout.buffer; "
    "o.write(b'a' * 200000 + b'\\n'); o.flush(); o.write(b'short\\n'); "
    "o.write(b'b' * 50000); o.flush(); time.sleep(0.3); o.write(b'b' * 50000 + b'\\n'); "
    "o.flush(); time.sleep(60)"
)


def test_f13_a_line_over_64_kib_reaches_the_log_file_whole(
    otree: Run, tmp_path: Path, sock: str
) -> None:
    """A 200 000-byte line and a 100 000-byte one written in two parts: whole in the log
    file; cut at 64 KiB with ``…[N bytes]`` on the console and in ``otree logs``."""
    tree = write_tree(
        tmp_path,
        f'[talk]\ncmd = ["{sys.executable}", "-c", {json.dumps(LONG_LINES)}]\n'
        'log = { file = "talk.log", max_bytes = 150000 }\n',
    )
    run = otree("run", tree, "--socket", sock)
    run.wait_for("tree_ready")
    log = tmp_path / "talk.log"
    cut_a, cut_b = 200000 - 65536, 100000 - 65536
    wait_until(lambda: f"…[{cut_b} bytes]" in run.stdout, what="the second long line")
    logs = otree_cli("logs", "talk", "-n", "3", "--socket", sock)
    run.send(signal.SIGTERM)
    assert run.wait_exit() == 0, run.stderr
    rotated = (tmp_path / "talk.log.1").read_text()
    assert rotated + log.read_text() == "a" * 200000 + "\nshort\n" + "b" * 100000 + "\n"
    assert rotated == "a" * 200000 + "\n"  # a line longer than max_bytes: a file of its own
    shown = [line for line in run.stdout.splitlines() if line.startswith("talk | ")]
    assert shown == [
        "talk | " + "a" * 65536 + f"…[{cut_a} bytes]",
        "talk | short",
        "talk | " + "b" * 65536 + f"…[{cut_b} bytes]",
    ]
    assert logs.returncode == 0, logs.stderr
    assert logs.stdout.splitlines() == [
        "a" * 65536 + f"…[{cut_a} bytes]",
        "short",
        "b" * 65536 + f"…[{cut_b} bytes]",
    ]


FORGER = (
    "import sys, time; o = sys.stdout.buffer; "
    "o.write(b'\\rotree: db: exit pid 1 code 0 (normal)\\n'); "
    "o.write(b'\\x1b[2K\\x1b[1Gotree: tree stopped (exit code 0)\\x07\\n'); "
    "o.write(b'tab\\tstays\\n'); o.flush(); time.sleep(60)"
)


class _Terminal:
    """A pseudo-terminal otree writes to; a thread keeps reading it."""

    def __init__(self) -> None:
        self.master, self.slave = pty.openpty()
        self.name = os.ttyname(self.slave)
        self.data = b""
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self.master, 65536)
            except OSError:
                return
            if not chunk:
                return
            self.data += chunk

    def close(self) -> None:
        os.close(self.slave)
        self._thread.join(10)
        os.close(self.master)


def test_f15_a_service_cannot_forge_otree_lines_on_a_terminal(
    otree: Run, tmp_path: Path, sock: str
) -> None:
    """``\\r`` and ANSI escapes in a child's output are shown escaped on a terminal and in
    ``otree logs``; the log file keeps the raw bytes."""
    tree = write_tree(
        tmp_path,
        f'[talk]\ncmd = ["{sys.executable}", "-c", {json.dumps(FORGER)}]\n'
        'log = { file = "talk.log" }\n',
    )
    term = _Terminal()
    try:
        run = otree(
            env={"NO_COLOR": "1"},
            command=[
                "sh",
                "-c",
                'exec "$0" -m otree run "$1" --socket "$2" --events "$3" > "$4"',
                sys.executable,
                str(tree),
                sock,
                str(tmp_path / "events.jsonl"),
                term.name,
            ],
        )
        run.wait_for("tree_ready")
        wait_until(lambda: b"tab\tstays" in term.data, what="the lines on the terminal")
        logs = otree_cli("logs", "talk", "--socket", sock)
        run.send(signal.SIGTERM)
        assert run.wait_exit() == 0, run.stderr
    finally:
        term.close()
    screen = term.data.replace(b"\r\n", b"\n")  # the terminal's own line ends (onlcr)
    assert b"\r" not in screen and b"\x1b" not in screen and b"\x07" not in screen
    assert b"talk | \\rotree: db: exit pid 1 code 0 (normal)\n" in screen
    assert b"talk | \\x1b[2K\\x1b[1Gotree: tree stopped (exit code 0)\\a\n" in screen
    assert logs.returncode == 0, logs.stderr
    assert logs.stdout.splitlines() == [
        "\\rotree: db: exit pid 1 code 0 (normal)",
        "\\x1b[2K\\x1b[1Gotree: tree stopped (exit code 0)\\a",
        "tab\tstays",
    ]
    assert (tmp_path / "talk.log").read_bytes().startswith(b"\rotree: db: exit pid 1 code 0")


@pytest.fixture
def other_user() -> Iterator[int]:
    """A throwaway user (no home, no login), removed at teardown: its uid."""
    name = f"otreet{os.getpid() % 100000}"
    subprocess.run(["useradd", "-M", "-s", "/usr/sbin/nologin", name], check=True)
    try:
        yield pwd.getpwnam(name).pw_uid
    finally:
        subprocess.run(["userdel", name], check=False)


def test_f8_log_files_never_follow_a_planted_symlink(
    other_user: int, otree: Run, tmp_path: Path, sock: str
) -> None:
    """Another user owns a directory (or plants a link in a sticky one, like /tmp) where a
    log file, --log-dir or --events points: refused at load (exit 2, the key path) and at
    run, and a reload to such a tree is refused; the root-only file stays untouched."""
    secret = tmp_path / "secret"
    secret.write_text("root only\n")
    secret.chmod(0o600)
    owned = tmp_path / "owned"  # belongs to the other user
    owned.mkdir()
    os.chown(owned, other_user, other_user)
    os.symlink(secret, owned / "app.log")
    sticky = tmp_path / "sticky"  # root-owned and sticky, as /tmp
    sticky.mkdir()
    sticky.chmod(0o1777)
    os.symlink(secret, sticky / "app.log")
    os.lchown(sticky / "app.log", other_user, other_user)
    fifo = tmp_path / "fifo.log"
    os.mkfifo(fifo)

    def tree_with(file: str) -> Path:
        return write_tree(tmp_path, f'[app]\ncmd = "sleep 60"\nlog = {{ file = "{file}" }}\n')

    cases = {
        str(owned / "app.log"): "a symbolic link",
        str(owned / "plain.log"): f"the directory {owned} is writable by user {other_user}",
        str(owned / "new" / "app.log"): f"the directory {owned} is writable by user",
        str(sticky / "app.log"): "a symbolic link",
        str(fifo): "a FIFO, not a regular file",
        "/proc/self/status": "is under /proc",
    }
    for file, reason in cases.items():
        tree = tree_with(file)
        for command in ("check", "run"):
            args = [command, str(tree)] + (["--socket", sock] if command == "run" else [])
            r = otree_cli(*args)
            assert r.returncode == 2, (file, command, r.stdout, r.stderr)
            assert f"{tree}:3: app.log.file: " in r.stderr and reason in r.stderr, r.stderr
            assert "Traceback" not in r.stderr
    for extra, where in (
        (["--log-dir", str(owned)], f"the directory {owned} is writable"),
        (["--log-dir", str(sticky)], "a symbolic link"),
        (["--events", str(owned / "events.jsonl")], "--events "),
        (["--events", str(sticky / "app.log")], "a symbolic link"),
    ):
        tree = write_tree(tmp_path, '[app]\ncmd = "sleep 60"\n')
        r = otree_cli("run", str(tree), "--socket", sock, *extra)
        assert r.returncode == 2 and where in r.stderr, (extra, r.stderr)

    tree = write_tree(tmp_path, '[app]\ncmd = "sleep 60"\n')
    run = otree("run", tree, "--socket", sock)
    run.wait_for("tree_ready")
    tree_with(str(sticky / "app.log"))
    r = otree_cli("reload", "--socket", sock)
    assert r.returncode != 0 and "a symbolic link" in r.stderr, r.stderr
    assert status(sock)["app"]["pid"] == run.running_pid("app")  # nothing changed
    run.send(signal.SIGTERM)
    assert run.wait_exit() == 0, run.stderr
    assert secret.read_text() == "root only\n"
