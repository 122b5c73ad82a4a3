"""Helpers to write tree files for the runtime tests."""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path

PROG = str(Path(__file__).with_name("prog.py"))


def argv(*args: str) -> str:
    """A TOML array of strings."""
    return "[" + ", ".join(json.dumps(a) for a in args) + "]"


def prog(*args: str) -> str:
    """A TOML ``cmd`` array running ``prog.py ARGS`` with this Python."""
    return argv(sys.executable, PROG, *args)


def write_tree(directory: Path, text: str, name: str = "tree.toml") -> str:
    path = directory / name
    path.write_text(text)
    return str(path)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
