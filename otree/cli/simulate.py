"""``otree simulate TREE [--crash|--kill|--exit0|--unhealthy PATH@T ...] [--until T]``.

A what-if run: the tree on the real engine in ``otree.testing``'s simulator
(fake processes, a fake clock), printed as ``otree run``'s console would
print it, each line after its simulated time; the exit code is the simulated
tree's (0 when it shut down or still runs at the end, 1 when the root gave up,
3 when its first start failed). ``--json`` prints the trace as event-log lines
instead. Nothing here forks or touches a process.
"""

from __future__ import annotations

import argparse
import difflib
import json
import math
from typing import TYPE_CHECKING, Any

from otree.errors import ConfigError, ExitCode, stderr_line

if TYPE_CHECKING:
    from otree.core.spec import Service, Supervisor
    from otree.testing import Simulation, Trace

Fault = tuple[float, str, str, str]  # (t, path, how, the argument as given)

#: option -> the simulator's ``how``
FAULTS = {"crash": "crash", "kill": "kill", "exit0": "exit0", "unhealthy": "unhealthy"}
HELP = {
    "crash": "the service's process exits with code 1 at T seconds",
    "kill": "the service's process is killed (SIGKILL, not by otree) at T",
    "exit0": "the service's process exits with code 0 at T",
    "unhealthy": "the service fails its health check at T (otree stops it: a crash)",
}
#: how far past the last fault a run goes without ``--until``
MARGIN = 120.0


def _tagged(how: str) -> Any:
    def tag(value: str) -> tuple[str, str]:
        return how, value

    tag.__name__ = how
    return tag


class BadArgument(Exception):
    """An argument the tree cannot take: its message names the argument."""


def add_command(sub: Any) -> None:
    """The ``simulate`` subcommand on ``sub`` (the parser's subparsers)."""
    sim = sub.add_parser(
        "simulate",
        description="Run TREE on otree's engine with fake processes and a fake clock, doing"
        " the faults given to its services at their simulated times (seconds from the"
        " start), and print what otree run would print: what restarts, what escalates, when"
        " the root gives up. Nothing is started. Exit code: the simulated tree's (0 it shut"
        " down or still runs at --until, 1 the root gave up, 3 its first start failed), or"
        " 2 for a bad tree or argument.",
    )
    sim.add_argument("tree", metavar="TREE", help="tree.toml, file.py:attr or module:attr")
    for option, how in FAULTS.items():
        sim.add_argument(
            f"--{option}",
            metavar="PATH@T",
            action="append",
            default=[],
            dest="faults",
            type=_tagged(how),
            help=HELP[how] + "; repeatable",
        )
    sim.add_argument(
        "--until",
        metavar="T",
        help=f"simulated seconds to run for (default: the last fault + {MARGIN:g})",
    )
    sim.add_argument("--seed", type=int, default=0, help="the seed of the backoff jitter")
    sim.add_argument("--json", action="store_true", help="print the trace as event-log lines")
    sim.set_defaults(func=cmd_simulate)


def cmd_simulate(args: argparse.Namespace) -> int:
    from otree.config.loader import load_tree

    try:
        tree = load_tree(args.tree)
    except ConfigError as exc:
        for line in exc.lines():
            stderr_line(line)
        return ExitCode.USAGE
    try:
        schedule = _schedule(tree, args.faults)
        until = _until(args.until, schedule)
    except BadArgument as exc:
        stderr_line(str(exc))
        return ExitCode.USAGE
    trace, execs = run_simulation(tree, schedule, until, args.seed)
    code = ExitCode.OK if trace.exit_code is None else int(trace.exit_code)
    if args.json:
        for event in trace.events:
            print(json.dumps(event))
        return code
    for line in console_lines(tree, trace.events, execs):
        print(line)
    if trace.exit_code is None:
        running = ", ".join(f"{p} (pid {pid})" for p, pid in trace.running().items())
        print(f"{until:9.3f}  simulation ends: the tree still runs: {running or 'nothing'}")
    elif trace.exit_message:
        print(f"{trace.events[-1]['ts']:9.3f}  {trace.exit_message}")
    print(f"exit code {code}")
    return code


# --- the arguments -------------------------------------------------------------


def _schedule(tree: Supervisor, faults: list[tuple[str, str]]) -> list[Fault]:
    """``(t, path, how, argument)`` for every fault given, in command-line order."""
    processes = dict(_processes(tree))
    items: list[Fault] = []
    for how, value in faults:
        arg = f"--{how} {value}"
        path, at, t_text = value.rpartition("@")
        if not at or not path:
            raise BadArgument(f"{arg}: expected PATH@T (a service path, '@', seconds)")
        t = _seconds(t_text, arg)
        if path not in processes:
            raise BadArgument(f"{arg}: {_unknown(path, processes)}")
        items.append((t, path, how, arg))
    return items


def _until(text: str | None, schedule: list[Fault]) -> float:
    if text is None:
        return max((t for t, *_ in schedule), default=0.0) + MARGIN
    until = _seconds(text, f"--until {text}")
    for t, _, _, arg in schedule:
        if t > until:
            raise BadArgument(f"{arg}: {t:g} s is after --until {until:g}: it would never happen")
    return until


