"""Faults for the chaos run (issue 11): what happens to otree's own disk, files, signals
and fds in production, injected at random while the chaos goes on.

* the disk under ``--log-dir`` (a small tmpfs) fills up, and is emptied again;
* a chatty service's log file is moved away (logrotate without ``copytruncate``),
  then ``SIGUSR1`` is sent, or not (otree notices the move by itself);
* ``SIGUSR1``, ``SIGUSR2`` and ``SIGALRM`` are sent to otree (``SIGHUP`` is a reload:
  the chaos's reload thread sends it, so that every reload is accounted for);
* otree's fds run out for a while: its ``RLIMIT_NOFILE`` is lowered to what it has
  open (``prlimit``), then restored.

The fd exhaustion holds ``lock``, which reloads take too: a reload refused for want
of fds is fair, but not one the checks could tell from a bug. What a sink could not
write is allowed to be lost from it, nothing else: ``failed_sinks`` reads, from
otree's stderr, which log files said they failed.
"""

from __future__ import annotations

import contextlib
import os
import re
import resource
import signal
import threading
import time
from pathlib import Path

from support.disk import SmallDisk

from . import chaostree

#: fault -> weight
FAULTS = {"signal": 4, "move": 3, "disk": 2, "fds": 1}
SIGNALS = (signal.SIGUSR1, signal.SIGUSR2, signal.SIGALRM)


class Faults:
    """Injects faults into the ``otree run`` with PID ``pid`` until ``stop`` is set."""

    def __init__(
        self,
        pid: int,
        disk: SmallDisk,
        log_dir: Path,
        seed: int,
        lock: threading.Lock,
    ) -> None:
        self.pid = pid
        self.disk = disk
        self.log_dir = log_dir
        self.seed = seed
        self.lock = lock
        self.counts: dict[str, int] = {
            "SIGUSR1": 0,
            "SIGUSR2": 0,
            "SIGALRM": 0,
            "moves": 0,
            "moves_then_usr1": 0,
            "disk_full": 0,
            "fds_exhausted": 0,
        }
        self.full_seconds = 0.0
        self.fd_seconds = 0.0
        self._moves = 0
        self._full_since: float | None = None
        self.chatty = [p for p in chaostree.services() if chaostree.kind(p) == "chatty"]

    # --- the thread ---------------------------------------------------------------------

    def body(self, stop: threading.Event) -> None:
        import random

        rng = random.Random(self.seed + 3)
        kinds, weights = list(FAULTS), list(FAULTS.values())
        try:
            while not stop.wait(rng.uniform(0.1, 0.6)):
                fault = rng.choices(kinds, weights)[0]
                if fault == "signal":
                    self.send(rng.choice(SIGNALS))
                elif fault == "move":
                    self.move(rng.choice(self.chatty), rng.random() < 0.5)
                elif fault == "disk":
                    self.toggle_disk()
                else:
                    self.exhaust_fds(rng.uniform(0.3, 1.5), stop)
        finally:
            self.end()

    def end(self) -> None:
        """Leave room on the disk again (the checks need the log files whole)."""
        if self._full_since is not None:
            self.disk.empty()
            self.full_seconds += time.monotonic() - self._full_since
            self._full_since = None

    # --- each fault -----------------------------------------------------------------------

    def send(self, signum: int) -> None:
        os.kill(self.pid, signum)
        self.counts[signal.Signals(signum).name] += 1

    def move(self, path: str, then_usr1: bool) -> None:
        """``mv`` a log file to ``PATH.log.mvN`` (if otree has opened it again since the
        last move), then perhaps ``SIGUSR1``."""
        current = self.log_dir / f"{path}.log"
        self._moves += 1
        try:
            current.rename(self.log_dir / f"{path}.log.mv{self._moves:05d}")
        except FileNotFoundError:
            return
        self.counts["moves"] += 1
        if then_usr1:
            self.send(signal.SIGUSR1)
            self.counts["moves_then_usr1"] += 1

    def toggle_disk(self) -> None:
        if self._full_since is None:
            self.disk.fill()
            self._full_since = time.monotonic()
            self.counts["disk_full"] += 1
        else:
            self.end()

    def exhaust_fds(self, seconds: float, stop: threading.Event) -> None:
        """Lower otree's fd limit to the fds it has open, for ``seconds``."""
        with self.lock:
            try:
                before = resource.prlimit(self.pid, resource.RLIMIT_NOFILE)
                in_use = len(os.listdir(f"/proc/{self.pid}/fd"))
                resource.prlimit(self.pid, resource.RLIMIT_NOFILE, (in_use, before[1]))
            except (ProcessLookupError, FileNotFoundError):
                return  # otree is gone: the chaos says so
            began = time.monotonic()
            try:
                self.counts["fds_exhausted"] += 1
                stop.wait(seconds)
            finally:
                with contextlib.suppress(ProcessLookupError):
                    resource.prlimit(self.pid, resource.RLIMIT_NOFILE, before)
                self.fd_seconds += time.monotonic() - began

    # --- what the checks need -------------------------------------------------------------

    def pieces(self, path: str) -> list[Path]:
        """The log file of ``path`` as it was written: the moved parts in order, then the
        file at its path."""
        moved = sorted(self.log_dir.glob(f"{path}.log.mv*"))
        current = self.log_dir / f"{path}.log"
        return [*moved, *([current] if current.exists() else [])]

    def summary(self) -> dict[str, object]:
        return {
            **self.counts,
            "disk_full_seconds": round(self.full_seconds, 1),
            "fds_exhausted_seconds": round(self.fd_seconds, 1),
        }


def failed_sinks(stderr: str) -> set[str]:
    """The services whose log file said on stderr that it could not be written."""
    return {
        m.group(1)
        for m in re.finditer(r"^otree: log file \S*?/?([\w.]+)\.log: ", stderr, re.MULTILINE)
    }


def ticks(lines: list[str]) -> list[str]:
    """Problems with the ``tick N`` lines of one chatty service as a sink got them: every
    line whole, and none missing (each next line is the next number, or 1: a new
    process)."""
    bad = []
    last = None
    for i, line in enumerate(lines):
        m = re.fullmatch(r"tick (\d+)", line)
        if m is None:
            bad.append(f"line {i} is not a whole line: {line!r}")
            continue
        n = int(m.group(1))
        if last is not None and n not in (last + 1, 1):
            bad.append(f"line {i}: tick {n} after tick {last}: lines lost")
        last = n
    return bad


def is_subsequence(part: list[str], whole: list[str]) -> bool:
    it = iter(whole)
    return all(any(x == y for y in it) for x in part)
