"""What crosses a reload besides the processes: timers, exited children, half-read lines."""

from __future__ import annotations

import signal
import subprocess
import threading
from pathlib import Path

from reloadkit import (
    Start,
    ctl,
    pids,
    reload,
    since_reexec,
    status,
)
from support.waits import wait_until

from otree.control.client import Client


def test_a_pending_backoff_restart_and_an_exited_temporary_carry_over(tree: Start) -> None:
    run = tree(
        'intensity = 20\n[steady]\ncmd = "sleep 60"\n'
        '[job]\ncmd = "true"\nrestart = "temporary"\n'
        "[flaky]\ncmd = \"sh -c 'exit 1'\"\n"
        "backoff = { initial = 1.0, max = 1.0, jitter = 0 }\n"
    )
    first_exit = run.wait_for("exit", "flaky")
    run.wait_for("exit", "job")
    assert len(run.find("spawn", "flaky")) == 1  # its restart waits for the backoff
    reload(run, run.sock, 1)  # type: ignore[attr-defined]
    # the job stays exited, flaky is not started by the reload: only steady was running
    assert since_reexec(run) == [("reexec", ""), ("adopt", "steady"), ("tree_ready", "")]
    assert status(run)["job"]["state"] == "exited"
    # the restart timer was re-armed for the time that was left: one restart, on time
    second = run.wait_for("spawn", "flaky", count=2)
    assert second["ts"] - first_exit["ts"] >= 0.95
    assert second["ts"] > run.find("reexec")[0]["ts"]
    restarts = run.find("restart", "", child="flaky")  # the first decided before the reload
    assert len([r for r in restarts if r["ts"] < second["ts"]]) == 1


def test_a_line_half_written_before_a_reload_comes_out_whole(tree: Start, tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    go = tmp_path / "go"
    script = f"printf 'first half, '; while [ ! -e {go} ]; do sleep 0.01; done; echo 'second half'"
    run = tree(f'[half]\ncmd = ["sh", "-c", "{script}; exec sleep 60"]\n', "--log-dir", str(logs))
    half = pids(run)["half"]
    reload(run, run.sock, 1)  # type: ignore[attr-defined]
    go.touch()
    log = logs / "half.log"
    wait_until(lambda: log.exists() and log.read_text(), what="the line in the log")
    assert log.read_text() == "first half, second half\n"
    assert pids(run)["half"] == half
    wait_until(lambda: "half | first half, second half" in run.stdout, what="the console")
    run.send(signal.SIGTERM)
    assert run.wait_exit() == 0


def test_otree_logs_shows_the_lines_from_before_a_reload(tree: Start, tmp_path: Path) -> None:
    go = tmp_path / "go"
    wait = f"while [ ! -e {go} ]; do sleep 0.01; done"
    run = tree(
        f'[a]\ncmd = ["sh", "-c", "echo a1; sleep 0.2; echo a2; {wait}; echo a3; exec sleep 60"]\n'
        '[b]\ncmd = ["sh", "-c", "sleep 0.1; echo b1; sleep 0.2; echo b2; exec sleep 60"]\n'
    )
    sock = run.sock  # type: ignore[attr-defined]

    def logs(*args: str) -> list[str]:
        r = ctl("logs", *args, sock=sock)
        assert r.returncode == 0, r.stderr
        return [line.replace(" ", "") for line in r.stdout.splitlines()]

    wait_until(lambda: len(logs()) == 4, what="four lines in the ring buffer")
    before = logs()  # interleaved as otree read them (a1 before a2, b1 before b2)
    assert sorted(before) == ["a|a1", "a|a2", "b|b1", "b|b2"]
    assert before.index("a|a1") < before.index("a|a2") and before.index("b|b1") < before.index(
        "b|b2"
    )
    reload(run, sock, 1)
    assert logs() == before  # the ring buffer came across, in the order the lines came
    go.touch()
    wait_until(lambda: len(logs()) == 5, what="a line after the reload")
    assert logs() == [*before, "a|a3"]
    assert logs("a") == ["a1", "a2", "a3"]
    run.send(signal.SIGTERM)
    assert run.wait_exit() == 0


class _Reader:
    """Collects a process's stdout lines in a thread (never blocks the test)."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))


def test_otree_logs_f_follows_on_through_reloads_without_losing_a_line(tree: Start) -> None:
    count = "i=0; while :; do i=$((i+1)); echo $i; sleep 0.02; done"
    text = f'[talk]\ncmd = ["sh", "-c", "{count}"]\n[gone]\ncmd = "sleep 60"\n'
    run = tree(text)
    sock = run.sock  # type: ignore[attr-defined]
    talk = _Reader(ctl("logs", "-f", "talk", "-n", "0", sock=sock, wait=False))
    gone = ctl("logs", "-f", "gone", sock=sock, wait=False)
    try:
        wait_until(lambda: len(talk.lines) >= 5, what="lines before the reloads")
        reload(run, sock, 1)
        run.file.write_text(text.replace('[gone]\ncmd = "sleep 60"\n', ""))  # type: ignore[attr-defined]
        reload(run, sock, 2)
        # the follower of the removed service is told, and ends
        _, err = gone.communicate(timeout=30)
        assert (gone.returncode, err) == (1, "otree: 'gone' was removed by a reload\n")
        seen = len(talk.lines)
        wait_until(lambda: len(talk.lines) >= seen + 10, what="lines after the reloads")
        assert talk.proc.poll() is None, "the follower ended at a reload"
        numbers = [int(n) for n in talk.lines]
        assert numbers == list(range(numbers[0], numbers[0] + len(numbers))), numbers
    finally:
        run.send(signal.SIGTERM)
        assert run.wait_exit() == 0
        assert talk.proc.wait(timeout=30) == 0  # the tree stopped: following ends, exit 0
        talk.thread.join(timeout=30)
        gone.kill()
        gone.wait()


def test_a_control_client_connected_across_a_reload_is_answered_by_the_new_image(
    tree: Start,
) -> None:
    text = '[a]\ncmd = "sleep 60"\n'
    run = tree(text)
    sock = run.sock  # type: ignore[attr-defined]
    with Client(sock, timeout=30) as client:
        assert [n["path"] for n in client.call("status")["nodes"]] == ["", "a"]
        run.file.write_text(text + '[b]\ncmd = "sleep 60"\n')  # type: ignore[attr-defined]
        reload(run, sock, 1)
        # the same connection, now served by the new image: it knows the new tree
        assert [n["path"] for n in client.call("status")["nodes"]] == ["", "a", "b"]
        assert client.call("info")["pid"] == run.pid
    run.send(signal.SIGTERM)
    assert run.wait_exit() == 0
