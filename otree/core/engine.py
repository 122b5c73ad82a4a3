"""The supervision engine (being written): see the interface below."""

from __future__ import annotations

import random

import attrs

from otree.core.actions import Action
from otree.core.events import Event
from otree.core.spec import Supervisor


@attrs.frozen
class NodeStatus:
    """One node as ``otree status`` shows it."""

    path: str
    kind: str  # "service" | "supervisor"
    state: str  # running | starting | stopping | stopped | exited | restarting
    pid: int | None
    started_at: float | None  # engine clock (the ``now`` passed in) of the last start
    restarts: int  # restarts of this node (services) / restarts decided (supervisors) in the current window
    last_exit: dict[str, object] | None  # {"code"|"signal", "normal"} of the last exit


class Engine:
    """Pure OTP supervision: ``start(now)`` then ``handle(event, now)`` -> actions.

    ``now`` is float monotonic seconds supplied by the caller; ``rng`` is the
    source of backoff jitter. ``done`` is set once an ``Exit`` action was emitted.
    """

    def __init__(self, tree: Supervisor, rng: random.Random | None = None) -> None:
        self.tree = tree
        self.rng = rng or random.Random()
        self.done = False
        self.exit_code: int | None = None

    def start(self, now: float) -> list[Action]:
        raise NotImplementedError

    def handle(self, event: Event, now: float) -> list[Action]:
        raise NotImplementedError

    def status(self, now: float) -> list[NodeStatus]:
        raise NotImplementedError
