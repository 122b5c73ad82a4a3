"""Kill mode ``cgroups``: each service in a cgroup v2 of its own, so nothing escapes it.

The layout is ``<otree's own cgroup>/otree-<pid>/<path parts>`` below the first
cgroup2 mount of ``/proc/self/mountinfo`` where otree may create a directory
(``web.api`` is ``otree-<pid>/web/api``). A service's process is put in its
cgroup at birth: otree moves itself into the service's cgroup for the spawn
(:meth:`Cgroups.enter`), so the fast ``vfork`` spawn stays as it is and the
child is a member before it runs a single instruction. A batch of spawns (a
tree's start: one after another with nothing awaited between) moves otree
from one service's cgroup straight to the next, and it goes back to its own
(:meth:`Cgroups.settle`) when the batch ends, and before anything else that a
stay would change: another spawn (a probe, the guard, a preflight), a signal,
count or removal of a cgroup, a re-exec. The move takes the whole process, its
worker thread too (a thread of a domain cgroup cannot be moved alone; it only
looks up names). What otree allocates during the stay is charged to that
service's cgroup (a few pages at most).

A stop signals every member (:meth:`Group.signal`); a kill writes
``cgroup.kill``. When the main process is reaped, what is left in its cgroup
is killed the same way, and the exit waits for ``populated 0`` in
``cgroup.events`` (a change of that file wakes ``poll`` with ``POLLPRI``: an
inner ``epoll`` whose fd is a reader of the loop, nothing polls). An unreaped
zombie already reads ``populated 0``, so an exit is only over when both have
happened.

Otree's directories are removed when it ends; at start, the empty directories
an otree that died left (``otree-<N>`` of a PID that no longer runs) are
removed too. ``OTREE_TEST_MOUNTINFO`` names another file to read instead of
``/proc/self/mountinfo``: test-only, so the tests can show a machine with no
cgroup2 (``/dev/null``).
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
from collections.abc import Callable
from typing import Any

#: test-only: the mount table to read instead of ``/proc/self/mountinfo``
ENV_MOUNTINFO = "OTREE_TEST_MOUNTINFO"
#: how long the end of otree waits for its cgroups to empty after ``cgroup.kill``
CLOSE_WAIT = 5.0
#: how long a start waits for the processes a dead otree left in its cgroups to go
DEAD_WAIT = 2.0
#: how long an exit waits for its cgroup to empty after SIGKILL (a process stuck in the
#: kernel, state D) before it is reported all the same
STUCK_WAIT = 10.0


class Unavailable(Exception):
    """No cgroup2 otree may write; ``str()`` says why, for humans."""


def _unescape(text: str) -> str:
    """A mountinfo field with its octal escapes (``\\040`` is a space) undone."""
    out, i = [], 0
    while i < len(text):
        if text[i] == "\\" and text[i + 1 : i + 4].isdigit():
            out.append(chr(int(text[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def mounts(mountinfo: str | None = None) -> list[tuple[str, str]]:
    """Every cgroup2 mount as ``(root inside the hierarchy, mount point)``, in order."""
    name = mountinfo or os.environ.get(ENV_MOUNTINFO) or "/proc/self/mountinfo"
    try:
        with open(name, encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError as exc:
        raise Unavailable(f"cannot read {name}: {exc.strerror}") from None
    out = []
    for line in lines:
        head, sep, tail = line.partition(" - ")
        fields = head.split()
        if sep and len(fields) >= 5 and tail.split()[:1] == ["cgroup2"]:
            out.append((_unescape(fields[3]), _unescape(fields[4])))
    return out


def own_cgroup() -> str:
    """Otree's own cgroup v2 path (the ``0::`` line of ``/proc/self/cgroup``)."""
    try:
        with open("/proc/self/cgroup", encoding="utf-8") as f:
            for line in f:
                if line.startswith("0::"):
                    return line[3:].strip() or "/"
    except OSError as exc:
        raise Unavailable(f"cannot read /proc/self/cgroup: {exc.strerror}") from None
    raise Unavailable("otree is in no cgroup v2 (/proc/self/cgroup has no 0:: line)")


