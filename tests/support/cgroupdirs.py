"""The cgroup directories otree makes (``otree-<pid>``, kill mode ``cgroups``): a test
whose otree was killed (SIGKILL) leaves its directory behind, which the next otree
would remove and say so on its stderr. ``remove_of(pid)`` removes that otree's as
soon as its test is over (what is left in it killed first), so no test sees another's
leftovers; after the suite none of the tests' otrees may have left one."""

from __future__ import annotations

import contextlib
import os

from otree.runtime import cgroups


def homes() -> list[str]:
    """The directories otree's cgroups go in: this process's cgroup in each cgroup2 mount
    (the tests' otrees are in the test runner's cgroup)."""
    try:
        own = cgroups.own_cgroup()
        found = cgroups.mounts()
    except cgroups.Unavailable:
        return []
    out = []
    for root, point in found:
        rel = os.path.relpath(own, root) if root != "/" else own.lstrip("/")
        if not rel.startswith(".."):
            out.append(os.path.normpath(os.path.join(point, rel)))
    return out


def remove_of(pid: int) -> list[str]:
    """Remove the cgroups of otree ``pid``, which is gone: its processes killed, its
    directories removed bottom up. Returns the top directories removed."""
    removed = []
    for home in homes():
        top = os.path.join(home, f"otree-{pid}")
        if not os.path.isdir(top):
            continue
        cgroups.kill_all(top)
        cgroups.wait_empty(top, 5.0)
        for here, _, _ in sorted(os.walk(top), key=lambda w: -len(w[0])):
            with contextlib.suppress(OSError):
                os.rmdir(here)
        removed.append(top)
    return removed


def dead_otrees() -> set[int]:
    """The PIDs of the otrees that are gone but whose ``otree-<pid>`` cgroups are left."""
    out = set()
    for home in homes():
        with contextlib.suppress(OSError):
            for name in os.listdir(home):
                number = name.removeprefix("otree-")
                if number != name and number.isdigit() and not os.path.exists(f"/proc/{number}"):
                    out.add(int(number))
    return out
