"""The chaos run: SIGKILL services of a live ``otree run`` while steering it, then check.

Four threads beside the killer (the caller's thread) for a bounded time:

* commands: ``start``/``stop``/``restart`` of random nodes over the control
  socket, each answer recorded (a refusal is an answer);
* status: ``otree status --json`` through the real CLI, about once a second;
* zombies: samples ``/proc/<otree>/task/*/children`` and fails on a zombie
  that is not reaped within ``ZOMBIE_GRACE`` seconds;
* reloads: edits one service's spec and runs ``otree reload`` now and then (or, with
  faults, sends ``SIGHUP`` half of the time);
* faults (``faults=``, see ``faults.py``): a full disk, moved log files, stray
  signals, fds running out.
"""

from __future__ import annotations

import json
import random
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from support import procfs
from support.cli import otree_cli
from support.otreeproc import OtreeProc
from support.waits import DEADLINE

from otree.control.client import Client, NotRunning
from otree.errors import ControlError

from . import chaostree
from .faults import Faults
from .invariants import Command

#: a zombie child of otree must be reaped within this many seconds
ZOMBIE_GRACE = 5.0
#: refusals a command may get in a tree in flux (anything else is a failure)
REFUSALS = ("is already running", "is restarting", "is not running", "cannot start")
#: transitional states; the tree is quiet when no node is in one
BUSY_STATES = frozenset({"starting", "stopping", "restarting", "dead"})


def status(sock: str) -> dict[str, dict[str, Any]]:
    with Client(sock, timeout=DEADLINE) as client:
        nodes = client.call("status")["nodes"]
    return {n["path"]: n for n in nodes}


def wait_quiet(sock: str, timeout: float = DEADLINE * 1.5) -> dict[str, dict[str, Any]]:
    """Poll the status until no node is in a transitional state three times in a row."""
    deadline = time.monotonic() + timeout
    calm = 0
    while True:
        st = status(sock)
        busy = {p: n["state"] for p, n in st.items() if n["state"] in BUSY_STATES}
        calm = 0 if busy else calm + 1
        if calm >= 3:
            return st
        if time.monotonic() > deadline:
            raise AssertionError(f"the tree never became quiet: {busy}")
        time.sleep(0.1)


