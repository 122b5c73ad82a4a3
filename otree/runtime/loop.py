"""The event loop: one thread, one selector, timers from a heap, signals, child exits.

Nothing polls. The selector's timeout is the time to the next timer (``None``
when there is none), signals arrive through ``signal.set_wakeup_fd`` on a
non-blocking socketpair, and child exits through a pidfd per child (Linux
5.3+), with ``SIGCHLD`` + ``waitpid`` as the fallback and for orphans when
otree is a subreaper or PID 1. An idle loop sleeps in ``epoll_wait``.

The loop only tells when a child has exited; signalling and reaping are
``posix``'s, and what to kill is the caller's choice (``kill_group``).

Work that may block (a host name lookup) runs in a worker thread,
``run_in_thread``: its answer comes back to the loop thread through a wakeup
socket of its own (the signal one carries signal numbers only), so a callback
never runs anywhere but in the loop.
"""

from __future__ import annotations

import contextlib
import functools
import heapq
import itertools
import os
import resource
import selectors
import signal
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar

from otree.runtime import posix

Callback = Callable[[], None]
ExitCallback = Callable[[int], None]  # receives the raw wait status
T = TypeVar("T")


class Timer:
    """A pending call; ``cancel()`` it to drop it."""

    __slots__ = ("callback", "cancelled", "when")

    def __init__(self, when: float, callback: Callback) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class _Child:
    __slots__ = ("callback", "kill_group", "pid", "pidfd")

    def __init__(self, pid: int, pidfd: int | None, callback: ExitCallback, kill_group: bool):
        self.pid = pid
        self.pidfd = pidfd
        self.callback = callback
        self.kill_group = kill_group


def _pidfd_open(pid: int) -> int | None:
    """A pidfd for ``pid``, while its number stays below half the fd limit (None past
    that, or where there are none): the children past it are watched through SIGCHLD,
    so each costs one fd (its output pipe) instead of two, and the fds left go to the
    pipes: 10 000 children fit under a limit of 20 000."""
    try:
        fd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None
    if fd >= resource.getrlimit(resource.RLIMIT_NOFILE)[0] // 2:
        os.close(fd)
        return None
    return fd


