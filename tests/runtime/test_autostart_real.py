"""``autostart = false`` with real processes: declared, stopped with the tree, started by
``otree start``, then restarted with its group like the others."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path

from support.cli import otree_cli as ctl
from support.cli import status
from support.otreeproc import OtreeProc
from support.procfs import pid_alive
from support.treefiles import write_tree
from support.waits import wait_until

Run = Callable[..., OtreeProc]

TREE = """\
strategy = "one_for_all"

[late]
cmd = "sleep 600"
autostart = false

[db]
cmd = "sleep 600"
"""


def spawns(run: OtreeProc, path: str) -> list[int]:
    return [e["pid"] for e in run.find("spawn", path)]


def test_a_service_with_autostart_false_waits_for_otree_start(
    tmp_path: Path, otree: Run, sock: str
) -> None:
    write_tree(tmp_path, TREE)
    run = otree("run", "tree.toml", "--socket", sock)
    run.wait_for("tree_ready")
    st = status(sock)
    assert (st["late"]["state"], st["late"]["pid"]) == ("stopped", None)
    assert st["db"]["state"] == "running"
    assert spawns(run, "late") == []

    # a group restart leaves it stopped: nobody started it
    db = run.running_pid("db")
    os.kill(db, signal.SIGKILL)
    wait_until(lambda: len(spawns(run, "db")) == 2, what="db restarted")
    assert run.find("restart", "", child="db")
    assert status(sock)["late"]["state"] == "stopped" and spawns(run, "late") == []

    r = ctl("start", "late", "--socket", sock)
    assert r.returncode == 0, r.stderr
    late = run.running_pid("late")
    assert r.stdout == f"late: started (pid {late})\n"
    assert pid_alive(late)
    st = status(sock)
    assert (st["late"]["state"], st["late"]["pid"]) == ("running", late)

    # started by hand: the next one_for_all restart stops and starts it with db
    os.kill(run.running_pid("db"), signal.SIGKILL)
    wait_until(lambda: len(spawns(run, "late")) == 2, what="late restarted with its group")
    wait_until(lambda: not pid_alive(late), what="the first late gone")
    assert status(sock)["late"]["state"] == "running"

    r = ctl("shutdown", "--socket", sock)
    assert r.returncode == 0, r.stderr
    assert run.wait_exit() == 0
    assert not any(pid_alive(p) for p in spawns(run, "late") + spawns(run, "db"))


def test_a_reload_leaves_it_stopped_and_starts_no_new_one(
    tmp_path: Path, otree: Run, sock: str
) -> None:
    """Reloaded unchanged, the service nobody started stays stopped and the others are
    adopted; reloaded with one more autostart = false service, that one is not started."""
    write_tree(tmp_path, TREE)
    run = otree("run", "tree.toml", "--socket", sock)
    run.wait_for("tree_ready")
    db = run.running_pid("db")
    r = ctl("reload", "--socket", sock)
    assert r.returncode == 0, r.stderr
    run.wait_for("tree_ready", count=2)
    st = status(sock)
    assert (st["late"]["state"], st["db"]["pid"]) == ("stopped", db)

    write_tree(tmp_path, TREE + '\n[extra]\ncmd = "sleep 600"\nautostart = false\n')
    r = ctl("reload", "--socket", sock)
    assert r.returncode == 0, r.stderr
    run.wait_for("tree_ready", count=3)
    st = status(sock)
    assert [st[p]["state"] for p in ("late", "db", "extra")] == ["stopped", "running", "stopped"]
    assert st["db"]["pid"] == db and spawns(run, "late") == spawns(run, "extra") == []

    r = ctl("start", "extra", "--socket", sock)
    assert r.returncode == 0, r.stderr
    extra = run.running_pid("extra")
    r = ctl("shutdown", "--socket", sock)
    assert r.returncode == 0, r.stderr
    assert run.wait_exit() == 0
    assert not pid_alive(extra) and not pid_alive(db)
