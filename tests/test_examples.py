"""The examples run: examples/webstack.toml and examples/tree.py (both ways)."""

from __future__ import annotations

import os
import signal
import sys
import urllib.request
from collections.abc import Callable
from pathlib import Path

from support.otreeproc import OtreeProc
from support.procfs import pid_alive
from support.treefiles import free_port
from support.waits import wait_until

Run = Callable[..., OtreeProc]

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
#: python3 in the examples' commands is this Python
PATH = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"


def http_status(port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
        return int(response.status)


def exercise_webstack(run: OtreeProc, port: int) -> None:
    """What both versions of the stack must do."""
    run.wait_for("tree_ready")
    assert http_status(port) == 200
    ready = [e["path"] for e in run.find("ready")]
    assert ready[:4] == ["web.server", "web.worker", "jobs.warmup", "jobs.report"]
    # the one-shot job ran once; the periodic one comes back
    assert run.wait_for("exit", "jobs.warmup")["code"] == 0
    run.wait_for("spawn", "jobs.report", count=2)
    assert len(run.find("spawn", "jobs.warmup")) == 1
    # rest_for_one: a server crash restarts the worker too
    worker = run.running_pid("web.worker")
    os.kill(run.running_pid("web.server"), signal.SIGKILL)
    run.wait_for("spawn", "web.worker", count=2)
    assert not pid_alive(worker)
    assert http_status(port) == 200
    pids = run.child_pids()
    run.send(signal.SIGTERM)
    assert run.wait_exit() == 0
    for pid in pids:
        assert not pid_alive(pid)


def test_webstack_toml(otree: Run, tmp_path: Path) -> None:
    port = free_port()
    text = (EXAMPLES / "webstack.toml").read_text()
    assert text.count("18765") == 3
    tree = tmp_path / "webstack.toml"
    tree.write_text(text.replace("18765", str(port)))
    run = otree("run", str(tree), cwd=ROOT, env={"PATH": PATH})
    exercise_webstack(run, port)
    assert "web.worker  | connected to" in run.stdout


def test_tree_py_with_the_cli(otree: Run) -> None:
    port = free_port()
    run = otree("run", "examples/tree.py:tree", cwd=ROOT, env={"EXAMPLE_PORT": str(port)})
    exercise_webstack(run, port)


def test_tree_py_as_a_script(otree: Run) -> None:
    port = free_port()
    run = otree(
        command=[sys.executable, str(EXAMPLES / "tree.py")],
        env={"EXAMPLE_PORT": str(port)},
    )
    wait_until(lambda: "otree: tree ready" in run.stdout, what="the tree to be ready")
    assert http_status(port) == 200
    run.send(signal.SIGINT)
    assert run.wait_exit() == 0
    assert run.stdout.rstrip().endswith("otree: tree stopped (exit code 0)")
