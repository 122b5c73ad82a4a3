"""``procstat.services``: each running service's CPU and RSS, from its cgroup's members."""

from __future__ import annotations

import os
import subprocess

from otree.core.engine import Engine
from otree.core.spec import Service, Supervisor
from otree.runtime import procstat


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
