"""Idle cost of health checks: ``python -m benchmarks.liveness [--services N] [--interval S]``.

Runs ``otree run`` with N sleeping services, each with ``health = { tcp }``
against a listener of this harness (which accepts and closes every
connection), waits for ``tree_ready``, then counts otree's wake-ups (context
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
import threading
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import procs


def _acceptor(server: socket.socket, stop: threading.Event) -> None:
    server.settimeout(0.2)
    while not stop.is_set():
        try:
            conn, _ = server.accept()
        except (TimeoutError, OSError):
            continue
        conn.close()


def _tree(n: int, port: int | None, interval: float) -> str:
    out = []
    for i in range(n):
        out.append(f'[s{i}]\ncmd = "sleep 3600"')
        if port is not None:
            timeout = interval / 2
            out.append(
                f'health = {{ tcp = "127.0.0.1:{port}", interval = {interval}, '
                f"timeout = {timeout}, failures = 3 }}"
            )
    return "\n".join(out) + "\n"


def _measure(n: int, port: int | None, interval: float, window: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="otree-bench-") as d:
        tree = Path(d) / "tree.toml"
        tree.write_text(_tree(n, port, interval))
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
    probes = n / interval if port is not None else 0.0
    return {
        "services": n,
        "probes_per_s": round(probes, 2),
        "wakeups_per_s": round((w1 - w0) / window, 2),
        "cpu_ms_per_s": round((c1 - c0) / 1e6 / window, 3),
        "unhealthy": unhealthy,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=50)
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--window", type=float, default=10.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1024)
    stop = threading.Event()
    thread = threading.Thread(target=_acceptor, args=(server, stop), daemon=True)
    thread.start()
    try:
        rows = [
            ("no health checks", _measure(args.services, None, args.interval, args.window)),
            (
                f"tcp health every {args.interval:g} s",
                _measure(args.services, server.getsockname()[1], args.interval, args.window),
            ),
        ]
    finally:
        stop.set()
        thread.join()
        server.close()
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
