"""Writing tree files: TOML values and documents, ``cmd`` arrays that run the child program
(``support/prog.py``), a free TCP port to put in them."""

from __future__ import annotations

import math
import re
import socket
import sys
from pathlib import Path
from typing import Any

PROG = str(Path(__file__).with_name("prog.py"))


def toml_string(text: str) -> str:
    """A TOML basic string (control characters and DEL escaped)."""
    out = []
    for c in text:
        if ord(c) < 0x20 or ord(c) == 0x7F:
            out.append(f"\\u{ord(c):04x}")
        elif c in '"\\':
            out.append("\\" + c)
        else:
            out.append(c)
    return '"' + "".join(out) + '"'


def toml_key(key: str) -> str:
    """A bare key if it may be one, else a quoted key."""
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else toml_string(key)


def toml_value(value: Any) -> str:
    """A TOML value: booleans, numbers (nan and inf too), strings, arrays, inline tables."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    assert isinstance(value, dict)
    return "{ " + ", ".join(f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items()) + " }"


def to_toml(doc: dict[str, Any], prefix: str = "") -> str:
    """A TOML document: the scalars of a table first, then each sub-table under its header."""
    out = [f"{toml_key(k)} = {toml_value(v)}" for k, v in doc.items() if not isinstance(v, dict)]
    for k, v in doc.items():
        if isinstance(v, dict):
            path = f"{prefix}.{toml_key(k)}" if prefix else toml_key(k)
            out.append(f"\n[{path}]")
            out.append(to_toml(v, path))
    return "\n".join(out)


def argv(*args: str) -> str:
    """A TOML array of strings."""
    return toml_value(list(args))


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
