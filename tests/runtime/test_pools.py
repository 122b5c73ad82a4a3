"""Pools (``replicas = N``, issue 14) with real processes under ``otree run``."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path

from support.cli import otree_cli, status
from support.otreeproc import OtreeProc
from support.procfs import pid_alive
from support.treefiles import write_tree
from support.waits import wait_until

Run = Callable[..., OtreeProc]

POOL = """
[w]
cmd = ["sh", "-c", "echo replica=$OTREE_REPLICA arg=${OTREE_REPLICA}; exec sleep 60"]
replicas = 3
"""


def order(run: OtreeProc, *names: str) -> list[tuple[str, str]]:
    return [(e["event"], e["path"]) for e in run.events() if e["event"] in names]


def test_three_instances_each_with_its_replica(otree: Run, tmp_path: Path, sock: str) -> None:
    run = otree("run", write_tree(tmp_path, POOL), "--socket", sock)
    run.wait_for("tree_ready")
    assert order(run, "spawn") == [("spawn", "w.0"), ("spawn", "w.1"), ("spawn", "w.2")]
    wait_until(lambda: run.stdout.count("replica=") == 3, what="three greetings")
    for i in range(3):
        assert f"w.{i} | replica={i} arg={i}" in run.stdout
    nodes = status(sock)
    assert (nodes["w"]["kind"], nodes["w"]["replicas"]) == ("pool", 3)
    text = otree_cli("status", "--socket", sock).stdout
    assert "running 3/3" in text


def test_a_crash_of_one_instance_restarts_only_it(otree: Run, tmp_path: Path) -> None:
    run = otree("run", write_tree(tmp_path, POOL))
    run.wait_for("tree_ready")
    before = {i: run.running_pid(f"w.{i}") for i in range(3)}
    os.kill(before[1], signal.SIGKILL)
    run.wait_for("spawn", "w.1", count=2)
    assert run.running_pid("w.0") == before[0] and run.running_pid("w.2") == before[2]
    restart = run.find("restart", "w")[0]
    assert restart["child"] == "w.1" and restart["strategy"] == "one_for_one"


def test_scale_up_and_down_in_order(otree: Run, tmp_path: Path, sock: str) -> None:
    run = otree("run", write_tree(tmp_path, POOL), "--socket", sock)
    run.wait_for("tree_ready")
    kept = {i: run.running_pid(f"w.{i}") for i in range(3)}
    r = otree_cli("scale", "w", "5", "--socket", sock)
    assert (r.returncode, r.stdout) == (0, "w: 5 running\n"), r.stderr
    assert order(run, "spawn")[3:] == [("spawn", "w.3"), ("spawn", "w.4")]
    scale = run.find("scale", "w")[0]
    assert (scale["from"], scale["to"]) == (3, 5)
    surplus = [run.running_pid(f"w.{i}") for i in (2, 3, 4)]
    r = otree_cli("scale", "w", "2", "--socket", sock)
    assert r.returncode == 0, r.stderr
    assert order(run, "stop") == [("stop", "w.4"), ("stop", "w.3"), ("stop", "w.2")]
    assert not any(pid_alive(p) for p in surplus)
    assert {i: run.running_pid(f"w.{i}") for i in range(2)} == {0: kept[0], 1: kept[1]}
    assert sorted(status(sock)) == ["", "w", "w.0", "w.1"]
    assert not run.find("restart")  # scaling is no restart


def test_bad_scales_are_refused_and_nothing_changes(otree: Run, tmp_path: Path, sock: str) -> None:
    run = otree("run", write_tree(tmp_path, POOL), "--socket", sock)
    run.wait_for("tree_ready")
    before = status(sock)
    for args, code, message in [
        (("w.0", "2"), 1, "'w.0': not a pool"),
        (("w", "10001"), 1, "the count must be at most 10000, got 10001"),
        (("w", "-1"), 2, "not a number of instances"),
    ]:
        r = otree_cli("scale", *args, "--socket", sock)
        assert r.returncode == code and message in r.stderr, r.stderr
    after = status(sock)
    assert {p: n["pid"] for p, n in after.items()} == {p: n["pid"] for p, n in before.items()}
    assert not run.find("scale")


def test_zero_replicas_runs_nothing_until_scaled(otree: Run, tmp_path: Path, sock: str) -> None:
    tree = write_tree(tmp_path, POOL.replace("replicas = 3", "replicas = 0"))
    run = otree("run", tree, "--socket", sock)
    run.wait_for("tree_ready")
    assert status(sock)["w"]["replicas"] == 0 and not run.find("spawn")
    assert otree_cli("scale", "w", "1", "--socket", sock).returncode == 0
    assert run.running_pid("w.0") > 0


def test_a_reload_applies_the_files_replicas_keeping_the_other_instances(
    otree: Run, tmp_path: Path, sock: str
) -> None:
    tree = write_tree(tmp_path, '[w]\ncmd = "sleep 60"\nreplicas = 2\n')
    run = otree("run", tree, "--socket", sock)
    run.wait_for("tree_ready")
    kept = {p: run.running_pid(p) for p in ("w.0", "w.1")}
    write_tree(tmp_path, '[w]\ncmd = "sleep 60"\nreplicas = 4\n')
    assert otree_cli("reload", "--socket", sock).returncode == 0
    run.wait_for("tree_ready", count=2)
    nodes = status(sock)
    assert {p: nodes[p]["pid"] for p in ("w.0", "w.1")} == kept  # adopted, not restarted
    assert nodes["w.3"]["state"] == "running"
    write_tree(tmp_path, '[w]\ncmd = "sleep 60"\nreplicas = 1\n')
    assert otree_cli("reload", "--socket", sock).returncode == 0
    run.wait_for("tree_ready", count=3)
    nodes = status(sock)
    assert nodes["w.0"]["pid"] == kept["w.0"] and "w.1" not in nodes
    assert not pid_alive(kept["w.1"])


def test_a_reload_that_changes_the_cmd_restarts_one_instance_at_a_time(
    otree: Run, tmp_path: Path, sock: str
) -> None:
    """A rolling restart, in index order: each old instance stops only once the new one
    before it is ready, so the pool is never all down."""
    tree = write_tree(tmp_path, '[w]\ncmd = "sleep 60"\nreplicas = 3\n')
    run = otree("run", tree, "--socket", sock)
    run.wait_for("tree_ready")
    old = [run.running_pid(f"w.{i}") for i in range(3)]
    write_tree(
        tmp_path, '[w]\ncmd = "sleep 61"\nreplicas = 3\nready = { delay = 0.2, timeout = 5 }\n'
    )
    assert otree_cli("reload", "--socket", sock).returncode == 0
    run.wait_for("tree_ready", count=2)
    after = [
        (e["event"], e["path"])
        for e in run.events()[[e["event"] for e in run.events()].index("reexec") :]
        if e["event"] in ("stop", "exit", "spawn", "ready")
    ]
    expected = []
    for i in range(3):
        expected += [("stop", f"w.{i}"), ("exit", f"w.{i}"), ("spawn", f"w.{i}")]
        expected += [("ready", f"w.{i}")]
    assert after == expected, run.describe()
    assert not any(pid_alive(pid) for pid in old)
    assert all(status(sock)[f"w.{i}"]["state"] == "running" for i in range(3))


def test_a_pool_that_gives_up_escalates_to_its_parent(otree: Run, tmp_path: Path) -> None:
    """The pool's own window (intensity 1 in 30 s): its second crash makes it give up, stop
    its other instances and exit abnormally; its parent (a rest_for_one) restarts it and
    the sibling after it, once, in its own window; the next give-up ends the tree (1)."""
    (tmp_path / "crash").write_text("")
    tree = write_tree(
        tmp_path,
        'strategy = "rest_for_one"\nintensity = 1\nperiod = 30\n'
        '[w]\ncmd = ["sh", "-c", "if [ $OTREE_REPLICA = 1 ]; then exit 3; fi; exec sleep 60"]\n'
        "replicas = 2\nintensity = 1\nperiod = 30\n"
        '[after]\ncmd = "sleep 60"\n',
    )
    run = otree("run", tree)
    assert run.wait_exit() == 1, run.describe()
    gave_up = [e["path"] for e in run.find("give_up")]
    assert gave_up == ["w", "w", ""], run.describe()
    assert [e["restarts"] for e in run.find("give_up", "w")] == [2, 2]
    assert len(run.find("restart", "")) == 1  # the root restarted the pool once
    assert len(run.find("spawn", "after")) == 2  # rest_for_one: the sibling after it too
    assert not any(pid_alive(pid) for pid in run.child_pids())