def _seconds(text: str, arg: str) -> float:
    value = text[:-1] if text.endswith("s") else text
    try:
        t = float(value)
    except ValueError:
        t = math.nan
    if not math.isfinite(t) or t < 0:
        raise BadArgument(f"{arg}: {text!r} is not a time: expected seconds >= 0 (2, 0.5, 10s)")
    return t


def _unknown(path: str, processes: dict[str, str]) -> str:
    if path in _pools(processes):
        first = min(p for p, pool in processes.items() if pool == path)
        return f"'{path}' is a pool: name one of its instances ({first} ...)"
    below = [p for p in processes if p.startswith(path + ".")]
    if below:
        more = " ..." if len(below) > 3 else ""
        return f"'{path}' is a supervisor: name one of its services ({', '.join(below[:3])}{more})"
    close = difflib.get_close_matches(path, list(processes), n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return f"'{path}' is not a service of the tree{hint}"


def _pools(processes: dict[str, str]) -> set[str]:
    return {pool for pool in processes.values() if pool}


def _processes(tree: Supervisor) -> list[tuple[str, str]]:
    """``(path, pool)`` of every process the tree runs (a pool's instances; pool ``""``
    for a plain service), in start order."""
    out: list[tuple[str, str]] = []

    def visit(node: Service | Supervisor, path: str) -> None:
        children = getattr(node, "children", None)
        if children is not None:
            for child in children:
                visit(child, f"{path}.{child.name}" if path else child.name)
            return
        replicas = getattr(node, "replicas", None)
        if replicas is None:
            out.append((path, ""))
        else:
            out.extend((f"{path}.{i}", path) for i in range(replicas))

    visit(tree, "")
    return out


# --- the timeline ----------------------------------------------------------------


class _ExecSpy:
    """The simulation's engine, seen from outside: each ``Spawned`` it is given is a
    process exec'd then (``execs``: the trace's length at that moment, the time, the
    path, the PID), which the console shows before its readiness check has passed."""

    def __init__(self, engine: Any, sim: Simulation) -> None:
        self.engine = engine
        self.sim = sim
        self.execs: list[tuple[int, float, str, int]] = []

    def __getattr__(self, name: str) -> Any:  # done, exit_code, ...
        return getattr(self.engine, name)

    def start(self, now: float) -> Any:
        return self.engine.start(now)

    def handle(self, event: Any, now: float) -> Any:
        if type(event).__name__ == "Spawned":
            self.execs.append((len(self.sim.trace.events), now, event.path, event.pid))
        return self.engine.handle(event, now)


def run_simulation(
    tree: Supervisor, schedule: list[Fault], until: float, seed: int
) -> tuple[Trace, list[tuple[int, float, str, int]]]:
    """``otree.testing.simulate``'s run of ``schedule``, with the exec of each process."""
    from otree.testing import Simulation

    sim = Simulation(tree, seed=seed, start=False)
    spy = _ExecSpy(sim.engine, sim)
    sim.engine = spy
    sim.start()
    for t, path, how, _ in sorted(schedule, key=lambda item: item[0]):  # stable
        if sim.done:
            break
        sim.at(t)
        sim.inject(path, how)
    sim.run(until=until)
    return sim.trace, spy.execs


def console_lines(
    tree: Supervisor, events: list[dict[str, Any]], execs: list[tuple[int, float, str, int]]
) -> list[str]:
    """The lines ``otree run`` prints for ``events``, each after its simulated time.

    As on the real console, a service with a readiness check shows ``exec pid N,
    waiting until ready`` when it is exec'd (``execs``) and ``ready pid N`` when the
    check passed; one without shows ``spawn pid N`` only.
    """
    from otree.runtime.output import describe_event  # the console's own words

    probed = _with_ready(tree)
    lines: list[str] = []
    pending = [e for e in execs if e[2] in probed]
    for i, event in enumerate([*events, None]):
        while pending and pending[0][0] <= i:
            _, t, path, pid = pending.pop(0)
            lines.append(f"{t:9.3f}  otree: {path}: exec pid {pid}, waiting until ready")
        if event is None:
            break
        fields = {k: v for k, v in event.items() if k not in ("ts", "event", "path")}
        name, path = event["event"], event["path"]
        if name == "spawn" and path in probed:
            continue  # its exec line came already; 'ready' follows
        if name == "ready" and path not in probed:
            continue  # without a readiness check, 'spawn' said it all
        lines.append(f"{float(event['ts']):9.3f}  otree: " + describe_event(name, path, fields))
    return lines


def _with_ready(tree: Supervisor) -> set[str]:
    """The processes with a readiness check (a pool's instances by their paths)."""
    out: set[str] = set()

    def visit(node: Any, path: str) -> None:
        children = getattr(node, "children", None)
        if children is not None:
            for child in children:
                visit(child, f"{path}.{child.name}" if path else child.name)
        elif node.ready is not None:
            out.update(
                [path] if node.replicas is None else (f"{path}.{i}" for i in range(node.replicas))
            )

    visit(tree, "")
    return out
