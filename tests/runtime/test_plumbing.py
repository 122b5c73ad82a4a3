"""The process plumbing on its own: spawning, groups, reaping, timers, signals (no engine)."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from support.procfs import pid_alive
from support.waits import wait_until

from otree.runtime import loop as loop_module
from otree.runtime import posix
from otree.runtime.loop import Loop


def run_loop(loop: Loop, until: Callable[[], bool], timeout: float = 10.0) -> None:
    """Run ``loop`` until ``until()`` holds (checked after every callback turn)."""
    deadline = loop.call_later(timeout, loop.stop)

    def check() -> None:
        if until():
            loop.stop()
        else:
            loop.call_later(0.005, check)

    check()
    if loop.running or not until():
        loop.run()
    deadline.cancel()
    assert until(), "loop stopped before the condition held"


def env() -> dict[str, str]:
    return posix.child_env({})


def test_exec_failure_names_the_missing_binary() -> None:
    with pytest.raises(posix.SpawnError) as info:
        posix.spawn(["apii"], env())
    assert str(info.value) == "No such file or directory: 'apii'"


def test_exec_failure_permission_denied(tmp_path: Path) -> None:
    script = tmp_path / "script.sh"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o644)
    with pytest.raises(posix.SpawnError) as info:
        posix.spawn([str(script)], env())
    assert str(info.value) == f"Permission denied: {str(script)!r}"


def test_exec_failure_bad_cwd(tmp_path: Path) -> None:
    missing = str(tmp_path / "nowhere")
    with pytest.raises(posix.SpawnError) as info:
        posix.spawn(["true"], env(), cwd=missing)
    assert str(info.value) == f"No such file or directory: {missing!r}"


def test_child_leads_its_own_session_and_group() -> None:
    loop = Loop()
    pid = posix.spawn(["sleep", "30"], env())
    statuses: list[int] = []
    try:
        loop.watch_child(pid, statuses.append)
        assert os.getpgid(pid) == pid
        assert os.getsid(pid) == pid
        assert posix.send_signal(pid, signal.SIGTERM, loop.pidfd(pid))
        run_loop(loop, lambda: bool(statuses))
        assert posix.describe_status(statuses[0]) == (None, "TERM")
    finally:
        posix.send_signal(pid, signal.SIGKILL)
        loop.close()


def test_exit_code_and_output_pipe() -> None:
    loop = Loop()
    r, w = posix.pipe()
    pid = posix.spawn(["sh", "-c", "echo out; echo err >&2; exit 7"], env(), output=w)
    os.close(w)
    statuses: list[int] = []
    loop.watch_child(pid, statuses.append)
    run_loop(loop, lambda: bool(statuses))
    loop.close()
    assert posix.describe_status(statuses[0]) == (7, None)
    os.set_blocking(r, True)
    assert os.read(r, 100) == b"out\nerr\n"
    os.close(r)


def grandchild_script(pidfile: Path, code: int = 3) -> list[str]:
    return ["sh", "-c", f"sleep 60 & echo $! > {pidfile}; exec sh -c 'exit {code}'"]


def test_leftovers_in_the_group_are_killed_when_the_main_process_exits(tmp_path: Path) -> None:
    loop = Loop()
    pidfile = tmp_path / "grandchild.pid"
    pid = posix.spawn(grandchild_script(pidfile), env())
    statuses: list[int] = []
    loop.watch_child(pid, statuses.append, kill_group=True)
    run_loop(loop, lambda: bool(statuses))
    loop.close()
    assert posix.describe_status(statuses[0]) == (3, None)
    grandchild = int(pidfile.read_text())
    wait_until(lambda: not pid_alive(grandchild), what="the grandchild to die")


def test_sigchld_fallback_without_pidfd(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(loop_module, "_pidfd_open", lambda pid: None)
    loop = Loop()
    pidfile = tmp_path / "grandchild.pid"
    statuses: dict[int, int] = {}
    first = posix.spawn(["sh", "-c", "exit 5"], env())
    loop.watch_child(first, lambda s: statuses.__setitem__(first, s))
    second = posix.spawn(grandchild_script(pidfile, 4), env())
    loop.watch_child(second, lambda s: statuses.__setitem__(second, s), kill_group=True)
    try:
        run_loop(loop, lambda: len(statuses) == 2)
    finally:
        loop.close()
    assert posix.describe_status(statuses[first]) == (5, None)
    assert posix.describe_status(statuses[second]) == (4, None)
    grandchild = int(pidfile.read_text())
    wait_until(lambda: not pid_alive(grandchild), what="the grandchild to die")


def test_timers_fire_in_order_and_cancelled_ones_do_not() -> None:
    loop = Loop()
    fired: list[str] = []
    loop.call_later(0.03, lambda: fired.append("c"))
    loop.call_later(0.01, lambda: fired.append("a"))
    loop.call_later(0.02, lambda: fired.append("b")).cancel()
    loop.call_later(0.0, lambda: fired.append("now"))
    loop.call_later(0.04, loop.stop)
    loop.run()
    loop.close()
    assert fired == ["now", "a", "c"]


def test_an_idle_loop_sleeps_until_its_next_timer() -> None:
    loop = Loop()
    loop.call_later(0.2, loop.stop)
    wall, cpu = time.monotonic(), time.process_time()
    loop.run()
    loop.close()
    assert time.monotonic() - wall >= 0.19
    assert time.process_time() - cpu < 0.05


def test_signals_are_delivered_in_the_loop() -> None:
    loop = Loop()
    got: list[int] = []

    def handler(signum: int) -> None:
        got.append(signum)
        loop.stop()

    loop.on_signal(signal.SIGUSR1, handler)
    loop.call_later(0, lambda: os.kill(os.getpid(), signal.SIGUSR1))
    loop.call_later(10, loop.stop)
    loop.run()
    loop.close()
    assert got == [signal.SIGUSR1]
    assert signal.getsignal(signal.SIGUSR1) is signal.SIG_DFL


def test_readers_and_writers_share_an_fd() -> None:
    import socket

    loop = Loop()
    a, b = socket.socketpair()
    seen: list[str] = []

    def on_read() -> None:
        seen.append(a.recv(10).decode())
        loop.remove_reader(a.fileno())
        loop.stop()

    def on_write() -> None:
        seen.append("writable")
        loop.remove_writer(a.fileno())
        b.send(b"hi")

    loop.add_reader(a.fileno(), on_read)
    loop.add_writer(a.fileno(), on_write)
    loop.call_later(10, loop.stop)
    loop.run()
    loop.close()
    a.close()
    b.close()
    assert seen == ["writable", "hi"]


def test_child_env_follows_every_change_of_otrees_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The copy is made from a snapshot, so a change to ``os.environ`` must be seen, and
    what a caller does to its copy must not reach the next one."""
    first = posix.child_env({})
    monkeypatch.setenv("OTREE_TEST_SNAPSHOT", "1")
    assert posix.child_env({})["OTREE_TEST_SNAPSHOT"] == "1"
    monkeypatch.setenv("OTREE_TEST_SNAPSHOT", "2")
    assert posix.child_env({})["OTREE_TEST_SNAPSHOT"] == "2"
    monkeypatch.delenv("OTREE_TEST_SNAPSHOT")
    mine = posix.child_env({})
    assert mine == first
    mine["ADDED_BY_A_CALLER"] = "x"
    assert "ADDED_BY_A_CALLER" not in posix.child_env({})


