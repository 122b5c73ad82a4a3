"""``--subreaper`` and PID 1: orphaned descendants are reaped (no zombies), across re-execs too."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
from pathlib import Path

from reloadkit import (
    Start,
    ctl,
    reload,
)
from support.otreeproc import OtreeProc
from support.procfs import parent_of, proc_state, zombie_children
from support.treefiles import prog
from support.waits import wait_until


def test_a_double_forked_orphan_is_reaped_by_the_subreaper_before_and_after_a_reload(
    tree: Start, tmp_path: Path
) -> None:
    pidfile = tmp_path / "gc.pid"
    # cgroups off: in its cgroup the orphan would be killed with the maker (issue 13)
    run = tree(
        'cgroups = "off"\n'
        f'[steady]\ncmd = "sleep 60"\n[maker]\ncmd = {prog("orphan", str(pidfile), "0.8")}\n'
        'restart = "temporary"\n',
        "--subreaper",
    )
    for round_ in (1, 2):
        wait_until(pidfile.exists, what="the grandchild's PID")
        gc = int(pidfile.read_text())
        # its parent exited at once: the orphan is re-parented to otree, not to init
        wait_until(lambda g=gc: parent_of(g) == run.pid, what="the orphan to be re-parented")
        run.wait_for("exit", "maker", count=round_)
        wait_until(lambda g=gc: proc_state(g) is None, what=f"otree to reap orphan {gc}")
        assert zombie_children(run.pid) == []
        if round_ == 1:  # the new image is a subreaper too
            reload(run, run.sock, 1)  # type: ignore[attr-defined]
            pidfile.unlink()
            r = ctl("start", "maker", sock=run.sock)  # type: ignore[attr-defined]
            assert r.returncode == 0, r.stderr
    run.send(signal.SIGTERM)
    assert run.wait_exit() == 0


def _child_of(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            children = f.read().split()
    except OSError:
        return None
    return int(children[0]) if children else None


def _ns_pid(pid: int) -> list[str]:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("NSpid:"):
                return line.split()[1:]
    return []


def test_as_pid_1_otree_reaps_orphans_reloads_and_stops_on_term(tmp_path: Path) -> None:
    unshare = shutil.which("unshare")
    assert unshare, "util-linux unshare is needed to run otree as PID 1 in a PID namespace"
    pidfile = tmp_path / "gc.pid"
    (tmp_path / "tree.toml").write_text(
        f'[steady]\ncmd = "sleep 60"\n[watch]\ncmd = {prog("reaped", str(pidfile))}\n'
        f'[maker]\ncmd = {prog("orphan", str(pidfile), "0.3")}\nrestart = "temporary"\n'
    )
    events = tmp_path / "events.jsonl"
    command = [
        unshare,
        "--user",
        "--map-root-user",
        "--pid",
        "--fork",
        "--mount-proc",
        sys.executable,
        "-m",
        "otree",
        "run",
        "tree.toml",
        "--events",
        str(events),
        "--socket",
        str(tmp_path / "ctl.sock"),
    ]
    run = OtreeProc([], tmp_path, None, False, tmp_path, command)
    try:
        otree_pid = wait_until(lambda: _child_of(run.pid), what="otree to start under unshare")
        wait_until(lambda: len(_ns_pid(otree_pid)) == 2, what="otree's namespace PID")
        assert _ns_pid(otree_pid)[1] == "1"  # PID 1 in its namespace
        run.wait_for("tree_ready")
        # the orphan was re-parented to PID 1 (otree) and reaped: the watcher saw it vanish
        wait_until(lambda: "| reaped " in run.stdout, what="the orphan to be reaped")
        assert "zombie" not in run.stdout
        # a reload as PID 1 keeps PID 1 (and the children)
        steady = run.running_pid("steady")
        os.kill(otree_pid, signal.SIGHUP)
        run.wait_for("tree_ready", count=2)
        assert run.find("adopt", "steady", pid=steady)
        assert _ns_pid(otree_pid)[1] == "1"
        # TERM to PID 1 is an orderly shutdown (PID 1 gets only the signals it handles)
        os.kill(otree_pid, signal.SIGTERM)
        assert run.wait_exit() == 0
        stopped = run.find("tree_stopped")
        assert stopped and stopped[0]["exit_code"] == 0
        assert {e["path"] for e in run.find("stop")} == {"steady", "watch"}
    finally:
        if run.proc.poll() is None:  # killing PID 1 of the namespace kills all of it
            with contextlib.suppress(OSError):
                os.killpg(run.pid, signal.SIGKILL)
            run.proc.wait()
