"""Test doubles for the control server: a fake runtime backend and two ways to run a loop.

``ManualLoop`` runs the server's callbacks only when a test calls ``pump()``
(single-threaded, deterministic: hypothesis drives it). ``Served`` runs the
real ``otree.runtime.loop.Loop`` in a thread so the blocking ``Client`` can talk to it.
"""

from __future__ import annotations

import contextlib
import os
import queue
import select
import shutil
import socket
import tempfile
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from otree.control.server import ControlServer
from otree.core.actions import Reply
from otree.core.engine import NodeStatus
from otree.runtime.loop import Loop
from otree.runtime.output import Console, ServiceOutput

T = TypeVar("T")


@contextlib.contextmanager
def short_dir() -> Iterator[str]:
    """A private directory with a short path (socket paths are limited to 107 bytes)."""
    d = tempfile.mkdtemp(prefix="otc-", dir="/tmp")
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


class FakeBackend:
    """Answers commands like the engine would: at once, later (``delay``), or refused."""

    def __init__(self, loop: Any) -> None:
        self.loop = loop
        self._null = os.open(os.devnull, os.O_WRONLY)
        console = Console(None, self._null)
        self.outputs = {
            p: ServiceOutput(p, console, f"{p} | ".encode()) for p in ("db", "web.cache", "web.api")
        }
        self.commands: list[tuple[str, str]] = []
        self.delay: dict[str, float] = {}
        self.refuse: dict[str, str] = {}

    def dropped(self) -> dict[str, int]:
        return {"console": 0, "events": 0}

    def usage(self, liveness: Any = None) -> dict[str, tuple[int, float, int]]:
        return {}

    def node_info(self, path: str) -> Any:
        return None

    def liveness(self) -> dict[str, dict[str, Any]]:
        return {}

    def command(
        self,
        name: str,
        path: str = "",
        on_reply: Callable[[Reply], None] | None = None,
        count: int | None = None,
    ) -> None:
        self.commands.append((name, path))
        error = self.refuse.get(path)
        reply = Reply(len(self.commands), error is None, error)
        if on_reply is None:
            return
        delay = self.delay.get(path)
        if delay is None:
            on_reply(reply)
        else:
            self.loop.call_later(delay, lambda: on_reply(reply))

    def status(self) -> list[NodeStatus]:
        return [
            NodeStatus("", "supervisor", "running", None, 0.0, 0, None),
            NodeStatus("db", "service", "running", 101, 10.0, 0, None),
            NodeStatus("web", "supervisor", "running", None, 20.0, 1, None),
            NodeStatus(
                "web.cache", "service", "stopped", None, None, 0, {"code": 0, "normal": True}
            ),
            NodeStatus(
                "web.api", "service", "running", 103, 90.5, 2, {"signal": "KILL", "normal": False}
            ),
        ]

    def close(self) -> None:
        os.close(self._null)


class ManualLoop:
    """The loop interface the server uses, run by hand with ``pump()``."""

    def __init__(self, now: float = 100.0) -> None:
        self.now = now
        self.readers: dict[int, Callable[[], None]] = {}
        self.writers: dict[int, Callable[[], None]] = {}
        self.later: list[tuple[float, Callable[[], None]]] = []

    def clock(self) -> float:
        return self.now

    def add_reader(self, fd: int, callback: Callable[[], None]) -> None:
        self.readers[fd] = callback

    def remove_reader(self, fd: int) -> None:
        self.readers.pop(fd, None)

    def add_writer(self, fd: int, callback: Callable[[], None]) -> None:
        self.writers[fd] = callback

    def remove_writer(self, fd: int) -> None:
        self.writers.pop(fd, None)

    def call_later(self, delay: float, callback: Callable[[], None]) -> None:
        self.later.append((delay, callback))

    def pump(self, rounds: int = 200) -> None:
        """Run ready callbacks until nothing is ready (or ``rounds`` turns); a ``call_later(0)``
        runs at the next turn, a longer one only when the test calls it."""
        for _ in range(rounds):
            soon = [cb for delay, cb in self.later if delay <= 0]
            self.later = [(delay, cb) for delay, cb in self.later if delay > 0]
            r, w, _ = select.select(list(self.readers), list(self.writers), [], 0)
            if not r and not w and not soon:
                return
            for cb in soon:
                cb()
            for fd in r:
                cb = self.readers.get(fd)
                if cb is not None:
                    cb()
            for fd in w:
                cb = self.writers.get(fd)
                if cb is not None:
                    cb()


class Served:
    """A ``ControlServer`` on the real ``Loop``, running in a thread."""

    def __init__(self, path: str, **kwargs: Any) -> None:
        self.loop = Loop()
        self.backend = FakeBackend(self.loop)
        self.server = ControlServer(self.loop, self.backend, path, **kwargs)
        self.path = self.server.path
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._calls: queue.Queue[tuple[Callable[[], Any], queue.Queue[Any]]] = queue.Queue()
        self.loop.add_reader(self._wake_r.fileno(), self._on_wake)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.loop.run()
        except BaseException as exc:  # the test sees it through .error
            self.error = exc

    def _on_wake(self) -> None:
        with contextlib.suppress(BlockingIOError):
            self._wake_r.recv(4096)
        while True:
            try:
                fn, result = self._calls.get_nowait()
            except queue.Empty:
                return
            try:
                result.put((True, fn()))
            except BaseException as exc:
                result.put((False, exc))

    def call(self, fn: Callable[[], T], timeout: float = 20.0) -> T:
        """Run ``fn()`` in the loop's thread; return its result."""
        assert self.thread.is_alive(), f"the loop died: {self.error!r}"
        result: queue.Queue[Any] = queue.Queue()
        self._calls.put((fn, result))
        self._wake_w.send(b"x")
        ok, value = result.get(timeout=timeout)
        if not ok:
            raise value
        return value  # type: ignore[no-any-return]

    def feed(self, path: str, data: bytes) -> None:
        """Output of service ``path``, as if read from its pipe."""
        self.call(lambda: self.backend.outputs[path].feed(0, data))

    def stop(self) -> None:
        if self.thread.is_alive():
            self.call(self.server.close)
            self.call(self.loop.stop)
            self.thread.join(10)
        self.loop.close()
        self._wake_r.close()
        self._wake_w.close()
        self.backend.close()
        assert self.error is None, self.error
