"""The cgroup directories otree makes (``otree-<pid>``, kill mode ``cgroups``): a test
whose otree was killed (SIGKILL) leaves its directory behind, which the next otree
would remove and say so on its stderr. ``remove_dead()`` removes them as soon as
that test is over, so no test sees another's leftovers; after the suite none may be
left (``tests/conftest.py``)."""

from __future__ import annotations

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


def remove_dead() -> list[str]:
    """Remove every ``otree-<N>`` directory of a dead N (what is left in one killed);
    returns the directories removed."""
    removed = []
    for home in homes():
        removed += [top for top, _ in cgroups.remove_dead(home)]
    return removed
