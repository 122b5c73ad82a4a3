"""Scans of a parsed tree file before it is built into specs.

:func:`hostile` finds what no tree may hold (an error); :func:`shell_warnings` finds a
string ``cmd`` that looks written for a shell (a warning: ``otree check`` prints it).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from otree.config.keylines import Keys

__all__ = ["MAX_DEPTH", "TABLE_FIELDS", "hostile", "shell_warnings"]

#: service fields whose value is a table (so such a sub-table is not a child)
TABLE_FIELDS = ("env", "ready", "health", "backoff", "log")

#: shell syntax a string ``cmd`` is not run through (it is split into words, not parsed)
_SHELL = re.compile(r"\|\||&&|;|>|<|\$\(|`|\|")


#: how deep tables may nest (supervisors in supervisors); deeper is refused before any
#: recursion: a tree is not 65 levels deep on purpose
MAX_DEPTH = 64


def hostile(doc: Mapping[str, Any]) -> list[tuple[Keys, str]]:
    """What no tree may hold, found without recursion: tables nested deeper than
    MAX_DEPTH, a NUL byte in any key or string, an env name with ``=`` (or empty)."""
    problems: list[tuple[Keys, str]] = []
    stack: list[tuple[Keys, Any, int]] = [((), doc, 0)]
    while stack:
        keys, value, depth = stack.pop()
        if isinstance(value, str):
            if "\0" in value:
                problems.append((keys, "contains a NUL byte"))
        elif isinstance(value, list):
            stack.extend(((*keys, str(i)), v, depth) for i, v in enumerate(value))
        elif isinstance(value, dict):
            if depth > MAX_DEPTH:
                problems.append((keys, f"nested too deep: at most {MAX_DEPTH} levels of tables"))
                continue
            is_env = bool(keys) and keys[-1] == "env"
            for key, item in value.items():
                if "\0" in key:
                    shown = key.replace("\0", "\\0")
                    problems.append(((*keys, shown), "the key contains a NUL byte"))
                elif is_env and ("=" in key or not key):
                    problems.append(
                        (
                            (*keys, key),
                            "an environment variable name cannot contain '=' or be empty",
                        )
                    )
                inner = depth if key in TABLE_FIELDS else depth + 1
                stack.append(((*keys, key), item, inner))
    return problems


def shell_warnings(doc: Mapping[str, Any]) -> list[tuple[Keys, str]]:
    """Every string ``cmd`` holding shell syntax (``|``, ``&&``, ``;``, ``>``, ``<``, ``$(``,
    a backquote), with the ``["sh", "-c", ...]`` form that runs it through a shell."""
    import json

    warnings: list[tuple[Keys, str]] = []
    stack: list[tuple[Keys, Mapping[str, Any]]] = [((), doc)]
    while stack:
        keys, table = stack.pop()
        cmd = table.get("cmd") if keys else None
        if isinstance(cmd, str):
            found = _SHELL.search(cmd)
            if found is not None:
                form = json.dumps(["sh", "-c", cmd])
                warnings.append(
                    (
                        (*keys, "cmd"),
                        f"{found.group(0)!r} is shell syntax, but cmd is split into words and "
                        f"run without a shell; to use a shell write: cmd = {form}",
                    )
                )
        for key, value in table.items():
            if isinstance(value, dict) and key not in TABLE_FIELDS:
                stack.append(((*keys, key), value))
    warnings.sort()
    return warnings
