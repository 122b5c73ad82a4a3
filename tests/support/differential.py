"""Simulated = real: one random tree and fault schedule, run by ``otree.testing`` and by
``otree run`` with real processes, and the two event logs compared (issue 10).

``example(seed)`` draws a small tree (depth <= 3, every strategy and restart type,
``auto_shutdown`` with significant children, a readiness delay or a backoff here and
there) as a TOML document, and a schedule: one item a second (so the tree is quiet
between them: real time has no instants), each a crash, a clean exit, a SIGKILL or a
hang on stop (it ignores TERM: SIGKILL after its 1 s shutdown) of a service, or
``otree start|stop|restart`` of a node. ``simulate_example`` runs it on
the simulator, ``run_example`` under ``otree run``: a driver sends the real signals
(the services run ``prog.py obey``: SIGUSR1 exits 1, SIGUSR2 exits 0, SIGWINCH makes
it ignore TERM) and control
commands at the scheduled times, then ``otree shutdown``. ``differences`` compares
the logs event for event (names, paths, strategies, normal or not, give-ups, exit
code) and their times within a tolerance.
"""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path
from typing import Any

import attrs

from otree.config import loads
from otree.core.spec import Service, Supervisor, walk
from otree.testing import Simulation
from support.cli import otree_cli
from support.otreeproc import OtreeProc
from support.treefiles import prog, to_toml

#: the events compared, and the fields of each that must agree
FIELDS: dict[str, tuple[str, ...]] = {
    "spawn": (),
    "ready": (),
    "stop": (),
    "exit": ("normal",),
    "start_failed": (),
    "restart": ("strategy", "child", "count", "intensity", "period"),
    "give_up": ("restarts", "period"),
    "auto_shutdown": ("child",),
    "tree_ready": (),
    "tree_stopped": ("exit_code",),
}
#: how far a real event may be from its simulated time (seconds)
TOLERANCE = 0.6
#: seconds between schedule items; the first comes at 1.0
GAP = 1.0
SIGNALS = {
    "crash": signal.SIGUSR1,
    "exit0": signal.SIGUSR2,
    "kill": signal.SIGKILL,
    "hang_on_stop": signal.SIGWINCH,  # ``prog.py obey`` ignores TERM from then on
}
#: every service's shutdown time: a hang on stop lasts this long, then SIGKILL
SHUTDOWN = 1


@attrs.frozen
class Example:
    seed: int
    toml: str
    tree: Supervisor
    schedule: list[tuple[float, str, str]]  # (at, path, crash|exit0|kill|start|stop|restart)


def _node(rng: random.Random, depth: int, significant_ok: bool, root: bool) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "strategy": rng.choice(["one_for_one", "one_for_all", "rest_for_one"]),
        "intensity": rng.randint(0, 3) if not root else rng.randint(1, 4),
        "period": 30,
    }
    auto = rng.choice(["never", "never", "any_significant", "all_significant"])
    doc["auto_shutdown"] = auto
    if not root:
        doc["restart"] = rng.choice(["permanent", "transient", "temporary"])
        if significant_ok and doc["restart"] != "permanent" and rng.random() < 0.5:
            doc["significant"] = True
    names = rng.sample(["a", "b", "c", "d"], rng.randint(2, 3))
    for name in names:
        if depth > 1 and rng.random() < 0.3:
            doc[name] = _node(rng, depth - 1, auto != "never", root=False)
            continue
        svc: dict[str, Any] = {
            "cmd": "",
            "restart": rng.choice(["permanent", "transient", "temporary"]),
            "shutdown": SHUTDOWN,
        }
        if auto != "never" and svc["restart"] != "permanent" and rng.random() < 0.6:
            svc["significant"] = True
        if rng.random() < 0.2:
            svc["ready"] = {"delay": 0.3}
        if rng.random() < 0.2:
            svc["backoff"] = {"initial": 0.3, "max": 0.3, "jitter": 0}
        doc[name] = svc
    return doc


def _fill_cmd(doc: dict[str, Any], cmd: str) -> None:
    for value in doc.values():
        if isinstance(value, dict):
            if "cmd" in value:
                value["cmd"] = cmd
            else:
                _fill_cmd(value, cmd)


def _hold_some(doc: dict[str, Any], rng: random.Random) -> None:
    """``autostart = false`` on about one service in six (issue 13): stopped until a
    scheduled ``start`` or ``restart`` of it, left alone by group restarts until then."""
    for value in doc.values():
        if isinstance(value, dict) and "cmd" in value:
            if rng.random() < 1 / 6:
                value["autostart"] = False
        elif isinstance(value, dict):
            _hold_some(value, rng)


def example(seed: int, items: int = 5) -> Example:
    rng = random.Random(seed)
    doc = _node(rng, 3, False, root=True)
    _hold_some(doc, random.Random(f"autostart {seed}"))  # its own draws: the trees stay
    text = to_toml(doc)
    cmd_line = f"cmd = {prog('obey')}"
    text = "\n".join(cmd_line if line == 'cmd = ""' else line for line in text.splitlines())
    tree = loads(text, f"<differential seed {seed}>")
    services = [p for p, n in walk(tree) if isinstance(n, Service)]
    nodes = [p for p, _ in walk(tree)]
    schedule = []
    for i in range(items):
        at = GAP * (i + 1)
        if rng.random() < 0.7:
            how = rng.choice(["crash", "exit0", "kill", "hang_on_stop"])
            schedule.append((at, rng.choice(services), how))
        else:
            schedule.append((at, rng.choice(nodes), rng.choice(["start", "stop", "restart"])))
    return Example(seed, text, tree, schedule)


