"""``otree run`` / ``otree check`` from the command line, and ``otree.run()`` in-process."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from support.cli import otree_cli
from support.otreeproc import OtreeProc

import otree
from otree.cli import main
from otree.runtime import driver

Run = Callable[..., OtreeProc]

GOOD = """strategy = "one_for_all"
[db]
cmd = "sleep 60"
[web]
[web.api]
cmd = "sleep 60"
"""

BAD = """[db]
cmd = "sleep 60"
restart = "permanet"
[web]
"""

PY_TREE = """from otree import Service, Supervisor

tree = Supervisor("root", children=[Service("db", cmd=["sleep", "60"])])
"""


def test_check_prints_the_tree(tmp_path: Path) -> None:
    (tmp_path / "tree.toml").write_text(GOOD)
    result = otree_cli("check", "tree.toml", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "one_for_all" in result.stdout
    assert "api" in result.stdout and "sleep 60" in result.stdout
    assert result.stderr == ""


def test_check_reports_every_issue_and_exits_2(tmp_path: Path) -> None:
    (tmp_path / "tree.toml").write_text(BAD)
    result = otree_cli("check", "tree.toml", cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 2
    assert all(line.startswith("otree: tree.toml:") for line in lines)
    assert "db.restart: 'permanet' is not one of permanent, transient, temporary" in lines[0]
    assert "Traceback" not in result.stderr


def test_run_a_bad_tree_exits_2_and_starts_nothing(otree: Run, tmp_path: Path) -> None:
    (tmp_path / "tree.toml").write_text(BAD)
    run = otree("run", "tree.toml")
    assert run.wait_exit() == 2
    assert "db.restart: 'permanet' is not one of" in run.stderr
    assert run.events() == [] and run.stdout == ""


def test_run_a_missing_file_exits_2(otree: Run, tmp_path: Path) -> None:
    run = otree("run", "nope.toml")
    assert run.wait_exit() == 2
    assert run.stderr.startswith("otree: nope.toml: cannot read the tree file")
    assert "Traceback" not in run.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run"], "otree: the following arguments are required: TREE"),
        (["run", "t.toml", "--bogus"], "otree: unrecognized arguments: --bogus"),
        (["frobnicate"], "otree: argument COMMAND: invalid choice: 'frobnicate'"),
    ],
)
def test_bad_command_lines_exit_2_with_one_line(
    tmp_path: Path, args: list[str], message: str
) -> None:
    result = otree_cli(*args, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith(message)
    assert len(result.stderr.splitlines()) == 1
    assert result.stdout == ""


def test_run_a_python_file_tree(otree: Run, tmp_path: Path) -> None:
    (tmp_path / "mytree.py").write_text(PY_TREE)
    run = otree("run", "mytree.py:tree")
    run.wait_for("tree_ready")
    run.send(signal.SIGTERM)
    assert run.wait_exit() == 0
    assert [e["event"] for e in run.events()] == [
        "spawn",
        "ready",
        "tree_ready",
        "stop",
        "exit",
        "tree_stopped",
    ]


def test_run_a_module_tree(otree: Run, tmp_path: Path) -> None:
    pkg = tmp_path / "lib"
    pkg.mkdir()
    (pkg / "apptree.py").write_text(PY_TREE)
    run = otree("run", "apptree:tree", env={"PYTHONPATH": str(pkg)})
    run.wait_for("tree_ready")
    run.send(signal.SIGINT)
    assert run.wait_exit() == 0


def test_python_api_run_returns_the_exit_code(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    tree = otree.Supervisor(
        "root",
        auto_shutdown="any_significant",
        children=[
            otree.Service("server", cmd=["sleep", "60"]),
            otree.Service(
                "job", cmd=["sh", "-c", "echo done"], restart="transient", significant=True
            ),
        ],
    )
    events = tmp_path / "events.jsonl"
    assert otree.run(tree, events=str(events)) == 0
    out = capfd.readouterr().out
    assert "job    | done" in out
    assert "otree: tree stopped (exit code 0)" in out
    assert '"event": "auto_shutdown"' in events.read_text()
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers restored


def test_python_api_run_rejects_an_invalid_tree(capfd: pytest.CaptureFixture[str]) -> None:
    tree = otree.Supervisor(
        "root",
        children=[otree.Service("a", cmd=["true"]), otree.Service("a", cmd=["true"])],
    )
    assert otree.run(tree) == 2
    assert capfd.readouterr().err == "otree: a: duplicate name 'a' under the same supervisor\n"


def test_an_otree_bug_prints_a_traceback_and_exits_70(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "tree.toml").write_text('[a]\ncmd = "sleep 60"\n')

    def broken(self: driver.Runtime, action: object) -> None:
        raise ZeroDivisionError("oops")

    monkeypatch.setattr(driver.Runtime, "_do", broken)
    assert main.run_cli(["run", str(tmp_path / "tree.toml")]) == 70
    err = capfd.readouterr().err
    assert "Traceback" in err and "ZeroDivisionError: oops" in err
    assert err.rstrip().endswith(main.BUG_LINE)


def test_target_runner_reports_a_bad_target(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "otree._target", "no_such_module_x:main"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("otree: cannot load target 'no_such_module_x:main'")


def test_python_api_run_wants_the_main_thread() -> None:
    import threading

    errors: list[BaseException] = []

    def target() -> None:
        try:
            otree.run(otree.Supervisor("root", children=[otree.Service("a", cmd=["true"])]))
        except otree.OtreeError as exc:
            errors.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join(30)
    assert [str(e) for e in errors] == [
        "otree.run() must be called from the main thread (it handles signals)"
    ]
