"""The four benchmarks. Each runs one peer in a fresh work directory, measures
with the children's own CLOCK_MONOTONIC start stamps (the same method for every
peer), stops the peer with SIGTERM, records anything it left running, and
kills every process the run started. Every wait is bounded in time.
"""

from __future__ import annotations

import math
import os
import signal
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks import procs
from benchmarks.child import line
from benchmarks.peers import Peer, Program, Running
from benchmarks.stamps import Stamps, now


@dataclass(frozen=True)
class Env:
    root: Path
    python_child: list[str]  # argv prefix of the Python child
    light_child: list[str]  # argv prefix of the cheapest child there is (C, else Python)
    light_kind: str
    quick: bool


def pct(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)


class Session:
    def __init__(self, env: Env, peer: Peer, case: str) -> None:
        self.peer = peer
        self.work = env.root / f"{case}-{peer.key}"
        self.work.mkdir(parents=True)
        self.stamps = Stamps(str(self.work / "st.sock"))
        self.running: Running | None = None
        self.result: dict[str, Any] = {}

    def launch(self, program: Program) -> Running:
        self.running = self.peer.launch(self.work, program)
        return self.running

    def finish(self, stop_timeout: float = 30.0, cleanup: bool = True) -> None:
        """Stop the supervisor (SIGTERM) if it still runs; count the children it left
        alive; with ``cleanup``, SIGKILL every process the harness has (descendants)."""
        r = self.running
        if r is not None and r.exit_code is None:
            seconds, code = r.stop(stop_timeout)
            self.result.setdefault("final_stop_s", seconds)
            self.result.setdefault("final_exit_code", code)
            if code is None:
                r.kill()
        left = {st.pid for st in self.stamps.all if procs.alive(st.pid)}
        if cleanup:
            left |= set(procs.cleanup())
        self.result["leftovers"] = len(left)
        self.stamps.close()


@contextmanager
def session(env: Env, peer: Peer, case: str) -> Iterator[Session]:
    s = Session(env, peer, case)
    try:
        yield s
    finally:
        s.finish()


def _supervisor_gone(s: Session) -> bool:
    assert s.running is not None
    return s.running.poll_exit()


# --- restart latency ----------------------------------------------------------------


def restart_latency(
    env: Env, peers: list[Peer], runs: int, settle: float = 0.1
) -> dict[str, dict[str, Any]]:
    """SIGKILL the child; time until its replacement has recorded its start.

    All peers run at once, each with its one child, and take turns: one kill each
    per round, so that a change in the machine's load during the run hits every
    peer alike (the ratios are what matter).
    """
    out: dict[str, dict[str, Any]] = {}
    sessions: dict[str, Session] = {}
    try:
        for peer in peers:
            s = sessions[peer.key] = Session(env, peer, "restart")
            out[peer.key] = s.result
            s.launch(Program("r", 1, [*env.python_child, s.stamps.path, "{name}", "sleep"]))
        for s in sessions.values():
            if not s.stamps.wait(lambda s=s: "r0" in s.stamps.latest, 30):
                s.result["error"] = "the child never started"
        latencies: dict[str, list[float]] = {k: [] for k in sessions}
        last_kill = dict.fromkeys(sessions, -math.inf)
        for _ in range(runs):
            for key, s in sessions.items():
                if "error" in s.result:
                    continue
                gap = s.peer.restart_gap()
                time.sleep(max(settle, last_kill[key] + gap - now()))
                old = s.stamps.latest["r0"]
                assert s.running is not None
                s.peer.before_kill(s.running, "r0", old.pid, now() + 10)
                t = last_kill[key] = now()
                os.kill(old.pid, signal.SIGKILL)
                if not s.stamps.wait(lambda s=s, o=old: s.stamps.latest["r0"].pid != o.pid, 10):
                    s.result["error"] = "no replacement within 10 s" + (
                        " (the supervisor exited)" if _supervisor_gone(s) else ""
                    )
                    continue
                latencies[key].append(s.stamps.latest["r0"].t - t)
        for key, s in sessions.items():
            lat = latencies[key]
            s.result["runs"] = len(lat)
            if lat:
                s.result["p50_ms"] = ms(statistics.median(lat))
                s.result["p95_ms"] = ms(pct(lat, 95))
                s.result["max_ms"] = ms(max(lat))
                s.result["samples_ms"] = [ms(x) for x in lat]
            s.result["kill_gap_s"] = round(max(settle, s.peer.restart_gap()), 3)
    finally:
        for s in sessions.values():
            s.finish(cleanup=False)
        procs.cleanup()
    return out


# --- crash loop -------------------------------------------------------------------


