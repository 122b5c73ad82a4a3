"""``otree status``: CPU seconds, CPU% and RSS per service (its process group, or its
cgroup), summed per supervisor; ``otree status PATH``, one node in full. Real processes."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import sys
from pathlib import Path

import pytest
from support import cli
from support.otreeproc import RunOtree
from support.waits import wait_until

from otree.control.usage import MIN_WINDOW, Costs

#: 64 MiB touched page by page (resident), a line, then a busy loop
BURN = (
    "b = bytearray(64 << 20)\n"
    "for i in range(0, len(b), 4096): b[i] = 1\n"
    "print('allocated', flush=True)\n"
    "while True: pass\n"
)
MIB = 1024 * 1024


def _tree(cgroups: str) -> str:
    return (
        f'cgroups = "{cgroups}"\n'
        '[web]\nstrategy = "one_for_all"\n'
        f"[web.burn]\ncmd = {json.dumps([sys.executable, '-c', BURN])}\n"
        '[web.idle]\ncmd = "sleep 60"\n'
        "[flaky]\ncmd = \"sh -c 'echo starting; echo oops-$$ >&2; sleep 0.3; exit 3'\"\n"
        "backoff = { initial = 0.3, max = 0.3, jitter = 0 }\n"
    )


@pytest.mark.parametrize("cgroups", ["off", "auto"])
def test_cpu_and_rss_of_a_service_that_burns_and_allocates(
    otree: RunOtree, sock: str, tmp_path: Path, cgroups: str
) -> None:
    (tmp_path / "tree.toml").write_text(_tree(cgroups))
    run = otree("run", "tree.toml", "--socket", sock)
    run.wait_for("tree_ready")
    wait_until(lambda: "allocated" in run.stdout, what="the memory allocated")
    wait_until(lambda: cli.status(sock)["web.burn"]["cpu_seconds"] >= 0.5, what="CPU burnt")
    first = cli.status(sock)
    burn, idle = first["web.burn"], first["web.idle"]
    assert burn["rss_bytes"] >= 64 * MIB, burn
    assert idle["rss_bytes"] < 16 * MIB and idle["cpu_seconds"] < 0.2, idle
    assert burn["cpu_percent"] > 20, burn  # one core busy, most of its uptime
    assert idle["cpu_percent"] < 10, idle
    # a supervisor's row is the sum of the services below it; the root's, the tree's
    web = first["web"]
    assert web["rss_bytes"] == burn["rss_bytes"] + idle["rss_bytes"]
    assert web["cpu_seconds"] == pytest.approx(burn["cpu_seconds"] + idle["cpu_seconds"], abs=0.01)
    assert first[""]["rss_bytes"] >= web["rss_bytes"]
    # a second status, a second or more later, measures CPU% over the time since the first
    before = burn["cpu_seconds"]
    wait_until(
        lambda: cli.status(sock)["web.burn"]["cpu_percent_over"] is not None,
        what="a status measured against the one before",
    )
    again = cli.status(sock)["web.burn"]
    assert again["cpu_percent_over"] >= 0.0 and again["cpu_seconds"] > before
    assert again["cpu_percent"] > 20, again
    # the table shows them
    r = cli.otree_cli("status", "--socket", sock)
    assert r.returncode == 0, r.stderr
    header, *rows = r.stdout.splitlines()[1:]
    assert header.split()[-2:] == ["CPU%", "RSS"]
    burn_row = next(row for row in rows if row.split()[0] == "web.burn")
    assert burn_row.split()[-1].endswith("M") and burn_row.split()[-2].endswith("%")


def test_status_path_shows_one_node_in_full(otree: RunOtree, sock: str, tmp_path: Path) -> None:
    (tmp_path / "tree.toml").write_text(_tree("off"))
    run = otree("run", "tree.toml", "--socket", sock)
    run.wait_for("tree_ready")
    exit_event = run.wait_for("exit", "flaky", count=2)
    r = cli.otree_cli("status", "flaky", "--json", "--socket", sock)
    assert r.returncode == 0, r.stderr
    node = json.loads(r.stdout)["node"]
    assert node["path"] == "flaky" and node["kind"] == "service"
    assert node["spec"]["cmd"].startswith("sh -c ")
    assert node["spec"]["backoff"] == "Backoff(initial=0.3, max=0.3, jitter=0.0)"
    assert node["window"] == 5.0
    assert len(node["restart_times"]) == node["restarts"] >= 1
    assert node["restart_times"] == sorted(node["restart_times"])
    assert node["last_exit"]["code"] == 3 and node["last_exit"]["normal"] is False
    assert any(line.startswith("oops-") for line in node["last_exit"]["last_lines"])
    assert exit_event["last_lines"]  # the same lines as the event had, at least these
    text = cli.otree_cli("status", "web", "--socket", sock)
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert lines[:3] == ["path:      web", "kind:      supervisor", "state:     running"]
    assert "children:  burn, idle" in lines and "strategy:  one_for_all" in lines
    gone = cli.otree_cli("status", "nope", "--socket", sock)
    assert (gone.returncode, gone.stderr) == (1, "otree: no node at path 'nope'\n")


def test_cpu_percent_is_over_the_time_since_the_reading_before() -> None:
    """The rule of ``control.usage`` with readings given: the first over the uptime, the
    next over the window since, a reading replaced only once it is MIN_WINDOW old."""
    costs = Costs()

    def row(pid: int = 10, uptime: float = 4.0) -> dict[str, object]:
        return {"path": "a", "kind": "service", "pid": pid, "uptime": uptime}

    def fill(rows: list[dict[str, object]], cpu: float, now: float, pid: int = 10) -> None:
        sup = {"path": "", "kind": "supervisor", "pid": None}
        costs.fill([sup, *rows], {"a": (pid, cpu, 4096)}, now)
        assert sup["cpu_seconds"] == round(cpu, 3) and sup["rss_bytes"] == 4096

    first = row()
    fill([first], 2.0, 100.0)
    assert (first["cpu_percent"], first["cpu_percent_over"]) == (50.0, None)
    soon = row()
    fill([soon], 2.1, 100.5)  # half a second later: over that half second, base kept
    assert (soon["cpu_percent"], soon["cpu_percent_over"]) == (20.0, 0.5)
    later = row()
    fill([later], 2.5, 100.0 + MIN_WINDOW * 2)
    assert later["cpu_percent_over"] == MIN_WINDOW * 2  # still against the first reading
    new_pid = row(pid=11, uptime=1.0)
    fill([new_pid], 0.25, 103.0, pid=11)  # another process: over its uptime again
    assert (new_pid["cpu_percent"], new_pid["cpu_percent_over"]) == (25.0, None)


def test_in_its_cgroup_a_service_counts_the_processes_that_left_its_group(
    otree: RunOtree, sock: str, tmp_path: Path
) -> None:
    """A setsid() grandchild is in another process group, but in the service's cgroup:
    its memory is the service's (where cgroups can be used; else skipped)."""
    pidfile = tmp_path / "gc.pid"
    alloc = (
        "import os, time\n"
        "b = bytearray(48 << 20)\n"
        "for i in range(0, len(b), 4096): b[i] = 1\n"
        f"open({str(pidfile)!r}, 'w').write(str(os.getpid()))\n"
        "time.sleep(60)\n"
    )
    script = f"setsid {sys.executable} -c {shlex.quote(alloc)} & exec sleep 60"
    (tmp_path / "tree.toml").write_text(f"[web]\ncmd = {json.dumps(['sh', '-c', script])}\n")
    run = otree("run", "tree.toml", "--socket", sock)
    try:
        run.wait_for("tree_ready")
        wait_until(pidfile.exists, what="the grandchild's PID file")
        web = cli.status(sock)["web"]
        if "procs" not in web:
            pytest.skip("no writable cgroup2 here: the service runs in its process group")
        assert web["procs"] == 2
        assert web["rss_bytes"] >= 48 * MIB, web
    finally:
        if pidfile.exists():
            with contextlib.suppress(OSError, ValueError):
                os.kill(int(pidfile.read_text()), signal.SIGKILL)
