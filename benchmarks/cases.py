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

    def finish(self, stop_timeout: float = 30.0) -> None:
        r = self.running
        if r is not None and r.exit_code is None:
            seconds, code = r.stop(stop_timeout)
            self.result.setdefault("final_stop_s", seconds)
            self.result.setdefault("final_exit_code", code)
            if code is None:
                r.kill()
        leftovers = procs.cleanup()
        self.result["leftovers"] = len(leftovers)
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


def restart_latency(env: Env, peer: Peer, runs: int, settle: float = 0.1) -> dict[str, Any]:
    """SIGKILL the child; time until its replacement has recorded its start."""
    with session(env, peer, "restart") as s:
        res = s.result
        s.launch(Program("r", 1, [*env.python_child, s.stamps.path, "{name}", "sleep"]))
        if not s.stamps.wait(lambda: "r0" in s.stamps.latest, 30):
            res["error"] = "the child never started"
            return res
        gap = peer.restart_gap()
        latencies: list[float] = []
        last_kill = -math.inf
        for _ in range(runs):
            time.sleep(max(settle, last_kill + gap - now()))
            old = s.stamps.latest["r0"]
            peer.before_kill(s.running, "r0", old.pid, now() + 10)  # type: ignore[arg-type]
            t = now()
            os.kill(old.pid, signal.SIGKILL)
            last_kill = t
            if not s.stamps.wait(lambda o=old: s.stamps.latest["r0"].pid != o.pid, 10):
                res["error"] = "no replacement within 10 s" + (
                    " (the supervisor exited)" if _supervisor_gone(s) else ""
                )
                break
            latencies.append(s.stamps.latest["r0"].t - t)
        res["runs"] = len(latencies)
        if latencies:
            res["p50_ms"] = ms(statistics.median(latencies))
            res["p95_ms"] = ms(pct(latencies, 95))
            res["max_ms"] = ms(max(latencies))
            res["samples_ms"] = [ms(x) for x in latencies]
        res["kill_gap_s"] = round(max(settle, gap), 3)
        return res


# --- crash loop -------------------------------------------------------------------


def crash_loop(env: Env, peer: Peer, window: float, horizon: float) -> dict[str, Any]:
    """A child that exits 1 at once: restarts within ``window`` seconds of launch,
    the supervisor's CPU meanwhile, and whether (and when) it gives up within
    ``horizon`` seconds."""
    with session(env, peer, "crash") as s:
        res = s.result
        r = s.launch(Program("x", 1, [*env.python_child, s.stamps.path, "{name}", "crash"]))
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
        res["gave_up"] = gave_up is not None
        if gave_up is not None and first is not None:
            res["gave_up_after_ms"] = ms(gave_up - first)
            res["starts_before_give_up"] = len([st for st in s.stamps.starts() if st.t <= gave_up])
        res["supervisor_exit_code"] = r.exit_code
        return res


# --- scale ------------------------------------------------------------------------


def scale(env: Env, peer: Peer, count: int, idle: float, settle: float) -> dict[str, Any]:
    """``count`` sleeping children: time until all run, RSS, idle CPU, time to stop."""
    with session(env, peer, f"scale{count}") as s:
        res = s.result
        res["children"] = count
        prog = Program("c", count, [*env.light_child, s.stamps.path, "{name}", "sleep"])
        if env.light_kind == "python":
            prog = Program("c", count, [*env.light_child, s.stamps.path, "{name}", "sleep-exec"])
        r = s.launch(prog)
        names = set(prog.child_names())
        ok = s.stamps.wait(lambda: len(s.stamps.latest) >= count or r.poll_exit(), 30 + count * 0.1)
        if not ok or len(s.stamps.latest) < count:
            res["error"] = f"{len(s.stamps.latest)} of {count} children started" + (
                f"; the supervisor exited {r.exit_code}" if r.exit_code is not None else ""
            )
            return res
        t_all = max(st.t for st in s.stamps.latest.values())
        res["all_running_ms"] = ms(t_all - r.t_launch)
        res["first_child_ms"] = ms(min(st.t for st in s.stamps.latest.values()) - r.t_launch)
        res["start_cpu_ms"] = round((r.cpu_ns() or 0) / 1e6, 1)
        res["rss_mib"] = round((r.rss_kib() or 0) / 1024, 1)
        time.sleep(settle)  # let start-up work finish
        c0, w0 = r.cpu_ns(), r.wakeups()
        time.sleep(idle)
        c1, w1 = r.cpu_ns(), r.wakeups()
        if None not in (c0, c1, w0, w1):
            res["idle_s"] = idle
            res["idle_cpu_ms"] = round((c1 - c0) / 1e6, 3)  # type: ignore[operator]
            res["idle_wakeups"] = w1 - w0  # type: ignore[operator]
        res["rss_after_idle_mib"] = round((r.rss_kib() or 0) / 1024, 1)
        restarted = len(s.stamps.starts()) - count
        pids = [st.pid for st in s.stamps.latest.values()]
        seconds, code = r.stop(60 + count * 0.1)
        res["stop_ms"] = ms(seconds)
        res["stop_exit_code"] = code
        res["children_left_after_stop"] = sum(1 for p in pids if procs.alive(p))
        res["unexpected_restarts"] = restarted
        assert names >= set(s.stamps.latest)
        return res


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
