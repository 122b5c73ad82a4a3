"""A running service's liveness: its health probes and its watchdog, as loop timers.

Started once the service is ready, stopped when its process exits or is being
stopped. Nothing runs between the intervals the user asked for: one timer per
probe (the next probe), one per attempt (its timeout), one for the watchdog's
deadline. ``failures`` failed probes in a row, a missed watchdog deadline or
``WATCHDOG=trigger`` call ``on_unhealthy(reason, failures)`` once; one success
resets the count. A probe command runs in its own session (process group),
killed at its timeout; one that cannot even be spawned counts one failure,
and says why once.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Mapping

import attrs

from otree.core.reprs import plain_repr
from otree.core.spec import Health, HealthCmd, HealthHttp, HealthTcp
from otree.runtime import checks, posix
from otree.runtime.listeners import Ownership
from otree.runtime.loop import Loop, Timer
from otree.runtime.notify import NotifySocket

OnUnhealthy = Callable[[str, int], None]


@plain_repr
@attrs.frozen(repr=False)
class Carried:
    """A process's liveness across a re-exec (in the handoff): its notify socket (an
    inherited fd, bound at ``notify_path``), its latest ``STATUS=`` text, its failed
    probes in a row and the seconds left before its watchdog deadline."""

    notify_fd: int | None = None
    notify_path: str | None = None
    status_text: str | None = None
    failures: int = 0
    watchdog_left: float | None = None


class Liveness:
    """The health probes (``health``) and the watchdog (``watchdog`` seconds) of one process."""

    def __init__(
        self,
        loop: Loop,
        health: Health | None,
        watchdog: float | None,
        notify: NotifySocket | None,
        on_unhealthy: OnUnhealthy,
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        say: Callable[[str], None] | None = None,
        owner: Ownership | None = None,
    ) -> None:
        self.loop = loop
        self.health = health
        self.watchdog = watchdog
        self.notify = notify
        self.on_unhealthy = on_unhealthy
        self.env = env if env is not None else posix.child_env({})
        self.cwd = cwd
        self.say = say
        self.owner = owner  # who must hold the probed port's listener (tcp and http)
        #: failed probes in a row now (``otree status``)
        self.failures = 0
        #: the watchdog's deadline on the loop's clock (None: no watchdog armed)
        self.deadline: float | None = None
        self.stopped = False
        self._next: Timer | None = None
        self._dog: Timer | None = None
        self._attempt: checks.Attempt | None = None
        self._cmd_pid: int | None = None
        self._cmd_timer: Timer | None = None
        self._said: set[str] = set()
        self._verified = False  # the probed port's listener was found to be the service's

    # --- lifecycle ---------------------------------------------------------------

    @property
    def command_pid(self) -> int | None:
        """The probe command running now, if any (a re-exec leaves it for the next image)."""
        return self._cmd_pid

    def start(self, *, failures: int = 0, deadline: float | None = None) -> None:
        """From ready on; ``failures`` and ``deadline`` carry on from before a re-exec
        (then the next probe is one ``interval`` away, without ``grace``)."""
        self.failures = failures
        if self.health is not None:
            resumed = failures > 0 or deadline is not None
            grace = 0.0 if resumed else self.health.grace
            self._schedule(self.health.interval + grace)
        if self.watchdog is not None and self.notify is not None:
            self.notify.on_watchdog = self._watchdog_message
            now = self.loop.clock()
            self._arm(deadline if deadline is not None else now + self.watchdog)

    def stop(self) -> None:
        """No more probes: the process exited or is being stopped."""
        self.stopped = True
        for timer in (self._next, self._dog, self._cmd_timer):
            if timer is not None:
                timer.cancel()
        self._next = self._dog = self._cmd_timer = None
        if self._attempt is not None:
            self._attempt.cancel()
            self._attempt = None
        if self._cmd_pid is not None:  # still watched: the loop reaps it and its group
            posix.send_signal(self._cmd_pid, signal.SIGKILL)
            self._cmd_pid = None
        if self.notify is not None and self.notify.on_watchdog == self._watchdog_message:
            self.notify.on_watchdog = None

    def _unhealthy(self, reason: str, failures: int) -> None:
        if not self.stopped:
            self.stop()
            self.on_unhealthy(reason, failures)

    # --- the watchdog -------------------------------------------------------------

    def _arm(self, deadline: float) -> None:
        if self._dog is not None:
            self._dog.cancel()
        self.deadline = deadline
        self._dog = self.loop.call_at(deadline, self._missed)

    def _watchdog_message(self, kind: str) -> None:
        if self.stopped or self.watchdog is None:
            return
        if kind == "trigger":
            self._unhealthy("watchdog", 0)
        else:
            self._arm(self.loop.clock() + self.watchdog)

    def _missed(self) -> None:
        self._dog = None
        self._unhealthy("watchdog", 0)

    # --- the probes ---------------------------------------------------------------

    def _schedule(self, delay: float) -> None:
        if not self.stopped:
            self._next = self.loop.call_later(delay, self._probe)

    def _probe(self) -> None:
        self._next = None
        health = self.health
        assert health is not None
        self._schedule(health.interval)  # the next one; timeout < interval, so this one ends first
        if isinstance(health, HealthTcp):
            self._attempt = checks.tcp(self.loop, health.address, health.timeout, self._answer)
            self._attempt.start()
        elif isinstance(health, HealthHttp):
            self._attempt = checks.http_get(self.loop, health.http, health.timeout, self._answer)
            self._attempt.start()
        elif isinstance(health, HealthCmd):
            self._run_cmd(health)

    def _answer(self, ok: bool, reason: str) -> None:
        self._attempt = None
        if ok and self.owner is not None and not self._verified:
            # whose listener answered: checked at the first success and after a failure
            # (while probes keep succeeding, the same listener answers them)
            why = self.owner.check()
            if why is not None:
                ok, reason = False, why
        self._verified = ok
        self._counted(ok, reason)

    def _counted(self, ok: bool, reason: str) -> None:
        if self.stopped:
            return
        if ok:
            self.failures = 0
            return
        self.failures += 1
        assert self.health is not None
        if self.failures >= self.health.failures:
            self._unhealthy(reason, self.failures)

    def _run_cmd(self, health: HealthCmd) -> None:
        if self._cmd_pid is not None:
            return  # the last one is still being killed: this round counts nothing
        try:
            pid = posix.spawn(list(health.cmd), self.env, self.cwd)
        except posix.SpawnError as exc:
            reason = f"cmd: cannot start: {exc}"
            if self.say is not None and reason not in self._said:
                self._said.add(reason)
                self.say(f"health {reason}")
            self._counted(False, reason)
            return
        self._cmd_pid = pid
        self.loop.watch_child(pid, self._cmd_exited, kill_group=True)
        self._cmd_timer = self.loop.call_later(health.timeout, self._cmd_timeout)

    def _cmd_timeout(self) -> None:
        self._cmd_timer = None
        pid, self._cmd_pid = self._cmd_pid, None
        if pid is None:
            return
        posix.send_signal(pid, signal.SIGKILL)  # its group; the loop reaps it
        assert self.health is not None
        self._counted(False, f"cmd: no answer within {self.health.timeout:g}s")

    def _cmd_exited(self, status: int) -> None:
        if self._cmd_pid is None:
            return  # killed at its timeout (counted then) or stopped
        self._cmd_pid = None
        if self._cmd_timer is not None:
            self._cmd_timer.cancel()
            self._cmd_timer = None
        if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0:
            self._counted(True, "")
        else:
            code, sig = posix.describe_status(status)
            self._counted(False, f"cmd exit {code}" if sig is None else f"cmd signal {sig}")
