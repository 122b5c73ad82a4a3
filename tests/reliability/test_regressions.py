"""Bugs the reliability suite found, each kept as a small deterministic test."""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path

from support import procfs
from support.cli import otree_cli
from support.otreeproc import OtreeProc
from support.waits import wait_until

from .chaos import status

RunOtree = Callable[..., OtreeProc]


def test_reload_after_stopping_a_supervisor_that_had_a_queued_exit(
    tmp_path: Path, otree: RunOtree, sock: str
) -> None:
    """Found by the chaos run: a reload waited 30 s and was refused as busy.

    ``sup.a`` is killed while ``sup`` is busy with a one_for_all restart (it waits
    for ``slow`` to stop), so its exit waits in ``sup``'s mailbox; then ``sup`` is
    stopped. The queued exit was never dropped, so the stopped ``sup`` counted as
    busy for ever and no reload could find the tree quiet.
    """
    (tmp_path / "tree.toml").write_text(
        """\
[sup]
strategy = "one_for_all"

[sup.a]
cmd = ["sleep", "600"]

[sup.b]
cmd = ["sleep", "600"]

[sup.slow]
cmd = ["sh", "-c", "trap '' TERM; echo trapped; exec sleep 600"]
shutdown = 3
"""
    )
    run = otree("run", "tree.toml", "--socket", sock)
    run.wait_for("tree_ready")
    slow = run.running_pid("sup.slow")
    wait_until(lambda: "trapped" in run.stdout, what="the TERM trap")
    assert procfs.kill_child(run.pid, run.running_pid("sup.b"))
    run.wait_for("stop", "sup.slow", pid=slow)  # the restart is under way: sup is busy
    assert procfs.kill_child(run.pid, run.running_pid("sup.a"))
    run.wait_for("exit", "sup.a")
    assert not run.find("exit", "sup.slow")  # still busy when a's exit came

    r = otree_cli("stop", "sup", "--socket", sock)
    assert r.returncode == 0, r.stderr
    assert {p: n["state"] for p, n in status(sock).items()} == {
        "": "running",
        "sup": "stopped",
        "sup.a": "stopped",
        "sup.b": "stopped",
        "sup.slow": "stopped",
    }
    r = otree_cli("reload", "--socket", sock, timeout=10)  # it used to wait 30 s, then refuse
    assert r.returncode == 0, (r.stderr, run.stdout[-2000:])
    run.wait_for("tree_ready", count=2)
    run.send(signal.SIGTERM)
    assert run.wait_exit() == 0, run.describe()
