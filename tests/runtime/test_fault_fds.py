"""Finding 10 of issue 11: running out of fds while starting a service is a start failure
of that service, with the reason, retried like any failed restart; never fatal.

otree's soft fd limit is lowered under it (``prlimit --pid``) to 3, so the
restart of a crashed service cannot get its output pipe; raised again, the retry works.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
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


#: run in a fresh interpreter: its fds pushed past half a low soft limit, a child is
#: watched; it prints whether the loop used a pidfd and the exit status it was given
_HALF = """
import os, resource, subprocess, sys
from otree.runtime.loop import Loop
loop = Loop()
held = [os.open(os.devnull, os.O_RDONLY) for _ in range(40)]  # numbers up to about 45
hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
resource.setrlimit(resource.RLIMIT_NOFILE, (max(held) + 16, hard))  # half: below them
child = subprocess.Popen(["sh", "-c", "exit 7"])
child.returncode = 0  # the loop reaps it
seen = []
loop.watch_child(child.pid, lambda status: (seen.append(status), loop.stop()))
print("pidfd", loop.pidfd(child.pid))
loop.call_later(20, loop.stop)
loop.run()
print("status", os.waitstatus_to_exitcode(seen[0]) if seen else None)
"""


def test_past_half_the_fd_limit_a_child_is_watched_without_a_pidfd(tmp_path: Path) -> None:
    """A pidfd is a second fd a child: past half the soft limit the loop watches a new
    child through SIGCHLD instead, so the fds left go to the output pipes (10 000
    children under a limit of 20 000). Its exit is seen all the same."""
    out = subprocess.run(
        [sys.executable, "-c", _HALF], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["pidfd None", "status 7"], out.stdout
