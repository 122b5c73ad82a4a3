"""What a service's identity and limits cost a spawn: ``otree.runtime.posix.spawn`` of
``/bin/true`` with nothing to set up (the vfork path), with ``umask`` only (still
vfork), and with a user, nice and limits (a full fork and the setup in the child).
Root only (a user to switch to: ``nobody``). Prints a Markdown table, p50 and p95 per
case, and the ratio of each p50 to the plain spawn's.

    python -m benchmarks.spawn_setup [--runs 300]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import time

from otree.core.spec import Service
from otree.runtime import identity, posix

CASES = {
    "plain": {},
    "umask": {"umask": "0077"},
    "user": {"user": "nobody"},
    "user + nice + 3 limits": {
        "user": "nobody",
        "nice": 5,
        "limits": {"nofile": 4096, "nproc": [512, 1024], "core": 0},
    },
}


def spawn_ms(spec: Service, runs: int) -> list[float]:
    setup = identity.setup_of(spec)
    env = posix.child_env(identity.identity_env(setup, {}))
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        pid = posix.spawn(
            ["/bin/true"],
            env,
            death_signal=signal.SIGTERM,
            umask=spec.umask,
            prepare=setup.apply if setup is not None and setup.needs_fork else None,
        )
        times.append((time.perf_counter() - start) * 1000)
        os.waitpid(pid, 0)
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=300)
    runs = parser.parse_args().runs
    rows, base = [], None
    for name, fields in CASES.items():
        times = spawn_ms(Service("b", cmd="/bin/true", **fields), runs)
        p50 = statistics.median(times)
        p95 = statistics.quantiles(times, n=20)[18]
        base = base or p50
        rows.append(f"| {name} | {p50:.3f} | {p95:.3f} | {p50 / base:.2f}x |")
    print("| spawn | p50 ms | p95 ms | p50 / plain |\n|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
