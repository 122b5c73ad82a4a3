"""The floor: a bare fork+exec respawn loop, the least a supervisor can do.

    python floor.py SPEC.json

SPEC is ``{"children": [{"argv": [...], "out": PATH or null}, ...]}``. Every
child starts at once in its own session, with stdout and stderr appended
straight to ``out`` (no relay) or /dev/null; ``os.wait()`` respawns whichever
exits. SIGTERM: TERM every group, wait for all, exit 0. No readiness, no
limits, no logging, no order: only the fork, the exec and the wait.
"""

import contextlib
import json
import os
import signal
import sys


class Stop(Exception):
    pass


def on_term(signum, frame):
    raise Stop


def main() -> int:
    with open(sys.argv[1]) as f:
        children = json.load(f)["children"]
    pids: dict[int, int] = {}
    term = {signal.SIGTERM}

    def start(i: int) -> None:
        argv, out = children[i]["argv"], children[i]["out"] or os.devnull
        pid = os.fork()
        if pid == 0:
            try:
                os.setsid()
                signal.pthread_sigmask(signal.SIG_UNBLOCK, term)
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
                os.dup2(fd, 1)
                os.dup2(fd, 2)
                os.execv(argv[0], argv)
            finally:
                os._exit(127)
        pids[pid] = i

    signal.signal(signal.SIGTERM, on_term)
    try:
        signal.pthread_sigmask(signal.SIG_BLOCK, term)  # no Stop between fork and record
        for i in range(len(children)):
            start(i)
        while True:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, term)
            pid, _ = os.wait()
            signal.pthread_sigmask(signal.SIG_BLOCK, term)
            i = pids.pop(pid, None)
            if i is not None:
                start(i)
    except Stop:
        pass
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, term)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
    while pids:
        try:
            pid, _ = os.wait()
        except ChildProcessError:
            break
        pids.pop(pid, None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
