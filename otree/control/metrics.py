"""``otree metrics``: the Prometheus text exposition (format 0.0.4) of a running tree.

Two halves. :class:`Counters` is a report observer of the runtime
(``Runtime.add_report_hook``): it counts the supervision events as they are
reported, and its counts cross a re-exec in the handoff (``dump``/``load``), so a
counter never goes back to zero because of ``otree reload``. :class:`Metrics`
writes the text: the counters, each node's up-ness from the engine's status, each
running service's CPU and memory and otree's own ``process_*``, the last two read
by callables it is given (``otree.launch`` passes the runtime's ``/proc``
readers: this package does not read ``/proc`` itself).

The families (DESIGN.md, "Observability"):

- ``otree_node_up{path,kind}``: 1 while the node runs, else 0;
- ``otree_restarts_total{path}``: restarts a crash of ``path`` triggered (the
  ``child`` of a ``restart`` event: what ``otree status`` counts as RESTARTS);
- ``otree_exits_total{path,normal}``: the exits of a service's process;
- ``otree_unhealthy_total{path}``: failed health checks that stopped it;
- ``otree_give_ups_total{path}``: a supervisor reaching its restart intensity;
- ``otree_process_cpu_seconds_total{path}``, ``otree_process_resident_bytes{path}``:
  a running service's process group;
- ``otree_reexecs_total``: self-reloads of this otree.

A counter is written for every node of the tree, 0 until it happens; one of a node a
reload removed is forgotten with it. A service's CPU seconds are its process group's
(those of the processes it reaped included): a restart starts them from 0 again, which
Prometheus' ``rate()`` takes as a counter reset. Label values are escaped as the format says
(backslash, double quote, newline).
"""

from __future__ import annotations

from collections.abc import Callable, Container, Iterable, Mapping
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from otree.core.actions import Report
    from otree.core.engine import NodeStatus

#: the Content-Type of the text exposition
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: what crosses a re-exec: (family, path, extra label value or "", count)
Dumped = tuple[tuple[str, str, str, int], ...]


class ServiceUsage(Protocol):
    """What a service's process group costs (``otree.runtime.procstat.Usage`` is one)."""

    @property
    def cpu_seconds(self) -> float: ...
    @property
    def rss_bytes(self) -> int: ...


class OwnUsage(Protocol):
    """otree's own process (``otree.runtime.procstat.OwnUsage`` is one)."""

    @property
    def cpu_seconds(self) -> float: ...
    @property
    def rss_bytes(self) -> int: ...
    @property
    def virtual_bytes(self) -> int: ...
    @property
    def open_fds(self) -> int: ...
    @property
    def max_fds(self) -> int: ...
    @property
    def start_time(self) -> float: ...


#: event name -> the counter family it adds to, and the field naming its path
_COUNTED: dict[str, tuple[str, str | None]] = {
    "restart": ("otree_restarts_total", "child"),
    "exit": ("otree_exits_total", None),
    "unhealthy": ("otree_unhealthy_total", None),
    "give_up": ("otree_give_ups_total", None),
    "reexec": ("otree_reexecs_total", None),
}


class Counters:
    """The supervision events counted since the tree first started (across re-execs)."""

    def __init__(self) -> None:
        #: (family, path, extra label value) -> count
        self.counts: dict[tuple[str, str, str], int] = {}

    def on_report(self, report: Report) -> Report:
        """The report hook: count ``report`` if it is one of the counted events."""
        counted = _COUNTED.get(report.event)
        if counted is None:
            return report
        family, field = counted
        path = report.path if field is None else str(report.fields.get(field, ""))
        extra = ""
        if report.event == "exit":
            extra = "true" if report.fields.get("normal") else "false"
        elif report.event == "reexec":
            path = ""
        key = (family, path, extra)
        self.counts[key] = self.counts.get(key, 0) + 1
        return report

    def get(self, family: str, path: str = "", extra: str = "") -> int:
        return self.counts.get((family, path, extra), 0)

    def dump(self) -> Dumped:
        """The counts, for the handoff of a re-exec."""
        return tuple((f, p, x, n) for (f, p, x), n in self.counts.items())

    def load(
        self, dumped: Iterable[tuple[str, str, str, int]], paths: Container[str] | None = None
    ) -> None:
        """Take over the counts of the image before (``dump``); with ``paths`` (the nodes of
        the tree now), only those of a node still there (or of an instance of a pool still
        there): a node the reload removed is forgotten."""
        for family, path, extra, count in dumped:
            if paths is not None and not _kept(path, paths):
                continue
            key = (family, path, extra)
            self.counts[key] = self.counts.get(key, 0) + count


