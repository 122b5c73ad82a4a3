"""Chaos: a 50-service tree, every strategy, depth 3; random SIGKILLs, commands and reloads;
and the same with faults (``faults.py``: a full disk under ``--log-dir``, moved log files,
stray signals, fds running out).

Short versions (CI): about 10 s of chaos with a reload or two. Long versions
(``OTREE_LONG=1``): several minutes, a reload every 25 s. Set
``OTREE_CHAOS_SEED`` to replay a run's choices of victims, commands and faults.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from support import procfs
from support.cli import otree_cli
from support.disk import mounted
from support.leaks import marked_pids
from support.otreeproc import OtreeProc
from support.procfs import pid_alive
from support.waits import DEADLINE, wait_until

from otree.config.loader import load
from otree.control.client import Client
from otree.errors import ControlError

from . import chaostree
from .chaos import Chaos, status, wait_quiet
from .faults import Faults, failed_sinks, is_subsequence, ticks
from .invariants import Tree, check_all, live_services

RunOtree = Callable[..., OtreeProc]
SUMMARY_ENV = "OTREE_RELIABILITY_SUMMARY"  # append each run's summary (JSON) to this file


def start_everything(sock: str) -> None:
    """``otree start`` every node that is not running, top down (a supervisor first)."""
    st = wait_quiet(sock)
    with Client(sock, timeout=60) as client:
        for path, _ in chaostree.layout():
            if st[path]["state"] in ("stopped", "exited"):
                try:
                    client.call("start", path=path)
                except ControlError as exc:
                    assert "already running" in str(exc), f"start {path}: {exc}"
                st = status(sock)


def consistent(run: OtreeProc, st: dict[str, dict[str, Any]]) -> list[str]:
    """Status, event log and /proc agree on which process runs each service."""
    bad = []
    live = live_services(run.events())
    for path in chaostree.services():
        node, pid = st[path], live.get(path)
        if (node["state"] == "running") != (pid is not None) or node["pid"] != pid:
            bad.append(f"{path}: status {node['state']} pid {node['pid']}, log pid {pid}")
        elif pid is not None:
            info = procfs.stat(pid)
            if info is None or info.ppid != run.pid or info.pgrp != pid or info.state == "Z":
                bad.append(f"{path}: pid {pid} is not a live child of otree: {info}")
    return bad


def wait_consistent(run: OtreeProc, sock: str) -> dict[str, dict[str, Any]]:
    """``consistent`` on a snapshot; services that end on their own (every 2-3 s) may
    change between reading the status, the log and /proc: try again, a few times."""
    deadline = time.monotonic() + DEADLINE
    while True:
        st = wait_quiet(sock)
        bad = consistent(run, st)
        if not bad:
            return st
        assert time.monotonic() < deadline, bad
        time.sleep(0.05)


#: a chaos run's RSS may grow by this much from its start to its end (KiB)
RSS_GROWTH_KIB = 16 * 1024


def by_path(text: str) -> dict[str, list[str]]:
    """Prefixed lines (``path | text``) by path."""
    seen: dict[str, list[str]] = {}
    for line in text.splitlines():
        path, sep, rest = line.partition(" | ")
        if sep:
            seen.setdefault(path.strip(), []).append(rest)
    return seen


class Follower:
    """``otree logs -f`` of the whole tree, from the start of the chaos to the shutdown:
    it must live through every reload and see, for each chatty service, exactly the last
    lines of otree's console (none lost, none twice), and the console must miss none;
    each log file holds the console's lines, but those it could not write (it said so
    on stderr)."""

    def __init__(self, tmp_path: Path, sock: str) -> None:
        self.out = tmp_path / "follow.txt"
        with self.out.open("w") as f:
            argv = [sys.executable, "-m", "otree", "logs", "-f", "-n", "0", "--socket", sock]
            self.proc = subprocess.Popen(
                argv, stdout=f, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True
            )
        # following from here on: a line written now reaches it
        wait_until(lambda: self.out.stat().st_size > 0, what="the follower's first line")

    def check(self, run: OtreeProc, pieces: Callable[[str], list[Path]]) -> None:
        try:
            _, err = self.proc.communicate(timeout=DEADLINE)
        finally:
            self.proc.kill()
        assert self.proc.returncode == 0 and "skipped" not in err, (self.proc.returncode, err)
        seen, console = by_path(self.out.read_text()), by_path(run.stdout)
        failed = failed_sinks(run.stderr)
        chatty = [p for p in chaostree.services() if chaostree.kind(p) == "chatty"]
        for path in chatty:
            lines, shown = seen.get(path, []), console.get(path, [])
            assert lines and lines == shown[len(shown) - len(lines) :], (path, lines, shown)
            assert ticks(shown) == [], (path, ticks(shown)[:5])
            logged = [x for piece in pieces(path) for x in piece.read_text().splitlines()]
            if path in failed:  # whole lines, in order; only those it could not write lost
                assert all(x.startswith("tick ") for x in logged), (path, logged)
                assert is_subsequence(logged, shown), (path, logged, shown)
            else:
                assert logged == shown, (path, logged, shown)


@contextlib.contextmanager
def log_disk(tmp_path: Path, faults: bool) -> Iterator[Any]:
    """``tmp_path/logs``: a small tmpfs with faults (it fills up), else a directory."""
    if not faults:
        yield None
        return
    with mounted(tmp_path / "logs", size="2m") as disk:
        yield disk


def chaos_run(
    tmp_path: Path,
    otree: RunOtree,
    sock: str,
    seconds: float,
    reload_every: float | None,
    faults: bool = False,
) -> dict[str, Any]:
    with log_disk(tmp_path, faults) as disk:
        return _chaos_run(tmp_path, otree, sock, seconds, reload_every, disk)


def _chaos_run(
    tmp_path: Path,
    otree: RunOtree,
    sock: str,
    seconds: float,
    reload_every: float | None,
    disk: Any,
) -> dict[str, Any]:
    seed = int(os.environ.get("OTREE_CHAOS_SEED") or random.randrange(1 << 32))
    before = set(marked_pids())
    tree_file = tmp_path / "tree.toml"
    tree_file.write_text(chaostree.render())
    tree = Tree(load(tree_file))
    run = otree("run", "tree.toml", "--socket", sock, "--log-dir", "logs")
    run.wait_for("tree_ready")
    follower = Follower(tmp_path, sock)  # `otree logs -f` through it all
    rss_start = procfs.rss_kib(run.pid)
    began = time.monotonic()

    log_dir = tmp_path / "logs"
    faults = None
    if disk is not None:
        faults = Faults(run.pid, disk, log_dir, seed, threading.Lock())
    chaos = Chaos(run, sock, tree_file, seed, reload_every, faults)
    chaos.go(seconds)
    where = f"(seed {seed}: OTREE_CHAOS_SEED={seed} replays the choices)"
    assert not chaos.problems, "\n".join([where, *chaos.problems])

    # the tree settles, and what status says is what the log says is what /proc says
    wait_consistent(run, sock)
    mark = len(run.events())
    start_everything(sock)
    st = wait_consistent(run, sock)
    since = run.events()[mark:]
    group_restarts = {e["path"] for e in since if e["event"] == "restart"}

    def may_idle(path: str, node: dict[str, Any]) -> bool:
        """A finisher that ended well since, or a temporary that a group restart stopped
        since (the finishers' restarts go on: temporary siblings are not started again)."""
        if node["state"] == "exited" and node["last_exit"]["normal"]:
            return path in chaostree.CODES_OF
        temporary = tree.services.get(path) and tree.services[path].restart.value == "temporary"
        return bool(temporary) and path.rpartition(".")[0] in group_restarts

    idle = {p: n for p, n in st.items() if n["state"] != "running"}
    assert [p for p, n in idle.items() if not may_idle(p, n)] == [], (idle, where)
    # a calm tree reloads at once, and keeps every process
    if reload_every is not None:
        pids = {p: n["pid"] for p, n in st.items() if n["pid"] is not None}
        r = otree_cli("reload", "--socket", sock)
        assert r.returncode == 0, (r.stderr, where)
        run.wait_for("tree_ready", count=len(chaos.changed) + 2)
        chaos.changed[len(chaos.changed) + 1] = set()
        st = wait_quiet(sock)
        moved = {p: (pid, st[p]["pid"]) for p, pid in pids.items() if st[p]["pid"] != pid}
        # a service that ended on its own meanwhile has a new PID, with an exit in the log
        moved = {p: m for p, m in moved.items() if not run.find("exit", p, pid=m[0])}
        assert moved == {}, f"reload of a calm tree changed PIDs: {moved} {where}"
    rss_end = procfs.rss_kib(run.pid)
    cpu = procfs.cpu_seconds(run.pid)

    # an orderly shutdown leaves nothing behind
    r = otree_cli("shutdown", "--socket", sock)
    assert (r.returncode, r.stdout) == (0, "tree stopped\n"), r.stderr
    assert run.wait_exit() == 0, run.describe()
    pieces = faults.pieces if faults is not None else (lambda p: [log_dir / f"{p}.log"])
    follower.check(run, pieces)
    assert "Traceback" not in run.stderr, run.stderr[-3000:]
    assert rss_end - rss_start < RSS_GROWTH_KIB, (rss_start, rss_end, chaos.rss)
    events = run.events()
    assert events[-1]["event"] == "tree_stopped" and events[-1]["exit_code"] == 0
    left = [p for p in set(marked_pids()) - before if pid_alive(p)]
    assert left == [], f"processes left after the shutdown: {left}"

    reexecs = [e for e in events if e["event"] == "reexec"]
    assert len(reexecs) == len(chaos.changed), (reexecs, chaos.reloads)
    violations = check_all(events, tree, chaos.commands, chaos.changed)
    violations += chaostree.implausible_exits(events)
    assert violations == [], "\n".join([where, *violations[:40]])

    def count(kind: str) -> int:
        return sum(1 for e in events if e["event"] == kind)

    summary = {
        "seconds": round(time.monotonic() - began, 1),
        "seed": seed,
        "services": len(chaostree.services()),
        "kills": chaos.kills,
        "spawns": count("spawn"),
        "exits": count("exit"),
        "restarts": count("restart"),
        "give_ups": count("give_up"),
        "start_failed": count("start_failed"),
        "commands": len(chaos.commands),
        "refusals": chaos.refusals,
        "reloads": chaos.reloads,
        "adopted": count("adopt"),
        "status_calls": len(chaos.status_calls),
        "status_max_seconds": round(max(chaos.status_calls, default=0.0), 2),
        "zombie_samples": chaos.zombie_samples,
        "max_zombie_age_seconds": round(chaos.max_zombie_age, 3),
        "otree_rss_kib": [rss_start, rss_end],
        "otree_rss_kib_samples": [min(chaos.rss, default=0), max(chaos.rss, default=0)],
        "otree_cpu_seconds": round(cpu, 2),
        "events": len(events),
    }
    if faults is not None:
        summary["faults"] = faults.summary()
        summary["failed_log_files"] = sorted(failed_sinks(run.stderr))
    print("chaos summary:", json.dumps(summary))
    if os.environ.get(SUMMARY_ENV):
        with open(os.environ[SUMMARY_ENV], "a") as f:
            f.write(json.dumps({"test": "chaos", **summary}) + "\n")
    assert count("restart") > 0 and chaos.kills["pid"] > 0
    return summary


def test_chaos_short(tmp_path: Path, otree: RunOtree, sock: str) -> None:
    summary = chaos_run(tmp_path, otree, sock, seconds=10.0, reload_every=4.0)
    assert summary["reloads"], "no reload was tried"


@pytest.mark.slow
def test_chaos_long(tmp_path: Path, otree: RunOtree, sock: str) -> None:
    minutes = float(os.environ.get("OTREE_CHAOS_MINUTES", "5"))
    summary = chaos_run(tmp_path, otree, sock, seconds=minutes * 60, reload_every=25.0)
    assert len(summary["reloads"]) >= 2


def test_chaos_with_faults_short(tmp_path: Path, otree: RunOtree, sock: str) -> None:
    """The chaos, and faults on top: the disk under --log-dir filling and emptying, log
    files moved (then SIGUSR1, or not), USR1/USR2/ALRM/HUP at random, fds exhausted for a
    while. Zero orphans, zero duplicates, no line lost in a sink that could write, flat
    RSS."""
    summary = chaos_run(tmp_path, otree, sock, seconds=10.0, reload_every=3.0, faults=True)
    assert summary["reloads"], "no reload was tried"
    done = summary["faults"]
    assert done["moves"] and done["disk_full"] and done["SIGUSR2"] + done["SIGALRM"], done


@pytest.mark.slow
def test_chaos_with_faults_long(tmp_path: Path, otree: RunOtree, sock: str) -> None:
    minutes = float(os.environ.get("OTREE_CHAOS_MINUTES", "5"))
    summary = chaos_run(tmp_path, otree, sock, seconds=minutes * 60, reload_every=20.0, faults=True)
    assert len(summary["reloads"]) >= 2
    assert all(summary["faults"][k] for k in ("moves", "disk_full", "fds_exhausted"))
