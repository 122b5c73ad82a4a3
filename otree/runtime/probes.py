"""Readiness probes, run inside the loop without blocking it.

A probe answers once: ``on_ready()`` or ``on_failed(reason)``. The timeout is
the engine's business; the runtime ``cancel()``s a probe when the process
exits or is being stopped. Kinds: a delay (a timer), a TCP connect (a
non-blocking attempt every ``TCP_RETRY`` seconds until one succeeds; a host
name is looked up off the loop, in a worker thread, see ``Lookups``), sd_notify
(``READY=1`` on the service's notify socket, which lives as long as the process),
a command run every ``interval`` seconds until it exits 0, an HTTP GET every
``HTTP_RETRY`` seconds until one answers 2xx/3xx, and none for a one-shot step.
"""

from __future__ import annotations

import errno
import os
import signal
import socket
from collections.abc import Callable, Mapping
from typing import Any

from otree.core.spec import ReadyCmd, ReadyDelay, ReadyHttp, ReadyTcp
from otree.runtime import checks, posix
from otree.runtime.listeners import Ownership
from otree.runtime.loop import Loop, Timer
from otree.runtime.notify import NotifySocket

TCP_RETRY = 0.05
#: host names looked up at once (a thread each); a probe past it tries again later
MAX_LOOKUPS = 16
LOOKUP_RETRY = 0.5

OnReady = Callable[[], None]
OnFailed = Callable[[str], None]
Addrs = list[tuple[int, tuple[str, int]]]
#: a lookup's answer: the addresses, or the reason there are none
OnAddrs = Callable[[Addrs | None, str | None], None]


def _addrs(infos: list[Any]) -> Addrs:
    return [(family, (str(addr[0]), int(addr[1]))) for family, _, _, _, addr in infos]


