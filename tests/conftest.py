"""Shared test fixtures: no process outlives the suite, and a driver for ``otree run``.

Every process the tests start inherits ``OTREE_TEST_RUN=<uuid>`` (set here, at
import, before any test runs) and a private ``XDG_RUNTIME_DIR`` for default
sockets. After the session, any live process carrying that marker is a leak:
it is listed, killed, and the session fails.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

MARKER = "OTREE_TEST_RUN"
RUN_ID = uuid.uuid4().hex
os.environ[MARKER] = RUN_ID
_MARK = f"{MARKER}={RUN_ID}".encode()

# default control sockets live in a directory of this run's own: a tree the tests run
# never meets an otree the developer (or another test run) has running on the same file
RUNTIME_DIR = tempfile.mkdtemp(prefix="otx-", dir="/tmp")
os.environ["XDG_RUNTIME_DIR"] = RUNTIME_DIR
os.environ.pop("OTREE_SOCKET", None)

#: generous deadline for anything a test waits on (a loaded CI machine is slow)
DEADLINE = 20.0


def marked_pids() -> list[int]:
    """Live (non-zombie) processes started by this test run."""
    me = os.getpid()
    return marked_pids_of([int(e) for e in os.listdir("/proc") if e.isdigit() and int(e) != me])


def marked_pids_of(pids: list[int]) -> list[int]:
    """Those of ``pids`` that are alive and were started by this test run (safe to kill)."""
    ours = []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                environ = f.read()
            with open(f"/proc/{pid}/stat", "rb") as f:
                state = f.read().rpartition(b")")[2].split()[0]
        except OSError:
            continue
        if state not in (b"Z", b"X") and _MARK in environ.split(b"\0"):
            ours.append(pid)
    return ours


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"


@pytest.fixture(scope="session", autouse=True)
def no_stray_processes() -> Iterator[None]:
    """After the suite, no process started by the tests may be left running."""
    yield
    shutil.rmtree(RUNTIME_DIR, ignore_errors=True)
    deadline = time.monotonic() + 5.0
    left = marked_pids()
    while left and time.monotonic() < deadline:  # a process being killed right now
        time.sleep(0.05)
        left = marked_pids()
    if left:
        report = "\n".join(f"  {pid}: {_cmdline(pid)}" for pid in left)
        for pid in left:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        pytest.fail(f"processes left running after the tests (now killed):\n{report}")


def wait_until(
    predicate: Callable[[], Any], timeout: float = DEADLINE, what: str = "condition"
) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.01)


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


@pytest.fixture
def otree(tmp_path: Path) -> Iterator[Callable[..., OtreeProc]]:
    """``otree("run", "tree.toml")`` starts ``python -m otree run tree.toml --events ...``
    in ``tmp_path`` (or ``cwd=``); its event log, stdout and stderr go to files in
    ``tmp_path``. Every process it started is killed at teardown."""
    started: list[OtreeProc] = []

    def start(
        *args: str,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        stdout_pipe: bool = False,
        command: list[str] | None = None,
    ) -> OtreeProc:
        proc = OtreeProc(list(args), cwd or tmp_path, env, stdout_pipe, tmp_path, command)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.cleanup()


def pid_alive(pid: int) -> bool:
    """``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rpartition(b")")[2].split()[0]
    except OSError:
        return False
    return state not in (b"Z", b"X")


# --- long runs: @pytest.mark.slow is deselected unless asked for (tests/reliability) ---


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--run-slow",
        action="store_true",
        default=False,
        help="also run the long reliability runs (@pytest.mark.slow); same as OTREE_LONG=1",
    )


def long_runs_wanted(config: pytest.Config) -> bool:
    return (
        os.environ.get("OTREE_LONG", "") not in ("", "0")
        or bool(config.getoption("--run-slow", default=False))
        or bool(config.getoption("markexpr", default=""))  # -m decides by itself
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if long_runs_wanted(config):
        return
    slow = [item for item in items if item.get_closest_marker("slow") is not None]
    if slow:
        config.hook.pytest_deselected(items=slow)
        items[:] = [item for item in items if item.get_closest_marker("slow") is None]
