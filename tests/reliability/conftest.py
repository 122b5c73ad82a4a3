"""Long runs of the reliability suite are deselected unless asked for.

``@pytest.mark.slow`` tests run only with ``OTREE_LONG=1``, with ``--run-slow``
or when ``-m`` selects them explicitly (``pytest -m slow``); otherwise they are
*deselected* (reported as such), never skipped. The option and the hook live in
``tests/conftest.py`` so that they work from any directory.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator

import pytest


@pytest.fixture
def sock() -> Iterator[str]:
    """A control socket path in a private directory (socket paths are limited to 107 bytes)."""
    d = tempfile.mkdtemp(prefix="otr-", dir="/tmp")
    try:
        yield os.path.join(d, "ctl.sock")
    finally:
        shutil.rmtree(d, ignore_errors=True)
