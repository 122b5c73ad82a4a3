"""Starting, signalling and reaping OS processes: the only place otree forks, execs,
signals a process group and waits for a child.

Every process starts in a new session, so it leads its own process group and
the group can be signalled as a whole. ``subprocess.Popen`` does the fork and
exec (vfork + exec in C, with exec errors carried back through a pipe), which
is faster than ``os.fork`` from Python and reports a missing binary, a
permission error or a bad working directory as an ``OSError``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import subprocess
from collections.abc import Mapping, Sequence

#: variables otree sets for its children; an inherited value must not leak through
_OWN_VARS = ("NOTIFY_SOCKET",)


class SpawnError(Exception):
    """The process could not be started; ``str()`` is the reason, for humans."""


def spawn_reason(exc: OSError) -> str:
    """``No such file or directory: 'apii'`` from the OSError of a failed spawn."""
    text = exc.strerror or str(exc)
    if exc.filename is not None:
        return f"{text}: {exc.filename!r}"
    return text


def child_env(extra: Mapping[str, str], notify_socket: str | None = None) -> dict[str, str]:
    env = dict(os.environ)
    for name in _OWN_VARS:
        env.pop(name, None)
    env.update(extra)
    if notify_socket is not None:
        env["NOTIFY_SOCKET"] = notify_socket
    return env


def with_own_pid(name: str, argv: Sequence[str], env: Mapping[str, str]) -> list[str]:
    """``argv`` run through ``/bin/sh``, which puts its own PID in ``$name`` and execs
    ``argv`` (same PID): the way to give a child its PID before it exists
    (``WATCHDOG_PID``). ``argv[0]`` is looked up first, so a missing program is
    still a SpawnError, not a shell's exit 127."""
    import shutil  # only for watchdog services

    program = argv[0]
    if "/" not in program and shutil.which(program, path=env.get("PATH")) is None:
        raise SpawnError(f"No such file or directory: {program!r}")
    script = f'{name}=$$; export {name}; exec "$@"'
    return ["/bin/sh", "-c", script, program, *argv]


_devnull: int | None = None


def devnull() -> int:
    global _devnull
    if _devnull is None:
        _devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
    return _devnull


def spawn(
    argv: Sequence[str],
    env: Mapping[str, str],
    cwd: str | None = None,
    *,
    output: int | None = None,
) -> int:
    """Start ``argv`` in a new session; return its PID or raise SpawnError.

    ``output`` is the fd the child's stdout and stderr go to (``None``: /dev/null);
    stdin is /dev/null. The child inherits no other fd.
    """
    out = devnull() if output is None else output
    try:
        proc = subprocess.Popen(
            list(argv),
            stdin=devnull(),
            stdout=out,
            stderr=out,
            env=env,
            cwd=cwd,
            start_new_session=True,
            close_fds=True,
        )
    except OSError as exc:
        raise SpawnError(spawn_reason(exc)) from None
    except (ValueError, TypeError) as exc:  # e.g. an embedded NUL byte in argv or env
        raise SpawnError(str(exc)) from None
    # otree reaps the process itself: keep Popen from ever waiting on this PID again
    proc.returncode = 0
    return proc.pid


def pipe() -> tuple[int, int]:
    """A pipe for a child's output: (read end non-blocking, write end blocking)."""
    r, w = os.pipe2(os.O_CLOEXEC)
    os.set_blocking(r, False)
    return r, w


def describe_status(status: int) -> tuple[int | None, str | None]:
    """(code, None) for an exit, (None, "KILL") for a death by signal."""
    if os.WIFSIGNALED(status):
        return None, signal_name(os.WTERMSIG(status))
    if os.WIFEXITED(status):
        return os.WEXITSTATUS(status), None
    return None, None


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name.removeprefix("SIG")
    except ValueError:
        return str(signum)


def signal_number(name: str) -> int:
    return int(getattr(signal, "SIG" + name.upper().removeprefix("SIG")))


def kill_group(pgid: int, signum: int) -> bool:
    """Send ``signum`` to process group ``pgid``; False if the group is gone."""
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False
    except OSError as exc:
        if exc.errno == errno.ESRCH:
            return False
        raise
    return True


def kill_process(pid: int, signum: int) -> bool:
    """Send ``signum`` to process ``pid`` alone; False if it cannot be signalled."""
    try:
        os.kill(pid, signum)
    except OSError:
        return False
    return True


def send_signal(pid: int, signum: int, pidfd: int | None = None) -> bool:
    """Signal the process group led by ``pid``; False if there is nothing left to signal.

    The caller guarantees ``pid`` is an unreaped child of ours, so its number still
    names its group. The main process gets the signal through its pidfd as well when
    the group is gone but the process (e.g. one that left its group) is not.
    """
    if kill_group(pid, signum):
        return True
    if pidfd is not None:
        try:
            signal.pidfd_send_signal(pidfd, signum)
            return True
        except OSError:
            return False
    return False


#: the wait status of a child that was reaped elsewhere (should not happen): exit 255
LOST_STATUS = 255 << 8


def reap(pid: int, *, kill_leftovers: bool = False, block: bool = False) -> int | None:
    """Reap our child ``pid``: its wait status, or None while it runs (never with ``block``).

    With ``kill_leftovers``, the process group ``pid`` leads gets SIGKILL first, while
    the unreaped PID still pins the group id (once reaped, the number may be reused).
    A PID that is not (or no longer) our child reads as ``LOST_STATUS``.
    """
    if kill_leftovers:
        kill_group(pid, signal.SIGKILL)
    try:
        done, status = os.waitpid(pid, 0 if block else os.WNOHANG)
    except ChildProcessError:
        return LOST_STATUS
    return status if done else None


def exited_child() -> int | None:
    """A child of ours that has exited, left unreaped (a zombie still); None if none has."""
    try:
        info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return None
    if info is None or info.si_pid == 0:
        return None
    return info.si_pid


def reap_exited() -> None:
    """Reap every child of ours that has exited, without waiting for the others."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


PR_SET_CHILD_SUBREAPER = 36


def set_subreaper() -> None:
    """Make orphaned descendants re-parent to this process (Linux prctl)."""
    import ctypes  # only here: it is slow to import

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), "prctl(PR_SET_CHILD_SUBREAPER)")


def raise_fd_limit(needed: int) -> None:
    """Raise the soft RLIMIT_NOFILE to ``needed`` (at most the hard limit) if it is lower.

    Each service holds a few fds in otree (output pipe, pidfd, log file, probe);
    a large tree would hit the usual soft limit of 1024. Children inherit it.
    """
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return
    new = needed if hard == resource.RLIM_INFINITY else min(hard, needed)
    if new > soft:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
