"""The state machines of one service and one supervisor.

Both kinds offer their parent the same small protocol: ``start()`` and
``stop()``, answered later by exactly one call back on the parent:
``child_started`` or ``child_start_failed`` for a start, ``child_stopped``
for a stop; and, unasked, ``child_exited(child, normal)`` when a running child
ends on its own (a service's process exits, a supervisor gives up or shuts
itself down). A child is *alive* from ``start()`` until it is stopped or has
exited.

A supervisor works through one *plan* at a time (a queue of steps: stop a
child, start a child, run a continuation), waiting for each child's answer
before the next step, as OTP's supervisor does inside its one process (R38).
Exits and commands that arrive meanwhile wait in its mailbox, and are taken
in order once the plan is done; an exit whose child was stopped or started
again in between is stale and dropped (R12).

The parent owns its record of each child (OTP's ``#child``,
``supervisor.ChildRecord``): whether a child that is not alive is stopped,
restarting, exited or dead, its pending restart timer and its restart times.
A node keeps only its own lifecycle (stopped, starting, running, stopping);
``NodeBase.status`` gives the two together, as ``otree status`` shows them.
Every write of a record's state goes through ``SupNode.mark``.

The machines live in ``service`` (the states, ``NodeBase``, ``ServiceNode``)
and ``supervisor`` (``SupNode``), ``records`` (a supervisor's child records, plan
steps and mailbox items); this module gathers them.
"""

from __future__ import annotations

from otree.core.records import (
    Call,
    ChildRecord,
    CommandMail,
    Ending,
    ExitMail,
    Mail,
    PendingRestart,
    RestartMail,
    StartChild,
    Step,
    StopChild,
)
from otree.core.service import ALIVE, NodeBase, ServiceNode, State
from otree.core.supervisor import Child, SupNode

__all__ = [
    "ALIVE",
    "Call",
    "Child",
    "ChildRecord",
    "CommandMail",
    "Ending",
    "ExitMail",
    "Mail",
    "NodeBase",
    "PendingRestart",
    "RestartMail",
    "ServiceNode",
    "StartChild",
    "State",
    "Step",
    "StopChild",
    "SupNode",
]
