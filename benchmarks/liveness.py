"""Idle cost of health checks: ``python -m benchmarks.liveness [--services N] [--interval S]``.

Runs ``otree run`` with N services, each a small Python listener with
``health = { tcp }`` on its own port (a check must be answered by the service
itself), waits for ``tree_ready``, then counts otree's wake-ups (context
switches) over an idle window, with and without the checks. The budget: the
wake-ups come from the probes only, about ``N / interval`` probes per second
(each probe is a timer, and a connect that completes at once or one
writability wake-up later). Prints one Markdown table; kills what it started.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import procs

LISTENER = (
    "import socket, sys\n"
    "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    "s.bind(('127.0.0.1', int(sys.argv[1]))); s.listen(64)\n"
    "while True: s.accept()[0].close()\n"
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tree(n: int, probes: bool, interval: float) -> str:
    out = []
    for i in range(n):
        port = _free_port()
        cmd = json.dumps([sys.executable, "-c", LISTENER, str(port)])
        out.append(f'[s{i}]\ncmd = {cmd}\nready = {{ tcp = "127.0.0.1:{port}" }}')
        if probes:
            out.append(
                f'health = {{ tcp = "127.0.0.1:{port}", interval = {interval}, '
                f"timeout = {interval / 2}, failures = 3 }}"
            )
    return "\n".join(out) + "\n"


def _measure(n: int, probes: bool, interval: float, window: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="otree-bench-") as d:
        tree = Path(d) / "tree.toml"
        tree.write_text(_tree(n, probes, interval))
        events = Path(d) / "events.jsonl"
        proc = subprocess.Popen(
            [sys.executable, "-m", "otree", "run", str(tree), "--events", str(events)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 60
            while b'"tree_ready"' not in (events.read_bytes() if events.exists() else b""):
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise SystemExit("otree did not get ready")
                time.sleep(0.05)
            time.sleep(min(interval, 2.0))  # the first probes are under way
            w0, c0 = procs.wakeups(proc.pid) or 0, procs.cpu_ns(proc.pid) or 0
            time.sleep(window)
            w1, c1 = procs.wakeups(proc.pid) or 0, procs.cpu_ns(proc.pid) or 0
            unhealthy = events.read_bytes().count(b'"unhealthy"')
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    rate = n / interval if probes else 0.0
    return {
        "services": n,
        "probes_per_s": round(rate, 2),
        "wakeups_per_s": round((w1 - w0) / window, 2),
        "cpu_ms_per_s": round((c1 - c0) / 1e6 / window, 3),
        "unhealthy": unhealthy,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=20)
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--window", type=float, default=10.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = [
        ("no health checks", _measure(args.services, False, args.interval, args.window)),
        (
            f"tcp health every {args.interval:g} s",
            _measure(args.services, True, args.interval, args.window),
        ),
    ]
    if args.json:
        print(json.dumps({name: row for name, row in rows}, indent=2))
        return
    print("| tree | services | probes/s | otree wake-ups/s | otree CPU ms/s | unhealthy |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, r in rows:
        print(
            f"| {name} | {r['services']} | {r['probes_per_s']} | {r['wakeups_per_s']} "
            f"| {r['cpu_ms_per_s']} | {r['unhealthy']} |"
        )


if __name__ == "__main__":
    main()
