"""OTP's supervision rules as data.

1. Whether an exit calls for a restart depends only on the child's restart
   type and whether the exit was normal (R13-R15):

       restart type   normal exit   abnormal exit
       permanent      restart       restart
       transient      keep stopped  restart
       temporary      keep stopped  keep stopped

2. Which siblings a restart touches depends only on the strategy (R17-R19):
   ``one_for_one`` the child alone, ``one_for_all`` every child,
   ``rest_for_one`` the child and those declared after it. The touched
   siblings still running are stopped in reverse declared order; then the
   touched non-temporary children start in declared order, the failed child
   always. Temporary siblings stopped this way stay stopped (R18). A retry
   (a start inside a restart failed, R26) touches the same group, except
   under ``rest_for_one``: it goes on from the failed child, and the earlier
   ones of the group that did start stay up (R27). A *held* sibling (an
   ``autostart = false`` child nobody has started, or that ``otree stop``
   stopped again) is left as it is, as supervisord leaves a program it did
   not autostart: it is neither stopped (it has no process) nor started; once
   started with ``otree start`` it restarts with its group like the others.
   :func:`restart_plan`.

3. A significant child that exits on its own and is not restarted shuts its
   supervisor down normally: at once under ``any_significant``, once no
   significant child is left under ``all_significant`` (R40-R42). As in OTP's
   ``do_auto_shutdown``, only a child with no process is gone (stopped or
   exited): one waiting to be restarted, or whose exit waits to be handled,
   is still there (``supervisor.GONE``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

from otree.core.spec import AutoShutdown, Restart, Strategy

RESTART_AFTER: dict[tuple[Restart, bool], bool] = {
    # (restart type, exit was normal) -> restart?
    (Restart.PERMANENT, True): True,
    (Restart.PERMANENT, False): True,
    (Restart.TRANSIENT, True): False,
    (Restart.TRANSIENT, False): True,
    (Restart.TEMPORARY, True): False,
    (Restart.TEMPORARY, False): False,
}

#: strategy -> (number of children, index of the exited child) -> indices touched
GROUP: dict[Strategy, Callable[[int, int], range]] = {
    Strategy.ONE_FOR_ONE: lambda n, i: range(i, i + 1),
    Strategy.ONE_FOR_ALL: lambda n, i: range(n),
    Strategy.REST_FOR_ONE: lambda n, i: range(i, n),
}

#: auto_shutdown -> does it fire, given how many significant children are still there?
AUTO_SHUTDOWN_FIRES: dict[AutoShutdown, Callable[[int], bool]] = {
    AutoShutdown.NEVER: lambda running: False,
    AutoShutdown.ANY_SIGNIFICANT: lambda running: True,
    AutoShutdown.ALL_SIGNIFICANT: lambda running: running == 0,
}


class Sibling(NamedTuple):
    """What the restart policy needs to know of one child of the supervisor."""

    restart: Restart
    alive: bool  # starting, running or stopping
    held: bool = False  # autostart = false and not started: a group restart leaves it


class RestartPlan(NamedTuple):
    """The indices (into the supervisor's children) a restart touches, stops, then starts.

    A touched child that is neither stopped nor started (a temporary one that had
    ended) is done with: an exit of it still queued is stale (R12).
    """

    group: tuple[int, ...]  # declared order
    stop: tuple[int, ...]  # reverse declared order
    start: tuple[int, ...]  # declared order


def restart_plan(
    strategy: Strategy, siblings: Sequence[Sibling], failed: int, *, retry: bool = False
) -> RestartPlan:
    """Which siblings restarting child ``failed`` stops and starts (rule 2 above)."""
    group = list(GROUP[strategy](len(siblings), failed))
    if retry and strategy is Strategy.REST_FOR_ONE:  # R27
        group = [i for i in group if i == failed or not siblings[i].alive]
    stop = tuple(i for i in reversed(group) if i != failed and siblings[i].alive)
    start = tuple(
        i
        for i in group
        if i == failed or (siblings[i].restart is not Restart.TEMPORARY and not siblings[i].held)
    )
    return RestartPlan(group=tuple(group), stop=stop, start=start)