class Chaos:
    """One chaos run against ``run`` (an ``otree run`` of the chaos tree on ``sock``)."""

    def __init__(
        self,
        run: OtreeProc,
        sock: str,
        tree_file: Path,
        seed: int,
        reload_every: float | None,
        faults: Faults | None = None,
    ) -> None:
        self.run = run
        self.faults = faults
        self.sock = sock
        self.tree_file = tree_file
        self.seed = seed
        self.rng = random.Random(seed)
        self.reload_every = reload_every
        self.pid = run.pid
        self.nodes = [p for p, _ in chaostree.layout()]
        self.stop_flag = threading.Event()
        self.problems: list[str] = []
        self.commands: list[Command] = []
        self.refusals: dict[str, int] = {}
        self.kills = {"pid": 0, "group": 0, "several": 0, "term": 0}
        self.status_calls: list[float] = []  # latency of each `otree status`
        self.max_zombie_age = 0.0
        self.zombie_samples = 0
        self.gen: dict[str, int] = {}  # the file's env GEN per service
        self.applied: dict[str, int] = {}  # what the running tree has
        self.changed: dict[int, set[str]] = {}  # reload number -> changed services
        self.reloads: list[dict[str, Any]] = []
        self.reloading = threading.Event()
        self.last_reload = 0.0
        self.kills_ended: float | None = None
        self.rss: list[int] = []  # otree's RSS (KiB), about once a second
        self._lock = threading.Lock()
        self.fault_lock = faults.lock if faults is not None else threading.Lock()

    def problem(self, text: str) -> None:
        with self._lock:
            self.problems.append(text)

    # --- the threads ------------------------------------------------------------------

    def _thread(self, body: Callable[[], None], name: str) -> threading.Thread:
        def guarded() -> None:
            try:
                body()
            except Exception as exc:  # a failure inside a thread is a test failure
                self.problem(f"{name} thread: {type(exc).__name__}: {exc}")

        t = threading.Thread(target=guarded, name=name, daemon=True)
        t.start()
        return t

    def _commands(self) -> None:
        rng = random.Random(self.seed + 1)
        client: Client | None = None
        while not self.stop_flag.wait(rng.uniform(0.05, 0.3)):
            name = rng.choice(["stop", "start", "start", "restart", "restart"])
            path = rng.choice(self.nodes)
            try:
                if client is None:
                    client = Client(self.sock, timeout=DEADLINE * 2)
                try:
                    client.call(name, path=path)
                except ControlError as exc:
                    if isinstance(exc, NotRunning):
                        raise
                    reason = str(exc)
                    if not any(r in reason for r in REFUSALS):
                        self.problem(f"{name} {path}: unexpected refusal {reason!r}")
                    key = next((r for r in REFUSALS if r in reason), reason)
                    self.refusals[key] = self.refusals.get(key, 0) + 1
                self.commands.append(Command(name, path, time.time()))
            except NotRunning as exc:  # a reload hands the connection over: never seen
                if client is not None:
                    client.close()
                client = None
                self.commands.append(Command(name, path, time.time()))
                self.problem(f"{name} {path}: {exc}")
        if client is not None:
            client.close()

    def _status(self) -> None:
        while not self.stop_flag.wait(1.0):
            self.rss.append(procfs.rss_kib(self.pid))
            began = time.monotonic()
            r = otree_cli("status", "--json", "--socket", self.sock)
            self.status_calls.append(time.monotonic() - began)
            if r.returncode != 0:
                self.problem(f"otree status exited {r.returncode}: {r.stderr.strip()}")
                continue
            nodes = json.loads(r.stdout)["nodes"]
            if len(nodes) != len(self.nodes) + 1:
                self.problem(f"otree status shows {len(nodes)} nodes")

    def _zombies(self) -> None:
        first_seen: dict[tuple[int, int], float] = {}
        while not self.stop_flag.wait(0.02):
            now = time.monotonic()
            current = set(procfs.zombies_of(self.pid))
            self.zombie_samples += 1
            first_seen = {z: first_seen.get(z, now) for z in current}
            for z, since in first_seen.items():
                age = now - since
                self.max_zombie_age = max(self.max_zombie_age, age)
                if age > ZOMBIE_GRACE:
                    self.problem(f"zombie child {z[0]} of otree not reaped for {age:.1f} s")
                    return

    def _reloads(self) -> None:
        assert self.reload_every is not None
        rng = random.Random(self.seed + 2)
        services = chaostree.services()
        while not self.stop_flag.wait(self.reload_every):
            path = rng.choice(services)
            hup = self.faults is not None and rng.random() < 0.5
            with self.fault_lock:  # never while otree's fds are exhausted
                self.gen[path] = self.gen.get(path, 0) + 1
                self.tree_file.write_text(chaostree.render(self.gen))
                self.reloading.set()
                try:
                    began = time.monotonic()
                    rc, err = self._hup() if hup else self._reload()
                    took = time.monotonic() - began
                finally:
                    self.last_reload = time.monotonic()
                    self.reloading.clear()
            entry: dict[str, Any] = {"changed": path, "rc": rc, "seconds": round(took, 2)}
            if hup:
                entry["by"] = "SIGHUP"
            if rc != 0:
                entry["stderr"] = err
            self.reloads.append(entry)
            if rc == 0:
                n = len(self.changed) + 1
                self.changed[n] = {p for p in self.gen if self.gen[p] != self.applied.get(p, 0)}
                self.applied = dict(self.gen)
            elif "busy" not in err or self.calm_for() > 5.0:
                # waiting in vain for a quiet tree is fair while the kills go on, not after
                self.problem(f"otree reload exited {rc}: {err}")

    def _reload(self) -> tuple[int, str]:
        r = otree_cli("reload", "--socket", self.sock, timeout=120)
        return r.returncode, r.stderr.strip()

    def _hup(self) -> tuple[int, str]:
        """``SIGHUP``: a reload with no one to answer. Done when the new image says the
        tree is ready, or refused when otree says so on stderr."""

        def refusals() -> list[str]:
            return [x for x in self.run.stderr.splitlines() if "reload (SIGHUP) refused" in x]

        ready, refused = len(self.run.find("tree_ready")), len(refusals())
        self.run.send(signal.SIGHUP)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if len(self.run.find("tree_ready")) > ready:
                return 0, ""
            now = refusals()
            if len(now) > refused:
                return 1, now[refused]
            if self.run.proc.poll() is not None:
                return 1, f"otree exited ({self.run.proc.returncode}) after SIGHUP"
            time.sleep(0.05)
        return 1, "SIGHUP: no reload and no refusal within 120 s"

    def calm_for(self) -> float:
        """Seconds since the kills ended (0 while they go on)."""
        return 0.0 if self.kills_ended is None else time.monotonic() - self.kills_ended

    # --- the killer ----------------------------------------------------------------------

    def _kill_some(self) -> None:
        # what otree supervises (services, their readiness checks): not the preflight of a
        # reload, which is otree's own start-up being tried (killing it refuses the reload)
        targets = [
            pid
            for pid in procfs.children(self.pid)
            if not procfs.cmdline(pid).endswith("--preflight")
        ]
        if not targets:
            return
        roll = self.rng.random()
        if roll < 0.55:
            self.kills["pid"] += procfs.kill_child(self.pid, self.rng.choice(targets))
        elif roll < 0.75:
            self.kills["group"] += procfs.kill_child(self.pid, self.rng.choice(targets), group=True)
        elif roll < 0.90:
            chosen = self.rng.sample(targets, min(len(targets), self.rng.randint(2, 6)))
            sent = [procfs.kill_child(self.pid, t, group=self.rng.random() < 0.5) for t in chosen]
            self.kills["several"] += any(sent)
        else:
            self.kills["term"] += procfs.kill_child(
                self.pid, self.rng.choice(targets), signal.SIGTERM
            )

    def go(self, seconds: float, tick: float = 0.05) -> None:
        threads = [
            self._thread(self._commands, "commands"),
            self._thread(self._status, "status"),
            self._thread(self._zombies, "zombies"),
        ]
        if self.reload_every is not None:
            threads.append(self._thread(self._reloads, "reloads"))
        if self.faults is not None:
            faults = self.faults
            threads.append(self._thread(lambda: faults.body(self.stop_flag), "faults"))
        end = time.monotonic() + seconds
        try:
            while time.monotonic() < end and not self.problems:
                if self.run.proc.poll() is not None:
                    self.problem(f"otree exited ({self.run.proc.returncode}) during the chaos")
                    break
                # fewer kills while a reload waits for a quiet tree (some land in the exec)
                if not self.reloading.is_set() or self.rng.random() < 0.15:
                    self._kill_some()
                time.sleep(self.rng.uniform(0, 2 * tick))
        finally:
            self.kills_ended = time.monotonic()
            self.stop_flag.set()
            for t in threads:
                t.join(timeout=150)
                if t.is_alive():
                    self.problem(f"the {t.name} thread did not finish")
