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
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from otree.runtime.guard import DeathGuard

#: variables otree sets for its children; an inherited value must not leak through
_OWN_VARS = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "OTREE_LOCK_FD")


class SpawnError(Exception):
    """The process could not be started; ``str()`` is the reason, for humans."""


def spawn_reason(exc: OSError) -> str:
    """``No such file or directory: 'apii'`` from the OSError of a failed spawn."""
    text = exc.strerror or str(exc)
    if exc.filename is not None:
        return f"{text}: {exc.filename!r}"
    return text


#: otree's environment as children get it: (os.environ's data then, the copy made)
_inherited: tuple[dict[bytes, bytes], dict[str, str]] | None = None


def _inherited_env() -> dict[str, str]:
    """A copy of ``os.environ`` without otree's own variables: made again only when
    the environment changed (a spawn compares two small dicts instead of decoding
    every variable anew)."""
    global _inherited
    data: dict[bytes, bytes] | None = getattr(os.environ, "_data", None)
    if data is None or _inherited is None or _inherited[0] != data:
        env = dict(os.environ)
        for name in _OWN_VARS:
            env.pop(name, None)
        if data is None:  # not CPython's os.environ: no snapshot to compare
            return env
        _inherited = (dict(data), env)
    return dict(_inherited[1])


def child_env(extra: Mapping[str, str], notify_socket: str | None = None) -> dict[str, str]:
    env = _inherited_env()
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
    stdin: int | None = None,
    pass_fds: tuple[int, ...] = (),
    death_signal: int | None = None,
    umask: int | None = None,
    prepare: Callable[[], None] | None = None,
    placed: bool = False,
) -> int:
    """Start ``argv`` in a new session; return its PID or raise SpawnError.

    ``placed``: the caller put otree where the child is to start (a service's cgroup:
    ``Cgroups.enter``); otherwise otree first goes back to its own cgroup if a spawn
    before left it in another (``use_settle``).

    ``output`` is the fd the child's stdout and stderr go to (``None``: /dev/null);
    ``stdin`` its stdin (``None``: /dev/null). The child inherits no other fd but
    ``pass_fds``. ``death_signal``: the child gets it when otree dies. Where a death
    guard runs (``use_guard``), the guard is told the child's PID after the spawn;
    else the child sets ``PR_SET_PDEATHSIG`` (spawn from the main thread only: the
    kernel ties it to the thread that forked), through util-linux's ``setpriv
    --pdeathsig`` exec'd first in the child, so the spawn stays a ``vfork`` (a
    ``preexec_fn`` makes it a full fork that runs Python in the child: 2-3 ms a spawn
    instead of 0.2-0.4); without ``setpriv``, by a ``preexec_fn``.
    ``umask`` is set by ``subprocess`` itself (still a ``vfork``); ``prepare`` runs in
    the child before the exec (``otree.runtime.identity``: a user, limits), the death
    signal set after it (a change of uid clears it).
    """
    if not placed and _settle is not None:
        _settle()
    out = devnull() if output is None else output
    preexec = None
    guard = _guard if death_signal is not None and prepare is None else None
    if prepare is not None:  # a full fork already: the death signal set in the same hook
        preexec = _prepared(prepare, death_signal)
    elif death_signal is not None and guard is None:
        setpriv = _setpriv()
        if setpriv is not None:
            _check_command(argv, env, cwd)  # setpriv would exec it: say now if it cannot
            argv = [setpriv, "--pdeathsig", signal_name(death_signal), "--", *argv]
        else:
            preexec = _on_parent_death(death_signal)
    try:
        proc = subprocess.Popen(
            list(argv),
            stdin=devnull() if stdin is None else stdin,
            stdout=out,
            stderr=out,
            env=env,
            cwd=cwd,
            start_new_session=True,
            close_fds=True,
            pass_fds=pass_fds,
            preexec_fn=preexec,
            umask=-1 if umask is None else umask,
        )
    except OSError as exc:  # EMFILE, ENFILE, EAGAIN, ENOMEM too: a start failure
        raise SpawnError(spawn_reason(exc)) from None
    except subprocess.SubprocessError as exc:  # the preexec hook failed in the child
        raise SpawnError(str(exc)) from None
    except (ValueError, TypeError) as exc:  # e.g. an embedded NUL byte in argv or env
        raise SpawnError(str(exc)) from None
    # otree reaps the process itself: keep Popen from ever waiting on this PID again
    proc.returncode = 0
    if guard is not None and death_signal is not None:
        guard.add(proc.pid, death_signal)
    return proc.pid


