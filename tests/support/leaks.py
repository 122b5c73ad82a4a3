"""No process outlives the suite: every process the tests start carries this run's marker.

``isolate()`` (called once, by ``tests/conftest.py``, before any test runs) puts
``OTREE_TEST_RUN=<uuid>`` and a private ``XDG_RUNTIME_DIR`` (for default
sockets) into the environment that every started process inherits. After the
session, any live process carrying that marker is a leak.
"""

from __future__ import annotations

import contextlib
import os
import signal
import tempfile
import time
import uuid

from support import procfs

MARKER = "OTREE_TEST_RUN"
RUN_ID = uuid.uuid4().hex
_MARK = f"{MARKER}={RUN_ID}".encode()


def isolate() -> str:
    """Mark the processes the tests start; give them a runtime directory of this run's own
    (a tree the tests run never meets an otree the developer, or another test run, has
    running on the same socket). Returns that directory."""
    os.environ[MARKER] = RUN_ID
    runtime_dir = tempfile.mkdtemp(prefix="otx-", dir="/tmp")
    os.environ["XDG_RUNTIME_DIR"] = runtime_dir
    os.environ.pop("OTREE_SOCKET", None)
    return runtime_dir


def marked_pids() -> list[int]:
    """Live (non-zombie) processes started by this test run."""
    me = os.getpid()
    return marked_pids_of([pid for pid in procfs.pids() if pid != me])


def marked_pids_of(pids: list[int]) -> list[int]:
    """Those of ``pids`` that are alive and were started by this test run (safe to kill)."""
    ours = []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                environ = f.read()
        except OSError:
            continue
        if procfs.pid_alive(pid) and _MARK in environ.split(b"\0"):
            ours.append(pid)
    return ours


def kill_leftovers(grace: float = 5.0) -> str:
    """Kill the marked processes still alive ``grace`` seconds from now (a process being
    killed right now may take a moment); returns them, one ``PID: CMDLINE`` a line."""
    deadline = time.monotonic() + grace
    left = marked_pids()
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = marked_pids()
    report = "\n".join(f"  {pid}: {procfs.cmdline(pid)}" for pid in left)
    for pid in left:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    return report
