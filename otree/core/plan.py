"""What a reload would do, without doing it: ``otree reload --dry-run``.

The plan is made by the reload's own code: the running engine's
:func:`~otree.core.snapshot.snapshot` is resumed by
:func:`~otree.core.snapshot.resume` into a scratch engine built from the
re-read tree, exactly as the new image would after ``os.execv``, and what
that reconciliation decided is read back: the services it adopts (kept, with
their PIDs; updated in place, with the fields), the processes it stops (a
service restarted, with the fields that make it restart, or removed), and
the services it starts. The scratch engine's actions are thrown away:
nothing is signalled, spawned or changed in the running tree.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

from otree.core import actions as act
from otree.core.changes import service_change
from otree.core.node import ServiceNode, SupNode
from otree.core.pool import services
from otree.core.snapshot import resume, snapshot
from otree.core.spec import Service, Supervisor, walk

if TYPE_CHECKING:
    from otree.core.engine import Engine


def reload_plan(engine: Engine, new_tree: Supervisor, now: float) -> dict[str, Any]:
    """What reloading ``engine``'s tree into ``new_tree`` would do, as JSON-ready lists.

    ``kept``: ``[{"path", "pid"}]`` adopted with no change; ``updated``:
    ``[{"path", "pid", "fields"}]`` adopted with changes applied in place;
    ``restarted``: ``[{"path", "pid", "fields"}]`` stopped and started again (in
    start order); ``stopped``: ``[{"path", "pid"}]`` removed (in stop order);
    ``started``: ``[path]`` new, in start order.
    """
    from otree.core.engine import Engine

    scratch = Engine(new_tree, random.Random(0))
    actions = resume(scratch, snapshot(engine), now, "dry-run", engine.tree)
    kept: list[dict[str, Any]] = []
    updated: list[dict[str, Any]] = []
    for a in actions:
        if not isinstance(a, act.Report):
            continue
        if a.event == "adopt":
            kept.append({"path": a.path, "pid": a.fields["pid"]})
        elif a.event == "update":
            entry = kept.pop()  # its adopt came just before
            updated.append({**entry, "fields": list(a.fields["fields"])})
    recon = scratch.reconciliation
    orphans = list(recon.orphans.values()) if recon is not None else []
    starting = recon.starts if recon is not None else []
    started = [p for node in starting for p in _processes_of(node)]
    old_specs: dict[str, Service | Supervisor] = dict(walk(engine.tree))
    old_specs.update(services(engine.tree))
    new_specs = dict(services(new_tree))
    restarted: list[dict[str, Any]] = []
    stopped: list[dict[str, Any]] = []
    for orphan in orphans:
        entry = {"path": orphan.path, "pid": orphan.pid}
        if orphan.path in started:
            was, now_spec = old_specs.get(orphan.path), new_specs.get(orphan.path)
            change = None
            if isinstance(was, Service) and was.replicas is None and now_spec is not None:
                change = service_change(was, now_spec)
            entry["fields"] = list(change.restart) if change is not None else []
            restarted.append(entry)
        else:
            stopped.append(entry)
    restarted.sort(key=lambda e: started.index(e["path"]))  # started again in declared order
    again = {e["path"] for e in restarted}
    return {
        "kept": kept,
        "updated": updated,
        "restarted": restarted,
        "stopped": stopped,
        "started": [p for p in started if p not in again],
    }


def _processes_of(node: Any) -> list[str]:
    """The services a start of ``node`` starts, in order (a supervisor's, below it)."""
    if isinstance(node, ServiceNode):
        return [node.path]
    assert isinstance(node, SupNode)
    below = [c for c in node.children if getattr(c.spec, "autostart", True)]
    return [p for child in below for p in _processes_of(child)]