class Loop:
    """``add_reader``/``add_writer`` callbacks, ``call_later`` timers, ``watch_child``
    exit callbacks and ``on_signal`` handlers, run by ``run()`` until ``stop()``."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._sel = selectors.DefaultSelector()
        self._timers: list[tuple[float, int, Timer]] = []
        self._seq = itertools.count()
        self._children: dict[int, _Child] = {}
        self._signals: dict[int, Callable[[int], None]] = {}
        self._old_handlers: dict[int, Any] = {}
        self._old_wakeup: int | None = None
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._running = False
        self._closed = False
        self._sigchld = False
        self._calls: deque[Callback] = deque()  # handed in by other threads
        self._calls_lock = threading.Lock()
        self._call_r: socket.socket | None = None
        self._call_w: socket.socket | None = None

    # --- file descriptors ---------------------------------------------------

    def _update(self, fd: int, reader: Callback | None, writer: Callback | None) -> None:
        if self._closed:
            return
        mask = (selectors.EVENT_READ if reader else 0) | (selectors.EVENT_WRITE if writer else 0)
        try:
            key = self._sel.get_key(fd)
        except KeyError:
            if mask:
                self._sel.register(fd, mask, (reader, writer))
            return
        if mask:
            if key.events != mask or key.data != (reader, writer):
                self._sel.modify(fd, mask, (reader, writer))
        else:
            self._sel.unregister(fd)

    def _current(self, fd: int) -> tuple[Callback | None, Callback | None]:
        if self._closed:
            return None, None
        try:
            data: tuple[Callback | None, Callback | None] = self._sel.get_key(fd).data
        except KeyError:
            return None, None
        return data

    def add_reader(self, fd: int, callback: Callback) -> None:
        self._update(fd, callback, self._current(fd)[1])

    def remove_reader(self, fd: int) -> None:
        self._update(fd, None, self._current(fd)[1])

    def add_writer(self, fd: int, callback: Callback) -> None:
        self._update(fd, self._current(fd)[0], callback)

    def remove_writer(self, fd: int) -> None:
        self._update(fd, self._current(fd)[0], None)

    # --- timers -------------------------------------------------------------

    def call_at(self, when: float, callback: Callback) -> Timer:
        timer = Timer(when, callback)
        heapq.heappush(self._timers, (when, next(self._seq), timer))
        return timer

    def call_later(self, delay: float, callback: Callback) -> Timer:
        return self.call_at(self.clock() + max(0.0, delay), callback)

    def _run_timers(self) -> None:
        now = self.clock()
        timers = self._timers
        while timers and (timers[0][2].cancelled or timers[0][0] <= now):
            _, _, timer = heapq.heappop(timers)
            if not timer.cancelled:
                timer.cancelled = True
                timer.callback()
                if not self._running:
                    return

    def _timeout(self) -> float | None:
        timers = self._timers
        while timers and timers[0][2].cancelled:
            heapq.heappop(timers)
        if not timers:
            return None
        return max(0.0, timers[0][0] - self.clock())

    # --- signals ------------------------------------------------------------

    def _ensure_wakeup(self) -> None:
        if self._wake_r is not None:
            return
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._old_wakeup = signal.set_wakeup_fd(self._wake_w.fileno(), warn_on_full_buffer=False)
        self.add_reader(self._wake_r.fileno(), self._read_signals)

    def on_signal(self, signum: int, handler: Callable[[int], None]) -> None:
        """Run ``handler(signum)`` in the loop when ``signum`` arrives (main thread only)."""
        self._ensure_wakeup()
        if signum not in self._old_handlers:
            self._old_handlers[signum] = signal.signal(signum, _noop_handler)
        self._signals[signum] = handler

    def _read_signals(self) -> None:
        assert self._wake_r is not None
        try:
            data = self._wake_r.recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        for signum in data:
            if signum == signal.SIGCHLD and self._sigchld:
                self._reap_any()
            handler = self._signals.get(signum)
            if handler is not None:
                handler(signum)

    # --- other threads --------------------------------------------------------

    def run_in_thread(
        self, work: Callable[[], T], done: Callable[[T | None, Exception | None], None]
    ) -> None:
        """Run ``work()`` in a daemon thread (every signal blocked in it, so they all still
        reach the loop's thread); then ``done(result, None)`` or ``done(None, error)`` runs
        in the loop. Called from the loop's thread. If the loop is closed first, ``done``
        is never called."""
        self._ensure_calls()

        def worker() -> None:
            try:
                answer = functools.partial(done, work(), None)
            except Exception as exc:  # handed to the loop, which decides
                answer = functools.partial(done, None, exc)
            self.call_soon_threadsafe(answer)

        thread = threading.Thread(target=worker, name="otree-worker", daemon=True)
        everything = signal.valid_signals()
        old = signal.pthread_sigmask(signal.SIG_BLOCK, everything)
        try:
            thread.start()  # the new thread inherits the mask: no signal is ever its
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)

    def call_soon_threadsafe(self, callback: Callback) -> None:
        """Run ``callback`` in the loop's thread at its next turn: the one method another
        thread may call (after ``run_in_thread`` or ``_ensure_calls`` set it up)."""
        with self._calls_lock:
            if self._closed or self._call_w is None:
                return
            self._calls.append(callback)
            with contextlib.suppress(OSError):  # full: the loop has a wakeup to read already
                self._call_w.send(b"\0")

    def _ensure_calls(self) -> None:
        if self._call_r is None:
            r, w = socket.socketpair()
            r.setblocking(False)
            w.setblocking(False)
            self._call_r, self._call_w = r, w
            self.add_reader(r.fileno(), self._run_calls)

    def _run_calls(self) -> None:
        assert self._call_r is not None
        try:
            while self._call_r.recv(4096):
                pass
        except (BlockingIOError, InterruptedError):
            pass
        while True:
            with self._calls_lock:
                if not self._calls:
                    return
                callback = self._calls.popleft()
            callback()
            if not self._running:  # stopped: the rest waits for the next run()
                with self._calls_lock:
                    if self._calls and self._call_w is not None:
                        with contextlib.suppress(OSError):
                            self._call_w.send(b"\0")
                return

    # --- children -----------------------------------------------------------

    def enable_sigchld(self) -> None:
        """Reap through SIGCHLD + waitpid too (no pidfd, or orphans to reap)."""
        if not self._sigchld:
            self._sigchld = True
            self._ensure_wakeup()
            if signal.SIGCHLD not in self._old_handlers:
                self._old_handlers[signal.SIGCHLD] = signal.signal(signal.SIGCHLD, _noop_handler)
            self.call_later(0, self._reap_any)  # whatever exited before the handler was set

    def watch_child(self, pid: int, callback: ExitCallback, *, kill_group: bool = False) -> None:
        """Call ``callback(wait_status)`` once ``pid`` (our child) has exited and is reaped.

        With ``kill_group``, the process group ``pid`` leads gets SIGKILL just before the
        main process is reaped (while its PID still pins the group id).
        """
        pidfd = _pidfd_open(pid)
        child = _Child(pid, pidfd, callback, kill_group)
        self._children[pid] = child
        if pidfd is None:
            self.enable_sigchld()
        else:
            self.add_reader(pidfd, lambda: self._reap(child))

    def unwatch(self, pid: int) -> None:
        """Stop watching ``pid`` (not reaped here: the caller does it)."""
        child = self._children.get(pid)
        if child is not None:
            self._forget(child)

    def pidfd(self, pid: int) -> int | None:
        child = self._children.get(pid)
        return child.pidfd if child else None

    def watching(self, pid: int) -> bool:
        return pid in self._children

    def _reap(self, child: _Child) -> None:
        if self._children.get(child.pid) is not child:
            return
        status = posix.reap(child.pid, kill_leftovers=child.kill_group)
        if status is None:
            return
        self._forget(child)
        if self._wake_r is not None:
            # a signal to otree that came with this exit (systemd's default KillMode
            # signals every process at once) is handled first: then a child that ended on
            # the TERM meant for the whole tree, by dying of it or by exiting, is not
            # taken for a crash and restarted
            self._read_signals()
        child.callback(status)

    def _forget(self, child: _Child) -> None:
        del self._children[child.pid]
        if child.pidfd is not None:
            self.remove_reader(child.pidfd)
            os.close(child.pidfd)

    def _reap_any(self) -> None:
        while True:
            pid = posix.exited_child()
            if pid is None:
                return
            child = self._children.get(pid)
            if child is not None:
                self._reap(child)
            else:
                # not ours to watch (an orphan adopted as subreaper, or a stray): reap it
                posix.reap(pid)

    # --- running ------------------------------------------------------------

    def run(self) -> None:
        """Run until ``stop()``."""
        self._running = True
        select = self._sel.select
        try:
            while self._running:
                events = select(self._timeout())
                for key, mask in events:
                    # a callback earlier in this batch may have removed or replaced this one:
                    # look the callbacks up again rather than trusting the key
                    if mask & selectors.EVENT_READ:
                        reader = self._current(key.fd)[0]
                        if reader is not None and reader is key.data[0]:
                            reader()
                    if mask & selectors.EVENT_WRITE:
                        writer = self._current(key.fd)[1]
                        if writer is not None and writer is key.data[1]:
                            writer()
                    if not self._running:
                        return
                self._run_timers()
        finally:
            self._running = False

    def stop(self) -> None:
        self._running = False

    @property
    def running(self) -> bool:
        return self._running

    def close(self) -> None:
        """Restore signal handlers and the wakeup fd; close what the loop opened."""
        for signum, old in self._old_handlers.items():
            signal.signal(signum, old)
        self._old_handlers.clear()
        self._signals.clear()
        if self._wake_r is not None and self._wake_w is not None:
            signal.set_wakeup_fd(self._old_wakeup if self._old_wakeup is not None else -1)
            self._wake_r.close()
            self._wake_w.close()
            self._wake_r = self._wake_w = None
        for child in list(self._children.values()):
            if child.pidfd is not None:
                os.close(child.pidfd)
        self._children.clear()
        with self._calls_lock:  # a worker still running hands its answer to no one
            self._calls.clear()
            if self._call_r is not None and self._call_w is not None:
                self._call_r.close()
                self._call_w.close()
                self._call_r = self._call_w = None
        self._sel.close()
        self._closed = True


def _noop_handler(signum: int, frame: Any) -> None:
    """The C-level handler writes the signal number to the wakeup fd; the loop acts on it."""
