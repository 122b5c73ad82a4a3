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

from typing import TYPE_CHECKING, Any

from otree.testing._simulator import (
    FAIL_START_REASON,
    HOWS,
    EngineFactory,
    EngineLike,
    Simulation,
    Trace,
    simulate,
)

if TYPE_CHECKING:
    from otree.testing._strategies import (
        backoffs,
        crash_schedules,
        healths,
        logs,
        names,
        readies,
        service_paths,
        services,
        shutdowns,
        supervisors,
        trees,
    )

# The strategies need hypothesis (the ``test`` extra); the simulator does not, so
# they load on first use (PEP 562).
_STRATEGIES = frozenset(
    {
        "backoffs",
        "crash_schedules",
        "logs",
        "names",
        "healths",
        "readies",
        "service_paths",
        "services",
        "shutdowns",
        "supervisors",
        "trees",
    }
)


def __getattr__(name: str) -> Any:
    if name in _STRATEGIES:
        from otree.testing import _strategies

        return getattr(_strategies, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "FAIL_START_REASON",
    "HOWS",
    "EngineFactory",
    "EngineLike",
    "Simulation",
    "Trace",
    "backoffs",
    "crash_schedules",
    "healths",
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
