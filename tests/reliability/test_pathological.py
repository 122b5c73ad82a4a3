"""Children that misbehave: flood stdout, close it early, ignore TERM, fork 100
grandchildren, exit before they are ready. otree stays responsive, never spins,
and leaves nothing behind."""

from __future__ import annotations

import contextlib
import json
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from support import procfs
from support.cli import otree_cli
from support.otreeproc import OtreeProc
from support.procfs import pid_alive
from support.waits import wait_until

from .chaos import status

RunOtree = Callable[..., OtreeProc]


def start(
    otree: RunOtree, tmp_path: Path, tree: str, *args: str, stdout_pipe: bool = False
) -> OtreeProc:
    (tmp_path / "tree.toml").write_text(tree)
    run = otree("run", "tree.toml", *args, stdout_pipe=stdout_pipe)
    run.wait_for("tree_ready")
    return run


def timed(*args: str) -> tuple[float, object]:
    began = time.monotonic()
    r = otree_cli(*args)
    return time.monotonic() - began, r


def test_a_child_flooding_stdout_does_not_make_otree_deaf(
    tmp_path: Path, otree: RunOtree, sock: str
) -> None:
    tree = """\
[calm]
cmd = ["sleep", "600"]

[flood]
cmd = ["yes", "flood-line-0123456789"]
log = { file = "flood.log", max_bytes = 4000000, backups = 1 }
"""
    # otree's stdout is a pipe nobody reads: the console must drop, not block
    run = start(otree, tmp_path, tree, "--socket", sock, stdout_pipe=True)
    log = tmp_path / "flood.log"

    def logged() -> bytes | None:
        """1 MB of the log file, or of its rotated copy (rotation may be under way)."""
        for file in (log, tmp_path / "flood.log.1"):
            with contextlib.suppress(FileNotFoundError), open(file, "rb") as f:
                chunk = f.read(1_000_000)
                if len(chunk) > 100_000:
                    return chunk
        return None

    wait_until(logged, what="the flood in the log")
    for _ in range(3):
        took, r = timed("status", "--json", "--socket", sock)
        assert r.returncode == 0, r.stderr  # type: ignore[attr-defined]
        nodes = {n["path"]: n for n in json.loads(r.stdout)["nodes"]}  # type: ignore[attr-defined]
        assert nodes["flood"]["state"] == "running"
        assert took < 5.0, f"otree status took {took:.1f}s while a child floods"
    calm = run.running_pid("calm")
    took, r = timed("restart", "calm", "--socket", sock)
    assert r.returncode == 0 and took < 5.0, (took, r)
    assert run.running_pid("calm") != calm
    # the log file got whole lines (rotation happens on line boundaries)
    lines = wait_until(logged).split(b"\n")[:-1]
    assert len(lines) > 1000 and set(lines) == {b"flood-line-0123456789"}
    took, r = timed("stop", "flood", "--socket", sock)
    assert r.returncode == 0 and took < 5.0, (took, r)
    run.send(signal.SIGTERM)
    assert run.wait_exit() == 0, run.describe()


def test_a_child_that_closes_stdout_early_costs_no_cpu(
    tmp_path: Path, otree: RunOtree, sock: str
) -> None:
    tree = """\
[mute]
cmd = ["sh", "-c", "echo bye; exec >&- 2>&-; exec sleep 600"]

[half]
cmd = ["sh", "-c", "exec >&-; echo still here >&2; exec sleep 600"]
"""
    run = start(otree, tmp_path, tree, "--socket", sock)
    wait_until(lambda: "mute" in run.stdout and "still here" in run.stdout, what="the output")
    time.sleep(0.2)  # let the end of the pipe be seen
    before = procfs.cpu_seconds(run.pid)
    time.sleep(1.0)  # a measurement window, not a wait for anything
    spent = procfs.cpu_seconds(run.pid) - before
    assert spent < 0.1, f"otree used {spent:.2f}s of CPU in 1s with a closed pipe"
    st = status(sock)
    assert st["mute"]["state"] == st["half"]["state"] == "running"
    assert st["mute"]["pid"] == run.running_pid("mute")
    assert not run.find("exit")
    r = otree_cli("stop", "mute", "--socket", sock)
    assert r.returncode == 0, r.stderr
    run.send(signal.SIGTERM)
    assert run.wait_exit() == 0, run.describe()


