"""Strategies, restart types, intensity and stopping, with real processes under ``otree run``."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

from support.otreeproc import OtreeProc
from support.procfs import pid_alive
from support.treefiles import prog, write_tree
from support.waits import wait_until

Run = Callable[..., OtreeProc]

SLEEP = 'cmd = "sleep 60"'


def lifecycle(run: OtreeProc, *names: str) -> list[tuple[str, str]]:
    """(event, path) of the events named, in log order."""
    return [(e["event"], e["path"]) for e in run.events() if e["event"] in names]


def crash(run: OtreeProc, path: str) -> int:
    pid = run.running_pid(path)
    os.kill(pid, signal.SIGKILL)
    return pid


def three(tmp_path: Path, strategy: str) -> str:
    return write_tree(
        tmp_path,
        f'strategy = "{strategy}"\n[a]\n{SLEEP}\n[b]\n{SLEEP}\n[c]\n{SLEEP}\n',
    )


def test_one_for_one_restarts_only_the_crashed_child(otree: Run, tmp_path: Path) -> None:
    run = otree("run", three(tmp_path, "one_for_one"))
    run.wait_for("tree_ready")
    before = {p: run.running_pid(p) for p in "abc"}
    crash(run, "b")
    run.wait_for("spawn", "b", count=2)
    after = {p: run.running_pid(p) for p in "abc"}
    assert after["a"] == before["a"] and after["c"] == before["c"]
    assert after["b"] != before["b"]
    exit_b = run.find("exit", "b")[0]
    assert exit_b["signal"] == "KILL" and exit_b["normal"] is False
    restart = run.find("restart", "")[0]
    assert restart["strategy"] == "one_for_one" and restart["child"] == "b"


def test_restart_events_count_the_window_in_the_log_and_on_the_console(
    otree: Run, tmp_path: Path
) -> None:
    run = otree("run", write_tree(tmp_path, f"intensity = 3\nperiod = 30\n[a]\n{SLEEP}\n"))
    run.wait_for("tree_ready")
    for n in (1, 2):
        crash(run, "a")
        run.wait_for("spawn", "a", count=n + 1)
    restarts = run.find("restart", "")
    assert [(e["child"], e["count"], e["intensity"], e["period"]) for e in restarts] == [
        ("a", 1, 3, 30.0),
        ("a", 2, 3, 30.0),
    ]
    wait_until(lambda: "(root): restart (one_for_one) after a (2 of 3 in 30 s)" in run.stdout)


def test_one_for_all_stops_the_others_in_reverse_then_starts_all(
    otree: Run, tmp_path: Path
) -> None:
    run = otree("run", three(tmp_path, "one_for_all"))
    run.wait_for("tree_ready")
    before = {p: run.running_pid(p) for p in "abc"}
    crash(run, "b")
    run.wait_for("spawn", "c", count=2)
    after = {p: run.running_pid(p) for p in "abc"}
    assert all(after[p] != before[p] for p in "abc")
    tail = lifecycle(run, "stop", "spawn", "restart")[3:]
    assert tail == [
        ("restart", ""),
        ("stop", "c"),
        ("stop", "a"),
        ("spawn", "a"),
        ("spawn", "b"),
        ("spawn", "c"),
    ]
    for pid in before.values():
        assert not pid_alive(pid)


def test_rest_for_one_restarts_the_child_and_those_after_it(otree: Run, tmp_path: Path) -> None:
    run = otree("run", three(tmp_path, "rest_for_one"))
    run.wait_for("tree_ready")
    before = {p: run.running_pid(p) for p in "abc"}
    crash(run, "b")
    run.wait_for("spawn", "c", count=2)
    after = {p: run.running_pid(p) for p in "abc"}
    assert after["a"] == before["a"]
    assert after["b"] != before["b"] and after["c"] != before["c"]
    assert lifecycle(run, "stop", "spawn")[3:] == [("stop", "c"), ("spawn", "b"), ("spawn", "c")]


def test_intensity_give_up_exits_1(otree: Run, tmp_path: Path) -> None:
    tree = write_tree(
        tmp_path,
        f"intensity = 2\nperiod = 30\n[steady]\n{SLEEP}\n[flappy]\ncmd = \"sh -c 'exit 1'\"\n",
    )
    run = otree("run", tree)
    assert run.wait_exit() == 1
    give_up = run.wait_for("give_up", "")
    assert give_up["restarts"] == 3 and give_up["period"] == 30
    assert len(run.find("restart", "")) == 2
    assert len(run.find("spawn", "flappy")) == 3
    assert lifecycle(run, "give_up", "stop", "tree_stopped") == [
        ("give_up", ""),
        ("stop", "steady"),
        ("tree_stopped", ""),
    ]
    assert run.find("tree_stopped", "")[0]["exit_code"] == 1
    assert "gave up" in run.stderr
    assert not pid_alive(run.find("spawn", "steady")[0]["pid"])


def test_escalation_through_a_nested_supervisor(otree: Run, tmp_path: Path) -> None:
    tree = write_tree(
        tmp_path,
        f"""intensity = 1
