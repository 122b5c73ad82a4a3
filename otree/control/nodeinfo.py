"""``otree status PATH``: one node in full, as the tree answers it.

The row ``otree status --json`` has for the node, and besides: ``spec``, a summary of
what the node was configured with (each field that differs from its default, as
text; a supervisor's children by name), ``restart_times`` (unix seconds of its
automatic restarts inside its supervisor's window, oldest first) and ``window`` (that
window, seconds), and in ``last_exit`` the ``last_lines`` its abnormal exit event
carried (from ``otree events``' ring; a service's last output lines when that event
has left the ring).
"""

from __future__ import annotations

import enum
import json
import shlex
from collections.abc import Iterable
from typing import Any

import attrs

from otree.core.spec import Service, Supervisor

#: fields the summary leaves out (the path says the name; children are listed by name)
_SKIPPED = frozenset({"name", "children", "env"})


def spec_summary(spec: Service | Supervisor) -> dict[str, str]:
    """``{field: text}`` of each field of ``spec`` set to something but its default."""
    out: dict[str, str] = {}
    if isinstance(spec, Supervisor):
        out["children"] = ", ".join(c.name for c in spec.children) or "-"
    for field in attrs.fields(type(spec)):
        if field.name in _SKIPPED:
            continue
        value = getattr(spec, field.name)
        if (
            field.default is not attrs.NOTHING
            and value == field.default
            and field.name
            not in (
                "restart",
                "strategy",
            )
        ):
            continue
        out[field.name] = _text(value)
    if isinstance(spec, Service) and spec.env:
        out["env"] = " ".join(f"{k}=..." for k, _ in spec.env)  # names only: values may be secret
    return out


def _text(value: Any) -> str:
    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, tuple) and all(isinstance(v, str) for v in value):
        return shlex.join(value)
    if attrs.has(type(value)):
        parts = []
        for field in attrs.fields(type(value)):
            inner = getattr(value, field.name)
            if field.default is attrs.NOTHING or inner != field.default:
                parts.append(f"{field.name}={_text(inner)}")
        kind = type(value).__name__
        return f"{kind}({', '.join(parts)})"
    if isinstance(value, tuple):
        return ", ".join(_text(v) for v in value)
    return str(value)


def last_lines(path: str, lines: Iterable[str]) -> list[str] | None:
    """The ``last_lines`` of the latest ``exit`` event of ``path`` among the event-log
    ``lines`` (oldest first); None if none of them is one."""
    for line in reversed(list(lines)):
        if '"exit"' not in line:
            continue
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("event") == "exit" and record.get("path") == path:
            found = record.get("last_lines")
            return list(found) if isinstance(found, list) else None
    return None
