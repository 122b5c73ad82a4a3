"""``otree reload --dry-run``: the reload plan a tree sent, as lines to read."""

from __future__ import annotations

from typing import Any


def render_plan(reply: dict[str, Any]) -> str:
    """What a reload would do now, one line per kind of change (and ``nothing to do``)."""
    lines = ["a reload now would (nothing has been changed):"]

    def with_pid(entry: dict[str, Any]) -> str:
        return f"{entry['path']} (pid {entry['pid']})"

    def with_fields(entry: dict[str, Any]) -> str:
        fields = ", ".join(entry.get("fields") or ()) or "its kind"
        return f"{with_pid(entry)}: {fields}"

    rows = [
        ("keep", [with_pid(e) for e in reply.get("kept") or ()], ", "),
        ("update", [with_fields(e) for e in reply.get("updated") or ()], "; "),
        ("restart", [with_fields(e) for e in reply.get("restarted") or ()], "; "),
        ("stop", [with_pid(e) for e in reply.get("stopped") or ()], ", "),
        ("start", [str(p) for p in reply.get("started") or ()], ", "),
    ]
    for label, items, sep in rows:
        if items:
            lines.append(f"  {label + ':':<8} {sep.join(items)}")
    if not any(items for _, items, _ in rows):
        lines.append("  nothing: no service is running")
    if reply.get("busy"):
        lines.append(f"  (the tree is busy now: {reply['busy']}; a reload waits until it is quiet)")
    return "\n".join(lines)
