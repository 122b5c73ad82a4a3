"""Helpers for the self-reload tests: the control CLI by socket, reloads, what a reload left.

The ``tree`` fixture that starts a tree for them is in ``tests/reload/conftest.py``.
"""

from __future__ import annotations

from typing import Any

from support import cli
from support.otreeproc import OtreeProc, RunOtree
from support.waits import DEADLINE

#: the ``tree`` fixture: ``tree(TOML, *extra_args, env=...)`` -> a running OtreeProc
Start = RunOtree


def ctl(*args: str, sock: str, wait: bool = True) -> Any:
    """``python -m otree ARGS --socket SOCK``: a CompletedProcess, or a Popen if not ``wait``."""
    if not wait:
        return cli.otree_popen(*args, "--socket", sock)
    return cli.otree_cli(*args, "--socket", sock, timeout=DEADLINE * 2)


def reload(run: OtreeProc, sock: str, count: int) -> Any:
    """``otree reload``, which must succeed; waits for the ``count``-th re-exec's tree_ready."""
    r = ctl("reload", sock=sock)
    assert r.returncode == 0, (r.stdout, r.stderr, run.describe())
    run.wait_for("tree_ready", count=count + 1)
    return r


def pids(run: OtreeProc) -> dict[str, int]:
    """Each service's PID as ``otree status --json`` shows it (running ones)."""
    return {p: n["pid"] for p, n in status(run).items() if n["pid"] is not None}


def status(run: OtreeProc) -> dict[str, dict[str, Any]]:
    return cli.status(run.sock)  # type: ignore[attr-defined]


def since_reexec(run: OtreeProc, n: int = 1) -> list[tuple[str, str]]:
    """(event, path) of the events after the ``n``-th ``reexec``, up to the next tree_ready."""
    events = run.events()
    idx = [i for i, e in enumerate(events) if e["event"] == "reexec"][n - 1]
    out = []
    for e in events[idx:]:
        out.append((e["event"], e["path"]))
        if e["event"] == "tree_ready":
            break
    return out
