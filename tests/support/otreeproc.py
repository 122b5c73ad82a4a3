"""One ``otree run`` (or any otree command) in a subprocess, observed through its event log.

The ``otree`` fixture of ``tests/conftest.py`` starts these and cleans them up.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from support import cgroupdirs
from support.leaks import marked_pids_of
from support.waits import DEADLINE


class OtreeProc:
    """One ``otree run`` in a subprocess, with its event log, stdout and stderr in files."""

    def __init__(
        self,
        args: list[str],
        cwd: Path,
        env: dict[str, str] | None = None,
        stdout_pipe: bool = False,
        files: Path | None = None,
        command: list[str] | None = None,
    ) -> None:
        """``command`` replaces ``python -m otree ARGS`` (no event log then)."""
        files = files or cwd
        self.dir = files
        self.events_file = files / "events.jsonl"
        self.stdout_file = files / "stdout.txt"
        self.stderr_file = files / "stderr.txt"
        self.events_file.unlink(missing_ok=True)
        argv = command or [sys.executable, "-m", "otree", *args]
        if command is None and args and args[0] == "run":
            argv += ["--events", str(self.events_file)]
        with open(self.stdout_file, "wb") as out, open(self.stderr_file, "wb") as err:
            self.proc = subprocess.Popen(
                argv,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE if stdout_pipe else out,  # a pipe: left unread
                stderr=err,
                env={**os.environ, **(env or {})},
                start_new_session=True,
            )
        self.pid = self.proc.pid

    # --- observing ------------------------------------------------------------

    def events(self) -> list[dict[str, Any]]:
        try:
            text = self.events_file.read_text()
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in text.splitlines() if line.endswith("}")]

    def find(self, event: str, path: str | None = None, **fields: Any) -> list[dict[str, Any]]:
        return [
            e
            for e in self.events()
            if e["event"] == event
            and (path is None or e["path"] == path)
            and all(e.get(k) == v for k, v in fields.items())
        ]

    @property
    def stdout(self) -> str:
        return self.stdout_file.read_text(errors="replace")

    @property
    def stderr(self) -> str:
        return self.stderr_file.read_text(errors="replace")

    def describe(self) -> str:
        lines = [json.dumps(e) for e in self.events()]
        return (
            "events:\n  "
            + "\n  ".join(lines)
            + f"\nstdout:\n{self.stdout[-3000:]}\nstderr:\n{self.stderr[-3000:]}"
        )

    def wait_for(
        self,
        event: str,
        path: str | None = None,
        count: int = 1,
        timeout: float = DEADLINE,
        **fields: Any,
    ) -> dict[str, Any]:
        """Wait until ``count`` matching events are logged; return the last of them."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.find(event, path, **fields)
            if len(found) >= count:
                return found[count - 1]
            if self.proc.poll() is not None:
                found = self.find(event, path, **fields)
                if len(found) >= count:
                    return found[count - 1]
                pytest.fail(
                    f"otree exited ({self.proc.returncode}) before {count} x {event} {path!r}\n"
                    + self.describe()
                )
            if time.monotonic() > deadline:
                pytest.fail(f"timed out waiting for {count} x {event} {path!r}\n" + self.describe())
            time.sleep(0.01)

    def wait_exit(self, timeout: float = DEADLINE) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"otree did not exit within {timeout:g}s\n" + self.describe())

    def running_pid(self, path: str) -> int:
        """The PID of the last spawn of ``path``."""
        return int(self.find("spawn", path)[-1]["pid"])

    def send(self, signum: int) -> None:
        self.proc.send_signal(signum)

    # --- cleaning up ------------------------------------------------------------

    def child_pids(self) -> list[int]:
        return sorted({int(e["pid"]) for e in self.events() if "pid" in e})

    def cleanup(self) -> None:
        """Stop otree (TERM, then KILL) and kill every process group it started."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.pid, signal.SIGKILL)
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        for pid in marked_pids_of(self.child_pids()):
            with contextlib.suppress(OSError):
                os.killpg(pid, signal.SIGKILL)
        cgroupdirs.remove_of(self.pid)  # a killed otree leaves its cgroups: not for the next test


#: the ``otree`` fixture: ``otree("run", "tree.toml", env=..., cwd=...)`` -> an OtreeProc
RunOtree = Callable[..., OtreeProc]