period = 60
[steady]
{SLEEP}
[inner]
strategy = "one_for_all"
intensity = 1
period = 60
[inner.ok]
{SLEEP}
[inner.bad]
cmd = "sh -c 'sleep 0.05; exit 3'"
""",
    )
    run = otree("run", tree)
    assert run.wait_exit() == 1
    gives = [e["path"] for e in run.find("give_up")]
    assert gives == ["inner", "inner", ""]
    root_restarts = run.find("restart", "")
    assert [e["child"] for e in root_restarts] == ["inner"]
    inner_restarts = run.find("restart", "inner")
    assert [e["child"] for e in inner_restarts] == ["inner.bad", "inner.bad"]
    assert len(run.find("spawn", "steady")) == 1  # one_for_one at the root: never touched


def test_transient_is_restarted_only_after_an_abnormal_exit(otree: Run, tmp_path: Path) -> None:
    flag = tmp_path / "crashed-once"
    tree = write_tree(
        tmp_path,
        f"""[steady]
{SLEEP}
[job]
cmd = ["sh", "-c", "if [ -e {flag} ]; then exit 0; else touch {flag}; exit 1; fi"]
restart = "transient"
""",
    )
    run = otree("run", tree)
    run.wait_for("exit", "job", count=2)
    exits = run.find("exit", "job")
    assert [(e["code"], e["normal"]) for e in exits] == [(1, False), (0, True)]
    run.send(signal.SIGTERM)
    assert run.wait_exit() == 0
    assert len(run.find("spawn", "job")) == 2
    assert [e["child"] for e in run.find("restart", "")] == ["job"]


def test_temporary_is_never_restarted(otree: Run, tmp_path: Path) -> None:
    tree = write_tree(
        tmp_path,
        f"""[steady]\n{SLEEP}\n[once]\ncmd = "sh -c 'exit 9'"\nrestart = "temporary"\n""",
    )
    run = otree("run", tree)
    run.wait_for("exit", "once")
    run.send(signal.SIGTERM)
    assert run.wait_exit() == 0
    assert len(run.find("spawn", "once")) == 1
    assert run.find("restart") == []
    assert lifecycle(run, "stop") == [("stop", "steady")]


def test_normal_exit_codes(otree: Run, tmp_path: Path) -> None:
    tree = write_tree(
        tmp_path,
        f"""[steady]\n{SLEEP}\n[job]\ncmd = "sh -c 'exit 3'"\nrestart = "transient"
normal_exit_codes = [0, 3]\n""",
    )
    run = otree("run", tree)
    exit_job = run.wait_for("exit", "job")
    assert exit_job["normal"] is True
    run.send(signal.SIGTERM)
    assert run.wait_exit() == 0
    assert run.find("restart") == []


def test_auto_shutdown_when_a_significant_job_ends(otree: Run, tmp_path: Path) -> None:
    tree = write_tree(
        tmp_path,
        f"""auto_shutdown = "any_significant"