@attrs.frozen
class Simulated:
    events: list[dict[str, Any]]
    #: the schedule items that had an effect, at their simulated times (the real run
    #: does those only: a crash of a service that does not run is nothing)
    done: list[tuple[float, str, str]]
    shutdown_at: float | None  # when ``otree shutdown`` was sent (None: the tree ended)


def simulate_example(ex: Example) -> Simulated:
    """The example on the simulator; the schedule's times count from ``tree_ready``."""
    sim = Simulation(ex.tree, seed=ex.seed)
    while not sim.done and not sim.trace.count("tree_ready"):  # readiness delays play out
        due = sim.next_timer()
        if due is None:
            break
        sim.at(due)
    ready = sim.trace.filter("tree_ready")[0]["ts"] if sim.trace.count("tree_ready") else 0.0
    done = []
    for at, path, how in ex.schedule:
        at += ready
        sim.at(at)
        if sim.done:
            break
        if how == "hang_on_stop" and path not in sim.running():
            continue  # it would mark the next process: the real driver has none to signal
        if how in SIGNALS:
            if sim.inject(path, how):
                done.append((at, path, how))
        else:
            sim.command(how, path)
            done.append((at, path, how))
    shutdown_at = None
    if not sim.done:
        sim.advance(GAP)
        shutdown_at = sim.now
        sim.command("shutdown")
        sim.run(until=sim.now + 60)
    return Simulated(sim.trace.events, done, shutdown_at)


def _current_pid(proc: OtreeProc, path: str) -> int | None:
    pid = None
    for e in proc.events():
        if e["path"] == path and e["event"] == "spawn":
            pid = int(e["pid"])
        elif e["path"] == path and e["event"] == "exit" and e.get("pid") == pid:
            pid = None
    return pid


def run_example(proc: OtreeProc, sock: str, sim: Simulated) -> list[dict[str, Any]]:
    """Carry out ``sim.done`` on the running ``proc`` at its times, shut it down when the
    simulation did; the real events, their ``ts`` on the simulation's clock."""
    proc.wait_for("tree_ready")
    # the simulation's 0, from the first event (a spawn: readiness delays may come first)
    t0 = proc.events()[0]["ts"] - sim.events[0]["ts"]
    for at, path, how in sim.done:
        time.sleep(max(0.0, t0 + at - time.time()))
        if proc.proc.poll() is not None:
            break
        if how in SIGNALS:
            pid = _current_pid(proc, path)
            if pid is not None:
                os.kill(pid, SIGNALS[how])
        else:
            otree_cli(how, path, "--socket", sock)
    if proc.proc.poll() is None and sim.shutdown_at is not None:
        time.sleep(max(0.0, t0 + sim.shutdown_at - time.time()))
        otree_cli("shutdown", "--socket", sock)
    proc.wait_exit()
    events = proc.events()
    return [{**e, "ts": e["ts"] - t0} for e in events]


def _key(e: dict[str, Any]) -> tuple[Any, ...]:
    return (e["event"], e["path"], *(e.get(f) for f in FIELDS[e["event"]]))


def differences(sim: list[dict[str, Any]], real: list[dict[str, Any]]) -> list[str]:
    """What differs between the two logs (empty: they agree)."""
    a = [e for e in sim if e["event"] in FIELDS]
    b = [e for e in real if e["event"] in FIELDS]
    out = []
    for i in range(max(len(a), len(b))):
        x = a[i] if i < len(a) else None
        y = b[i] if i < len(b) else None
        if x is None or y is None or _key(x) != _key(y):
            out.append(f"event {i}: simulated {x and _key(x)}, real {y and _key(y)}")
            break
        if abs(x["ts"] - y["ts"]) > TOLERANCE:
            out.append(f"event {i} {_key(x)}: simulated at {x['ts']:.3f}, real at {y['ts']:.3f}")
    return out


def describe(ex: Example, sim: list[dict[str, Any]], real: list[dict[str, Any]]) -> str:
    def table(events: list[dict[str, Any]]) -> str:
        return "\n".join(
            f"  {e['ts']:8.3f} {e['event']:<13} {e['path'] or '<root>':<10} "
            + " ".join(f"{f}={e.get(f)!r}" for f in FIELDS.get(e["event"], ()))
            for e in events
            if e["event"] in FIELDS
        )

    return (
        f"seed {ex.seed} (rerun: example({ex.seed}))\ntree:\n{ex.toml}\n"
        f"schedule: {ex.schedule}\nsimulated:\n{table(sim)}\nreal:\n{table(real)}"
    )


def write(directory: Path, ex: Example) -> str:
    path = directory / "tree.toml"
    path.write_text(ex.toml)
    return str(path)
