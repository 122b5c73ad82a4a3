"""Invariants of a real run, checked from its event log (``otree run --events``).

The checks read the log as an observer would; they do not re-run the engine.
Each returns a list of violations (empty: fine), each naming the event index.

* one instance: per service, ``spawn``/``adopt``/``stop``/``exit`` tell one
  story (a ``spawn`` only when nothing runs, ``exit``/``stop``/``adopt`` only
  of the PID that runs), and nothing runs after ``tree_stopped``;
* exits are classified by the rule: after otree's own ``stop`` normal, else
  normal exactly when the code is in ``normal_exit_codes``;
* every exit is answered by the strategy's rule: a crash (or a permanent
  child's normal exit) is followed by a ``restart`` or ``give_up`` of its
  supervisor, or the child is started again (a group restart or a command
  that was under way took it), or the supervisor itself went down; a
  transient child's normal exit and a temporary child's exit are never
  answered by a restart;
* ``restart`` names the supervisor's strategy and a child that is not
  running; ``give_up`` reports intensity + 1 and the period;
* a re-exec keeps every PID: each service running at ``reexec`` is
  ``adopt``-ed with the same PID, or its exit (it died during the exec) is
  seen; except those whose spec the reload changed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

from otree.core.spec import Restart, Service, Supervisor, walk

Event = Mapping[str, Any]


class Command(NamedTuple):
    """A control command the test sent, and when its answer came (Unix time)."""

    name: str
    path: str
    answered: float


class Tree:
    """What the checks need to know of the tree spec."""

    def __init__(self, root: Supervisor) -> None:
        self.services: dict[str, Service] = {}
        self.supervisors: dict[str, Supervisor] = {"": root}
        for path, node in walk(root):
            if isinstance(node, Service):
                self.services[path] = node
            else:
                self.supervisors[path] = node


def parent(path: str) -> str:
    return path.rpartition(".")[0]


def ancestors(path: str) -> list[str]:
    """Strict ancestors of ``path``, nearest first, the root (``""``) last."""
    out = []
    while path:
        path = parent(path)
        out.append(path)
    return out


def live_services(events: Sequence[Event], upto: int | None = None) -> dict[str, int]:
    """Which service runs with which PID after ``events[:upto]`` (by the log's story)."""
    live: dict[str, int] = {}
    for e in events[:upto]:
        if e["event"] in ("spawn", "adopt"):
            live[e["path"]] = e["pid"]
        elif e["event"] == "exit" and live.get(e["path"]) == e["pid"]:
            del live[e["path"]]
    return live


def check_one_instance(events: Sequence[Event]) -> list[str]:
    bad: list[str] = []
    live: dict[str, int] = {}
    stopped_pids: set[int] = set()
    for i, e in enumerate(events):
        kind, path, pid = e["event"], e["path"], e.get("pid")
        running = live.get(path)
        if kind == "spawn":
            if running is not None:
                bad.append(f"#{i} spawn of {path} pid {pid} while pid {running} runs")
            if pid in live.values():
                bad.append(f"#{i} spawn of {path} with pid {pid} that another service runs")
            live[path] = pid
        elif kind == "adopt":
            if running != pid:
                bad.append(f"#{i} adopt of {path} pid {pid}, but the log says {running} runs")
            live[path] = pid
        elif kind == "stop":
            if running != pid:
                bad.append(f"#{i} stop of {path} pid {pid}, but the log says {running} runs")
            stopped_pids.add(pid)
        elif kind == "exit":
            if running != pid:
                bad.append(f"#{i} exit of {path} pid {pid}, but the log says {running} runs")
            else:
                del live[path]
        elif kind == "tree_stopped" and live:
            bad.append(f"#{i} tree_stopped while the log says these run: {live}")
    return bad


def check_exit_classification(events: Sequence[Event], tree: Tree) -> list[str]:
    bad: list[str] = []
    asked: set[int] = set()  # PIDs being stopped (PIDs are reused: forget them at the exit)
    for i, e in enumerate(events):
        if e["event"] == "stop":
            asked.add(e["pid"])
        if e["event"] != "exit":
            continue
        if e["pid"] in asked:
            asked.discard(e["pid"])
            want = True  # stopped by otree itself
        elif "code" in e:
            want = e["code"] in tree.services[e["path"]].normal_exit_codes
        else:
            want = False  # a signal otree did not send
        if e["normal"] is not want:
            bad.append(f"#{i} exit {dict(e)} should have normal={want}")
    return bad


def _answered(
    events: Sequence[Event], i: int, commands: Iterable[Command]
) -> tuple[bool, str | None]:
    """Is the exit ``events[i]`` answered? Returns (answered, by a restart event at all)."""
    e = events[i]
    path, sup = e["path"], parent(e["path"])
    higher = set(ancestors(sup)) if sup else set()
    for later in events[i + 1 :]:
        kind, where = later["event"], later["path"]
        if kind == "restart" and where == sup and later["child"] == path:
            return True, "restart"
        if kind == "give_up" and where == sup:
            return True, "give_up"
        if kind in ("spawn", "start_failed") and where == path:
            return True, None  # started again (a group restart or a command took it)
        if kind in ("restart", "give_up") and where in higher:
            return True, None  # the supervisor itself is going down
        if kind == "tree_stopped":
            return True, None
    for c in commands:  # a stop or restart of it or of a supervisor above, under way or later
        if c.answered >= e["ts"] and c.name in ("stop", "restart"):
            if c.path == path or c.path == sup or c.path in higher:
                return True, None
    return False, None


def check_exits_answered(
    events: Sequence[Event], tree: Tree, commands: Sequence[Command] = ()
) -> list[str]:
    bad: list[str] = []
    asked: set[int] = set()  # PIDs being stopped
    for i, e in enumerate(events):
        if e["event"] == "stop":
            asked.add(e["pid"])
        if e["event"] != "exit":
            continue
        if e["pid"] in asked:
            asked.discard(e["pid"])
            continue
        restart = tree.services[e["path"]].restart
        must = restart is Restart.PERMANENT or (restart is Restart.TRANSIENT and not e["normal"])
        if must:
            ok, _ = _answered(events, i, commands)
            if not ok:
                bad.append(f"#{i} {dict(e)} was never answered by its supervisor")
        else:
            for later in events[i + 1 :]:
                if later["event"] in ("spawn", "start_failed") and later["path"] == e["path"]:
                    break
                if later["event"] == "restart" and later["child"] == e["path"]:
                    bad.append(
                        f"#{i} {dict(e)}: a {restart.value} child's exit answered by a restart"
                    )
                    break
    return bad


def check_decisions(events: Sequence[Event], tree: Tree) -> list[str]:
    bad: list[str] = []
    live: dict[str, int] = {}
    for i, e in enumerate(events):
        kind, path = e["event"], e["path"]
        if kind in ("spawn", "adopt"):
            live[path] = e["pid"]
        elif kind == "exit" and live.get(path) == e["pid"]:
            del live[path]
        elif kind == "restart":
            sup = tree.supervisors[path]
            child = e["child"]
            if e["strategy"] != sup.strategy.value:
                bad.append(f"#{i} {dict(e)}: {path!r} is {sup.strategy.value}")
            if parent(child) != path:
                bad.append(f"#{i} {dict(e)}: {child!r} is not a child of {path!r}")
            if child in tree.services and tree.services[child].restart is Restart.TEMPORARY:
                bad.append(f"#{i} {dict(e)}: a temporary child is never restarted")
            if child in live:
                bad.append(f"#{i} {dict(e)}: {child!r} still runs (pid {live[child]})")
        elif kind == "give_up":
            sup = tree.supervisors[path]
            if e["restarts"] != sup.intensity + 1 or e["period"] != sup.period:
                bad.append(f"#{i} {dict(e)}: intensity {sup.intensity} period {sup.period}")
    return bad


def check_reexecs(events: Sequence[Event], changed: Mapping[int, set[str]]) -> list[str]:
    """``changed[n]``: services whose spec the ``n``-th reload (from 1) changed."""
    bad: list[str] = []
    n = 0
    for i, e in enumerate(events):
        if e["event"] != "reexec":
            continue
        n += 1
        before = live_services(events, i)
        seen: dict[str, str] = {}
        for later in events[i + 1 :]:
            if later["event"] == "tree_ready":
                break
            path = later["path"]
            if path in before and path not in seen:
                if later["event"] in ("adopt", "exit") and later.get("pid") == before[path]:
                    seen[path] = later["event"]
                elif later["event"] in ("adopt", "spawn", "stop"):
                    seen[path] = f"{later['event']} pid {later.get('pid')}"
        for path, pid in sorted(before.items()):
            got = seen.get(path)
            if path in changed.get(n, set()):
                if got == "adopt":
                    bad.append(f"reexec #{n} (event #{i}): changed {path} kept pid {pid}")
            elif got not in ("adopt", "exit"):
                bad.append(f"reexec #{n} (event #{i}): {path} pid {pid} not adopted ({got})")
    return bad


def check_all(
    events: Sequence[Event],
    tree: Tree,
    commands: Sequence[Command] = (),
    changed: Mapping[int, set[str]] | None = None,
) -> list[str]:
    return [
        *check_one_instance(events),
        *check_exit_classification(events, tree),
        *check_exits_answered(events, tree, commands),
        *check_decisions(events, tree),
        *check_reexecs(events, changed or {}),
    ]
