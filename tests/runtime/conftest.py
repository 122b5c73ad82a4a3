"""Fixtures of the runtime tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from support.disk import SmallDisk, mounted


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[SmallDisk]:
    """A 512 KiB tmpfs in ``tmp_path/disk``, unmounted at teardown."""
    with mounted(tmp_path / "disk") as disk:
        yield disk
