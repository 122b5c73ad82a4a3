"""Under a terminal and under systemd (issue 15's defects): a hangup from the terminal
stops the tree; a TERM to otree and every child at once restarts nothing."""

from __future__ import annotations

import contextlib
import json
import os
import pty
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

from support.otreeproc import OtreeProc
from support.procfs import pid_alive
from support.treefiles import write_tree
from support.waits import DEADLINE, wait_until

Run = Callable[..., OtreeProc]

TREE = '[a]\ncmd = "sleep 60"\n[b]\ncmd = "sleep 60"\n[c]\ncmd = "sleep 60"\n'


def _events(path: Path) -> list[dict[str, object]]:
    try:
        return [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]
    except FileNotFoundError:
        return []


def test_closing_the_terminal_stops_the_tree_in_order(tmp_path: Path, sock: str) -> None:
    """Finding: the terminal's hangup was taken as ``reload``: otree re-exec'd and ran on
    detached, and the next ``otree run`` was refused. From a terminal, a hangup is an
    orderly shutdown (as for honcho and foreman)."""
    tree = write_tree(tmp_path, TREE)
    events = tmp_path / "events.jsonl"
    argv = [sys.executable, "-m", "otree", "run", tree, "--socket", sock, "--events", str(events)]
    pid, master = pty.fork()  # the child's controlling terminal is the pty
    if pid == 0:  # pragma: no cover - the child
        os.chdir(tmp_path)
        os.execv(sys.executable, argv)
    spawned: list[int] = []
    try:
        wait_until(lambda: any(e["event"] == "tree_ready" for e in _events(events)), what="ready")
        spawned = [int(str(e["pid"])) for e in _events(events) if e["event"] == "spawn"]
        os.close(master)  # the terminal goes away: the kernel sends SIGHUP
        master = -1
        deadline = time.monotonic() + DEADLINE
        status = None
        while time.monotonic() < deadline:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            time.sleep(0.02)
        else:
            raise AssertionError("otree did not stop after the hangup")
        pid = 0
        assert os.waitstatus_to_exitcode(status) == 0
        seen = [(e["event"], e["path"]) for e in _events(events)]
        assert ("reexec", "") not in seen
        assert [p for e, p in seen if e == "stop"] == ["c", "b", "a"]  # in order
        assert not any(pid_alive(p) for p in spawned)
    finally:
        if master >= 0:
            os.close(master)
        if pid:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        for child in spawned:
            if pid_alive(child):
                os.kill(child, signal.SIGKILL)


def test_term_to_otree_and_every_child_at_once_restarts_nothing(
    otree: Run, tmp_path: Path, sock: str
) -> None:
    """Finding: ``systemctl stop`` with systemd's default KillMode sends TERM to otree and
    every child at once; otree took the children's deaths for crashes and started new
    ones in the middle of its shutdown."""
    for _ in range(3):  # the race is per loop turn: try it a few times
        run = otree("run", write_tree(tmp_path, TREE), "--socket", sock)
        run.wait_for("tree_ready")
        pids = [run.running_pid(p) for p in ("a", "b", "c")]
        for target in (run.pid, *pids):  # the main process first, as systemd does
            with contextlib.suppress(ProcessLookupError):  # otree may have stopped it
                os.kill(target, signal.SIGTERM)
        assert run.wait_exit() == 0
        spawns = run.find("spawn")
        assert len(spawns) == 3, run.describe()  # no restart during the shutdown
        assert not run.find("restart")
        run.events_file.unlink()