#: the death guard that spawns with a death signal register their child with
#: (:mod:`otree.runtime.guard`); None: none runs, the death signal is set in the child
_guard: DeathGuard | None = None


def use_guard(guard: DeathGuard | None) -> None:
    """Spawns from now on register with ``guard`` (None: set ``PR_SET_PDEATHSIG``)."""
    global _guard
    _guard = guard


#: what puts otree back into its own cgroup before a spawn not placed by its caller
_settle: Callable[[], None] | None = None


def use_settle(settle: Callable[[], None] | None) -> None:
    """Spawns from now on call ``settle`` first unless ``placed`` (None: nothing)."""
    global _settle
    _settle = settle


_SETPRIV: list[str | None] = []


def _setpriv() -> str | None:
    """util-linux's ``setpriv`` if it has ``--pdeathsig`` (looked up once)."""
    if not _SETPRIV:
        found = None
        for directory in ("/usr/bin", "/bin", "/usr/sbin", "/sbin"):
            path = os.path.join(directory, "setpriv")
            if os.access(path, os.X_OK):
                found = path
                break
        if found is not None and os.environ.get("OTREE_NO_SETPRIV") is None:
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                probe = subprocess.run(
                    [found, "--pdeathsig", "TERM", "--", "/bin/true"],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    timeout=5,
                    check=False,
                )
                _SETPRIV.append(found if probe.returncode == 0 else None)
        if not _SETPRIV:
            _SETPRIV.append(None)
    return _SETPRIV[0]


#: where each command was found last: (name, PATH, cwd) -> its file
_FOUND: dict[tuple[str, str, str], str] = {}


def _check_command(argv: Sequence[str], env: Mapping[str, str], cwd: str | None) -> None:
    """Raise the SpawnError the exec of ``argv[0]`` would give (missing, not executable),
    as ``subprocess`` would have: ``No such file or directory: 'apii'``."""
    if not argv:
        raise SpawnError("an empty command")
    name = argv[0]
    if "\0" in name:
        raise SpawnError("embedded null byte")
    here = cwd or ""  # relative names are looked up from the child's directory
    key = (name, env.get("PATH", os.defpath), here)
    found = _FOUND.get(key)
    if found is not None and os.access(found, os.X_OK):  # one stat, not one per PATH entry
        return
    if "/" in name:
        candidates = [os.path.join(here, name)]
    else:
        dirs = env.get("PATH", os.defpath).split(os.pathsep)
        candidates = [os.path.join(here, d or ".", name) for d in dirs]
    denied = False
    for path in candidates:
        if os.path.isfile(path):
            if os.access(path, os.X_OK):
                _FOUND[key] = path
                return
            denied = True
    error = "Permission denied" if denied else "No such file or directory"
    raise SpawnError(f"{error}: {name!r}")


PR_SET_PDEATHSIG = 1
_prctl: Any = None
_death_hooks: dict[int, Callable[[], None]] = {}


