"""Finding 6 of issue 11: a stray signal never ends otree while it has children.

``USR2``, ``ALRM`` and the other asynchronous signals whose default action ends a
process are logged and ignored; ``PIPE`` is ignored; ``USR1`` reopens (and never
kills); ``QUIT`` is an orderly shutdown like ``TERM``.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path

from support.otreeproc import OtreeProc
from support.procfs import pid_alive
from support.treefiles import write_tree
from support.waits import wait_until

Run = Callable[..., OtreeProc]

STRAYS = [
    signal.SIGUSR2,
    signal.SIGALRM,
    signal.SIGPIPE,
    signal.SIGUSR1,
    signal.SIGVTALRM,
    signal.SIGPROF,
    signal.SIGIO,
    signal.SIGPWR,
    signal.SIGXFSZ,
    signal.SIGRTMIN,
    signal.SIGRTMIN + 5,
    signal.SIGRTMAX,
]


def test_stray_signals_are_ignored_and_quit_stops_the_tree_in_order(
    otree: Run, tmp_path: Path, sock: str
) -> None:
    tree = write_tree(tmp_path, '[a]\ncmd = "sleep 60"\n[b]\ncmd = "sleep 60"\n')
    run = otree("run", tree, "--socket", sock)
    run.wait_for("tree_ready")
    pids = {p: run.running_pid(p) for p in "ab"}
    for signum in STRAYS:
        run.send(signum)
    # each logged one is said on the console; the last is the real-time SIGRTMAX
    wait_until(lambda: "otree: SIGRTMAX received: ignored" in run.stdout)
    assert "otree: SIGRTMIN+5 received: ignored" in run.stdout
    for name in ("SIGUSR2", "SIGALRM", "SIGVTALRM", "SIGPROF", "SIGIO", "SIGPWR"):
        assert f"otree: {name} received: ignored" in run.stdout
    assert run.proc.poll() is None, run.describe()
    assert all(pid_alive(pid) for pid in pids.values())
    assert {p: run.running_pid(p) for p in "ab"} == pids
    assert not run.find("exit")
    run.send(signal.SIGQUIT)
    assert run.wait_exit() == 0, run.describe()
    stops = [e["path"] for e in run.events() if e["event"] == "stop"]
    assert stops == ["b", "a"]  # reverse start order, as for TERM
    assert run.find("tree_stopped", exit_code=0)
    assert not any(pid_alive(pid) for pid in pids.values())
