"""The death guard (``otree.runtime.guard``): a shell that sends otree's children their
stop signal if otree dies, and nothing if otree ends cleanly or re-execs.

The first tests drive a guard directly, from this process, with children of its own;
the others run ``otree run`` and kill it, its guard, or both, the way an operator or
the OOM killer would.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support import cli
from support.otreeproc import OtreeProc
from support.procfs import children, cmdline, pid_alive
from support.treefiles import prog, write_tree
from support.waits import wait_until

from otree.runtime.guard import COMPACT_AT, NAME, DeathGuard

Run = Callable[..., OtreeProc]


@pytest.fixture
def kids() -> Iterator[Callable[[], subprocess.Popen[bytes]]]:
    """``kids()``: a ``sleep 60`` child of this process in a session of its own."""
    made: list[subprocess.Popen[bytes]] = []

    def make() -> subprocess.Popen[bytes]:
        p = subprocess.Popen(["sleep", "60"], start_new_session=True)
        made.append(p)
        return p

    yield make
    for p in made:
        if p.poll() is None:
            p.kill()
        p.wait()


@pytest.fixture
def guard() -> Iterator[DeathGuard]:
    g = DeathGuard.start()
    assert g is not None
    yield g
    g.close()


def _died_of(p: subprocess.Popen[bytes]) -> int:
    """The signal ``p`` died of (waits for it)."""
    code = p.wait(timeout=30)
    assert code < 0, f"it exited {code}"
    return -code


def _die(guard: DeathGuard) -> None:
    """What the kernel does to otree's fds when otree dies: they close, no ``.`` said."""
    os.close(guard.end)
    os.close(guard.log)
    guard.end = guard.log = -1


def _exits(guard: DeathGuard) -> None:
    wait_until(lambda: os.waitpid(guard.pid, os.WNOHANG)[0] != 0, what="the guard's exit")
    guard.pid = 0


def test_when_otree_dies_each_child_gets_its_signal(
    guard: DeathGuard, kids: Callable[[], subprocess.Popen[bytes]]
) -> None:
    term, quit_, gone = kids(), kids(), kids()
    guard.add(term.pid, signal.SIGTERM)
    guard.add(quit_.pid, signal.SIGQUIT)
    guard.add(gone.pid, signal.SIGTERM)
    guard.remove(gone.pid)  # it exited (as far as the guard knows): never signalled
    _die(guard)
    assert _died_of(term) == signal.SIGTERM
    assert _died_of(quit_) == signal.SIGQUIT
    _exits(guard)
    assert gone.poll() is None  # not in the table any more: left alone


def test_a_clean_end_signals_nothing_and_the_guard_exits(
    guard: DeathGuard, kids: Callable[[], subprocess.Popen[bytes]]
) -> None:
    child = kids()
    guard.add(child.pid, signal.SIGTERM)
    pid = guard.pid
    guard.close()
    assert not pid_alive(pid)  # reaped by close
    time.sleep(0.1)  # a signal the guard might wrongly send has had time to arrive
    assert child.poll() is None


def test_the_guard_ignores_the_signals_meant_for_the_whole_tree(
    guard: DeathGuard, kids: Callable[[], subprocess.Popen[bytes]]
) -> None:
    child = kids()
    guard.add(child.pid, signal.SIGTERM)
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT):
        os.kill(guard.pid, signum)
    time.sleep(0.1)  # had it died of one, it would be a zombie by now
    assert os.waitpid(guard.pid, os.WNOHANG) == (0, 0)
    _die(guard)
    assert _died_of(child) == signal.SIGTERM
    _exits(guard)


def test_a_replacement_is_given_the_whole_table(
    guard: DeathGuard, kids: Callable[[], subprocess.Popen[bytes]]
) -> None:
    a, b, gone = kids(), kids(), kids()
    guard.add(a.pid, signal.SIGTERM)
    guard.add(gone.pid, signal.SIGTERM)
    guard.remove(gone.pid)
    guard.add(b.pid, signal.SIGQUIT)
    replaced: list[DeathGuard] = []
    guard.on_replaced = replaced.append
    new = guard.replace()
    assert new is not None and replaced == [new]
    assert new.pid != guard.pid and new.table == {a.pid: signal.SIGTERM, b.pid: signal.SIGQUIT}
    guard.close()  # the old one ends: it signals nothing
    assert a.poll() is None and b.poll() is None
    _die(new)
    assert _died_of(a) == signal.SIGTERM
    assert _died_of(b) == signal.SIGQUIT
    _exits(new)
    assert gone.poll() is None


