"""A re-exec'd otree that cannot start still stops the children it was handed.

After ``os.execv`` the children are this process's (same PID), and the new
image is whatever otree is installed now. If it cannot start (a syntax
error, a missing dependency, an error while taking over), the children must
not be left running without a supervisor, nor started twice by the next
``otree run``. So ``import otree`` in a process that has a handoff to read
(``OTREE_HANDOFF_FD``) calls :func:`arm` first, before any other otree code:
it reads the handoff into memory and registers an exit handler. Until
:func:`taken` says the new image has taken the children over, any way this
process ends (an uncaught exception, ``sys.exit``, an error exit) first stops
every handed-over child in reverse start order (its stop signal to its
group, its shutdown time, then ``KILL``), then every other child of ours, and
exits 4.

This module imports only the standard library (and reads the handoff as
plain JSON), so it works whatever else of otree is broken.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import sys
import time
from typing import Any

#: the environment variable naming the inherited handoff fd
ENV_FD = "OTREE_HANDOFF_FD"
#: the exit code of a re-exec that could not be completed
EXIT = 4
#: how long a child with no settings of its own (not in the handoff) gets after TERM
GRACE = 5.0

_state: dict[str, Any] = {"raw": None, "armed": False, "done": False}


def arm() -> None:
    """Read the handoff (the fd is closed; ``raw()`` has its bytes) and stop the children
    at exit unless :func:`taken` is called first. Idempotent."""
    if _state["armed"]:
        return
    _state["armed"] = True
    text = os.environ.get(ENV_FD, "")
    if text.isdigit():
        chunks = []
        try:
            while True:
                chunk = os.read(int(text), 1 << 20)
                if not chunk:
                    break
                chunks.append(chunk)
            _state["raw"] = b"".join(chunks)
        except OSError:
            pass  # the reader says what is wrong with it (ReexecError)
        with contextlib.suppress(OSError):
            os.close(int(text))
    atexit.register(_at_exit)


def raw() -> bytes | None:
    """The handoff as :func:`arm` read it (None: not armed, or the fd could not be read)."""
    data = _state["raw"]
    return data if isinstance(data, bytes) else None


def taken() -> None:
    """The new image watches the handed-over children now: nothing to do at exit."""
    _state["done"] = True


def _at_exit() -> None:
    if _state["done"]:
        return
    _line("the re-executed otree could not start; stopping the children it was handed")
    stop_all()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(EXIT)


def stop_all() -> None:
    """Stop the handed-over children in reverse start order, then any other child of ours;
    reap them all. Marks the handoff as dealt with."""
    _state["done"] = True
    _end_guard()  # first: it must never signal a PID reaped below (and perhaps reused)
    for pid, signum, shutdown in reversed(_handed_over()):
        _stop(pid, signum, shutdown)
    rest = _children()
    for pid in rest:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + GRACE
    while rest and time.monotonic() < deadline:
        rest = [pid for pid in rest if not _exited(pid)]
        if rest:
            time.sleep(0.02)
    for pid in rest:
        _signal(pid, signal.SIGKILL)
    for pid in _children():
        _reap(pid)
    _end_cgroups()
    while True:  # readiness probes, orphans adopted as a subreaper
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _end_cgroups() -> None:
    """The handed-over cgroups (``cgroups``): what is left in them (a daemon a service
    forked) is killed, the directories removed, as the end of any otree does."""
    data = raw()
    if data is None:
        return
    import json

    try:
        base = json.loads(data.partition(b"\n")[0]).get("cgroup")
    except Exception:
        return
    if not isinstance(base, str) or not os.path.isdir(base):
        return
    with contextlib.suppress(OSError), open(os.path.join(base, "cgroup.kill"), "w") as f:
        f.write("1")
    deadline = time.monotonic() + GRACE
    while time.monotonic() < deadline:  # a moment: SIGKILL does not wait
        with contextlib.suppress(OSError), open(os.path.join(base, "cgroup.events")) as f:
            if "populated 0" in f.read():
                break
        time.sleep(0.02)
    for here, dirs, _ in os.walk(base, topdown=False):
        for d in dirs:
            with contextlib.suppress(OSError):
                os.rmdir(os.path.join(here, d))
    with contextlib.suppress(OSError):
        os.rmdir(base)


def _handed_over() -> list[tuple[int, int, float | None]]:
    """(pid, stop signal, shutdown seconds or None for 'infinity') in start order."""
    data = raw()
    if data is None:
        return []
    import json

    try:
        doc = json.loads(data.partition(b"\n")[0])  # the JSON line: raw ring bytes follow
        engine = doc["engine"]
        records = [r for r in engine["nodes"].values() if r.get("kind") == "service"]
        records += list(engine.get("orphans", []))
        out = []
        for rec in records:
            if isinstance(rec.get("pid"), int):
                out.append((rec["pid"], _signum(rec.get("stop_signal")), _seconds(rec)))
        return out
    except Exception:  # not a document we can read: every child is stopped alike below
        return []


def _end_guard() -> None:
    """Tell the death guard handed over (``otree.runtime.guard``) that this is a clean
    end: it exits and signals nothing (the children are stopped in order after this)."""
    data = raw()
    if data is None:
        return
    import json

    try:
        fd = json.loads(data.partition(b"\n")[0])["guard"]["end"]
    except Exception:  # no guard, or not a document we can read
        return
    if isinstance(fd, int):
        with contextlib.suppress(OSError):
            os.write(fd, b".\n")
            os.close(fd)


def _signum(name: Any) -> int:
    number = getattr(signal, f"SIG{name}", signal.SIGTERM) if isinstance(name, str) else 15
    return int(number)


def _seconds(rec: dict[str, Any]) -> float | None:
    shutdown = rec.get("shutdown")
    if shutdown == "brutal_kill":
        return 0.0
    if isinstance(shutdown, (int, float)) and not isinstance(shutdown, bool):
        return float(shutdown)
    return None  # infinity


def _stop(pid: int, signum: int, shutdown: float | None) -> None:
    if _exited(pid):
        _reap(pid)
        return
    _signal(pid, signal.SIGKILL if shutdown == 0.0 else signum)
    deadline = None if shutdown is None else time.monotonic() + shutdown
    while not _exited(pid):
        if deadline is not None and time.monotonic() >= deadline:
            _signal(pid, signal.SIGKILL)
            break
        time.sleep(0.02)
    _reap(pid)


def _signal(pid: int, signum: int) -> None:
    """Its group; the process alone if it left the group (or never led one)."""
    try:
        os.killpg(pid, signum)
        return
    except OSError:
        pass
    with contextlib.suppress(OSError):
        os.kill(pid, signum)


def _exited(pid: int) -> bool:
    """Whether our child ``pid`` has exited (a zombie, not reaped yet) or is not ours."""
    try:
        info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return True
    return info is not None and info.si_pid != 0


def _reap(pid: int) -> None:
    """Kill what is left of its group while its zombie still pins the group id, reap it."""
    with contextlib.suppress(OSError):
        os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


def _children() -> list[int]:
    me = os.getpid()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                fields = f.read().rpartition(b")")[2].split()
        except OSError:
            continue
        if len(fields) > 1 and int(fields[1]) == me:
            found.append(int(entry))
    return found


def _line(text: str) -> None:
    try:
        sys.stderr.write(f"otree: {text}\n")
        sys.stderr.flush()
    except Exception:
        pass
