"""Helpers for the self-reload tests: tree files, the control CLI, process checks."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from support.otreeproc import OtreeProc
from support.waits import DEADLINE

Start = Callable[..., OtreeProc]

PROG = str(Path(__file__).with_name("reloadprog.py"))


def prog(*args: str) -> str:
    """A TOML ``cmd`` array running ``reloadprog.py ARGS`` with this Python."""
    return "[" + ", ".join(json.dumps(a) for a in (sys.executable, PROG, *args)) + "]"


def ctl(*args: str, sock: str, wait: bool = True) -> Any:
    """``python -m otree ARGS --socket SOCK``: a CompletedProcess, or a Popen if not ``wait``."""
    argv = [sys.executable, "-m", "otree", *args, "--socket", sock]
    env = {k: v for k, v in os.environ.items() if k != "OTREE_SOCKET"}
    if not wait:
        return subprocess.Popen(
            argv,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    return subprocess.run(
        argv,
        env=env,
        capture_output=True,
        text=True,
        timeout=DEADLINE * 2,
        stdin=subprocess.DEVNULL,
    )


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
    sock = run.sock  # type: ignore[attr-defined]
    r = ctl("status", "--json", sock=sock)
    assert r.returncode == 0, r.stderr
    return {n["path"]: n for n in json.loads(r.stdout)["nodes"]}


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


def proc_state(pid: int) -> str | None:
    """The state letter of ``pid`` (``Z`` for a zombie), None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0]
    except OSError:
        return None


def parent_of(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rpartition(")")[2].split()[1])
    except OSError:
        return None


# --- fixtures: the test modules import sock_fixture and tree_fixture ---------------


@pytest.fixture(name="sock")
def sock_fixture() -> Iterator[str]:
    d = tempfile.mkdtemp(prefix="otr-", dir="/tmp")  # socket paths are limited to 107 bytes
    try:
        yield f"{d}/ctl.sock"
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(name="tree")
def tree_fixture(tmp_path: Path, otree: Start, sock: str) -> Start:
    """``tree(TOML, *extra_args, env=...)``: write tree.toml, ``otree run`` it, wait until ready.
    The returned process has ``.sock`` and ``.file`` (the tree file, to edit for reloads)."""

    def start(text: str, *extra: str, env: dict[str, str] | None = None) -> OtreeProc:
        file = tmp_path / "tree.toml"
        file.write_text(text)
        run = otree("run", "tree.toml", "--socket", sock, *extra, env=env)
        run.sock = sock  # type: ignore[attr-defined]
        run.file = file  # type: ignore[attr-defined]
        run.wait_for("tree_ready")
        return run

    return start