def crash_loop(
    env: Env, peer: Peer, window: float, horizon: float, light: bool = False
) -> dict[str, Any]:
    """A child that exits 1 at once: restarts within ``window`` seconds of launch,
    the supervisor's CPU meanwhile, and whether (and when) it gives up within
    ``horizon`` seconds. ``light``: the C stamp child (the supervisor's own cost
    per restart shows), else the Python child."""
    child = env.light_child if light else env.python_child
    with session(env, peer, "crash-light" if light else "crash") as s:
        res = s.result
        r = s.launch(Program("x", 1, [*child, s.stamps.path, "{name}", "crash"]))
        end = r.t_launch + window
        cpu_at_first = None
        while now() < end and not r.poll_exit():
            s.stamps.drain(min(0.05, max(0.0, end - now())))
            if cpu_at_first is None and s.stamps.all:
                cpu_at_first = r.cpu_ns()
        cpu = r.cpu_ns()
        starts = [st for st in s.stamps.starts() if st.t <= end]
        res["window_s"] = window
        res["restarts"] = max(0, len(starts) - 1)
        res["cpu_ms"] = None if cpu is None else round(cpu / 1e6, 1)
        if cpu is not None and cpu_at_first is not None:
            res["cpu_after_first_start_ms"] = round((cpu - cpu_at_first) / 1e6, 1)
        first = starts[0].t if starts else None
        res["first_start_ms"] = ms(first - r.t_launch) if first is not None else None
        # keep watching (not counting) until it gives up or the horizon passes
        stop_at = r.t_launch + horizon
        gave_up = peer.gave_up_at(r)
        while gave_up is None and now() < stop_at:
            r.poll_exit(0.1)
            s.stamps.drain(0)
            gave_up = peer.gave_up_at(r)
        res["horizon_s"] = horizon
        res["starts_in_horizon"] = len(s.stamps.starts())
        res["gave_up"] = gave_up is not None
        if gave_up is not None and first is not None:
            res["gave_up_after_ms"] = ms(gave_up - first)
            res["starts_before_give_up"] = len([st for st in s.stamps.starts() if st.t <= gave_up])
        res["supervisor_exit_code"] = r.exit_code
        return res


# --- scale ------------------------------------------------------------------------


def _scale_once(
    env: Env, peer: Peer, count: int, idle: float | None, settle: float, rep: int
) -> dict[str, Any]:
    """One launch of ``count`` sleeping children; the idle measurement when ``idle``."""
    with session(env, peer, f"scale{count}-{rep}") as s:
        res = s.result
        mode = "sleep" if env.light_kind == "c" else "sleep-exec"
        prog = Program("c", count, [*env.light_child, s.stamps.path, "{name}", mode])
        r = s.launch(prog)
        cpu_first = None
        if s.stamps.wait(lambda: bool(s.stamps.latest) or r.poll_exit(), 30):
            cpu_first = r.cpu_ns()  # the supervisor's own start-up is behind it
        ok = s.stamps.wait(lambda: len(s.stamps.latest) >= count or r.poll_exit(), 30 + count * 0.1)
        if not ok or len(s.stamps.latest) < count:
            res["error"] = f"{len(s.stamps.latest)} of {count} children started" + (
                f"; the supervisor exited {r.exit_code}" if r.exit_code is not None else ""
            )
            return res
        stamps = s.stamps.latest.values()
        res["all_running_ms"] = ms(max(st.t for st in stamps) - r.t_launch)
        res["first_child_ms"] = ms(min(st.t for st in stamps) - r.t_launch)
        cpu_all = r.cpu_ns() or 0
        res["start_cpu_ms"] = round(cpu_all / 1e6, 1)
        if cpu_first is not None:
            res["spawn_cpu_ms"] = round((cpu_all - cpu_first) / 1e6, 1)
        res["rss_mib"] = round((r.rss_kib() or 0) / 1024, 1)
        if idle is not None:
            time.sleep(settle)  # let start-up work finish
            c0, w0 = r.cpu_ns(), r.wakeups()
            time.sleep(idle)
            c1, w1 = r.cpu_ns(), r.wakeups()
            if c0 is not None and c1 is not None and w0 is not None and w1 is not None:
                res["idle_s"] = idle
                res["idle_cpu_ms"] = round((c1 - c0) / 1e6, 3)
                res["idle_wakeups"] = w1 - w0
            res["rss_after_idle_mib"] = round((r.rss_kib() or 0) / 1024, 1)
        res["unexpected_restarts"] = len(s.stamps.starts()) - count
        pids = [st.pid for st in s.stamps.latest.values()]
        cpu_before_stop = r.cpu_ns()
        seconds, code = r.stop(60 + count * 0.1)
        res["stop_ms"] = ms(seconds)
        if cpu_before_stop is not None and r.final_cpu_ns is not None:
            res["stop_cpu_ms"] = round((r.final_cpu_ns - cpu_before_stop) / 1e6, 1)
        res["stop_exit_code"] = code
        res["children_left_after_stop"] = sum(1 for p in pids if procs.alive(p))
        return res


