"""How much a spawn into a cgroup costs, four ways (docs/cgroups.md; issue 13).

``python -m benchmarks.cgroup_spawn`` as root where a cgroup2 may be written. Each
round spawns 200 ``sleep`` processes each way, interleaved; each way is checked to
have put every process in the cgroup; the median and the best of 9 rounds.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable

from otree.runtime import posix
from otree.runtime.cgroups import Cgroups, Group

ARGV = ["/bin/sleep", "100"]
N = 200
ROUNDS = 9


def ways(group: Group, env: dict[str, str]) -> dict[str, Callable[[], int]]:
    procs = os.path.join(group.directory, "cgroup.procs")

    def plain() -> int:
        return posix.spawn(ARGV, env, death_signal=signal.SIGTERM)

    def self_move() -> int:
        with group.entered():
            return posix.spawn(ARGV, env, death_signal=signal.SIGTERM)

    def sh_helper() -> int:
        script = f'echo $$ > {procs} && exec "$@"'
        return posix.spawn(["/bin/sh", "-c", script, "sh", *ARGV], env, death_signal=signal.SIGTERM)

    def preexec() -> int:
        def hook() -> None:
            with open(procs, "w") as f:
                f.write(str(os.getpid()))

        p = subprocess.Popen(
            ARGV,
            env=env,
            start_new_session=True,
            preexec_fn=hook,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        p.returncode = 0  # reaped below
        return p.pid

    return {"plain": plain, "self_move": self_move, "sh_helper": sh_helper, "preexec": preexec}


def main() -> None:
    cgroups = Cgroups.create()
    group = cgroups.group("bench")
    env = posix.child_env({})
    results: dict[str, list[float]] = {}
    try:
        for _ in range(ROUNDS):
            for name, spawn in ways(group, env).items():
                start = time.perf_counter()
                pids = [spawn() for _ in range(N)]
                results.setdefault(name, []).append((time.perf_counter() - start) / N * 1000)
                time.sleep(0.05)  # the sh helper moves itself after its start
                if name != "plain":
                    assert set(pids) <= set(group.members()), name
                for pid in pids:
                    os.kill(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)
    finally:
        cgroups.close()
    for name, times in results.items():
        times.sort()
        print(f"{name:10s} median {times[len(times) // 2]:.2f} ms, best {times[0]:.2f} ms")


if __name__ == "__main__":
    main()
