"""Fixtures and hooks of the whole suite: no process outlives it, a driver for ``otree run``,
a control socket path, and the long runs deselected unless asked for.

The helpers behind them live in ``tests/support`` (``leaks``, ``otreeproc``).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import cgroupdirs, leaks
from support.otreeproc import OtreeProc, RunOtree

_RUNTIME_DIR = pytest.StashKey[str]()
_DEAD_BEFORE = pytest.StashKey[set[int]]()


def pytest_configure(config: pytest.Config) -> None:
    """Before any test runs: every process the tests start is marked (see support.leaks)."""
    config.stash[_RUNTIME_DIR] = leaks.isolate()
    config.stash[_DEAD_BEFORE] = cgroupdirs.dead_otrees()  # not the tests' doing


@pytest.fixture(scope="session", autouse=True)
def no_stray_processes(pytestconfig: pytest.Config) -> Iterator[None]:
    """After the suite, no process started by the tests may be left running, and no cgroup
    of an otree they started (each test removes those of the otrees it killed)."""
    yield
    shutil.rmtree(pytestconfig.stash[_RUNTIME_DIR], ignore_errors=True)
    report = leaks.kill_leftovers()
    if report:
        pytest.fail(f"processes left running after the tests (now killed):\n{report}")
    before = pytestconfig.stash[_DEAD_BEFORE]
    removed = [d for pid in cgroupdirs.dead_otrees() - before for d in cgroupdirs.remove_of(pid)]
    if removed:
        pytest.fail("cgroups left by the tests' otrees (now removed):\n  " + "\n  ".join(removed))


@pytest.fixture
def otree(tmp_path: Path) -> Iterator[RunOtree]:
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


@pytest.fixture
def sock() -> Iterator[str]:
    """A control socket path in a private directory (socket paths are limited to 107 bytes)."""
    d = tempfile.mkdtemp(prefix="otr-", dir="/tmp")
    try:
        yield os.path.join(d, "ctl.sock")
    finally:
        shutil.rmtree(d, ignore_errors=True)


# --- long runs: @pytest.mark.slow is deselected unless asked for (tests/reliability) ---


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--run-slow",
        action="store_true",
        default=False,
        help="also run the long reliability runs (@pytest.mark.slow); same as OTREE_LONG=1",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if (
        os.environ.get("OTREE_LONG", "") not in ("", "0")
        or config.getoption("--run-slow", default=False)
        or config.getoption("markexpr", default="")  # -m decides by itself
    ):
        return
    slow = [item for item in items if item.get_closest_marker("slow") is not None]
    if slow:
        config.hook.pytest_deselected(items=slow)
        items[:] = [item for item in items if item.get_closest_marker("slow") is None]