#: figures of one launch that are summarised by their median over the repetitions
_MEDIAN = (
    "first_child_ms",
    "all_running_ms",
    "start_cpu_ms",
    "spawn_cpu_ms",
    "stop_ms",
    "stop_cpu_ms",
)


def scale(
    env: Env,
    peers: list[Peer],
    count: int,
    idle: float,
    settle: float,
    reps: int,
    slow_after: float = 15.0,
) -> dict[str, dict[str, Any]]:
    """``count`` sleeping children: time until all run, RSS, idle CPU, time to stop.

    Each peer is launched ``reps`` times, peers taking turns (a peer whose launch
    took over ``slow_after`` seconds is launched once); times are the median over
    the launches, the idle figures come from the first one.
    """
    reps_of: dict[str, list[dict[str, Any]]] = {p.key: [] for p in peers}
    skip: set[str] = set()
    for rep in range(reps):
        for peer in peers:
            if peer.key in skip:
                continue
            t0 = now()
            one = _scale_once(env, peer, count, idle if rep == 0 else None, settle, rep)
            reps_of[peer.key].append(one)
            took = now() - t0 - (idle + settle if rep == 0 else 0.0)
            if "error" in one or took > slow_after:
                skip.add(peer.key)
    out: dict[str, dict[str, Any]] = {}
    for key, runs in reps_of.items():
        first = runs[0]
        res: dict[str, Any] = {"children": count, "launches": len(runs)}
        good = [r for r in runs if "error" not in r]
        for name in _MEDIAN:
            values = [r[name] for r in good if r.get(name) is not None]
            if values:
                res[name] = round(statistics.median(values), 2)
                res[name.replace("_ms", "_best_ms")] = min(values)
                res[name.replace("_ms", "_all_ms")] = values
        rss = [r[k] for r in good for k in ("rss_mib", "rss_after_idle_mib") if k in r]
        if rss:
            res["rss_mib"] = max(r["rss_mib"] for r in good)
            res["rss_after_idle_mib"] = first.get("rss_after_idle_mib")
        for name in ("idle_s", "idle_cpu_ms", "idle_wakeups"):
            if name in first:
                res[name] = first[name]
        res["children_left_after_stop"] = sum(r.get("children_left_after_stop", 0) for r in runs)
        res["unexpected_restarts"] = sum(r.get("unexpected_restarts", 0) for r in runs)
        res["leftovers"] = sum(r.get("leftovers", 0) for r in runs)
        errors = [r["error"] for r in runs if "error" in r]
        if errors:
            res["error"] = "; ".join(errors)
        out[key] = res
    return out


# --- output -----------------------------------------------------------------------


def output(env: Env, peer: Peer, lines: int) -> dict[str, Any]:
    """A child writes ``lines`` lines at full speed: time until all are in the log file."""
    with session(env, peer, "output") as s:
        res = s.result
        res["lines"] = lines
        log = s.work / "out.log"
        expected = b"".join(line(i) for i in range(lines))
        prog = Program(
            "o", 1, [*env.python_child, s.stamps.path, "{name}", "print", str(lines)], str(log)
        )
        r = s.launch(prog)
        if not s.stamps.wait(lambda: "o0" in s.stamps.latest, 30):
            res["error"] = "the child never started"
            return res
        if not s.stamps.wait(lambda: ("W", "o0") in s.stamps.other, 30):
            res["error"] = "the child never wrote"
            return res
        t0 = s.stamps.other["W", "o0"].t
        deadline = now() + 60
        size = 0
        while now() < deadline:
            try:
                size = log.stat().st_size
            except OSError:
                size = 0
            if size >= len(expected) or r.poll_exit():
                break
            time.sleep(0.001)
        t_end = now()
        s.stamps.drain(0.5)  # the writer's "done" stamp
        done = s.stamps.other.get(("D", "o0"))
        data = log.read_bytes() if log.exists() else b""
        got = set(data.splitlines())
        missing = sum(1 for i in range(lines) if line(i).rstrip(b"\n") not in got)
        res["bytes"] = len(expected)
        res["complete"] = data == expected
        res["lines_lost"] = missing
        res["extra_bytes"] = max(0, len(data) - len(expected))
        if size >= len(expected):
            res["all_in_file_ms"] = ms(t_end - t0)
            res["lines_per_s"] = round(lines / (t_end - t0))
        if done is not None:
            res["writer_done_ms"] = ms(done.t - t0)
        return res
