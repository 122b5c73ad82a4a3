"""Property-based testing of restart behaviour: the real engine on fake processes.

``simulate(tree, schedule)`` runs ``otree.core``'s engine against fake
processes on a fake clock and returns a :class:`Trace` whose events have the
names and fields of a real run's event log. :class:`Simulation` is the same
run driven step by step. The Hypothesis strategies (``trees``,
``services``, ``supervisors``, ``crash_schedules``, ...) draw valid specs and
schedules. This module needs ``hypothesis`` (the ``test`` extra);
``import otree`` does not.

See docs/testing.md for a guide.
"""

from __future__ import annotations

from otree._sim import (
    FAIL_START_REASON,
    HOWS,
    EngineFactory,
    EngineLike,
    Simulation,
    Trace,
    simulate,
)
from otree._strategies import (
    backoffs,
    crash_schedules,
    logs,
    names,
    readies,
    service_paths,
    services,
    shutdowns,
    supervisors,
    trees,
)

__all__ = [
    "FAIL_START_REASON",
    "HOWS",
    "EngineFactory",
    "EngineLike",
    "Simulation",
    "Trace",
    "backoffs",
    "crash_schedules",
    "logs",
    "names",
    "readies",
    "service_paths",
    "services",
    "shutdowns",
    "simulate",
    "supervisors",
    "trees",
]
