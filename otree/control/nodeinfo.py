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
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

import attrs

from otree.control.protocol import error_reply, ok_reply
from otree.core.spec import Service, Supervisor

if TYPE_CHECKING:
    from otree.control.events import EventRing
    from otree.runtime.output import ServiceOutput


class NodeSource(Protocol):
    """What ``node_reply`` needs of the runtime (``otree.control.server.Backend``)."""

    @property
    def outputs(self) -> Mapping[str, ServiceOutput]: ...
    def node_info(self, path: str) -> tuple[Service | Supervisor, list[float], float] | None: ...


def node_reply(
    rid: int,
    path: str,
    rows: list[dict[str, Any]],
    backend: NodeSource,
    ring: EventRing | None,
) -> dict[str, Any]:
    """The reply to ``status`` with a path: that node in full, from its status row."""
    row = next((r for r in rows if r["path"] == path), None)
    info = backend.node_info(path)
    if row is None or info is None:
        return error_reply(rid, f"no node at path {path!r}")
    spec, times, window = info
    node = {**row, "spec": spec_summary(spec), "restart_times": times, "window": window}
    last = row.get("last_exit")
    if last is not None and last.get("normal") is False:
        lines = last_lines(path, (line for _, line in ring.recent())) if ring else None
        if lines is None and path in backend.outputs:  # its exit event left the ring
            tail = backend.outputs[path].tail(10)
            lines = [b.decode("utf-8", "replace") for b in tail]
        node["last_exit"] = {**last, "last_lines": lines or []}
    return ok_reply(rid, node=node)


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
