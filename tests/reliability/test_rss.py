"""otree's own memory stays flat while a child crash-loops (no leak per restart).

A child that exits 1 at once, under a root that never gives up, is restarted
as fast as otree can: N restarts (short: 1000; long: 10 000) after a warm-up
of 2500. otree's VmRSS after the warm-up is compared with its VmRSS at the
end. (RSS grows during the first ~2000 restarts of a fresh otree, about 100 B
each, allocator and interpreter caches filling up, then stays flat; a leak of
one float per restart, as the engine once had, is 31 KiB per 1000.)
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from support import procfs
from support.otreeproc import OtreeProc
from support.waits import DEADLINE

RunOtree = Callable[..., OtreeProc]
#: allowed growth of otree's RSS between the warm-up and the end
TOLERANCE_KIB = 2048
#: and per 1000 restarts after the warm-up
PER_1000_KIB = 12
WARMUP = 2500

TREE = """\
intensity = 1000000
period = 0.1

[steady]
cmd = ["sleep", "600"]

[crash]
cmd = ["false"]
"""


class Counter:
    """Counts ``restart`` events in the event log as it grows (reads only what is new)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.partial = b""
        self.count = 0

    def poll(self) -> int:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return 0
        self.offset += len(data)
        lines = (self.partial + data).split(b"\n")
        self.partial = lines.pop()
        self.count += sum(1 for line in lines if b'"event": "restart"' in line)
        return self.count

    def wait(self, n: int, run: OtreeProc, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.poll() < n:
            assert run.proc.poll() is None, run.describe()
            assert time.monotonic() < deadline, f"only {self.count} restarts in {timeout:g}s"
            time.sleep(0.05)


def crash_loop(tmp_path: Path, otree: RunOtree, restarts: int) -> dict[str, object]:
    (tmp_path / "tree.toml").write_text(TREE)
    run = otree("run", "tree.toml")
    run.wait_for("tree_ready")
    counter = Counter(run.events_file)
    counter.wait(WARMUP, run, timeout=DEADLINE + WARMUP / 20)
    began = time.monotonic()
    rss_warm = procfs.rss_kib(run.pid)
    samples = [(counter.count, rss_warm)]
    step = max(100, restarts // 10)
    end = counter.count + restarts
    for target in range(samples[0][0] + step, end + step, step):
        counter.wait(min(target, end), run, timeout=DEADLINE + step / 20)
        samples.append((counter.count, procfs.rss_kib(run.pid)))
    seconds = time.monotonic() - began
    rss_end = samples[-1][1]
    per_1000 = (rss_end - rss_warm) * 1000 / (counter.count - samples[0][0])
    steady = run.running_pid("steady")
    run.send(15)
    assert run.wait_exit() == 0, run.describe()
    assert run.find("spawn", "steady") == run.find("spawn", "steady", pid=steady)  # untouched
    assert not run.find("give_up")
    summary = {
        "restarts": counter.count - samples[0][0],
        "warmup_restarts": samples[0][0],
        "seconds": round(seconds, 1),
        "restarts_per_second": round((counter.count - samples[0][0]) / seconds),
        "rss_kib_after_warmup": rss_warm,
        "rss_kib_end": rss_end,
        "growth_kib": rss_end - rss_warm,
        "kib_per_1000_restarts": round(per_1000, 1),
        "samples": samples,
    }
    print("rss summary:", json.dumps(summary))
    if os.environ.get("OTREE_RELIABILITY_SUMMARY"):
        with open(os.environ["OTREE_RELIABILITY_SUMMARY"], "a") as f:
            f.write(json.dumps({"test": "rss", **summary}) + "\n")
    assert rss_end - rss_warm < TOLERANCE_KIB, summary
    assert per_1000 < PER_1000_KIB, summary
    return summary


def test_rss_flat_over_1000_restarts(tmp_path: Path, otree: RunOtree) -> None:
    crash_loop(tmp_path, otree, 1000)


@pytest.mark.slow
def test_rss_flat_over_10000_restarts(tmp_path: Path, otree: RunOtree) -> None:
    crash_loop(tmp_path, otree, 10_000)
