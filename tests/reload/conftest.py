"""Fixtures of the self-reload tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.otreeproc import OtreeProc, RunOtree


@pytest.fixture
def tree(tmp_path: Path, otree: RunOtree, sock: str) -> RunOtree:
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
