"""Waiting for something to happen: by polling a condition, with one generous deadline."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

#: generous deadline for anything a test waits on (a loaded CI machine is slow)
DEADLINE = 20.0


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
