"""``otree reload`` and SIGHUP end to end: the root re-execs itself and keeps its children."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from reloadkit import (
    Start,
    ctl,
    pids,
    reload,
    since_reexec,
    status,
)
from support.otreeproc import OtreeProc
from support.procfs import pid_alive
from support.treefiles import prog
from support.waits import wait_until

SLEEP = 'cmd = "sleep 60"'
TREE = f"""\
[a]
{SLEEP}

[web]
strategy = "one_for_all"

[web.api]
{SLEEP}

[web.worker]
{SLEEP}
"""


def exe_of(pid: int) -> str:
    return os.readlink(f"/proc/{pid}/exe")


def test_reload_keeps_otrees_pid_and_every_childs_pid(tree: Start) -> None:
    run = tree(TREE)
    before = pids(run)
    assert set(before) == {"a", "web.api", "web.worker"}
    exe = exe_of(run.pid)

    r = reload(run, run.sock, 1)  # type: ignore[attr-defined]

    assert r.stdout == f"reloaded (otree pid {run.pid})\n  kept:    a, web.api, web.worker\n"
    assert r.stderr == ""
    assert run.proc.poll() is None and exe_of(run.pid) == exe  # the same process, re-executed
    assert pids(run) == before
    assert since_reexec(run) == [
        ("reexec", ""),
        ("adopt", "a"),
        ("adopt", "web.api"),
        ("adopt", "web.worker"),
        ("tree_ready", ""),
    ]
    assert run.find("reexec")[0]["reason"] == "reload"
    assert [e["pid"] for e in run.find("adopt")] == [
        before[p] for p in ("a", "web.api", "web.worker")
    ]
    assert "otree: (root): reexec reason=reload" in run.stdout
    # still supervised by the new image: a crash is restarted by its strategy
    os.kill(before["web.api"], signal.SIGKILL)
    run.wait_for("restart", "web", child="web.api")
    run.wait_for("spawn", "web.worker", count=2)
    run.send(signal.SIGTERM)
    assert run.wait_exit() == 0
    assert run.find("tree_stopped")[0]["exit_code"] == 0


def test_a_changed_service_is_restarted_a_removed_one_stops_a_new_one_starts(
    tree: Start,
) -> None:
    run = tree(f"[a]\n{SLEEP}\n[b]\n{SLEEP}\n[c]\n{SLEEP}\n[gone]\n{SLEEP}\n")
    before = pids(run)
    run.file.write_text(  # type: ignore[attr-defined]
        f'[a]\n{SLEEP}\n[b]\ncmd = "sleep 61"\n[c]\n{SLEEP}\n[fresh]\n{SLEEP}\n'
    )

    r = reload(run, run.sock, 1)  # type: ignore[attr-defined]

    assert r.stdout.splitlines()[1:] == [
        "  kept:    a, c",
        "  stopped: gone, b",
        "  started: b, fresh",
    ]
    assert since_reexec(run) == [
        ("reexec", ""),
        ("adopt", "a"),
        ("adopt", "c"),
        ("stop", "gone"),  # removed and changed are stopped in reverse start order
        ("exit", "gone"),
        ("stop", "b"),
        ("exit", "b"),
        ("spawn", "b"),  # then started in declared order
        ("ready", "b"),
        ("spawn", "fresh"),
        ("ready", "fresh"),
        ("tree_ready", ""),
    ]
    after = pids(run)
    assert after["a"] == before["a"] and after["c"] == before["c"]
    assert after["b"] != before["b"] and "gone" not in after and "fresh" in after
    assert not pid_alive(before["b"]) and not pid_alive(before["gone"])
    assert run.find("exit", "gone")[0]["normal"] is True  # stopped by otree: not a crash
    assert not run.find("restart")  # a reload is not a restart
    with open(f"/proc/{after['b']}/cmdline", "rb") as f:
        assert f.read() == b"sleep\x0061\x00"


def test_an_invalid_file_is_refused_and_the_tree_carries_on(tree: Start) -> None:
    run = tree(TREE)
    before = pids(run)
    run.file.write_text(TREE + '\n[b]\ncmd = "sleep 1"\nrestart = "permanet"\n')  # type: ignore[attr-defined]

    r = ctl("reload", sock=run.sock)  # type: ignore[attr-defined]

    assert r.returncode == 1
    assert r.stdout == ""
    assert r.stderr.splitlines() == [
        "otree: reload refused: the tree file is invalid; the running tree carries on:",
        "otree: tree.toml:15: b.restart: 'permanet' is not one of permanent, transient, temporary",
    ]
    assert not run.find("reexec")
    assert pids(run) == before
    # fixed, the next reload goes through
    run.file.write_text(TREE)  # type: ignore[attr-defined]
    reload(run, run.sock, 1)  # type: ignore[attr-defined]
    assert pids(run) == before


def test_sighup_reloads(tree: Start) -> None:
    run = tree(TREE)
    before = pids(run)
    run.file.write_text(TREE + f"\n[b]\n{SLEEP}\n")  # type: ignore[attr-defined]
    run.send(signal.SIGHUP)
    run.wait_for("tree_ready", count=2)
    assert run.find("reexec")[0]["reason"] == "SIGHUP"
    after = pids(run)
    assert {p: after[p] for p in before} == before and "b" in after


def test_sighup_with_an_invalid_file_says_why_on_stderr(tree: Start) -> None:
    run = tree(TREE)
    run.file.write_text("[a]\nnope = 1\n")  # type: ignore[attr-defined]
    run.send(signal.SIGHUP)
    lines = [
        "otree: reload (SIGHUP) refused: the tree file is invalid; the running tree carries on:",
        "otree: tree.toml:2: a.nope: unknown key",
    ]
    wait_until(lambda: all(line in run.stderr for line in lines), what="the refusal")
    # and a reload request afterwards still works: the tree is untouched
    run.file.write_text(TREE)  # type: ignore[attr-defined]
    reload(run, run.sock, 1)  # type: ignore[attr-defined]


def test_operator_reloads_never_trip_the_guard(tree: Start) -> None:
    """Finding: the re-exec guard counted operator reloads, so a fourth ``otree reload``
    within 60 s (or a burst of HUPs) stopped the whole tree."""
    run = tree(TREE)
    before = pids(run)
    for i in range(1, 7):
        reload(run, run.sock, i)  # type: ignore[attr-defined]
    assert run.proc.poll() is None and pids(run) == before
    assert "re-exec guard" not in run.stderr
    # a burst of HUPs: coalesced into reloads, never a stop
    for _ in range(5):
        run.send(signal.SIGHUP)
    wait_until(lambda: len(run.find("tree_ready")) >= 8, what="a reload after the HUPs")
    r = ctl("reload", sock=run.sock)  # type: ignore[attr-defined]
    assert r.returncode == 0, r.stderr
    assert run.proc.poll() is None and pids(run) == before
    assert not run.find("stop")


def test_the_loop_guard_trips_on_the_fourth_fatal_reexec_within_60s(tree: Start) -> None:
    # b crashes at once, every time; each image fails on its exit: a fault that recurs
    text = f'[a]\n{SLEEP}\n[b]\ncmd = ["sh", "-c", "sleep 0.3; exit 1"]\n[c]\n{SLEEP}\n'
    run = tree(text, env={"OTREE_TEST_FAULT": "exited:b:1:always"})
    assert run.wait_exit() == 4
    assert len(run.find("reexec")) == 3
    assert all(r["reason"].startswith("fatal: InjectedFault") for r in run.find("reexec"))
    stopped = run.find("tree_stopped")
    assert stopped and stopped[0]["exit_code"] == 4
    # stopped in order: reverse start order, every child that runs
    assert [e["path"] for e in run.find("stop")] == ["c", "a"]
    err = run.stderr
    assert err.count("otree: re-exec guard: 4 fatal re-execs within 60 s (the last: fatal:") == 1
    assert "stopping the tree (exit 4)" in err


def test_a_chatty_child_loses_no_line_across_three_reloads(tree: Start, tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    run = tree(f"[chatty]\ncmd = {prog('split_lines')}\n[a]\n{SLEEP}\n", "--log-dir", str(logs))
    chatty = pids(run)["chatty"]
    for i in range(1, 4):
        reload(run, run.sock, i)  # type: ignore[attr-defined]
    assert pids(run)["chatty"] == chatty
    r = ctl("stop", "chatty", sock=run.sock)  # type: ignore[attr-defined]
    assert r.returncode == 0, r.stderr

    lines = (logs / "chatty.log").read_text().splitlines()
    assert lines[-1].startswith("done ")
    count = int(lines[-1].split()[1])
    assert count > 1000  # it did write across the reloads
    assert lines[:-1] == [f"line {i:08d}" for i in range(count)]
    # and the console (a file here: never dropped) has the very same lines, prefixed
    shown = [x[len("chatty | ") :] for x in run.stdout.splitlines() if x.startswith("chatty | ")]
    assert shown == lines


def test_reload_waits_until_the_tree_is_quiet(tree: Start, tmp_path: Path, sock: str) -> None:
    # 'slow' is ready once the file 'go' exists: the test decides when a start ends
    def slow(version: int) -> str:
        return (
            f'[a]\n{SLEEP}\n[slow]\n{SLEEP}\nenv = {{ V = "{version}" }}\n'
            'ready = { cmd = ["test", "-e", "go"], interval = 0.02 }\n'
        )

    go = tmp_path / "go"
    go.touch()
    run = tree(slow(1))
    go.unlink()
    run.file.write_text(slow(2))  # type: ignore[attr-defined]
    second = ctl("reload", sock=sock, wait=False)  # restarts 'slow', which waits for 'go'
    run.wait_for("exit", "slow")
    run.file.write_text(slow(3))  # type: ignore[attr-defined]
    third = ctl("reload", sock=sock, wait=False)
    wait_until(
        lambda: "otree: reload: waiting until the tree is quiet ('slow' is starting)" in run.stdout,
        what="the third reload to wait",
    )
    assert len(run.find("reexec")) == 1
    go.touch()
    for client in (second, third):
        out, err = client.communicate(timeout=20)
        assert client.returncode == 0, (out, err)
    run.wait_for("tree_ready", count=3)
    reexecs = run.find("reexec")
    assert len(reexecs) == 2
    # the second re-exec came only once the first one's restart of 'slow' was ready
    assert reexecs[1]["ts"] >= run.find("ready", "slow")[1]["ts"]


def test_reload_of_a_python_tree(otree: Start, tmp_path: Path, sock: str) -> None:
    file = tmp_path / "app.py"
    file.write_text(
        "from otree import Service, Supervisor\n"
        "tree = Supervisor('root', children=[Service('a', cmd='sleep 60')])\n"
    )
    run: OtreeProc = otree("run", "app.py:tree", "--socket", sock)
    run.wait_for("tree_ready")
    a = run.running_pid("a")
    file.write_text(
        "from otree import Service, Supervisor\n"
        "tree = Supervisor('root', children=[Service('a', cmd='sleep 60'),"
        " Service('b', cmd='sleep 60')])\n"
    )
    r = ctl("reload", sock=sock)
    assert r.returncode == 0, r.stderr
    run.wait_for("tree_ready", count=2)
    assert run.find("adopt", "a", pid=a)
    assert run.find("spawn", "b")


API_RUN = """
import sys
from otree import Service, Supervisor, run
tree = Supervisor("root", children=[Service("a", cmd="sleep 60")])
raise SystemExit(run(tree, socket=sys.argv[1], events=sys.argv[2]))
"""


def test_a_tree_run_from_python_refuses_to_reload(otree: Start, tmp_path: Path, sock: str) -> None:
    script = tmp_path / "app.py"
    script.write_text(API_RUN)
    events = str(tmp_path / "events.jsonl")
    run: OtreeProc = otree(command=[sys.executable, str(script), sock, events])
    run.wait_for("tree_ready")
    r = ctl("reload", sock=sock)
    assert r.returncode == 1
    assert r.stderr == (
        "otree: reload refused: this tree cannot re-exec itself: it was started from Python"
        " with otree.run(); run it with 'otree run TREE' to reload it\n"
    )
    run.send(signal.SIGHUP)  # the same, on stderr; the tree carries on
    wait_until(lambda: "otree: reload (SIGHUP) refused: this tree cannot" in run.stderr)
    assert not run.find("reexec")
    run.send(signal.SIGTERM)
    assert run.wait_exit() == 0


def test_supervisors_added_and_removed_and_a_new_service_that_cannot_start(tree: Start) -> None:
    run = tree(f"[a]\n{SLEEP}\n[old]\n[old.x]\n{SLEEP}\n[old.y]\n{SLEEP}\n")
    before = pids(run)
    run.file.write_text(  # type: ignore[attr-defined]
        f'[a]\n{SLEEP}\n[new]\nstrategy = "one_for_all"\n[new.p]\n{SLEEP}\n[new.q]\n{SLEEP}\n'
        '[broken]\ncmd = "no-such-program-x"\n'
    )
    r = ctl("reload", sock=run.sock)  # type: ignore[attr-defined]
    assert r.returncode == 1, (r.stdout, r.stderr)  # reloaded, but a start failed (issue 16)
    run.wait_for("tree_ready", count=2)
    assert r.stdout.splitlines() == [
        f"reloaded (otree pid {run.pid})",
        "  kept:    a",
        "  stopped: old.y, old.x",
        "  started: new.p, new.q",
        "  failed:  broken: No such file or directory: 'no-such-program-x'",
    ]
    nodes = {p: n["state"] for p, n in status(run).items()}
    assert nodes == {
        "": "running",
        "a": "running",
        "new": "running",
        "new.p": "running",
        "new.q": "running",
        "broken": "stopped",
    }
    assert pids(run)["a"] == before["a"]
    assert not pid_alive(before["old.x"]) and not pid_alive(before["old.y"])
