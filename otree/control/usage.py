"""What each node of a running tree costs, as ``otree status`` shows it: CPU seconds, CPU%
and resident memory per service, summed per supervisor.

The runtime reads the services' ``/proc`` entries (``Runtime.usage``: each service's
process group, or its cgroup's processes) when a status is asked for, and never
otherwise: an idle tree does not wake up to sample. CPU% needs two readings, so it
is the CPU time a service used since the previous ``otree status`` (of any client)
over the wall time since, once that reading is at least ``MIN_WINDOW`` seconds old
(a newer one replaces it only then, so status after status in quick succession
still measures over a second or more); with no earlier reading of that process (the
first status, a new PID) it is the average over the service's uptime.
``cpu_percent_over`` says which: the window in seconds, or None for the uptime.
A supervisor's row is the sum of the services below it (the root's: the whole tree).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: seconds a CPU reading is kept as the base of CPU% before a newer one replaces it
MIN_WINDOW = 1.0


class Costs:
    """The CPU readings CPU% is measured from (one per service: pid, time, CPU seconds)."""

    def __init__(self) -> None:
        self._base: dict[str, tuple[int, float, float]] = {}

    def fill(
        self,
        rows: list[dict[str, Any]],
        usage: Mapping[str, tuple[int, float, int]],
        now: float,
    ) -> None:
        """Add ``cpu_seconds``, ``cpu_percent``, ``cpu_percent_over`` and ``rss_bytes`` to
        each row of ``status_payload``'s nodes (None where nothing runs). ``usage``:
        ``{path: (pid, CPU seconds, RSS bytes)}`` of the running services; a row that
        has ``cpu_seconds`` already (its cgroup's own count) keeps it."""
        totals: dict[str, list[float]] = {}  # [CPU seconds, CPU%, RSS bytes]
        bases: dict[str, tuple[int, float, float]] = {}
        for row in rows:
            if row["kind"] != "service":
                continue
            path = row["path"]
            found = usage.get(path)
            if found is None or row["pid"] != found[0]:
                row.setdefault("cpu_seconds", None)
                row.update(cpu_percent=None, cpu_percent_over=None, rss_bytes=None)
                continue
            pid, cpu, rss = found
            if row.get("cpu_seconds") is not None:
                cpu = float(row["cpu_seconds"])
            percent, over, base = self._percent(path, pid, cpu, now, row.get("uptime"))
            bases[path] = base
            row.update(
                cpu_seconds=round(cpu, 3),
                cpu_percent=percent,
                cpu_percent_over=over,
                rss_bytes=rss,
            )
            parts = path.split(".")
            for i in range(len(parts)):  # every supervisor above it, the root included
                total = totals.setdefault(".".join(parts[:i]), [0.0, 0.0, 0.0])
                total[0] += cpu
                total[1] += percent or 0.0
                total[2] += rss
        self._base = bases  # services gone since are forgotten
        for row in rows:
            if row["kind"] != "service":
                sums = totals.get(row["path"], [0.0, 0.0, 0.0])
                row.update(cpu_seconds=round(sums[0], 3), cpu_percent=round(sums[1], 1))
                row["rss_bytes"] = int(sums[2])

    def _percent(
        self, path: str, pid: int, cpu: float, now: float, uptime: float | None
    ) -> tuple[float | None, float | None, tuple[int, float, float]]:
        """CPU% of ``path`` now, the window it is over (None: its uptime), and the
        reading to keep as the next base."""
        base = self._base.get(path)
        reading = (pid, now, cpu)
        if base is not None and base[0] == pid and now > base[1]:
            window = now - base[1]
            percent = round(max(cpu - base[2], 0.0) / window * 100, 1)
            return percent, round(window, 3), reading if window >= MIN_WINDOW else base
        if uptime:
            return round(cpu / uptime * 100, 1), None, reading
        return None, None, reading
