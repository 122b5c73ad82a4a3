"""Finding 16 of issue 11: one otree per tree, even when its socket file was deleted.

A second ``otree run`` of a tree whose otree is alive is refused (exit 2, nothing
started) because the first holds a lock next to the socket, for its whole life and
across a re-exec; ``SIGUSR1`` binds a deleted socket again.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support.cli import otree_cli
from support.otreeproc import OtreeProc
from support.treefiles import write_tree
from support.waits import wait_until

Run = Callable[..., OtreeProc]


@pytest.fixture
def second(tmp_path: Path) -> Iterator[Callable[..., OtreeProc]]:
    """Another ``otree run`` with files of its own (``tmp_path/second``), cleaned up."""
    started: list[OtreeProc] = []

    def start(*args: str) -> OtreeProc:
        files = tmp_path / f"second{len(started)}"
        files.mkdir()
        proc = OtreeProc(list(args), tmp_path, None, False, files)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.cleanup()


def test_second_run_is_refused_though_the_socket_was_deleted(
    otree: Run, second: Callable[..., OtreeProc], tmp_path: Path, sock: str
) -> None:
    tree = write_tree(tmp_path, '[a]\ncmd = "sleep 60"\n')
    first = otree("run", tree, "--socket", sock)
    first.wait_for("tree_ready")
    os.unlink(sock)
    again = second("run", tree, "--socket", sock)
    assert again.wait_exit() == 2, again.describe()
    assert again.stderr == (
        f"otree: another otree (pid {first.pid}) is already running on {sock}"
        f" (it holds {sock}.lock); stop it first or pass --socket\n"
    )
    assert not again.find("spawn")
    assert first.proc.poll() is None

    # SIGUSR1: the running otree binds its socket again, and answers on it
    first.send(signal.SIGUSR1)
    wait_until(lambda: os.path.exists(sock), what="the socket bound again")
    assert f"otree: control socket {sock} bound again" in first.stdout
    status = otree_cli("status", "--socket", sock)
    assert status.returncode == 0, status.stderr
    assert str(first.running_pid("a")) in status.stdout


def test_the_lock_is_kept_across_a_reload(
    otree: Run, second: Callable[..., OtreeProc], tmp_path: Path, sock: str
) -> None:
    tree = write_tree(tmp_path, '[a]\ncmd = "sleep 60"\n')
    first = otree("run", tree, "--socket", sock)
    first.wait_for("tree_ready")
    pid = first.running_pid("a")
    reload = otree_cli("reload", "--socket", sock)
    assert reload.returncode == 0, reload.stderr
    first.wait_for("tree_ready", count=2)
    assert first.find("adopt", "a", pid=pid)
    os.unlink(sock)
    again = second("run", tree, "--socket", sock)
    assert again.wait_exit() == 2, again.describe()
    assert f"otree: another otree (pid {first.pid}) is already running on {sock}" in again.stderr
    # once the first has stopped, the tree may run again
    first.send(signal.SIGTERM)
    assert first.wait_exit() == 0
    third = second("run", tree, "--socket", sock)
    third.wait_for("tree_ready")