def numeric(host: str, port: int) -> Addrs | None:
    """The address of an IP literal (never a lookup); None for a name."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST)
    except (OSError, UnicodeError):
        return None
    return _addrs(infos)


class Lookups:
    """Host name lookups, off the loop: ``getaddrinfo`` can block for as long as the
    resolver's timeouts (20 s and more with the DNS down), so it runs in a worker thread
    and its answer comes back to the loop (``Loop.run_in_thread``). One lookup of a name
    is in flight at a time, however many probes wait for it (a crash-looping service
    does not pile up threads on a hung DNS); a probe gives up on it with its readiness
    timeout (the engine's), the thread ends with the resolver's own."""

    def __init__(self) -> None:
        self._waiting: dict[tuple[Loop, str, int], list[OnAddrs]] = {}

    def in_flight(self) -> int:
        return len(self._waiting)

    def resolve(self, loop: Loop, host: str, port: int, answer: OnAddrs) -> bool:
        """Look ``host`` up and call ``answer`` in the loop; False when too many lookups
        are in flight already (try again later). ``forget`` drops the answer."""
        key = (loop, host, port)
        waiting = self._waiting.get(key)
        if waiting is not None:
            waiting.append(answer)
            return True
        if len(self._waiting) >= MAX_LOOKUPS:
            return False
        self._waiting[key] = [answer]

        def lookup() -> Addrs:
            return _addrs(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))

        def done(addrs: Addrs | None, error: Exception | None) -> None:
            reason = None
            if error is not None:
                reason = f"cannot resolve {host!r}: {error}"
            elif not addrs:
                addrs, reason = None, f"cannot resolve {host!r}: no address"
            for each in self._waiting.pop(key, []):
                each(addrs, reason)

        try:
            loop.run_in_thread(lookup, done)
        except (RuntimeError, OSError) as exc:  # no thread or fd to be had now (EMFILE, EAGAIN)
            del self._waiting[key]
            answer(None, f"cannot resolve {host!r}: {exc}")
        return True

    def forget(self, loop: Loop, host: str, port: int, answer: OnAddrs) -> None:
        waiting = self._waiting.get((loop, host, port))
        if waiting is not None and answer in waiting:
            waiting.remove(answer)


#: the lookups of every TCP probe
LOOKUPS = Lookups()


class Probe:
    """Base: holds the two answers and makes sure only one is given."""

    def __init__(self, loop: Loop, on_ready: OnReady, on_failed: OnFailed) -> None:
        self.loop = loop
        self._on_ready = on_ready
        self._on_failed = on_failed
        self.done = False

    def start(self) -> None:
        raise NotImplementedError

    def _ready(self) -> None:
        if not self.done:
            self.cancel()
            self._on_ready()

    def _failed(self, reason: str) -> None:
        if not self.done:
            self.cancel()
            self._on_failed(reason)

    def cancel(self) -> None:
        self.done = True

    @property
    def command_pid(self) -> int | None:
        """The readiness command's process running now, if any (a re-exec reaps it)."""
        return None


class DelayProbe(Probe):
    def __init__(self, loop: Loop, spec: ReadyDelay, on_ready: OnReady, on_failed: OnFailed):
        super().__init__(loop, on_ready, on_failed)
        self.delay = spec.delay
        self._timer: Timer | None = None

    def start(self) -> None:
        self._timer = self.loop.call_later(self.delay, self._ready)

    def cancel(self) -> None:
        super().cancel()
        if self._timer is not None:
            self._timer.cancel()


class TcpProbe(Probe):
    def __init__(
        self,
        loop: Loop,
        spec: ReadyTcp,
        on_ready: OnReady,
        on_failed: OnFailed,
        owner: Ownership | None = None,
    ):
        super().__init__(loop, on_ready, on_failed)
        self.address = spec.address
        self.owner = owner  # who must hold the listener (None: anyone)
        self._sock: socket.socket | None = None
        self._timer: Timer | None = None
        self._addrs: Addrs | None = None
        self._looking_up = False

    def start(self) -> None:
        self._attempt()

    def _resolve(self) -> None:
        """Start the lookup of a host name (an IP literal needs none); ``_resolved`` answers."""
        host, port = self.address
        self._addrs = numeric(host, port)
        if self._addrs is not None:
            return
        self._looking_up = True
        if not LOOKUPS.resolve(self.loop, host, port, self._resolved):
            self._looking_up = False
            self._timer = self.loop.call_later(LOOKUP_RETRY, self._attempt)

    def _resolved(self, addrs: Addrs | None, reason: str | None) -> None:
        self._looking_up = False
        if self.done:
            return
        if addrs is None:
            self._failed(reason or "cannot resolve")
            return
        self._addrs = addrs
        self._attempt()

    def _attempt(self) -> None:
        self._timer = None
        if self.done or self._looking_up:
            return
        if self._addrs is None:
            self._resolve()
            if self._addrs is None:
                return
        family, addr = self._addrs[0]
        try:
            sock = socket.socket(family, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        except OSError:  # out of fds or memory for now: try again later
            self._retry()
            return
        sock.setblocking(False)
        err = sock.connect_ex(addr)
        if err == 0:
            sock.close()
            self._answered()
        elif err in (errno.EINPROGRESS, errno.EAGAIN, errno.EWOULDBLOCK):
            self._sock = sock
            self.loop.add_writer(sock.fileno(), self._connected)
        else:
            sock.close()
            self._retry()

    def _connected(self) -> None:
        sock = self._sock
        assert sock is not None
        self.loop.remove_writer(sock.fileno())
        err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        sock.close()
        self._sock = None
        if err == 0:
            self._answered()
        else:
            self._retry()

    def _answered(self) -> None:
        why = self.owner.check() if self.owner is not None else None
        if why is None:
            self._ready()
        else:
            self._failed(why)

    def _retry(self) -> None:
        if not self.done:
            self._timer = self.loop.call_later(TCP_RETRY, self._attempt)

    def cancel(self) -> None:
        super().cancel()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._sock is not None:
            self.loop.remove_writer(self._sock.fileno())
            self._sock.close()
            self._sock = None
        if self._looking_up:
            self._looking_up = False
            LOOKUPS.forget(self.loop, *self.address, self._resolved)


class NotifyProbe(Probe):
    """sd_notify readiness: ``READY=1`` on the service's notify socket makes it ready.

    The socket (``otree.runtime.notify``) is bound before the spawn (its path goes
    into the child's environment) and outlives this probe: answering or cancelling
    only stops listening for ``READY=1``, the socket stays open as long as the process.
    """

    def __init__(self, loop: Loop, sock: NotifySocket, on_ready: OnReady, on_failed: OnFailed):
        super().__init__(loop, on_ready, on_failed)
        self.sock = sock
        self.pid = 0  # the service's PID, set once it is spawned

    @property
    def path(self) -> str:
        return self.sock.path

    def start(self) -> None:
        if not self.done:
            self.sock.on_ready = self._ready
            self.sock.start()

    def cancel(self) -> None:
        super().cancel()
        if self.sock.on_ready == self._ready:
            self.sock.on_ready = None


class CmdProbe(Probe):
    """Run ``cmd`` (new session, output discarded) every ``interval`` s until it exits 0."""

    def __init__(
        self,
        loop: Loop,
        spec: ReadyCmd,
        env: Mapping[str, str],
        cwd: str | None,
        on_ready: OnReady,
        on_failed: OnFailed,
    ):
        super().__init__(loop, on_ready, on_failed)
        self.argv = list(spec.cmd)
        self.interval = spec.interval
        self.env = env
        self.cwd = cwd
        self._pid: int | None = None
        self._timer: Timer | None = None

    @property
    def command_pid(self) -> int | None:
        return self._pid

    def start(self) -> None:
        self._run()

    def _run(self) -> None:
        self._timer = None
        if self.done:
            return
        try:
            pid = posix.spawn(self.argv, self.env, self.cwd, death_signal=signal.SIGKILL)
        except posix.SpawnError as exc:
            self._failed(f"ready cmd: {exc}")
            return
        self._pid = pid
        self.loop.watch_child(pid, self._exited, kill_group=True)

    def _exited(self, status: int) -> None:
        self._pid = None
        if self.done:
            return
        if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0:
            self._ready()
        else:
            self._timer = self.loop.call_later(self.interval, self._run)

    def cancel(self) -> None:
        super().cancel()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._pid is not None:
            # still watched: the loop reaps it (and its group) once it is gone
            posix.send_signal(self._pid, signal.SIGKILL)


#: how often ``ready = { http }`` asks again, and how long one attempt may take
HTTP_RETRY = 0.1
HTTP_ATTEMPT = 1.0


class HttpProbe(Probe):
    """A GET of the URL every ``HTTP_RETRY`` s until one answers 2xx or 3xx."""

    def __init__(
        self,
        loop: Loop,
        spec: ReadyHttp,
        on_ready: OnReady,
        on_failed: OnFailed,
        owner: Ownership | None = None,
    ):
        super().__init__(loop, on_ready, on_failed)
        self.url = spec.http
        self.owner = owner
        self._attempt: checks.Attempt | None = None
        self._timer: Timer | None = None

    def start(self) -> None:
        self._try()

    def _try(self) -> None:
        self._timer = None
        if not self.done:
            self._attempt = checks.http_get(self.loop, self.url, HTTP_ATTEMPT, self._answer)
            self._attempt.start()

    def _answer(self, ok: bool, reason: str) -> None:
        self._attempt = None
        why = self.owner.check() if ok and self.owner is not None else None
        if ok and why is None:
            self._ready()
        elif why is not None:
            self._failed(why)
        elif not self.done:
            self._timer = self.loop.call_later(HTTP_RETRY, self._try)

    def cancel(self) -> None:
        super().cancel()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._attempt is not None:
            self._attempt.cancel()
            self._attempt = None


class ExitedProbe(Probe):
    """A one-shot step: no probe at all (the engine takes its normal exit as its start)."""

    def start(self) -> None:
        pass
