"""Every child starts with default signal dispositions and an empty mask, whatever
otree inherited (issue 13): a shell's background job ignores INT and QUIT, ``nohup``
ignores HUP, and a parent may block signals. Here otree is started by a parent that
ignores every signal it can and blocks some."""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable
from pathlib import Path

from support.otreeproc import OtreeProc
from support.procfs import pid_alive
from support.treefiles import argv, write_tree
from support.waits import wait_until

Run = Callable[..., OtreeProc]

#: ignore every signal, block three, then become ``python -m otree ARGS``
HOSTILE_PARENT = """
import os, signal, sys
for s in signal.valid_signals():
    try:
        signal.signal(s, signal.SIG_IGN)
    except (OSError, ValueError):
        pass
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR2, signal.SIGTSTP, signal.SIGWINCH})
os.execv(sys.executable, [sys.executable, "-m", "otree", *sys.argv[1:]])
"""

#: writes its own ignored and blocked sets (a shell: Python would ignore PIPE and XFSZ;
#: ``$$$$`` in the tree file is the shell's ``$$``)
#: itself), then becomes a sleep that a QUIT ends (its default)
REPORTER = (
    "grep -E '^Sig(Ign|Blk)' /proc/$$$$/status | cut -f2 | tr '\\n' ' ' > sigs.tmp"
    " && mv sigs.tmp sigs.txt && exec sleep 120"
)


def test_children_start_with_default_dispositions_and_an_empty_mask(
    otree: Run, tmp_path: Path, sock: str
) -> None:
    tree = write_tree(
        tmp_path, f'[a]\ncmd = {argv("sh", "-c", REPORTER)}\nstop_signal = "QUIT"\nshutdown = 60\n'
    )
    events = str(tmp_path / "events.jsonl")
    run = otree(
        command=[
            sys.executable,
            "-c",
            HOSTILE_PARENT,
            "run",
            tree,
            "--socket",
            sock,
            "--events",
            events,
        ]
    )
    run.wait_for("tree_ready")
    report = tmp_path / "sigs.txt"
    wait_until(report.exists)
    blocked, ignored = report.read_text().split()  # /proc lists SigBlk first
    assert int(ignored, 16) == 0, f"the child ignores signals: {ignored}"
    assert int(blocked, 16) == 0, f"the child blocks signals: {blocked}"
    pid = run.running_pid("a")
    # QUIT (not ignored in the child) ends it long before the 60 s shutdown's KILL
    run.send(signal.SIGTERM)
    assert run.wait_exit() == 0, run.describe()
    assert run.find("exit", "a", signal="QUIT"), run.describe()
    assert not pid_alive(pid)