def test_child_env_drops_an_inherited_notify_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", "/run/systemd/notify")
    assert "NOTIFY_SOCKET" not in posix.child_env({"A": "1"})
    assert posix.child_env({"A": "1"}, "/tmp/x.sock")["NOTIFY_SOCKET"] == "/tmp/x.sock"


def test_work_in_a_thread_answers_in_the_loop_and_never_takes_a_signal() -> None:
    """``run_in_thread``: the answer (a result or the exception) runs in the loop's thread;
    the worker blocks every signal, so a signal sent meanwhile reaches the loop."""
    loop = Loop()
    answers: list[tuple[object, object, str]] = []
    go = threading.Event()
    masks: list[set[signal.Signals]] = []

    def work() -> int:
        masks.append(signal.pthread_sigmask(signal.SIG_BLOCK, []))
        go.wait(10)
        return 42

    def fail() -> int:
        raise OSError("no such host")

    def done(result: object, error: object) -> None:
        answers.append((result, error, threading.current_thread().name))

    got: list[int] = []
    loop.on_signal(signal.SIGUSR2, got.append)
    loop.run_in_thread(work, done)
    loop.run_in_thread(fail, done)
    loop.call_later(0.05, lambda: os.kill(os.getpid(), signal.SIGUSR2))
    run_loop(loop, lambda: bool(got) and len(answers) == 1)
    go.set()
    run_loop(loop, lambda: len(answers) == 2)
    loop.close()
    main = threading.main_thread().name
    assert answers[0][1] is not None and str(answers[0][1]) == "no such host"
    assert answers[1][:2] == (42, None)
    assert {name for _, _, name in answers} == {main}
    assert masks and signal.SIGUSR2 in masks[0] and signal.SIGTERM in masks[0]
