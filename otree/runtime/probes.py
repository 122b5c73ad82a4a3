"""Readiness probes, run inside the loop without blocking it.

A probe answers once: ``on_ready()`` or ``on_failed(reason)``. The timeout is
the engine's business; the runtime ``cancel()``s a probe when the process
exits or is being stopped. Kinds: a delay (a timer), a TCP connect (a
non-blocking attempt every ``TCP_RETRY`` seconds until one succeeds), sd_notify
(``READY=1`` on the service's notify socket, which lives as long as the process), and
a command run every ``interval`` seconds until it exits 0, an HTTP GET every
``HTTP_RETRY`` seconds until one answers 2xx/3xx, and none for a one-shot step.
"""

from __future__ import annotations

import errno
import os
import signal
import socket
from collections.abc import Callable, Mapping

from otree.core.spec import ReadyCmd, ReadyDelay, ReadyHttp, ReadyTcp
from otree.runtime import checks, posix
from otree.runtime.listeners import Ownership
from otree.runtime.loop import Loop, Timer
from otree.runtime.notify import NotifySocket

TCP_RETRY = 0.05

OnReady = Callable[[], None]
OnFailed = Callable[[str], None]


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
        self._addrs: list[tuple[int, tuple[str, int]]] | None = None

    def start(self) -> None:
        self._attempt()

    def _resolve(self) -> list[tuple[int, tuple[str, int]]] | None:
        host, port = self.address
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            self._failed(f"cannot resolve {host!r}: {exc}")
            return None
        return [(family, (str(addr[0]), int(addr[1]))) for family, _, _, _, addr in infos]

    def _attempt(self) -> None:
        self._timer = None
        if self.done:
            return
        if self._addrs is None:
            self._addrs = self._resolve()
            if self._addrs is None:
                return
        family, addr = self._addrs[0]
        sock = socket.socket(family, socket.SOCK_STREAM)
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
            pid = posix.spawn(self.argv, self.env, self.cwd)
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
