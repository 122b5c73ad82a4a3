"""Finding 10 of issue 11: running out of fds while starting a service is a start failure
of that service, with the reason, retried like any failed restart; never fatal.

otree's soft fd limit is lowered under it (``prlimit --pid``) to 3, so the
restart of a crashed service cannot get its output pipe; raised again, the retry works.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

from support.otreeproc import OtreeProc
from support.procfs import pid_alive
from support.treefiles import write_tree
from support.waits import wait_until

Run = Callable[..., OtreeProc]


def set_nofile(pid: int, soft: int) -> None:
    """Set the soft RLIMIT_NOFILE of ``pid`` (the hard one is left alone)."""
    subprocess.run(["prlimit", f"--pid={pid}", f"--nofile={soft}:"], check=True)


def test_emfile_on_a_restart_is_a_start_failure_retried_until_fds_come_back(
    otree: Run, tmp_path: Path, sock: str
) -> None:
    tree = write_tree(
        tmp_path,
        "intensity = 100\nperiod = 60\n"
        '[a]\ncmd = "sleep 60"\nbackoff = { initial = 0.1, max = 0.2, factor = 1.0 }\n'
        '[b]\ncmd = "sleep 60"\n',
    )
    run = otree("run", tree, "--socket", sock)
    run.wait_for("tree_ready")
    soft = int(Path(f"/proc/{run.pid}/limits").read_text().split("Max open files")[1].split()[0])
    # no fd number is free below the limit: the restart cannot get its output pipe
    set_nofile(run.pid, 3)
    old = run.running_pid("a")
    os.kill(old, signal.SIGKILL)
    failed = run.wait_for("start_failed", "a")
    assert failed["reason"] == "cannot create its output pipe: Too many open files", failed
    assert run.proc.poll() is None, run.describe()
    wait_until(lambda: len(run.find("start_failed", "a")) >= 2, what="a retried")
    set_nofile(run.pid, soft)
    spawn = run.wait_for("spawn", "a", count=2)
    assert pid_alive(spawn["pid"]) and pid_alive(run.running_pid("b"))
    assert not run.find("reexec")
    assert run.proc.poll() is None
    run.send(signal.SIGTERM)
    assert run.wait_exit() == 0, run.describe()
