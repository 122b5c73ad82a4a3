"""What looking costs at 1000 services: ``otree status``, ``otree status --json`` and
``otree metrics`` wall time (a fresh ``python -m otree`` each, as a user or a script runs
it), and ``GET /metrics`` of ``otree run --metrics`` (what a Prometheus scrape waits;
no client start-up in it). Prints a Markdown table: p50 and p95 of each.

    python -m benchmarks.observe [--services 1000] [--runs 20]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def otree(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "OTREE_SOCKET"}
    return subprocess.run(
        [sys.executable, "-m", "otree", *args], capture_output=True, text=True, env=env, check=False
    )


def scrape(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: bench\r\n\r\n")
        data = b""
        while chunk := s.recv(1 << 16):
            data += chunk
    assert data.startswith(b"HTTP/1.1 200 OK"), data[:100]
    return data


def timed(runs: int, body: object) -> list[float]:
    out = []
    for _ in range(runs):
        start = time.perf_counter()
        body()  # type: ignore[operator]
        out.append((time.perf_counter() - start) * 1000)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    n = args.services
    work = Path(tempfile.mkdtemp(prefix="otree-observe-"))
    sock = str(work / "ctl.sock")
    port = free_port()
    tree = "".join(f'[s{i}]\ncmd = ["sleep", "3600"]\n' for i in range(n))
    (work / "tree.toml").write_text(tree)
    with open(work / "out.txt", "wb") as out:
        run = subprocess.Popen(
            [
                *(sys.executable, "-m", "otree", "run", str(work / "tree.toml")),
                *("--socket", sock, "--metrics", f"127.0.0.1:{port}"),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 120
        while True:
            r = otree("status", "--json", "--socket", sock)
            if r.returncode == 0:
                nodes = json.loads(r.stdout)["nodes"]
                if sum(1 for x in nodes if x["state"] == "running") == n + 1:
                    break
            if time.monotonic() > deadline or run.poll() is not None:
                raise SystemExit(f"the tree did not come up: {(work / 'out.txt').read_text()}")
            time.sleep(0.2)

        def check(*cmd: str) -> object:
            def body() -> None:
                r = otree(*cmd, "--socket", sock)
                assert r.returncode == 0, r.stderr

            return body

        cases = {
            "`otree status`": check("status"),
            "`otree status --json`": check("status", "--json"),
            "`otree status s0` (one node in full)": check("status", "s0"),
            "`otree events` (the ring)": check("events"),
            "`otree metrics`": check("metrics"),
            "`GET /metrics` (HTTP, no client start-up)": lambda: scrape(port),
            "`python -c pass` (the interpreter alone)": lambda: subprocess.run(
                [sys.executable, "-c", "pass"], check=True
            ),
        }
        size = len(scrape(port))
        print(f"{n} services (`sleep 3600`), {args.runs} runs each; the exposition is {size} B\n")
        print("| command | p50 ms | p95 ms |")
        print("|---|---|---|")
        for name, body in cases.items():
            times = timed(args.runs, body)
            p95 = statistics.quantiles(times, n=20)[18]
            print(f"| {name} | {statistics.median(times):.1f} | {p95:.1f} |")
    finally:
        if run.poll() is None:
            run.send_signal(signal.SIGTERM)
            try:
                run.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(run.pid, signal.SIGKILL)
                run.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
