"""A reader that leaves early (``otree check TREE | head``) is no bug: no traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_check_into_a_closed_pipe_exits_quietly(tmp_path: Path) -> None:
    tree = tmp_path / "big.toml"
    tree.write_text("".join(f'[s{i}]\ncmd = "sleep 1"\n' for i in range(3000)))
    reader = subprocess.Popen(["head", "-n", "1"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert reader.stdin is not None
    proc = subprocess.run(
        [sys.executable, "-m", "otree", "check", str(tree)],
        stdout=reader.stdin,
        stderr=subprocess.PIPE,
        text=True,
        timeout=60,
    )
    out, _ = reader.communicate(timeout=60)
    assert out.startswith(b"root")
    assert proc.returncode == 141  # 128 + SIGPIPE, as a shell command killed by it
    assert proc.stderr == ""
