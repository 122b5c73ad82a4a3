"""Re-exec on a fatal internal error, children dying during the exec, unusable handoffs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from reloadkit import (
    Start,
    ctl,
    pids,
    since_reexec,
    status,
)
from support.procfs import pid_alive, proc_state, supervised_children
from support.waits import DEADLINE, wait_until

SLEEP = 'cmd = "sleep 60"'
TREE = f"[a]\n{SLEEP}\n[b]\n{SLEEP}\n[c]\n{SLEEP}\n"


def test_a_fault_in_the_loop_reexecs_and_adopts(tree: Start) -> None:
    run = tree(TREE, env={"OTREE_TEST_FAULT": "exited:b"})
    before = pids(run)
    os.kill(before["b"], signal.SIGKILL)  # otree raises while it handles b's exit

    run.wait_for("tree_ready", count=2)
    reason = run.find("reexec")[0]["reason"]
    assert reason.startswith("fatal: InjectedFault: OTREE_TEST_FAULT: Exited(path='b'")
    assert since_reexec(run) == [
        ("reexec", ""),
        ("adopt", "a"),
        ("adopt", "b"),
        ("adopt", "c"),
        ("tree_ready", ""),
    ]
    # the exit it was handling crossed the exec and is handled now, by b's strategy
    run.wait_for("spawn", "b", count=2)
    exit_b = run.find("exit", "b")[0]
    assert (exit_b["pid"], exit_b["signal"], exit_b["normal"]) == (before["b"], "KILL", False)
    assert run.find("restart", "", child="b")
    after = pids(run)
    assert after["a"] == before["a"] and after["c"] == before["c"] and after["b"] != before["b"]
    err = run.stderr
    assert "Traceback" in err and "InjectedFault" in err
    assert "otree: internal error; re-executing to recover (fatal: InjectedFault:" in err
    run.send(signal.SIGTERM)
    assert run.wait_exit() == 0  # the fault fires once: the new image runs on


def test_a_fault_mid_restart_restarts_what_was_in_flight(tree: Start) -> None:
    # the fault hits b's second Spawned: its new process exists, the engine never heard of it
    run = tree(TREE, env={"OTREE_TEST_FAULT": "spawned:b:2"})
    before = pids(run)
    os.kill(before["b"], signal.SIGKILL)
    run.wait_for("tree_ready", count=2)
    run.wait_for("spawn", "b", count=2)
    assert run.find("reexec")[0]["reason"].startswith("fatal: InjectedFault:")
    # b was caught mid-start: that process is killed and b started afresh (a reconciliation
    # start, not a restart: the restart decision was taken before the exec)
    assert since_reexec(run) == [
        ("reexec", ""),
        ("adopt", "a"),
        ("adopt", "c"),
        ("spawn", "b"),
        ("ready", "b"),
        ("tree_ready", ""),
    ]
    assert len(run.find("restart", "", child="b")) == 1
    states = {p: n["state"] for p, n in status(run).items()}
    assert states == {"": "running", "a": "running", "b": "running", "c": "running"}
    after = pids(run)
    assert after["a"] == before["a"] and after["c"] == before["c"]
    # the process spawned before the exec is gone (killed at adoption, reaped): a, b, c only
    wait_until(
        lambda: sorted(supervised_children(run.pid)) == sorted(after.values()), what="a, b, c"
    )


def test_a_child_killed_during_the_exec_is_restarted(tree: Start, tmp_path: Path) -> None:
    hold = tmp_path / "hold"
    run = tree(TREE, env={"OTREE_TEST_HOLD": str(hold)})
    before = pids(run)
    client = ctl("reload", sock=run.sock, wait=False)  # type: ignore[attr-defined]
    try:
        wait_until(hold.exists, what="the new image to hold before adopting")
        os.kill(before["b"], signal.SIGKILL)
        wait_until(lambda: proc_state(before["b"]) == "Z", what="b to die (a zombie of otree)")
        hold.unlink()
        _, err = client.communicate(timeout=DEADLINE)
    finally:
        if client.poll() is None:
            client.kill()
            client.communicate()
    assert client.returncode == 0, err
    run.wait_for("spawn", "b", count=2)
    assert since_reexec(run)[:4] == [("reexec", ""), ("adopt", "a"), ("adopt", "b"), ("adopt", "c")]
    exit_b = run.find("exit", "b")[0]
    assert (exit_b["pid"], exit_b["signal"], exit_b["normal"]) == (before["b"], "KILL", False)
    assert run.find("restart", "", child="b")
    assert proc_state(before["b"]) is None  # reaped: no zombie left
    after = pids(run)
    assert after["a"] == before["a"] and after["c"] == before["c"]


def test_a_fatal_reexec_keeps_the_running_tree_when_the_file_went_bad(tree: Start) -> None:
    text = (
        f"[a]\n{SLEEP}\nready = {{ delay = 0.01 }}\nbackoff = {{ initial = 0.1, jitter = 0 }}\n"
        f'[b]\ncmd = ["sleep", "60"]\nenv = {{ X = "1" }}\nstop_signal = "INT"\n'
        f"[c]\n{SLEEP}\n"
    )
    run = tree(text, env={"OTREE_TEST_FAULT": "exited:c"})
    before = pids(run)
    run.file.write_text("[a]\nthis is not toml\n")  # type: ignore[attr-defined]
    os.kill(before["c"], signal.SIGKILL)
    run.wait_for("tree_ready", count=2)
    # the tree that ran came back from the handoff: every child kept, spec unchanged
    assert since_reexec(run) == [
        ("reexec", ""),
        ("adopt", "a"),
        ("adopt", "b"),
        ("adopt", "c"),
        ("tree_ready", ""),
    ]
    run.wait_for("spawn", "c", count=2)
    assert "the tree file is invalid now; keeping the tree that was running" in run.stderr
    run.send(signal.SIGTERM)
    assert run.wait_exit() == 0
    assert run.find("exit", "b")[0]["signal"] == "INT"  # its stop_signal survived


LAUNCHER = """
import os, subprocess, sys
child = subprocess.Popen(["sleep", "60"], start_new_session=True)
open("child.pid", "w").write(str(child.pid))
fd = os.memfd_create("h", 0)
os.write(fd, b'{"otree_handoff": 99}')
os.lseek(fd, 0, 0)
os.set_inheritable(fd, True)
os.environ["OTREE_HANDOFF_FD"] = str(fd)
os.execv(sys.executable, [sys.executable, "-m", "otree", "run", "tree.toml"])
"""


def test_an_unknown_handoff_version_stops_the_children_and_exits_4(tmp_path: Path) -> None:
    (tmp_path / "tree.toml").write_text(TREE)
    proc = subprocess.run(
        [sys.executable, "-c", LAUNCHER],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 4, proc.stderr
    assert proc.stderr.splitlines() == [
        "otree: cannot take over after the re-exec: unknown handoff version 99"
        " (this otree reads 1, 2 and 3)",
        "otree: stopping the children left running (they are not orphaned)",
    ]
    assert proc.stdout == ""
    child = int((tmp_path / "child.pid").read_text())
    assert not pid_alive(child)  # stopped and reaped by the otree that could not take over


def test_a_fault_during_the_initial_start_adopts_and_starts_the_rest(tree: Start) -> None:
    # the fault hits s.b's first Spawned: a is up, s.b's process exists, s.c is not reached
    text = f"[a]\n{SLEEP}\n[s]\nstrategy = 'one_for_all'\n[s.b]\n{SLEEP}\n[s.c]\n{SLEEP}\n"
    run = tree(text, env={"OTREE_TEST_FAULT": "spawned:s.b"})
    assert run.find("reexec")[0]["reason"].startswith("fatal: InjectedFault:")
    assert since_reexec(run) == [
        ("reexec", ""),
        ("adopt", "a"),
        ("spawn", "s.b"),
        ("ready", "s.b"),
        ("spawn", "s.c"),
        ("ready", "s.c"),
        ("tree_ready", ""),
    ]
    assert not run.find("restart")
    after = pids(run)
    wait_until(
        lambda: sorted(supervised_children(run.pid)) == sorted(after.values()), what="a, s.b, s.c"
    )
    run.send(signal.SIGTERM)
    assert run.wait_exit() == 0


def test_a_fault_while_a_reload_stops_a_replaced_process(tree: Start) -> None:
    """A fatal error while a reload is still stopping a changed service's old process
    (it ignores TERM: 2 s of shutdown): the next image goes on stopping it the same way,
    starts the new one only after, and the waiting ``otree reload`` gets its answer."""
    stubborn = "trap '' TERM; exec sleep 60"
    text = f'[old]\ncmd = ["sh", "-c", "{stubborn}"]\nshutdown = 2\nenv = {{ GEN = "0" }}\n'
    text += f"[tick]\n{SLEEP}\n"
    run = tree(text, env={"OTREE_TEST_FAULT": "exited:tick"})
    before = pids(run)
    run.file.write_text(text.replace('GEN = "0"', 'GEN = "1"'))  # type: ignore[attr-defined]
    waiting = ctl("reload", sock=run.sock, wait=False)  # type: ignore[attr-defined]
    try:
        run.wait_for("stop", "old", pid=before["old"])
        os.kill(before["tick"], signal.SIGKILL)  # otree raises while it handles this exit
        out, err = waiting.communicate(timeout=DEADLINE)
    finally:
        if waiting.poll() is None:
            waiting.kill()
            waiting.wait()
    assert waiting.returncode == 0 and out.startswith("reloaded"), (out, err, run.describe())
    reexecs = run.find("reexec")
    assert [r["reason"][:28] for r in reexecs] == ["reload", "fatal: InjectedFault: OTREE_"]
    # stopped again by the third image with its TERM, then killed after its shutdown
    stops = run.find("stop", "old", pid=before["old"])
    assert len(stops) == 2 and stops[1]["ts"] > reexecs[1]["ts"], stops
    (gone,) = run.find("exit", "old", pid=before["old"])
    assert gone["signal"] == "KILL" and gone["ts"] - stops[1]["ts"] >= 1.9, (stops, gone)
    # the new one started after the old one had gone, and only once
    (spawn,) = run.find("spawn", "old")[1:]
    assert spawn["ts"] >= gone["ts"] and spawn["pid"] != before["old"]
    assert not pid_alive(before["old"])
    run.wait_for("spawn", "tick", count=2)  # tick's exit crossed the exec: restarted
    after = pids(run)
    assert after["old"] == spawn["pid"]
    run.send(signal.SIGTERM)
    assert run.wait_exit() == 0