def _on_parent_death(signum: int) -> Callable[[], None]:
    """The ``preexec_fn`` that asks for ``signum`` when otree dies (one per signal, made
    once: it runs in the forked child, where it must allocate as little as it can)."""
    hook = _death_hooks.get(signum)
    if hook is None:
        global _prctl
        if _prctl is None:
            import ctypes  # only here: it is slow to import

            _prctl = ctypes.CDLL(None, use_errno=True).prctl
        prctl, parent, getppid, kill, me = _prctl, os.getpid(), os.getppid, os.kill, os.getpid

        def hook() -> None:
            prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0)
            if getppid() != parent:  # otree died before the prctl: as if just after
                kill(me(), signum)

        _death_hooks[signum] = hook
    return hook


#: signals whose default action is to ignore them, or that report a fault of otree's own:
#: an inherited SIG_IGN of these goes back to SIG_DFL in otree itself
_TO_DEFAULT = frozenset(
    getattr(signal, name)
    for name in (
        "SIGCHLD",
        "SIGCONT",
        "SIGURG",
        "SIGWINCH",
        "SIGILL",
        "SIGTRAP",
        "SIGABRT",
        "SIGBUS",
        "SIGFPE",
        "SIGSEGV",
        "SIGSYS",
    )
    if hasattr(signal, name)
)
#: ignored by otree on purpose (a failed write instead); ``subprocess`` gives a child
#: both back at their default
_OTREE_IGNORES = frozenset((signal.SIGPIPE, signal.SIGXFSZ))


def _ignore(signum: int, frame: Any) -> None:
    """A handler that does nothing: otree still ignores the signal, but a handler (unlike
    SIG_IGN) is reset to the default by the exec of a child."""


def reset_inherited_signals() -> None:
    """Undo the SIG_IGN dispositions otree inherited (a shell's background job ignores
    INT and QUIT, ``nohup`` HUP), so that its children start with the defaults: those
    whose default is harmless (CHLD: an ignored one would reap otree's children behind
    its back) or that report a fault go back to SIG_DFL; the others get a handler that
    does nothing (otree goes on ignoring them, or handles them later)."""
    for signum in signal.valid_signals():
        if signum in (signal.SIGKILL, signal.SIGSTOP) or signum in _OTREE_IGNORES:
            continue
        try:
            if signal.getsignal(signum) != signal.SIG_IGN:
                continue
            signal.signal(signum, signal.SIG_DFL if signum in _TO_DEFAULT else _ignore)
        except (OSError, ValueError):  # one the kernel or Python keeps for itself
            continue


def _prepared(prepare: Callable[[], None], death_signal: int | None) -> Callable[[], None]:
    """The ``preexec_fn`` that runs ``prepare`` and then asks for ``death_signal``."""
    if death_signal is None:
        return prepare
    on_death = _on_parent_death(death_signal)

    def hook() -> None:
        prepare()
        on_death()

    return hook


def has_controlling_terminal() -> bool:
    """Whether this process has a controlling terminal (it was started from one)."""
    try:
        fd = os.open("/dev/tty", os.O_RDONLY | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError:
        return False
    os.close(fd)
    return True


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


def parse_signal(name: str) -> int | None:
    """The number of signal ``name`` (``HUP``, ``SIGHUP``, ``hup``), None if there is none."""
    text = name.strip().upper().removeprefix("SIG")
    if not text.isalnum() or text.isdigit():
        return None
    value = getattr(signal.Signals, "SIG" + text, None)
    return int(value) if isinstance(value, signal.Signals) else None


def signal_main(pid: int, signum: int, pidfd: int | None = None) -> bool:
    """Signal process ``pid`` alone (through its pidfd when there is one); False if gone."""
    try:
        if pidfd is not None:
            signal.pidfd_send_signal(pidfd, signum)
        else:
            os.kill(pid, signum)
    except (ProcessLookupError, PermissionError):
        return False
    return True


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
    guard = _guard
    if guard is not None and pid in guard:  # tell it while the zombie still holds the PID
        try:
            info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT | (0 if block else os.WNOHANG))
        except ChildProcessError:
            info = None
        if info is not None and info.si_pid == 0:
            return None  # it runs
        guard.remove(pid)
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
