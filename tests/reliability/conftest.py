"""Long runs of the reliability suite are deselected unless asked for.

``@pytest.mark.slow`` tests run only with ``OTREE_LONG=1``, with ``--run-slow``
(when this directory is on the command line: ``pytest tests/reliability
--run-slow``), or when ``-m`` selects them explicitly (``pytest -m slow``).
Otherwise they are *deselected* (reported as such), never skipped.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator

import pytest


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


@pytest.fixture
def sock() -> Iterator[str]:
    """A control socket path in a private directory (socket paths are limited to 107 bytes)."""
    d = tempfile.mkdtemp(prefix="otr-", dir="/tmp")
    try:
        yield os.path.join(d, "ctl.sock")
    finally:
        shutil.rmtree(d, ignore_errors=True)