def _write(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def _read(path: str) -> str:
    """A cgroup file whole (read in full: ``cgroup.procs`` may be long; no buffered file
    object, which costs more than the read for the small ones)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks).decode("ascii", "replace")


def _populated(directory: str) -> bool:
    try:
        text = _read(os.path.join(directory, "cgroup.events"))
    except OSError:
        return False  # gone: nothing is in it
    return "populated 1" in text


def _populated_fd(fd: int) -> bool:
    """``populated 1`` in the ``cgroup.events`` open as ``fd``; read through that fd, so
    its next change wakes a poll of it again (kernfs: a read takes the event)."""
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        return b"populated 1" in os.read(fd, 4096)
    except OSError:
        return False


def _remove_tree(top: str) -> bool:
    """rmdir ``top`` and every cgroup below it, deepest first; True if it is gone."""
    for here, dirs, _ in os.walk(top, topdown=False):
        for d in dirs:
            with contextlib.suppress(OSError):
                os.rmdir(os.path.join(here, d))
    try:
        os.rmdir(top)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return True


def _delegate(directory: str) -> None:
    """Pass the memory and pids controllers down from ``directory`` where it has them
    (best effort: the memory column shows where it worked)."""
    for name in ("memory", "pids"):
        with contextlib.suppress(OSError):
            _write(os.path.join(directory, "cgroup.subtree_control"), f"+{name}")


def _alive(pid: int) -> bool:
    """Process ``pid`` runs (a zombie does not: an otree killed but not yet reaped)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rpartition(b")")[2].split()[:1]
    except OSError:
        return False
    return state not in ([b"Z"], [b"X"])


def remove_dead(parent: str) -> list[str]:
    """Remove the empty cgroups of otrees that died (``otree-<N>`` of no process N): the
    directories removed. One that still holds a process is left to the next start of
    that otree's tree (:meth:`Cgroups.reclaim`), which knows it was its own."""
    removed: list[str] = []
    try:
        names = os.listdir(parent)
    except OSError:
        return removed
    for name in names:
        number = name.removeprefix("otree-")
        if number == name or not number.isdigit():
            continue
        if int(number) == os.getpid() or _alive(int(number)):
            continue
        top = os.path.join(parent, name)
        if os.path.isdir(top) and not _populated(top) and _remove_tree(top):
            removed.append(top)
    return removed


def setup(mode: str, say: Callable[[str], None]) -> Cgroups | None:
    """The root's ``cgroups`` carried out: ``off`` None; ``on`` the cgroups or
    Unavailable; ``auto`` the cgroups, or None after one line (``say``) on why not."""
    if mode == "off":
        return None
    try:
        return Cgroups.create(say=say)
    except Unavailable as exc:
        if mode == "on":
            raise
        say(f"cgroups: no writable cgroup2 ({exc}); services are stopped by process group")
        return None


class Cgroups:
    """Otree's cgroups: ``base`` is ``<mount>/<own cgroup>/otree-<pid>``."""

    def __init__(self, base: str, home: str) -> None:
        self.base = base
        #: otree's own cgroup directory, where it goes back to after each spawn
        self.home = home
        #: the service cgroups in use, by directory
        self.groups: dict[str, Group] = {}
        self._home_fd: int | None = None
        #: the service's cgroup otree is in since its last spawn (None: its own)
        self._inside: str | None = None
        self._epoll: select.epoll | None = None
        #: whether the services' cgroups have the memory controller (None: not read yet)
        self._memory: bool | None = None
        #: the ``cgroup.events`` fds watched, each with what runs once its cgroup is empty
        self._waiting: dict[int, Callable[[], None]] = {}

    @classmethod
    def create(
        cls, mountinfo: str | None = None, say: Callable[[str], None] | None = None
    ) -> Cgroups:
        """Make otree's directory below the first cgroup2 mount it may write (Unavailable:
        none, with every reason); dead otrees' directories there are removed (and said)."""
        own = own_cgroup()
        found = mounts(mountinfo)
        if not found:
            raise Unavailable("no cgroup2 file system is mounted")
        reasons = []
        for root, point in found:
            rel = os.path.relpath(own, root) if root != "/" else own.lstrip("/")
            if rel.startswith(".."):
                reasons.append(f"{point}: otree's cgroup {own} is not below it")
                continue
            home = os.path.normpath(os.path.join(point, rel))
            base = os.path.join(home, f"otree-{os.getpid()}")
            try:
                os.mkdir(base)
            except FileExistsError:
                pass  # a re-exec, or a PID used again: it is ours now
            except OSError as exc:
                reasons.append(f"cannot create {base}: {exc.strerror}")
                continue
            for top in remove_dead(home):
                if say is not None:
                    say(f"cgroups: removed {top}, empty, of an otree that died")
            cg = cls(base, home)
            try:
                cg.verify()
            except OSError as exc:
                _remove_tree(base)
                reasons.append(f"cannot move a process into {base}: {exc.strerror}")
                continue
            _delegate(base)
            return cg
        raise Unavailable("; ".join(reasons))

    @classmethod
    def resume(cls, base: str) -> Cgroups:
        """After a re-exec: the same directory again (its groups are adopted)."""
        home = os.path.dirname(base)
        os.makedirs(base, exist_ok=True)
        cg = cls(base, home)
        cg.go_home()  # where otree is already: this opens the fd every spawn needs
        return cg

    def reclaim(self, pid: int, say: Callable[[str], None]) -> None:
        """The previous otree of this tree, ``pid``, died (its state file says so): kill
        what it left in its cgroups (a daemon its services forked: their main processes
        were stopped already) and remove them."""
        top = os.path.join(self.home, f"otree-{pid}")
        if pid == os.getpid() or _alive(pid) or not os.path.isdir(top):
            return
        left = sum(len(members(here)) for here, _, _ in os.walk(top))
        if left:
            kill_all(top)
            wait_empty(top, DEAD_WAIT)
        gone = _remove_tree(top)
        noun = "process" if left == 1 else "processes"
        killed = f"{left} {noun} left in them killed, " if left else ""
        say(f"cgroups of the previous otree (pid {pid}): {killed}{'removed' if gone else 'kept'}")

    def verify(self) -> None:
        """Move otree into its base and back: the moves a spawn does must work."""
        _write(os.path.join(self.base, "cgroup.procs"), str(os.getpid()))
        self.go_home()

    def go_home(self) -> None:
        """Move otree back into its own cgroup (through an fd open from the start, so
        no shortage of fds can keep it in a service's cgroup)."""
        if self._home_fd is None:
            path = os.path.join(self.home, "cgroup.procs")
            self._home_fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        os.write(self._home_fd, str(os.getpid()).encode())
        self._inside = None

    def enter(self, group: Group) -> None:
        """Move otree into ``group``'s cgroup: what it spawns next starts there. It stays
        until :meth:`settle` (straight from one service's cgroup to the next while a
        batch of spawns runs: one move a spawn, not two, and no emptying of its own
        cgroup, whose every change wakes the kernel's notifier)."""
        if self._inside != group.directory:
            _write(os.path.join(group.directory, "cgroup.procs"), str(os.getpid()))
            self._inside = group.directory

    def settle(self) -> None:
        """Otree back in its own cgroup if a spawn left it in a service's: before any
        other spawn, any signal, count or removal of a cgroup, a re-exec, and at the end
        of each batch of actions (it never waits for work inside a service's cgroup)."""
        if self._inside is not None:
            self.go_home()

    def has_memory(self) -> bool:
        """Whether the memory controller is passed down to the services' cgroups (read
        once: without it, no ``memory.current`` is looked for)."""
        if self._memory is None:
            try:
                self._memory = (
                    "memory" in _read(os.path.join(self.base, "cgroup.subtree_control")).split()
                )
            except OSError:
                return False  # the base is gone for now: asked again next time
        return self._memory

    def group(self, path: str) -> Group:
        """A new cgroup for a process of service ``path``, nested as the path is
        (``web.api``: ``web/api``). While another process of the service still has
        ``web/api`` (a reload's replacement starts before the one replaced is gone), the
        next is ``web/api@2`` (``@`` is in no name), and so on."""
        parts = path.split(".")
        directory = os.path.join(self.base, *parts)
        n = 1
        while directory in self.groups:
            n += 1
            directory = os.path.join(self.base, *parts[:-1], f"{parts[-1]}@{n}")
        try:  # the parents are there but at the first start of a nested service
            os.mkdir(directory)
        except FileExistsError:
            pass
        except FileNotFoundError:
            here = self.home  # the base too: an empty one may have been swept meanwhile
            for part in os.path.relpath(directory, self.home).split(os.sep):
                here = os.path.join(here, part)
                with contextlib.suppress(FileExistsError):
                    os.mkdir(here)
                    if here != directory:  # a leaf holds processes: no controllers below
                        _delegate(here)
        g = self.groups[directory] = Group(self, path, directory)
        return g

    def adopt(self, path: str, directory: str) -> Group:
        """After a re-exec: the cgroup ``directory`` the image before made for ``path``."""
        g = self.groups[directory] = Group(self, path, directory)
        return g

    def remove(self, group: Group) -> None:
        """Remove a service's cgroup, now empty (the next start of the service makes one
        anew, so its CPU seconds count from that start)."""
        self.settle()
        if self.groups.get(group.directory) is group:
            del self.groups[group.directory]
        with contextlib.suppress(OSError):
            os.rmdir(group.directory)

    # --- waiting for a cgroup to empty, on the loop ----------------------------------

    def epoll_fd(self) -> int:
        """The fd the loop reads: ready when a watched ``cgroup.events`` changed."""
        if self._epoll is None:
            self._epoll = select.epoll()
        return self._epoll.fileno()

    def when_empty(self, group: Group, done: Callable[[], None]) -> int | None:
        """Call ``done()`` (from :meth:`changed`) once ``group`` has no process: the
        watch (for :meth:`cancel`), or None if it is empty now (``done`` is not called)."""
        self.settle()
        self.epoll_fd()
        assert self._epoll is not None
        try:
            fd = os.open(os.path.join(group.directory, "cgroup.events"), os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return None
        self._epoll.register(fd, select.EPOLLPRI)
        if not _populated_fd(fd):  # read after the watch began: no change is missed
            self._epoll.unregister(fd)
            os.close(fd)
            return None
        self._waiting[fd] = done
        return fd

    def cancel(self, watch: int) -> None:
        """Stop the watch ``when_empty`` returned (its ``done`` is never called)."""
        if self._waiting.pop(watch, None) is not None:
            if self._epoll is not None:
                self._epoll.unregister(watch)
            os.close(watch)

    def end(
        self,
        group: Group,
        call_later: Callable[[float, Callable[[], None]], Any],
        done: Callable[[], None],
        say: Callable[[str], None],
    ) -> bool:
        """The main process of ``group`` is reaped: kill what is left, and call ``done()``
        once the cgroup is empty (it is removed first), or after ``STUCK_WAIT`` seconds
        if something in it does not die (said; the cgroup stays, unused). False: it was
        empty, removed, and ``done`` is not called."""
        group.signal(signal.SIGKILL)

        def empty() -> None:
            timer.cancel()
            self.remove(group)
            done()

        watch = self.when_empty(group, empty)
        if watch is None:
            self.remove(group)
            return False

        def stuck() -> None:
            assert watch is not None
            self.cancel(watch)
            left = len(group.members())
            say(
                f"{left} processes of its cgroup still live {STUCK_WAIT:g} s after SIGKILL"
                f" (in {group.directory}); its exit is reported without them"
            )
            done()

        timer = call_later(STUCK_WAIT, stuck)
        return True

    def changed(self) -> None:
        """The loop's reader of :meth:`epoll_fd`: run what waited for a cgroup now empty."""
        if self._epoll is None:
            return
        for fd, _ in self._epoll.poll(0):
            if fd not in self._waiting or _populated_fd(fd):
                continue
            done = self._waiting.pop(fd)
            self._epoll.unregister(fd)
            os.close(fd)
            done()

    # --- the end ----------------------------------------------------------------

    def close(self) -> None:
        """Kill what is left below the base, wait (a little) for it to go, remove the
        directories."""
        self.settle()
        for fd in list(self._waiting):
            os.close(fd)
        self._waiting.clear()
        self._close_fds()
        if _populated(self.base):
            kill_all(self.base)
            wait_empty(self.base, CLOSE_WAIT)
        _remove_tree(self.base)

    def discard(self) -> None:
        """Remove the directories of a runtime that never ran (what holds a process of
        a re-exec's image before stays)."""
        self.settle()
        self._close_fds()
        _remove_tree(self.base)

    def _close_fds(self) -> None:
        if self._epoll is not None:
            self._epoll.close()
            self._epoll = None
        if self._home_fd is not None:
            os.close(self._home_fd)
            self._home_fd = None


def kill_all(directory: str) -> None:
    """SIGKILL every process in ``directory`` and below (``cgroup.kill``, Linux 5.14;
    before it, each member of each cgroup by PID)."""
    try:
        _write(os.path.join(directory, "cgroup.kill"), "1")
        return
    except OSError:  # no cgroup.kill (or no fd left): each member by PID, if readable
        pass
    for here, _, _ in os.walk(directory):
        for pid in members(here):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


def members(directory: str) -> list[int]:
    """The PIDs in ``directory``'s ``cgroup.procs`` (not below it)."""
    try:
        text = _read(os.path.join(directory, "cgroup.procs"))
    except OSError:
        return []
    return [int(n) for n in text.split()]


def wait_empty(directory: str, timeout: float) -> bool:
    """Block until ``directory`` has no process (at most ``timeout`` s): the end of
    otree, after the loop has stopped. True if it emptied."""
    try:
        fd = os.open(os.path.join(directory, "cgroup.events"), os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return True
    try:
        poll = select.poll()
        poll.register(fd, select.POLLPRI)
        import time  # only at the end

        end = time.monotonic() + timeout
        while _populated_fd(fd):
            left = end - time.monotonic()
            if left <= 0:
                return False
            poll.poll(left * 1000)
        return True
    finally:
        os.close(fd)


class Group:
    """One service's cgroup."""

    __slots__ = ("cgroups", "directory", "path")

    def __init__(self, cgroups: Cgroups, path: str, directory: str) -> None:
        self.cgroups = cgroups
        self.path = path
        self.directory = directory

    def members(self) -> list[int]:
        self.cgroups.settle()
        return members(self.directory)

    def signal(self, signum: int) -> int:
        """Send ``signum`` to every process of the cgroup (SIGKILL: ``cgroup.kill``); how
        many were signalled."""
        self.cgroups.settle()  # never otree among what is signalled
        if signum == signal.SIGKILL:
            pids = self.members()
            kill_all(self.directory)
            return len(pids)
        count = 0
        for pid in self.members():
            with contextlib.suppress(OSError):
                os.kill(pid, signum)
                count += 1
        return count

    def populated(self) -> bool:
        self.cgroups.settle()
        return _populated(self.directory)

    def stats(self, members: list[int] | None = None) -> dict[str, float | int | None]:
        """``procs`` (its processes: ``members`` if read already), ``cpu_seconds``
        (``cpu.stat`` usage since the cgroup was made) and ``memory`` (bytes,
        ``memory.current``; None without that controller)."""
        cpu = None
        with contextlib.suppress(OSError, ValueError):
            for line in _read(os.path.join(self.directory, "cpu.stat")).splitlines():
                key, _, value = line.partition(" ")
                if key == "usage_usec":
                    cpu = round(int(value) / 1_000_000, 3)
        memory = None
        if self.cgroups.has_memory():
            with contextlib.suppress(OSError, ValueError):
                memory = int(_read(os.path.join(self.directory, "memory.current")))
        procs = len(members if members is not None else self.members())
        return {"procs": procs, "cpu_seconds": cpu, "memory": memory}
