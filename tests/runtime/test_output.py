"""Output relay under ``otree run``: prefixes, log files and rotation, a chatty child, targets."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path

from support.otreeproc import OtreeProc
from support.treefiles import argv, prog, write_tree
from support.waits import wait_until

Run = Callable[..., OtreeProc]


def test_output_is_prefixed_by_path_with_supervision_events(otree: Run, tmp_path: Path) -> None:
    tree = write_tree(
        tmp_path,
        f"""[db]\ncmd = ["sh", "-c", "echo db up; echo oops >&2; exec sleep 60"]
[web]\n[web.api]\ncmd = ["sh", "-c", "printf 'no newline at the end'; : > printed; exec sleep 60"]
cwd = "{tmp_path}"\n""",
    )
    run = otree("run", tree)
    run.wait_for("tree_ready")
    # both have written: db's lines are relayed, web.api's partial line is in otree's hands
    wait_until(lambda: "db      | oops" in run.stdout and (tmp_path / "printed").exists())
    run.send(signal.SIGTERM)
    assert run.wait_exit() == 0
    lines = run.stdout.splitlines()
    pid = run.find("spawn", "db")[0]["pid"]
    assert f"otree: db: spawn pid {pid}" in lines
    assert "db      | db up" in lines
    assert "db      | oops" in lines
    assert "web.api | no newline at the end" in lines  # the partial line is flushed at exit
    assert "otree: tree ready" in lines
    assert f"otree: db: exit pid {pid} signal TERM (normal)" in lines
    assert lines[-1] == "otree: tree stopped (exit code 0)"


def test_log_dir_and_rotation(otree: Run, tmp_path: Path) -> None:
    count = 3000  # "line NNNN\n": about 30 KB
    tree = write_tree(
        tmp_path,
        f"""auto_shutdown = "any_significant"
[quiet]
cmd = ["sh", "-c", "echo one line; exec sleep 60"]
[web]
[web.own]
cmd = "sleep 60"
log = {{ file = "own/web-own.log" }}
[talk]
cmd = {prog("chatty", str(count))}
restart = "temporary"
significant = true
log = {{ max_bytes = 8000, backups = 2 }}
""",
    )
    run = otree("run", tree, "--log-dir", str(tmp_path / "logs"))
    assert run.wait_exit() == 0
    names = sorted(os.listdir(tmp_path / "logs"))
    assert names == ["quiet.log", "talk.log", "talk.log.1", "talk.log.2"]
    assert (tmp_path / "logs" / "quiet.log").read_text() == "one line\n"
    kept = ""
    for name in ("talk.log.2", "talk.log.1", "talk.log"):
        text = (tmp_path / "logs" / name).read_text()
        assert 0 < len(text) <= 8000 and text.endswith("\n")
        kept += text
    numbers = [int(line.split()[1]) for line in kept.splitlines()]
    assert numbers == list(range(count - len(numbers), count))  # whole lines, in order
    assert (tmp_path / "own" / "web-own.log").exists()  # log.file wins over --log-dir


def test_a_chatty_child_never_blocks_the_loop(otree: Run, tmp_path: Path) -> None:
    """otree's stdout is a pipe nobody reads: the tree must still work, the file get all."""
    count = 200_000
    tree = write_tree(
        tmp_path,
        f"""auto_shutdown = "any_significant"
[steady]
cmd = "sleep 60"
[talk]
cmd = {prog("chatty", str(count))}
restart = "temporary"
significant = true
""",
    )
    run = otree("run", tree, "--log-dir", str(tmp_path / "logs"), stdout_pipe=True)
    assert run.wait_exit() == 0
    text = (tmp_path / "logs" / "talk.log").read_bytes()
    assert text.count(b"\n") == count
    assert text.endswith(b"line %d\n" % (count - 1))
    assert run.find("stop", "steady")


def test_target_service_runs_a_python_function(otree: Run, tmp_path: Path) -> None:
    (tmp_path / "myjob.py").write_text(
        "import sys\ndef main():\n    print('args', sys.argv[1:], flush=True)\n    return 5\n"
    )
    tree = write_tree(
        tmp_path,
        """[job]\ntarget = "myjob:main"\nargs = ["--fast", "x"]\nrestart = "temporary"
[steady]\ncmd = "sleep 60"\n""",
    )
    run = otree("run", tree)
    assert run.wait_for("exit", "job")["code"] == 5
    wait_until(lambda: "job    | args ['--fast', 'x']" in run.stdout, what="the target's output")


def test_env_and_cwd(otree: Run, tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    tree = write_tree(
        tmp_path,
        f"""[show]
cmd = {argv("sh", "-c", "echo $GREETING from $(pwd)")}
cwd = "{tmp_path / "sub"}"
env = {{ GREETING = "hello" }}
restart = "temporary"
[steady]
cmd = "sleep 60"
""",
    )
    run = otree("run", tree)
    run.wait_for("exit", "show")
    wait_until(lambda: f"hello from {tmp_path / 'sub'}" in run.stdout, what="the output")