def test_a_child_that_ignores_term_is_killed_after_its_shutdown(
    tmp_path: Path, otree: RunOtree
) -> None:
    tree = """\
[stubborn]
cmd = ["sh", "-c", "trap '' TERM; echo ignoring TERM; exec sleep 600"]
shutdown = 1
"""
    run = start(otree, tmp_path, tree)
    wait_until(lambda: "ignoring TERM" in run.stdout, what="the trap to be set")
    pid = run.running_pid("stubborn")
    began = time.monotonic()
    run.send(signal.SIGTERM)
    assert run.wait_exit() == 0, run.describe()
    took = time.monotonic() - began
    stop = run.find("stop", "stubborn", pid=pid)[0]
    exit_ = run.find("exit", "stubborn", pid=pid)[0]
    assert exit_["signal"] == "KILL" and exit_["normal"] is True
    assert 0.9 <= exit_["ts"] - stop["ts"] < 3.0, (stop, exit_)
    assert took < 5.0
    assert not pid_alive(pid)


@pytest.mark.parametrize("subreaper", [False, True], ids=["plain", "subreaper"])
def test_a_child_with_100_grandchildren_leaves_none(
    tmp_path: Path, otree: RunOtree, sock: str, subreaper: bool
) -> None:
    tree = """\
[forker]
cmd = ["sh", "-c", "for i in $(seq 100); do sleep 600 & done; echo forked; exec sleep 600"]
"""
    args = ["--socket", sock, *(["--subreaper"] if subreaper else [])]
    run = start(otree, tmp_path, tree, *args)
    wait_until(lambda: run.stdout.count("forked") == 1, what="the grandchildren")
    first = run.running_pid("forker")
    assert len(procfs.group_members(first)) == 101
    # the main process crashes: its 100 leftovers are killed, a new one starts
    assert procfs.kill_child(run.pid, first)
    run.wait_for("spawn", "forker", count=2)
    wait_until(lambda: not procfs.group_members(first), what="the leftovers to be killed")
    wait_until(lambda: run.stdout.count("forked") == 2, what="the new grandchildren")
    second = run.running_pid("forker")
    assert len(procfs.group_members(second)) == 101
    # stopped: all 101 gone
    r = otree_cli("stop", "forker", "--socket", sock)
    assert r.returncode == 0, r.stderr
    wait_until(lambda: not procfs.group_members(second), what="the group to be gone")
    # nothing left for otree to reap (as a subreaper it adopted the orphans)
    wait_until(lambda: not procfs.zombies_of(run.pid), what="no zombie child of otree")
    run.send(signal.SIGTERM)
    assert run.wait_exit() == 0, run.describe()


def test_a_child_that_exits_before_ready_at_the_initial_start(
    tmp_path: Path, otree: RunOtree
) -> None:
    tree = """\
[db]
cmd = ["sleep", "600"]

[early]
cmd = ["sh", "-c", "echo leaving; exit 0"]
ready = { delay = 2 }

[never]
cmd = ["sleep", "600"]
"""
    (tmp_path / "tree.toml").write_text(tree)
    run = otree("run", "tree.toml")
    assert run.wait_exit() == 3, run.describe()
    assert "early" in run.stderr and "cannot start" in run.stderr, run.stderr
    kinds = [(e["event"], e["path"]) for e in run.events()]
    assert ("start_failed", "early") in kinds
    assert ("spawn", "early") not in kinds and ("spawn", "never") not in kinds
    db = run.find("spawn", "db")[0]["pid"]
    assert run.find("exit", "db", pid=db, normal=True)  # the started sibling was stopped
    assert not run.find("restart")


def test_a_child_that_exits_before_ready_on_restart_is_retried_then_given_up(
    tmp_path: Path, otree: RunOtree
) -> None:
    tree = """\
intensity = 3
period = 60

[flaky]
cmd = ["sh", "-c", "if [ -e started ]; then exit 1; fi; touch started; exec sleep 600"]
ready = { delay = 0.3 }
"""
    run = start(otree, tmp_path, tree)
    pid = run.running_pid("flaky")
    assert procfs.kill_child(run.pid, pid)
    assert run.wait_exit() == 1, run.describe()
    # the first restart and each retry count: 3 allowed, the 4th gives up
    assert len(run.find("restart", "", child="flaky")) == 3
    assert len(run.find("start_failed", "flaky")) == 3
    assert run.find("give_up", "", restarts=4, period=60)
    assert len(run.find("spawn", "flaky")) == 1
    assert "gave up" in run.stderr, run.stderr