[server]
{SLEEP}
[job]
cmd = "sh -c 'echo working; sleep 0.1'"
restart = "transient"
significant = true
""",
    )
    run = otree("run", tree)
    assert run.wait_exit() == 0
    assert run.find("auto_shutdown", "")[0]["child"] == "job"
    assert lifecycle(run, "auto_shutdown", "stop") == [("auto_shutdown", ""), ("stop", "server")]
    assert "job    | working" in run.stdout


def test_sigterm_stops_everything_in_reverse_order_and_exits_0(otree: Run, tmp_path: Path) -> None:
    tree = write_tree(
        tmp_path,
        f"""[a]\n{SLEEP}\n[web]\n[web.b]\n{SLEEP}\n[web.c]\n{SLEEP}\n[d]\n{SLEEP}\n""",
    )
    run = otree("run", tree)
    run.wait_for("tree_ready")
    pids = run.child_pids()
    assert len(pids) == 4
    run.send(signal.SIGTERM)
    assert run.wait_exit() == 0
    stopping = [(e["event"], e["path"]) for e in run.events() if e["event"] in ("stop", "exit")]
    assert stopping == [
        ("stop", "d"),
        ("exit", "d"),
        ("stop", "web.c"),
        ("exit", "web.c"),
        ("stop", "web.b"),
        ("exit", "web.b"),
        ("stop", "a"),
        ("exit", "a"),
    ]
    assert all(e["signal"] == "TERM" and e["normal"] for e in run.find("exit"))
    assert run.find("tree_stopped", "")[0]["exit_code"] == 0
    for pid in pids:
        assert not pid_alive(pid)


def test_a_child_ignoring_term_is_killed_after_shutdown_seconds(otree: Run, tmp_path: Path) -> None:
    tree = write_tree(tmp_path, f"[stubborn]\ncmd = {prog('ignore_term')}\nshutdown = 0.5\n")
    run = otree("run", tree)
    run.wait_for("tree_ready")
    wait_until(lambda: "ignoring TERM" in run.stdout, what="the child to ignore TERM")
    run.send(signal.SIGTERM)
    assert run.wait_exit() == 0
    stop = run.find("stop", "stubborn")[0]
    exit_ = run.find("exit", "stubborn")[0]
    assert exit_["signal"] == "KILL" and exit_["normal"] is True
    assert exit_["ts"] - stop["ts"] >= 0.45


def test_brutal_kill(otree: Run, tmp_path: Path) -> None:
    tree = write_tree(tmp_path, f'[a]\n{SLEEP}\nshutdown = "brutal_kill"\n')
    run = otree("run", tree)
    run.wait_for("tree_ready")
    run.send(signal.SIGTERM)
    assert run.wait_exit() == 0
    assert run.find("exit", "a")[0]["signal"] == "KILL"


def test_second_sigint_kills_everything_at_once(otree: Run, tmp_path: Path) -> None:
    tree = write_tree(tmp_path, f"[stubborn]\ncmd = {prog('ignore_term')}\nshutdown = 60\n")
    run = otree("run", tree)
    run.wait_for("tree_ready")
    wait_until(lambda: "ignoring TERM" in run.stdout, what="the child to ignore TERM")
    run.send(signal.SIGINT)
    run.wait_for("stop", "stubborn")
    run.send(signal.SIGINT)
    assert run.wait_exit(timeout=10) == 0
    assert run.find("exit", "stubborn")[0]["signal"] == "KILL"


def grandchild_pid(tmp_path: Path) -> int:
    pidfile = tmp_path / "gc.pid"
    text: Any = wait_until(lambda: pidfile.exists() and pidfile.read_text().strip(), what="gc.pid")
    return int(text)


def test_grandchildren_die_with_their_group_when_the_main_process_exits(
    otree: Run, tmp_path: Path
) -> None:
    # the grandchild ignores TERM; it must still go, as a leftover of its group
    script = "(trap '' TERM; exec sleep 60) & echo $! > gc.pid; sleep 0.2; exit 1"
    tree = write_tree(
        tmp_path,
        f'[steady]\n{SLEEP}\n[parent]\ncmd = ["sh", "-c", "{script}"]\nrestart = "temporary"\n',
    )
    run = otree("run", tree)
    gc = grandchild_pid(tmp_path)
    run.wait_for("exit", "parent")
    wait_until(lambda: not pid_alive(gc), what="the grandchild to be killed")


def test_grandchildren_die_with_their_group_on_stop(otree: Run, tmp_path: Path) -> None:
    script = "(trap '' TERM; exec sleep 60) & echo $! > gc.pid; wait"
    tree = write_tree(tmp_path, f'[parent]\ncmd = ["sh", "-c", "{script}"]\n')
    run = otree("run", tree)
    gc = grandchild_pid(tmp_path)
    run.send(signal.SIGTERM)
    assert run.wait_exit() == 0
    wait_until(lambda: not pid_alive(gc), what="the grandchild to be killed")


def test_subreaper_reaps_orphans(otree: Run, tmp_path: Path) -> None:
    # the grandchild leaves the group (setsid), outlives its parent and is re-parented to
    # otree (with process groups: in its cgroup it is killed with its parent, issue 13);
    # $$$$: the tree file's $$ is one $ (expansion at load), so the shell gets $$
    script = "setsid sh -c 'echo $$$$ > gc.pid; sleep 1' & sleep 0.2"
    tree = write_tree(
        tmp_path,
        f'cgroups = "off"\n[steady]\n{SLEEP}\n'
        f'[parent]\ncmd = ["sh", "-c", "{script}"]\nrestart = "temporary"\n',
    )
    run = otree("run", tree, "--subreaper")
    gc = grandchild_pid(tmp_path)
    run.wait_for("exit", "parent")

    def ppid() -> int:
        with open(f"/proc/{gc}/stat") as f:
            return int(f.read().rpartition(")")[2].split()[1])

    assert ppid() == run.pid
    wait_until(lambda: not os.path.exists(f"/proc/{gc}"), what="otree to reap the orphan")
    run.send(signal.SIGTERM)
    assert run.wait_exit() == 0


def test_backoff_delays_the_restart(otree: Run, tmp_path: Path) -> None:
    tree = write_tree(
        tmp_path,
        f"""[steady]\n{SLEEP}\n[flaky]\ncmd = "sh -c 'exit 1'"
backoff = {{ initial = 0.3, factor = 2, max = 1, jitter = 0 }}\n""",
    )
    run = otree("run", tree)
    run.wait_for("spawn", "flaky", count=3)
    exits = run.find("exit", "flaky")
    spawns = run.find("spawn", "flaky")
    # the decision is taken at the exit, the start waits: 0.3 s, then 0.6 s
    assert [e["child"] for e in run.find("restart", "")][:2] == ["flaky", "flaky"]
    assert spawns[1]["ts"] - exits[0]["ts"] >= 0.28
    assert spawns[2]["ts"] - exits[1]["ts"] >= 0.58
