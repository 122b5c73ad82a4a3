"""``otree events -f`` across a crash and reloads: every line of the event log, once each."""

from __future__ import annotations

import os
import signal
import subprocess
import threading

from reloadkit import Start, ctl, reload
from support.waits import wait_until


class _Reader:
    """The lines a follower prints, read in a thread."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))


def test_events_f_gets_every_line_of_the_event_log_once_across_a_crash_and_reloads(
    tree: Start,
) -> None:
    text = (
        'intensity = 50\n[db]\ncmd = "sleep 60"\n'
        "[api]\ncmd = \"sh -c 'sleep 0.2; exit 1'\"\n"
        "backoff = { initial = 0.1, max = 0.1, jitter = 0 }\n"
    )
    run = tree(text)
    sock = run.sock  # type: ignore[attr-defined]
    follower = _Reader(ctl("events", "-f", sock=sock, wait=False))
    try:
        os.kill(run.running_pid("db"), signal.SIGKILL)  # a crash
        run.wait_for("spawn", "db", count=2)
        reload(run, sock, 1)
        run.wait_for("exit", "api", count=len(run.find("exit", "api")) + 2)  # more events
        run.file.write_text(text + '[late]\ncmd = "sleep 60"\n')  # type: ignore[attr-defined]
        reload(run, sock, 2)
        # nothing is lost nor repeated: the follower has the file's very lines, in order
        late = run.events_file.read_text().splitlines().index(_spawn_line(run, "late"))
        wait_until(lambda: len(follower.lines) > late, what="the follower to catch up")
        assert follower.proc.poll() is None, "the follower ended at a reload"
        # the ring crossed both re-execs too: `otree events` without -f has all of it
        r = ctl("events", sock=sock)
        assert r.returncode == 0, r.stderr
        got = r.stdout.splitlines()
        assert len(got) > late
        assert got == run.events_file.read_text().splitlines()[: len(got)]
    finally:
        run.send(signal.SIGTERM)
        assert run.wait_exit() == 0
        assert follower.proc.wait(timeout=30) == 0  # the tree stopped: following ends, exit 0
        follower.thread.join(timeout=30)
    # nothing lost nor repeated: the follower has the file's very lines, in order, up to
    # the socket's close at the end of the shutdown
    lines = run.events_file.read_text().splitlines()
    assert follower.lines == lines[: len(follower.lines)], (follower.lines, lines)
    assert len(follower.lines) > late
    assert sum('"reexec"' in line for line in follower.lines) == 2
    crash = [line for line in follower.lines if '"path": "db"' in line and '"KILL"' in line]
    assert len(crash) == 1 and '"event": "exit"' in crash[0]
    assert len(set(follower.lines)) == len(follower.lines)


def _spawn_line(run: object, path: str) -> str:
    spawn = run.wait_for("spawn", path)  # type: ignore[attr-defined]
    for line in run.events_file.read_text().splitlines():  # type: ignore[attr-defined]
        if f'"pid": {spawn["pid"]}' in line and '"spawn"' in line:
            return line
    raise AssertionError(f"no spawn line of {path}")
