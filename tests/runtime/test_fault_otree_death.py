"""Finding 6 of issue 11 (its second half): after ``kill -9`` of otree its services do not
run on unsupervised, and the next ``otree run`` of the tree never runs one twice.

Each child gets ``PR_SET_PDEATHSIG`` (its ``stop_signal``); what survives that (a child
that ignores it) is written down with its start time in ``P.state`` next to the socket,
and the next run stops it in order, saying so, before it starts the tree.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path

import pytest
from support.otreeproc import OtreeProc
from support.procfs import parent_of, pid_alive
from support.treefiles import prog, write_tree
from support.waits import wait_until

Run = Callable[..., OtreeProc]


WAYS = {
    "guard": None,
    "setpriv": {"OTREE_NO_GUARD": "1"},
    "preexec": {"OTREE_NO_GUARD": "1", "OTREE_NO_SETPRIV": "1"},
}


@pytest.mark.parametrize("how", list(WAYS))
def test_children_of_a_killed_otree_are_stopped_and_never_run_twice(
    otree: Run, tmp_path: Path, sock: str, how: str
) -> None:
    """The death guard (a shell that reads otree's table of children and signals them
    when otree's end of its pipe closes); where it cannot run (``OTREE_NO_GUARD`` plays
    that), ``setpriv --pdeathsig`` exec'd first in the child, or a ``preexec_fn`` where
    there is no such setpriv either (``OTREE_NO_SETPRIV``)."""
    env = WAYS[how]
    tree = write_tree(
        tmp_path,
        '[plain]\ncmd = "sleep 60"\n'
        '[quit]\ncmd = "sleep 60"\nstop_signal = "QUIT"\n'
        f"[stubborn]\ncmd = {prog('ignore_term')}\nshutdown = 1\n",
    )
    first = otree("run", tree, "--socket", sock, env=env)
    first.wait_for("tree_ready")
    wait_until(lambda: "ignoring TERM" in first.stdout)
    pids = {p: first.running_pid(p) for p in ("plain", "quit", "stubborn")}
    wait_until(lambda: os.path.exists(sock + ".state"), what="the state file")
    os.kill(first.pid, signal.SIGKILL)
    first.wait_exit()
    # PR_SET_PDEATHSIG: each got its stop signal as otree died
    wait_until(lambda: not pid_alive(pids["plain"]), what="plain stopped by its death signal")
    wait_until(lambda: not pid_alive(pids["quit"]), what="quit stopped by its death signal")
    assert pid_alive(pids["stubborn"])  # it ignores TERM: left for the next run
    assert parent_of(pids["stubborn"]) != first.pid
    state = Path(sock + ".state").read_text()
    assert f"{pids['stubborn']} " in state and state.startswith(f"otree {first.pid} ")

    files = tmp_path / "second"
    files.mkdir()
    second = OtreeProc(["run", tree, "--socket", sock], tmp_path, files=files)
    try:
        second.wait_for("tree_ready")
        assert not pid_alive(pids["stubborn"])  # killed before anything started
        err = second.stderr
        assert (
            f"otree: a previous otree (pid {first.pid}) of this tree died; stopping what it"
            f" left: stubborn (pid {pids['stubborn']})\n" in err
        )
        assert (
            f"otree: stubborn (pid {pids['stubborn']}), left by the previous otree: killed\n" in err
        )
        assert sorted(e["path"] for e in second.find("spawn")) == ["plain", "quit", "stubborn"]
        second.send(signal.SIGTERM)
        assert second.wait_exit() == 0
        assert not os.path.exists(sock + ".state")  # a clean end leaves nothing behind
        assert not os.path.exists(sock + ".lock")
    finally:
        second.cleanup()
        for pid in pids.values():
            if pid_alive(pid):
                os.killpg(pid, signal.SIGKILL)
