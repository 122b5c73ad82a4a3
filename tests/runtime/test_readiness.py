"""Readiness gates the next sibling; start failures end ``otree run`` with exit code 3."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from support.otreeproc import OtreeProc
from support.procfs import pid_alive
from support.treefiles import argv, free_port, prog, write_tree

Run = Callable[..., OtreeProc]


def test_tcp_readiness_gates_the_next_sibling(otree: Run, tmp_path: Path) -> None:
    port = str(free_port())
    tree = write_tree(
        tmp_path,
        f"""[db]
cmd = {prog("listen", port, "0.3")}
ready = {{ tcp = "127.0.0.1:{port}", timeout = 20 }}
[app]
cmd = {prog("connect", port)}
restart = "temporary"
""",
    )
    run = otree("run", tree)
    exit_app = run.wait_for("exit", "app")
    assert exit_app["code"] == 0, "app started before db was listening"
    order = [(e["event"], e["path"]) for e in run.events()][:4]
    assert order == [("spawn", "db"), ("ready", "db"), ("spawn", "app"), ("ready", "app")]


def test_notify_readiness_gates_the_next_sibling(otree: Run, tmp_path: Path) -> None:
    flag = str(tmp_path / "ready.flag")
    tree = write_tree(
        tmp_path,
        f"""[db]
cmd = {prog("notify", "0.3", flag)}
ready = {{ notify = true }}
[app]
cmd = {argv("test", "-e", flag)}
restart = "temporary"
""",
    )
    run = otree("run", tree)
    assert run.wait_for("exit", "app")["code"] == 0, "app started before db said READY=1"


def test_cmd_readiness(otree: Run, tmp_path: Path) -> None:
    flag = tmp_path / "up"
    tree = write_tree(
        tmp_path,
        f"""[db]
cmd = {argv("sh", "-c", f"sleep 0.3; touch {flag}; exec sleep 60")}
ready = {{ cmd = {argv("test", "-e", str(flag))}, interval = 0.05 }}
[app]
cmd = {argv("test", "-e", str(flag))}
restart = "temporary"
""",
    )
    run = otree("run", tree)
    assert run.wait_for("exit", "app")["code"] == 0


def test_delay_readiness(otree: Run, tmp_path: Path) -> None:
    tree = write_tree(
        tmp_path,
        """[db]\ncmd = "sleep 60"\nready = { delay = 0.3 }\n[app]\ncmd = "sleep 60"\n""",
    )
    run = otree("run", tree)
    app = run.wait_for("spawn", "app")
    db = run.find("spawn", "db")[0]
    assert db["ts"] < app["ts"]
    run.wait_for("tree_ready")


def test_exec_failure_exits_3_and_stops_started_siblings(otree: Run, tmp_path: Path) -> None:
    tree = write_tree(
        tmp_path,
        """[db]\ncmd = "sleep 60"\n[web]\n[web.cache]\ncmd = "sleep 60"
[web.api]\ncmd = "apii --port 8000"\n[late]\ncmd = "sleep 60"\n""",
    )
    run = otree("run", tree)
    assert run.wait_exit() == 3
    line = "otree: web.api: cannot start: No such file or directory: 'apii'"
    assert run.stderr.splitlines() == [line]
    failed = run.find("start_failed", "web.api")[0]
    assert failed["reason"] == "No such file or directory: 'apii'"
    assert run.find("spawn", "web.api") == [] and run.find("spawn", "late") == []
    stops = [e["path"] for e in run.find("stop")]
    assert stops == ["web.cache", "db"]
    assert run.find("tree_stopped", "")[0]["exit_code"] == 3
    for pid in run.child_pids():
        assert not pid_alive(pid)


def test_exit_before_ready_is_a_start_failure(otree: Run, tmp_path: Path) -> None:
    port = str(free_port())
    tree = write_tree(
        tmp_path,
        f"""[db]\ncmd = "sh -c 'exit 4'"\nready = {{ tcp = "127.0.0.1:{port}" }}\n""",
    )
    run = otree("run", tree)
    assert run.wait_exit() == 3
    assert "otree: db: cannot start: exited (code 4) before it was ready" in run.stderr


def test_readiness_timeout_is_a_start_failure(otree: Run, tmp_path: Path) -> None:
    port = str(free_port())
    tree = write_tree(
        tmp_path,
        f"""[db]\ncmd = "sleep 60"\nready = {{ tcp = "127.0.0.1:{port}", timeout = 0.3 }}\n""",
    )
    run = otree("run", tree)
    assert run.wait_exit() == 3
    assert "otree: db: cannot start: not ready after 0.3s" in run.stderr
    assert run.find("spawn", "db") == []
