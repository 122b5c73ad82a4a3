"""The restart-intensity window: OTP's ``add_restart``, on a float clock.

One list of restart times per supervisor, shared by all its children. On each
restart: keep the times ``t`` with ``now - t <= period`` (both ends of the
window count), add ``now``; the restart is allowed while the count is at most
``intensity``. So ``intensity`` restarts fit in any window and the next one
makes the supervisor give up; with ``intensity = 0`` the first restart does.
"""

from __future__ import annotations


class RestartWindow:
    __slots__ = ("intensity", "period", "times")

    def __init__(self, intensity: int, period: float, times: list[float] | None = None) -> None:
        self.intensity = intensity
        self.period = period
        self.times: list[float] = list(times or [])

    def _prune(self, now: float) -> None:
        self.times = [t for t in self.times if now - t <= self.period]

    def add(self, now: float) -> bool:
        """Record a restart at ``now``; True if it is allowed, False if the limit is exceeded."""
        self._prune(now)
        self.times.append(now)
        return len(self.times) <= self.intensity

    def count(self, now: float) -> int:
        """Restarts inside the window ending at ``now``."""
        return sum(1 for t in self.times if now - t <= self.period)