def _kept(path: str, paths: Container[str]) -> bool:
    parent, dot, _ = path.rpartition(".")
    return path in paths or (bool(dot) and parent in paths)


def escape(value: str) -> str:
    """A label value as the text format writes it between double quotes."""
    if "\\" not in value and '"' not in value and "\n" not in value:
        return value  # a path, nearly always
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    return repr(float(value))


class _Text:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(self, name: str, kind: str, help_text: str) -> None:
        self.lines.append(f"# HELP {name} {help_text}")
        self.lines.append(f"# TYPE {name} {kind}")

    def sample(self, name: str, value: float, **labels: str) -> None:
        if labels:
            inner = ",".join(f'{k}="{escape(v)}"' for k, v in labels.items())
            self.lines.append(f"{name}{{{inner}}} {_number(value)}")
        else:
            self.lines.append(f"{name} {_number(value)}")


class Metrics:
    """The exposition of one running tree: ``text()`` is what ``otree metrics`` prints.

    ``status()`` gives the engine's nodes, ``usage(pids)`` each running service's
    process group's cost by its main PID, ``own()`` otree's own process."""

    def __init__(
        self,
        counters: Counters,
        status: Callable[[], list[NodeStatus]],
        usage: Callable[[list[int]], Mapping[int, ServiceUsage]],
        own: Callable[[], OwnUsage],
    ) -> None:
        self.counters = counters
        self.status = status
        self.usage = usage
        self.own = own

    def text(self) -> str:
        nodes = self.status()
        services = [n for n in nodes if n.kind == "service"]
        supervisors = [n for n in nodes if n.kind != "service"]
        counts = self.counters
        out = _Text()
        out.family("otree_node_up", "gauge", "1 while the node runs, else 0.")
        for n in nodes:
            out.sample("otree_node_up", int(n.state == "running"), path=n.path, kind=n.kind)
        out.family(
            "otree_restarts_total", "counter", "Restarts that an exit of this node triggered."
        )
        for n in nodes[1:]:
            out.sample(
                "otree_restarts_total", counts.get("otree_restarts_total", n.path), path=n.path
            )
        out.family("otree_exits_total", "counter", "Exits of the service's process.")
        for n in services:
            for normal in ("true", "false"):
                value = counts.get("otree_exits_total", n.path, normal)
                out.sample("otree_exits_total", value, path=n.path, normal=normal)
        out.family(
            "otree_unhealthy_total", "counter", "Failed health checks that stopped the service."
        )
        for n in services:
            value = counts.get("otree_unhealthy_total", n.path)
            out.sample("otree_unhealthy_total", value, path=n.path)
        out.family(
            "otree_give_ups_total", "counter", "Times the supervisor reached its restart intensity."
        )
        for n in supervisors:
            value = counts.get("otree_give_ups_total", n.path)
            out.sample("otree_give_ups_total", value, path=n.path)
        self._usage(out, services)
        out.family("otree_reexecs_total", "counter", "Self-reloads (re-execs) of this otree.")
        out.sample("otree_reexecs_total", counts.get("otree_reexecs_total"))
        self._own(out)
        return "\n".join(out.lines) + "\n"

    def _usage(self, out: _Text, services: list[NodeStatus]) -> None:
        running = [(n.path, n.pid) for n in services if n.pid is not None]
        usage = self.usage([pid for _, pid in running]) if running else {}
        cpu = "otree_process_cpu_seconds_total"
        out.family(cpu, "counter", "CPU time of the running service's process group, in seconds.")
        for path, pid in running:
            if pid in usage:
                out.sample(cpu, round(usage[pid].cpu_seconds, 3), path=path)
        rss = "otree_process_resident_bytes"
        out.family(rss, "gauge", "Resident memory of the running service's process group.")
        for path, pid in running:
            if pid in usage:
                out.sample(rss, usage[pid].rss_bytes, path=path)

    def _own(self, out: _Text) -> None:
        own = self.own()
        rows = (
            (
                "process_cpu_seconds_total",
                "counter",
                "otree's CPU time, in seconds.",
                own.cpu_seconds,
            ),
            ("process_resident_memory_bytes", "gauge", "otree's resident memory.", own.rss_bytes),
            ("process_virtual_memory_bytes", "gauge", "otree's virtual memory.", own.virtual_bytes),
            ("process_open_fds", "gauge", "otree's open file descriptors.", own.open_fds),
            ("process_max_fds", "gauge", "otree's limit of open file descriptors.", own.max_fds),
            (
                "process_start_time_seconds",
                "gauge",
                "When otree started, in unix seconds.",
                own.start_time,
            ),
        )
        for name, kind, help_text, value in rows:
            out.family(name, kind, help_text)
            out.sample(name, round(value, 3) if isinstance(value, float) else value)
