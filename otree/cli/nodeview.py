"""``otree status``' cost columns (CPU%, RSS) and ``otree status PATH``, one node in full.

What the tree answers is :mod:`otree.control.usage`'s (CPU seconds, CPU% and RSS per
service, summed per supervisor) and :mod:`otree.control.nodeinfo`'s (a node's spec
summary, its last exit with ``last_lines``, its restarts in the window); this module
only turns it into text.
"""

from __future__ import annotations

import time

from otree.cli.control import describe_exit, describe_liveness, human_bytes, human_duration
from otree.errors import ExitCode

TYPE_CHECKING = False  # typing is not imported: ``otree status`` starts without it
if TYPE_CHECKING:
    from typing import Any


def show_node(reply: dict[str, Any], as_json: bool) -> int:
    """Print ``otree status PATH``'s answer (``{"node": {...}}`` with ``--json``)."""
    node = reply.get("node") or {}
    if as_json:
        import json  # not for the table (json imports re and enum)

        print(json.dumps({"node": node}, indent=2))
    else:
        print(render_node(node))
    return ExitCode.OK


def cost_columns(nodes: list[dict[str, Any]]) -> tuple[tuple[str, ...], list[tuple[str, str]]]:
    """The CPU% and RSS columns: the header and each node's cells (blank where nothing
    runs)."""
    cells = []
    for node in nodes:
        percent, rss = node.get("cpu_percent"), node.get("rss_bytes")
        cells.append(
            (
                "" if percent is None else f"{percent:.1f}%",
                ""
                if rss is None or (rss == 0 and node.get("kind") != "service")
                else human_bytes(rss),
            )
        )
    return ("CPU%", "RSS"), cells


def _when(ts: float, now: float) -> str:
    clock = time.strftime("%H:%M:%S", time.localtime(ts))
    return f"{clock} ({human_duration(now - ts)} ago)"


def render_node(node: dict[str, Any], now: float | None = None) -> str:
    """``otree status PATH``: one node, a ``key: value`` line each, then its last output."""
    now = time.time() if now is None else now
    rows: list[tuple[str, str]] = [
        ("path", node.get("path") or "(root)"),
        ("kind", str(node.get("kind"))),
        ("state", str(node.get("state"))),
    ]
    if node.get("pid") is not None:
        rows.append(("pid", str(node["pid"])))
    if node.get("uptime") is not None:
        rows.append(("uptime", human_duration(node["uptime"])))
    for key, value in (node.get("spec") or {}).items():
        rows.append((key, str(value)))
    if node.get("cpu_seconds") is not None:
        over = node.get("cpu_percent_over")
        how = "over its uptime" if over is None else f"over the last {over:g}s"
        if node.get("kind") != "service":
            how = "its services' sum"
        percent = node.get("cpu_percent")
        cpu = f"{node['cpu_seconds']:.2f}s"
        rows.append(("cpu", cpu if percent is None else f"{cpu}, {percent:.1f}% ({how})"))
    if node.get("rss_bytes") is not None:
        rows.append(("rss", human_bytes(node["rss_bytes"])))
    if node.get("procs") is not None:
        rows.append(("procs", str(node["procs"])))
    health = describe_liveness(node)
    if node.get("health") is not None or health:
        rows.append(("health", health or "passing"))
    times = node.get("restart_times") or []
    window = node.get("window")
    restarts = f"{node.get('restarts', 0)}"
    if window:
        restarts += f" in the last {window:g}s"
    rows.append(("restarts", restarts))
    rows += [("", _when(ts, now)) for ts in times]
    last = node.get("last_exit")
    rows.append(("last exit", describe_exit(last) or "-"))
    width = max(len(key) for key, _ in rows) + 1
    out = [f"{(key + ':') if key else '':<{width}} {value}" for key, value in rows]
    lines = (last or {}).get("last_lines") or []
    if lines:
        out.append("last lines:")
        out += [f"  {line}" for line in lines]
    return "\n".join(out)
