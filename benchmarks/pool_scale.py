"""A pool of 200 ``sleep`` instances: started from the file (``replicas = 200``) against
scaled up from ``replicas = 0`` with ``otree scale w 200`` in a running tree.

From the file: the time from the first instance's spawn to the last one's (the event
log's timestamps; the process start-up before it is not the pool's). Scaled: the wall
time of ``otree scale w 200``, which replies once the pool has 200 running (so it
holds the client's own start-up and the round trip too). Then ``otree scale w 0``.
Prints a Markdown table: the median of ``--runs`` launches each, and the ratio.

    python -m benchmarks.pool_scale [--count 200] [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

OTREE = [sys.executable, "-m", "otree"]


def _events(path: Path) -> list[dict[str, object]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]


def _wait(predicate: object, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise TimeoutError("the tree did not get there")
        time.sleep(0.01)


def _launch(directory: Path, replicas: int) -> tuple[subprocess.Popen[bytes], Path, str]:
    tree = directory / "tree.toml"
    tree.write_text(f'[w]\ncmd = "sleep 600"\nreplicas = {replicas}\nintensity = 5\n')
    events, sock = directory / "events.jsonl", str(directory / "s.sock")
    events.unlink(missing_ok=True)
    proc = subprocess.Popen(
        [*OTREE, "run", str(tree), "--socket", sock, "--events", str(events)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    _wait(lambda: any(e["event"] == "tree_ready" for e in _events(events)))
    return proc, events, sock


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def from_file(directory: Path, count: int) -> float:
    proc, events, _ = _launch(directory, count)
    try:
        spawns = [float(e["ts"]) for e in _events(events) if e["event"] == "spawn"]  # type: ignore[arg-type]
        assert len(spawns) == count, len(spawns)
        return (max(spawns) - min(spawns)) * 1000
    finally:
        _stop(proc)


def scaled(directory: Path, count: int) -> tuple[float, float]:
    proc, _, sock = _launch(directory, 0)
    try:
        t0 = time.perf_counter()
        subprocess.run(
            [*OTREE, "scale", "w", str(count), "--socket", sock],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        up = (time.perf_counter() - t0) * 1000
        t0 = time.perf_counter()
        subprocess.run(
            [*OTREE, "scale", "w", "0", "--socket", sock], check=True, stdout=subprocess.DEVNULL
        )
        return up, (time.perf_counter() - t0) * 1000
    finally:
        _stop(proc)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    files, ups, downs = [], [], []
    with tempfile.TemporaryDirectory(prefix="otree-bench-") as d:
        for _ in range(args.runs):
            files.append(from_file(Path(d), args.count))
            up, down = scaled(Path(d), args.count)
            ups.append(up)
            downs.append(down)
    base = statistics.median(files)
    print(f"| {args.count} instances | median ms | best ms | / from the file |")
    print("|---|---|---|---|")
    for name, values in (
        ("from the file (first to last spawn)", files),
        (f"`otree scale w {args.count}` (wall, reply when all run)", ups),
        ("`otree scale w 0` (wall, all stopped)", downs),
    ):
        med = statistics.median(values)
        print(f"| {name} | {med:.1f} | {min(values):.1f} | {med / base:.2f}x |")


if __name__ == "__main__":
    main()