def test_a_long_table_is_written_anew_by_a_new_guard(
    guard: DeathGuard, kids: Callable[[], subprocess.Popen[bytes]]
) -> None:
    child = kids()
    guard.add(child.pid, signal.SIGTERM)
    replaced: list[DeathGuard] = []
    guard.on_replaced = replaced.append
    fake = 4_000_000  # above any PID here: never a process
    n = 0
    while not replaced:  # a crash loop's spawns and exits
        guard.add(fake + n, signal.SIGTERM)
        guard.remove(fake + n)
        n += 1
    new = replaced[0]
    assert new.table == {child.pid: signal.SIGTERM} and new.size < 100
    assert guard.size > COMPACT_AT  # it was the length that did it
    guard.close()
    _die(new)
    assert _died_of(child) == signal.SIGTERM
    _exits(new)


def test_close_does_not_hang_on_a_stopped_guard(guard: DeathGuard) -> None:
    os.kill(guard.pid, signal.SIGSTOP)
    pid = guard.pid
    t = time.monotonic()
    guard.close()
    assert time.monotonic() - t < 10
    assert not pid_alive(pid)


# --- otree run -------------------------------------------------------------------


def _guard_of(run: OtreeProc) -> int:
    """The PID of ``run``'s guard (the child running ``sh -c ... otree-guard N``)."""
    found = [p for p in children(run.pid) if f" {NAME} " in cmdline(p)]
    assert len(found) == 1, (found, run.describe())
    return found[0]


def reload_tree(run: OtreeProc, sock: str) -> None:
    r = cli.otree_cli("reload", "--socket", sock)
    assert r.returncode == 0, (r.stdout, r.stderr, run.describe())
    run.wait_for("tree_ready", count=2)


TREE = '[a]\ncmd = "sleep 60"\n[b]\ncmd = "sleep 60"\nstop_signal = "QUIT"\n'


def test_otree_replaces_a_guard_killed_under_it(otree: Run, tmp_path: Path, sock: str) -> None:
    run = otree("run", write_tree(tmp_path, TREE), "--socket", sock)
    run.wait_for("tree_ready")
    first = _guard_of(run)
    os.kill(first, signal.SIGKILL)
    wait_until(lambda: "the death guard exited; starting another" in run.stdout)
    wait_until(lambda: _guard_of(run) != first, what="a new guard")
    pids = [run.running_pid(p) for p in ("a", "b")]
    os.kill(run.pid, signal.SIGKILL)  # the new guard knows both children
    run.wait_exit()
    for pid in pids:
        wait_until(lambda p=pid: not pid_alive(p), what=f"{pid} stopped by the new guard")


def test_a_reload_keeps_the_guard_and_a_death_after_it_still_stops_the_tree(
    otree: Run, tmp_path: Path, sock: str
) -> None:
    tree = write_tree(tmp_path, TREE + f"[c]\ncmd = {prog('ignore_term')}\nshutdown = 1\n")
    run = otree("run", tree, "--socket", sock)
    run.wait_for("tree_ready")
    wait_until(lambda: "ignoring TERM" in run.stdout)
    guard = _guard_of(run)
    reload_tree(run, sock)
    assert _guard_of(run) == guard  # the same guard, still reading the same pipe
    os.kill(run.running_pid("a"), signal.SIGKILL)  # restarted by the new image
    run.wait_for("spawn", "a", count=2)
    pids = {p: run.running_pid(p) for p in ("a", "b", "c")}
    os.kill(run.pid, signal.SIGKILL)
    run.wait_exit()
    for path in ("a", "b"):  # the restarted a too: the new image told the guard
        wait_until(lambda p=pids[path]: not pid_alive(p), what=f"{path} stopped by the guard")
    assert pid_alive(pids["c"])  # it ignores TERM: left for the next run of the tree
    os.kill(pids["c"], signal.SIGKILL)


def test_a_clean_stop_leaves_no_guard(otree: Run, tmp_path: Path, sock: str) -> None:
    run = otree("run", write_tree(tmp_path, TREE), "--socket", sock)
    run.wait_for("tree_ready")
    guard = _guard_of(run)
    run.send(signal.SIGTERM)
    assert run.wait_exit() == 0
    assert not pid_alive(guard)
