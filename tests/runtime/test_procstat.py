"""``procstat.services``: each running service's CPU and RSS, from its cgroup's members."""

from __future__ import annotations

import os
import subprocess

from support.procfs import cmdline, proc_state
from support.waits import wait_until

from otree.core.engine import Engine
from otree.core.spec import Service, Supervisor
from otree.runtime import procstat


def settled(pid: int) -> bool:
    """``sleep`` exec'd and asleep in its nanosleep: its resident memory no longer grows
    (a child read just after ``Popen`` may still be mapping its pages in)."""
    return cmdline(pid).startswith("sleep") and proc_state(pid) == "S"


def test_services_take_the_members_read_already_by_their_cgroup_directory() -> None:
    """Members passed in (by cgroup directory, as ``otree status`` read them for the
    counts) are used as they are: nothing is read again for those cgroups, and a cgroup
    not among them is read (here: a directory that does not exist, so no members)."""
    tree = Supervisor("root", children=[Service("a", cmd=["x"]), Service("b", cmd=["x"])])
    nodes = Engine(tree).nodes
    child = subprocess.Popen(["sleep", "100"])
    try:
        nodes["a"].pid = child.pid  # type: ignore[attr-defined]
        nodes["b"].pid = os.getpid()  # type: ignore[attr-defined]
        where = {child.pid: "/nonexistent/a", os.getpid(): "/nonexistent/b"}
        found = procstat.services(nodes, where.get, members={"/nonexistent/a": [child.pid]})
        assert set(found) == {"a"}
        pid, cpu, rss = found["a"]
        assert pid == child.pid and cpu >= 0 and rss >= 0
        both = procstat.services(
            nodes,
            where.get,
            members={"/nonexistent/a": [child.pid], "/nonexistent/b": [os.getpid()]},
        )
        assert set(both) == {"a", "b"} and both["b"][0] == os.getpid() and both["b"][2] > 0
    finally:
        child.kill()
        child.wait()


def test_a_cgroup_whose_cpu_seconds_are_known_has_only_its_members_memory_read() -> None:
    """With the CPU seconds of a cgroup given (its ``cpu.stat``, read for ``otree status``),
    a service in it gets exactly those seconds and its members' resident memory summed
    from ``statm``; a member gone meanwhile counts nothing, and a cgroup with no members
    left is absent."""
    tree = Supervisor("root", children=[Service("a", cmd=["x"]), Service("b", cmd=["x"])])
    nodes = Engine(tree).nodes
    first = subprocess.Popen(["sleep", "100"])
    second = subprocess.Popen(["sleep", "100"])
    gone = subprocess.Popen(["true"])
    gone.wait()
    try:
        wait_until(lambda: settled(first.pid) and settled(second.pid), what="both asleep")
        nodes["a"].pid = first.pid  # type: ignore[attr-defined]
        nodes["b"].pid = second.pid  # type: ignore[attr-defined]
        where = {first.pid: "/nonexistent/a", second.pid: "/nonexistent/b"}
        members = {"/nonexistent/a": [first.pid, second.pid, gone.pid], "/nonexistent/b": []}
        found = procstat.services(
            nodes, where.get, members=members, cpu={"/nonexistent/a": 12.5, "/nonexistent/b": 1.0}
        )
        assert set(found) == {"a"}
        pid, cpu, rss = found["a"]
        one = procstat.resident([first.pid])
        both = procstat.resident([first.pid, second.pid])
        assert pid == first.pid and cpu == 12.5
        assert 0 < one < both and rss == both
        assert procstat.resident([gone.pid]) == 0
    finally:
        for child in (first, second):
            child.kill()
            child.wait()
