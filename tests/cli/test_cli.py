"""End to end: ``otree run`` a real tree, steer it with the control commands from outside."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from support.cli import otree_cli as ctl
from support.cli import status
from support.harness import short_dir
from support.otreeproc import OtreeProc
from support.procfs import pid_alive
from support.waits import DEADLINE, wait_until

RunOtree = Callable[..., OtreeProc]

TREE = """\
[db]
cmd = ["sh", "-c", "echo db up; exec sleep 600"]

[web]
strategy = "one_for_all"

[web.cache]
cmd = ["sh", "-c", "echo cache up; exec sleep 600"]

[web.api]
cmd = ["sh", "-c", "echo api up; exec sleep 600"]
"""


@pytest.fixture
def tree(tmp_path: Path, otree: RunOtree, sock: str) -> OtreeProc:
    (tmp_path / "tree.toml").write_text(TREE)
    proc = otree("run", "tree.toml", "--socket", sock)
    proc.wait_for("tree_ready")
    return proc


def test_stop_start_restart_a_service(tree: OtreeProc, sock: str) -> None:
    api = tree.running_pid("web.api")
    cache = tree.running_pid("web.cache")
    db = tree.running_pid("db")

    r = ctl("stop", "web.api", "--socket", sock)
    assert (r.returncode, r.stdout, r.stderr) == (0, "web.api: stopped\n", "")
    # replied once stopped: the exit is already logged and the process is gone
    assert tree.find("stop", "web.api", pid=api)
    assert tree.find("exit", "web.api", pid=api, normal=True)
    assert not pid_alive(api)
    st = status(sock)
    assert st["web.api"]["state"] == "stopped"
    assert st["web.api"]["pid"] is None
    assert st["web.api"]["restarts"] == 0
    assert st["web"]["restarts"] == 0  # terminate_child is not a crash
    assert st["web.cache"]["pid"] == cache  # nor does one_for_all touch the siblings

    r = ctl("stop", "web.api", "--socket", sock)  # stopping a stopped child is fine (OTP)
    assert r.returncode == 0, r.stderr

    r = ctl("start", "web.api", "--socket", sock)
    assert r.returncode == 0, r.stderr
    api2 = tree.running_pid("web.api")
    assert api2 != api
    assert r.stdout == f"web.api: started (pid {api2})\n"
    assert pid_alive(api2)

    r = ctl("start", "web.api", "--socket", sock)
    assert (r.returncode, r.stdout) == (1, "")
    assert r.stderr == "otree: web.api is already running\n"

    r = ctl("restart", "web.api", "--socket", sock)
    assert r.returncode == 0, r.stderr
    api3 = tree.running_pid("web.api")
    assert api3 != api2
    assert r.stdout == f"web.api: restarted (pid {api3})\n"
    wait_until(lambda: not pid_alive(api2), what="the old api to be gone")
    assert pid_alive(api3)
    st = status(sock)
    assert st["web.api"]["restarts"] == 0
    assert st["web"]["restarts"] == 0
    assert st["db"]["pid"] == db and st["web.cache"]["pid"] == cache
    assert not tree.find("restart")  # manual restarts are not logged as supervision restarts
    assert tree.proc.poll() is None


def test_stop_start_restart_a_supervisor(tree: OtreeProc, sock: str) -> None:
    db = tree.running_pid("db")
    old = {p: tree.running_pid(p) for p in ("web.cache", "web.api")}

    r = ctl("restart", "web", "--socket", sock)
    assert (r.returncode, r.stdout) == (0, "web: restarted\n"), r.stderr
    new = {p: tree.running_pid(p) for p in ("web.cache", "web.api")}
    assert all(new[p] != old[p] for p in new)
    assert not any(pid_alive(p) for p in old.values())

    r = ctl("stop", "web", "--socket", sock)
    assert r.returncode == 0, r.stderr
    st = status(sock)
    assert [st[p]["state"] for p in ("web", "web.cache", "web.api")] == ["stopped"] * 3
    assert not any(pid_alive(p) for p in new.values())
    # stopped in reverse start order
    stops = [e["path"] for e in tree.events() if e["event"] == "stop"]
    assert stops[-2:] == ["web.api", "web.cache"]

    r = ctl("start", "web", "--socket", sock)
    assert r.returncode == 0, r.stderr
    st = status(sock)
    assert st["web"]["state"] == "running"
    assert all(pid_alive(st[p]["pid"]) for p in ("web.cache", "web.api"))
    assert st["db"]["pid"] == db
    assert st[""]["restarts"] == 0 and not tree.find("restart")


def test_refusals_are_clear_and_exit_1(tree: OtreeProc, sock: str) -> None:
    r = ctl("stop", "nope", "--socket", sock)
    assert (r.returncode, r.stderr) == (1, "otree: no node at path 'nope'\n")
    r = ctl("restart", "web.nope", "--socket", sock)
    assert (r.returncode, r.stderr) == (1, "otree: no node at path 'web.nope'\n")
    r = ctl("stop", "", "--socket", sock)
    assert r.returncode == 1
    assert r.stderr == "otree: the root cannot be started or stopped: use shutdown\n"
    r = ctl("logs", "nope", "--socket", sock)
    assert (r.returncode, r.stderr) == (1, "otree: no service or supervisor at path 'nope'\n")
    assert tree.proc.poll() is None


def test_a_restarting_child_cannot_be_started(tmp_path: Path, otree: RunOtree, sock: str) -> None:
    (tmp_path / "tree.toml").write_text(
        '[flaky]\ncmd = ["sh", "-c", "exit 1"]\nbackoff = { initial = 60, max = 60 }\n'
        '[other]\ncmd = ["sleep", "600"]\n'
    )
    proc = otree("run", "tree.toml", "--socket", sock)
    proc.wait_for("restart", "")
    assert status(sock)["flaky"]["state"] == "restarting"
    r = ctl("start", "flaky", "--socket", sock)
    assert (r.returncode, r.stderr) == (1, "otree: flaky is restarting\n")
    r = ctl("restart", "flaky", "--socket", sock)
    assert (r.returncode, r.stderr) == (1, "otree: flaky is restarting\n")
    r = ctl("stop", "flaky", "--socket", sock)  # cancels the pending restart
    assert r.returncode == 0, r.stderr
    st = status(sock)
    assert st["flaky"]["state"] == "stopped"
    assert st["flaky"]["last_exit"] == {"code": 1, "normal": False}
    assert st[""]["restarts"] == 1


def test_shutdown(tree: OtreeProc, sock: str) -> None:
    pids = [tree.running_pid(p) for p in ("db", "web.cache", "web.api")]
    r = ctl("shutdown", "--socket", sock)
    assert (r.returncode, r.stdout, r.stderr) == (0, "tree stopped\n", "")
    assert tree.wait_exit() == 0  # it returned once the tree was down
    assert tree.find("tree_stopped", "", exit_code=0)
    assert not any(pid_alive(p) for p in pids)
    assert not os.path.exists(sock)  # the socket goes with the tree
    r = ctl("status", "--socket", sock)
    assert r.returncode == 3
    assert r.stderr == f"otree: no otree is running at {sock} (no such socket)\n"


# --- status ---------------------------------------------------------------------------


def test_status_json(tree: OtreeProc, sock: str) -> None:
    r = ctl("status", "--json", "--socket", sock)
    assert r.returncode == 0, r.stderr
    nodes = json.loads(r.stdout)["nodes"]
    assert [n["path"] for n in nodes] == ["", "db", "web", "web.cache", "web.api"]
    assert [n["kind"] for n in nodes] == [
        "supervisor",
        "service",
        "supervisor",
        "service",
        "service",
    ]
    base = {"path", "kind", "state", "pid", "uptime", "restarts", "last_exit"}
    # in its cgroup (cgroups = "auto" where root may write a cgroup2; issue 13)
    usage = {"procs", "cpu_seconds", "memory"} if "procs" in nodes[1] else set()
    costs = {"cpu_seconds", "cpu_percent", "rss_bytes"}  # issue 16: summed per supervisor
    for n in nodes:
        service = {"dropped", "status_text", "health", "cpu_percent_over"} | usage | costs
        extra = {"supervisor": costs, "service": service}[n["kind"]]
        if n["path"] == "":
            extra = {"console_dropped", "events_dropped"} | costs
        assert set(n) == base | extra
        assert all(n[key] == 0 for key in extra - {"status_text", "health"} - usage - service)
        assert n["rss_bytes"] > 0 and n["cpu_seconds"] >= 0 and n["cpu_percent"] >= 0
        assert n.get("procs", 1) == 1 and n.get("memory") is None
        assert n.get("status_text") is None and n.get("health") is None
        assert n["state"] == "running"
        assert n["restarts"] == 0 and n["last_exit"] is None
        assert 0 <= n["uptime"] < DEADLINE
    assert nodes[1]["pid"] == tree.running_pid("db")


def test_status_table(tree: OtreeProc, sock: str) -> None:
    api = tree.running_pid("web.api")
    os.kill(api, signal.SIGKILL)  # a crash: one_for_all restarts web's children
    tree.wait_for("restart", "web")
    tree.wait_for("spawn", "web.api", count=2)
    r = ctl("status", "--socket", sock)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith(f"tree.toml: otree pid {tree.pid}, up ")
    header = ["PATH", "STATE", "PID", "UPTIME", "RESTARTS", "LAST", "EXIT"]
    usage = ["PROCS", "CPU"] if "PROCS" in lines[1] else []  # in cgroups (issue 13)
    assert lines[1].split() == header + usage + ["CPU%", "RSS"]
    rows = [line.split() for line in lines[2:]]
    assert all(r[-2].endswith("%") and r[-1][-1] in "BKMG" for r in rows)  # issue 16
    rows = [r[:-2] for r in rows]
    if usage:  # one process each, its CPU seconds
        assert all(
            r[-2] == "1" and r[-1].endswith("s") for r in rows if r[0] not in ("(root)", "web")
        )
        rows = [r[:-2] if r[0] not in ("(root)", "web") else r for r in rows]
    assert [r[0] for r in rows] == ["(root)", "db", "web", "web.cache", "web.api"]
    assert [len(line) - len(line.lstrip()) for line in lines[2:]] == [0, 2, 2, 4, 4]
    assert rows[4][:3] == ["web.api", "running", str(tree.running_pid("web.api"))]
    assert rows[4][-4:] == ["1", "signal", "KILL", "(crash)"]
    assert rows[2][:2] == ["web", "running"]
    assert "\x1b[" not in r.stdout  # no colours when not on a terminal


# --- finding the tree ------------------------------------------------------------------


def test_default_socket_is_private_and_found_from_the_same_directory(
    tmp_path: Path, otree: RunOtree
) -> None:
    with short_dir() as runtime_dir:
        env = {"XDG_RUNTIME_DIR": runtime_dir}
        here = tmp_path / "project"
        here.mkdir()
        (here / "tree.toml").write_text(TREE)
        proc = otree("run", "tree.toml", env=env, cwd=here)
        proc.wait_for("tree_ready")
        sock_dir = os.path.join(runtime_dir, "otree")
        assert stat.S_IMODE(os.stat(sock_dir).st_mode) == 0o700
        [name] = [n for n in os.listdir(sock_dir) if n.endswith(".sock")]  # and its .lock
        assert name.startswith("tree-") and name.endswith(".sock")
        sock = os.path.join(sock_dir, name)
        assert stat.S_IMODE(os.stat(sock).st_mode) == 0o600
        # no --socket: the tree run from this directory is found
        r = ctl("status", "--json", cwd=here, env=env)
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["nodes"][1]["pid"] == proc.running_pid("db")
        # --tree names the file; OTREE_SOCKET and --socket name the socket
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        for args, extra in [
            (["--tree", str(here / "tree.toml")], {}),
            ([], {"OTREE_SOCKET": sock}),
            (["--socket", sock], {}),
        ]:
            r = ctl("status", *args, cwd=elsewhere, env={**env, **extra})
            assert r.returncode == 0, (args, r.stderr)
        # from another directory, nothing is found
        r = ctl("status", cwd=elsewhere, env=env)
        assert r.returncode == 3
        assert r.stderr.startswith(f"otree: no otree is running for {elsewhere} (")
        assert ctl("shutdown", cwd=here, env=env).returncode == 0
        assert proc.wait_exit() == 0
        assert os.listdir(sock_dir) == []


def test_a_second_run_on_the_same_socket_is_refused(
    tree: OtreeProc, tmp_path: Path, otree: RunOtree, sock: str
) -> None:
    other = tmp_path / "other"
    other.mkdir()
    (other / "tree.toml").write_text('[x]\ncmd = ["sleep", "600"]\n')
    second = otree("run", "tree.toml", "--socket", sock, cwd=other)
    assert second.wait_exit() == 2
    assert second.stderr == (
        f"otree: another otree (pid {tree.pid}) is already running on {sock}"
        f" (it holds {sock}.lock); stop it first or pass --socket\n"
    )
    assert second.events() == []  # nothing started
    assert tree.proc.poll() is None
    assert status(sock)["db"]["state"] == "running"  # the first one still answers


def test_a_socket_left_by_a_killed_otree_is_taken_over(
    tmp_path: Path, otree: RunOtree, sock: str
) -> None:
    (tmp_path / "tree.toml").write_text('[x]\ncmd = ["sleep", "600"]\n')
    first = otree("run", "tree.toml", "--socket", sock)
    first.wait_for("tree_ready")
    child = first.running_pid("x")
    os.kill(first.pid, signal.SIGKILL)
    first.wait_exit()
    os.killpg(child, signal.SIGKILL)
    assert stat.S_ISSOCK(os.lstat(sock).st_mode)  # left behind
    r = ctl("status", "--socket", sock)
    assert (r.returncode, r.stderr) == (3, f"otree: no otree is running at {sock} (stale socket)\n")
    second = otree("run", "tree.toml", "--socket", sock)
    second.wait_for("tree_ready")
    assert status(sock)["x"]["pid"] == second.running_pid("x")


def test_bad_arguments_exit_2(sock: str) -> None:
    for args in (["logs", "-n", "-3"], ["status", "--bogus"]):
        r = ctl(*args, "--socket", sock)
        assert r.returncode == 2, args
        assert r.stderr.startswith("otree: "), r.stderr
    r = ctl("status", "--bogus", "--socket", sock)
    assert r.stderr == "otree: unrecognized arguments: --bogus (see 'otree status --help')\n"


def test_version_and_bare_otree() -> None:
    from support.cli import otree_cli

    from otree._version import __version__

    r = otree_cli("--version")
    assert (r.returncode, r.stdout) == (0, f"otree {__version__}\n")
    bare = otree_cli()
    assert bare.returncode == 2 and bare.stdout == ""
    assert bare.stderr.startswith("usage: otree ") and "run       run a tree" in bare.stderr
    assert "exit codes: 0 ok;" in otree_cli("--help").stdout


# --- logs --------------------------------------------------------------------------------


def test_logs(tmp_path: Path, otree: RunOtree, sock: str) -> None:
    (tmp_path / "tree.toml").write_text(
        '[a]\ncmd = ["sh", "-c", "echo a1; echo a2; echo a3; exec sleep 600"]\n'
        '[b]\ncmd = ["sh", "-c", "echo b1; exec sleep 600"]\n'
    )
    proc = otree("run", "tree.toml", "--socket", sock)
    proc.wait_for("tree_ready")
    wait_until(lambda: "b | b1" in proc.stdout, what="b's output")
    r = ctl("logs", "a", "-n", "2", "--socket", sock)
    assert (r.returncode, r.stdout) == (0, "a2\na3\n")
    r = ctl("logs", "--socket", sock)
    assert r.returncode == 0
    # services interleave in arrival order, which the scheduler decides; each keeps its own order
    lines = r.stdout.splitlines()
    assert sorted(lines) == ["a | a1", "a | a2", "a | a3", "b | b1"]
    assert [line for line in lines if line.startswith("a")] == ["a | a1", "a | a2", "a | a3"]
    r = ctl("logs", "-n", "0", "--socket", sock)
    assert (r.returncode, r.stdout) == (0, "")


def test_logs_follow(tmp_path: Path, otree: RunOtree, sock: str) -> None:
    (tmp_path / "tree.toml").write_text(
        '[ticker]\ncmd = ["sh", "-c", "echo start; while sleep 0.05; do echo tick; done"]\n'
    )
    proc = otree("run", "tree.toml", "--socket", sock)
    proc.wait_for("tree_ready")
    follower = subprocess.Popen(
        [sys.executable, "-m", "otree", "logs", "ticker", "-f", "-n", "1", "--socket", sock],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        assert follower.stdout is not None
        got = [follower.stdout.readline() for _ in range(5)]
        assert got[1:] == [b"tick\n"] * 4  # new lines keep coming
    finally:
        os.killpg(follower.pid, signal.SIGKILL)
        follower.wait()
    # once the tree stops, a follower ends by itself with exit 0
    follower = subprocess.Popen(
        [sys.executable, "-m", "otree", "logs", "-f", "-n", "0", "--socket", sock],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        assert follower.stdout is not None
        assert follower.stdout.readline() == b"ticker | tick\n"
        assert ctl("shutdown", "--socket", sock).returncode == 0
        _, err = follower.communicate(timeout=DEADLINE)
        assert follower.returncode == 0, err
    finally:
        if follower.poll() is None:
            os.killpg(follower.pid, signal.SIGKILL)
            follower.wait()


def test_logs_read_the_log_file_beyond_the_ring(tmp_path: Path, otree: RunOtree, sock: str) -> None:
    (tmp_path / "tree.toml").write_text(
        '[chatty]\ncmd = ["sh", "-c", "seq 1 1500; exec sleep 600"]\n'
    )
    proc = otree("run", "tree.toml", "--socket", sock, "--log-dir", str(tmp_path / "logs"))
    proc.wait_for("tree_ready")
    wait_until(lambda: "chatty | 1500" in proc.stdout, what="all the output")
    r = ctl("logs", "chatty", "-n", "1200", "--socket", sock)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [str(i) for i in range(301, 1501)]


# --- the Python API ----------------------------------------------------------------------


def test_python_run_serves_the_socket(tmp_path: Path, sock: str) -> None:
    script = tmp_path / "app.py"
    script.write_text(
        "import sys\n"
        "from otree.core.spec import Service, Supervisor\n"
        "from otree.launch import run\n"
        "tree = Supervisor('root', children=[Service('x', cmd=['sleep', '600'])])\n"
        "raise SystemExit(run(tree, socket=sys.argv[1]))\n"
    )
    proc = subprocess.Popen(
        [sys.executable, str(script), sock],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    pid = None
    try:
        wait_until(lambda: os.path.exists(sock), what="the socket")
        pid = wait_until(lambda: status(sock)["x"]["pid"], what="x to run")
        assert ctl("shutdown", "--socket", sock).returncode == 0
        assert proc.wait(DEADLINE) == 0
        assert not pid_alive(pid)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        if pid is not None and pid_alive(pid):
            os.killpg(pid, signal.SIGKILL)


def test_a_start_that_fails_says_why_and_leaves_the_child_stopped(
    tmp_path: Path, otree: RunOtree, sock: str
) -> None:
    script = tmp_path / "svc.sh"
    script.write_text("#!/bin/sh\nexec sleep 600\n")
    script.chmod(0o755)
    (tmp_path / "tree.toml").write_text(
        '[svc]\ncmd = ["./svc.sh"]\n[other]\ncmd = ["sleep", "600"]\n'
    )
    proc = otree("run", "tree.toml", "--socket", sock)
    proc.wait_for("tree_ready")
    assert ctl("stop", "svc", "--socket", sock).returncode == 0
    script.unlink()
    r = ctl("start", "svc", "--socket", sock)
    assert (r.returncode, r.stdout) == (1, "")
    # ./svc.sh is resolved against the tree file's directory at load
    assert r.stderr == f"otree: svc: cannot start: No such file or directory: '{script}'\n"
    assert proc.find("start_failed", "svc")
    st = status(sock)
    assert st["svc"]["state"] == "stopped"
    assert st["other"]["state"] == "running" and st[""]["restarts"] == 0
    assert proc.proc.poll() is None
