"""Kill mode ``cgroups`` (issue 13) with real processes under ``otree run``, as root.

The service of most tests double-forks a grandchild that calls ``setsid()``: it
leaves the process group, so only its cgroup holds it. Every grandchild is
killed by PID at the end of its test, whatever happened.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support.cli import otree_cli, status
from support.otreeproc import OtreeProc
from support.procfs import pid_alive
from support.treefiles import prog, write_tree
from support.waits import wait_until

Run = Callable[..., OtreeProc]


def _cgroup2_home() -> Path | None:
    """This process's cgroup directory on the first cgroup2 mount (read here on its own,
    not with otree's code), if root may create a cgroup there."""
    own = next(
        (
            line[3:].strip()
            for line in Path("/proc/self/cgroup").read_text().splitlines()
            if line.startswith("0::")
        ),
        None,
    )
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        head, _, tail = line.partition(" - ")
        fields = head.split()
        if tail.startswith("cgroup2 ") and own is not None and fields[3] == "/":
            home = Path(fields[4]) / own.lstrip("/")
            if os.access(home, os.W_OK):
                return home
    return None


HOME = _cgroup2_home()
needs_cgroups = pytest.mark.skipif(
    HOME is None or os.geteuid() != 0, reason="needs root and a writable cgroup2 (CI has both)"
)


def escape_tree(tmp_path: Path, mode: str, path: str = "web") -> str:
    """A tree whose service ``path`` leaves a setsid() grandchild (its PID in gc.pid)."""
    head, _, name = path.rpartition(".")
    table = f"[{head}]\n\n[{head}.{name}]" if head else f"[{name}]"
    return write_tree(
        tmp_path,
        f'cgroups = "{mode}"\n\n{table}\ncmd = {prog("escape", str(tmp_path / "gc.pid"))}\n',
    )


@pytest.fixture
def grandchild(tmp_path: Path) -> Iterator[Callable[[], int]]:
    """``grandchild()`` waits for the grandchild's PID; it is killed by PID at teardown."""
    seen: list[int] = []

    def pid() -> int:
        pidfile = tmp_path / "gc.pid"
        wait_until(pidfile.exists, what="the grandchild's PID file")
        seen.append(int(pidfile.read_text()))
        return seen[-1]

    yield pid
    for p in seen:
        with contextlib.suppress(OSError):
            os.kill(p, signal.SIGKILL)


def own_dir(otree_pid: int) -> Path:
    assert HOME is not None
    return HOME / f"otree-{otree_pid}"


def members(directory: Path) -> set[int]:
    return {int(n) for n in (directory / "cgroup.procs").read_text().split()}


@needs_cgroups
def test_stop_leaves_nothing_of_a_setsid_grandchild(
    otree: Run, tmp_path: Path, sock: str, grandchild: Callable[[], int]
) -> None:
    run = otree("run", escape_tree(tmp_path, "on"), "--socket", sock)
    run.wait_for("tree_ready")
    gc, main = grandchild(), run.running_pid("web")
    service_dir = own_dir(run.pid) / "web"
    assert members(service_dir) == {main, gc}
    assert os.getsid(gc) != os.getsid(main)  # it left the session: killpg misses it
    r = otree_cli("stop", "web", "--socket", sock)
    assert r.returncode == 0, r.stderr
    assert not pid_alive(gc) and not pid_alive(main)  # gone when the stop is answered
    assert not service_dir.exists()  # an empty service cgroup is removed at its exit
    assert otree_cli("shutdown", "--socket", sock).returncode == 0
    assert run.wait_exit() == 0
    assert not own_dir(run.pid).exists()


@needs_cgroups
def test_shutdown_leaves_nothing_and_removes_the_nested_cgroups(
    otree: Run, tmp_path: Path, sock: str, grandchild: Callable[[], int]
) -> None:
    run = otree("run", escape_tree(tmp_path, "on", "app.web"), "--socket", sock)
    run.wait_for("tree_ready")
    gc = grandchild()
    assert gc in members(own_dir(run.pid) / "app" / "web")
    assert otree_cli("shutdown", "--socket", sock).returncode == 0
    assert run.wait_exit() == 0
    assert not pid_alive(gc)
    assert not own_dir(run.pid).exists()


@needs_cgroups
def test_the_leftovers_are_killed_when_the_main_process_exits(
    otree: Run, tmp_path: Path, grandchild: Callable[[], int]
) -> None:
    pidfile = tmp_path / "gc.pid"
    tree = write_tree(
        tmp_path,
        f'cgroups = "on"\n\n[once]\ncmd = {prog("orphan", str(pidfile), "60")}\n'
        'restart = "temporary"\n',
    )
    run = otree("run", tree)
    gc = grandchild()
    run.wait_for("exit", "once")
    assert not pid_alive(gc)  # killed before the exit was reported


@needs_cgroups
def test_the_kill_after_the_stop_timeout_reaches_the_grandchild(
    otree: Run, tmp_path: Path, sock: str, grandchild: Callable[[], int]
) -> None:
    """Both ignore TERM: the KILL at ``shutdown`` seconds is ``cgroup.kill``."""
    cmd = prog("escape", str(tmp_path / "gc.pid"), "deaf")
    tree = write_tree(tmp_path, f'cgroups = "on"\n[web]\ncmd = {cmd}\nshutdown = 0.5\n')
    run = otree("run", tree, "--socket", sock)
    run.wait_for("tree_ready")
    gc = grandchild()
    assert otree_cli("stop", "web", "--socket", sock).returncode == 0
    assert run.find("exit", "web")[0]["signal"] == "KILL"
    assert not pid_alive(gc)


@needs_cgroups
def test_a_second_process_of_a_service_gets_a_cgroup_of_its_own() -> None:
    """While one process of ``a.b`` is still in ``a/b``, the next is put in ``a/b@2``."""
    from otree.runtime.cgroups import Cgroups

    cgroups = Cgroups.create()
    try:
        first, second = cgroups.group("a.b"), cgroups.group("a.b")
        assert first.directory == f"{cgroups.base}/a/b"
        assert second.directory == f"{cgroups.base}/a/b@2"
        cgroups.remove(first)
        assert cgroups.group("a.b").directory == first.directory  # free again
    finally:
        cgroups.close()
    assert not os.path.exists(cgroups.base)


def test_without_cgroups_the_grandchild_survives_the_stop(
    otree: Run, tmp_path: Path, sock: str, grandchild: Callable[[], int]
) -> None:
    """The caveat of process groups, shown true (the fixture kills it by PID)."""
    run = otree("run", escape_tree(tmp_path, "off"), "--socket", sock)
    run.wait_for("tree_ready")
    gc, main = grandchild(), run.running_pid("web")
    assert otree_cli("stop", "web", "--socket", sock).returncode == 0
    assert not pid_alive(main)
    assert pid_alive(gc)
    assert "procs" not in status(sock)["web"]  # no cgroup, no count


@needs_cgroups
def test_status_shows_the_processes_and_cpu_seconds(
    otree: Run, tmp_path: Path, sock: str, grandchild: Callable[[], int]
) -> None:
    run = otree("run", escape_tree(tmp_path, "auto"), "--socket", sock)
    run.wait_for("tree_ready")
    grandchild()
    web = status(sock)["web"]
    assert web["procs"] == 2
    assert isinstance(web["cpu_seconds"], float) and web["cpu_seconds"] > 0
    assert web["memory"] is None  # the memory controller is not on for otree's cgroup
    table = otree_cli("status", "--socket", sock).stdout.splitlines()
    # no MEM: no memory controller; CPU% and RSS follow (issue 16)
    assert table[1].split()[-4:] == ["PROCS", "CPU", "CPU%", "RSS"]
    row = next(line for line in table if line.split()[0] == "web").split()
    assert row[-4] == "2" and re.fullmatch(r"\d+\.\d\ds", row[-3]), row


@needs_cgroups
def test_a_reload_keeps_the_cgroup_and_its_processes(
    otree: Run, tmp_path: Path, sock: str, grandchild: Callable[[], int]
) -> None:
    run = otree("run", escape_tree(tmp_path, "on"), "--socket", sock)
    run.wait_for("tree_ready")
    gc, main = grandchild(), run.running_pid("web")
    r = otree_cli("reload", "--socket", sock)
    assert r.returncode == 0, r.stderr
    assert run.find("adopt", "web", pid=main)
    assert members(own_dir(run.pid) / "web") == {main, gc}
    assert status(sock)["web"]["procs"] == 2
    assert otree_cli("stop", "web", "--socket", sock).returncode == 0
    assert not pid_alive(gc)  # the new image stops the whole cgroup too
    assert otree_cli("shutdown", "--socket", sock).returncode == 0
    assert run.wait_exit() == 0
    assert not own_dir(run.pid).exists()


@needs_cgroups
def test_the_next_start_removes_what_a_killed_otree_left(
    otree: Run, tmp_path: Path, sock: str, grandchild: Callable[[], int]
) -> None:
    tree = escape_tree(tmp_path, "on")
    first = otree("run", tree, "--socket", sock)
    first.wait_for("tree_ready")
    gc, main = grandchild(), first.running_pid("web")
    wait_until(lambda: os.path.exists(sock + ".state"), what="the state file")
    first.send(signal.SIGKILL)
    first.wait_exit()
    wait_until(lambda: not pid_alive(main), what="the main process's death signal")
    left = own_dir(first.pid)
    assert gc in members(left / "web")  # it escaped the death signal, not its cgroup
    (tmp_path / "gc.pid").unlink()
    second = otree("run", tree, "--socket", sock)
    second.wait_for("tree_ready")
    assert not left.exists()
    assert not pid_alive(gc)
    line = f"otree: cgroups of the previous otree (pid {first.pid}): 1 process left in them"
    assert f"{line} killed, removed\n" in second.stderr
    grandchild()  # the new grandchild, killed at the end


def _dead_pid() -> int:
    """A PID that runs nothing now."""
    gone = subprocess.Popen(["true"])
    gone.wait()
    return gone.pid


@needs_cgroups
def test_another_tree_removes_only_the_empty_cgroups_of_a_dead_otree() -> None:
    """A dead otree's cgroup that still holds a process is its own tree's to clean up."""
    from otree.runtime.cgroups import Cgroups, remove_dead

    assert HOME is not None
    full, empty = HOME / f"otree-{_dead_pid()}", HOME / f"otree-{_dead_pid()}"
    cgroups = Cgroups.resume(str(full))
    daemon = None
    try:
        cgroups.enter(cgroups.group("web"))
        daemon = subprocess.Popen(["sleep", "100"], start_new_session=True)
        cgroups.settle()
        (empty / "web").mkdir(parents=True)
        remove_dead(str(HOME))
        assert not empty.exists()
        assert full.exists() and daemon.poll() is None
    finally:
        if daemon is not None:
            daemon.kill()
            daemon.wait()
        cgroups.close()
        with contextlib.suppress(OSError):
            (empty / "web").rmdir()
            empty.rmdir()
    assert not full.exists()


def test_on_without_a_cgroup2_is_an_error_and_starts_nothing(otree: Run, tmp_path: Path) -> None:
    marker = tmp_path / "started"
    tree = write_tree(tmp_path, f'cgroups = "on"\n[web]\ncmd = ["touch", "{marker}"]\n')
    run = otree("run", tree, env={"OTREE_TEST_MOUNTINFO": os.devnull})
    assert run.wait_exit() == 2
    assert run.stderr == (
        'otree: cgroups = "on", but no cgroup2 file system is mounted'
        ' (cgroups = "auto" falls back to process groups)\n'
    )
    assert not marker.exists() and not run.events()


def test_auto_without_a_cgroup2_falls_back_to_process_groups(
    otree: Run, tmp_path: Path, sock: str
) -> None:
    tree = write_tree(tmp_path, f"[web]\ncmd = {prog('obey')}\n")
    run = otree("run", tree, "--socket", sock, env={"OTREE_TEST_MOUNTINFO": os.devnull})
    run.wait_for("tree_ready")
    assert run.stderr.count("otree: cgroups:") == 1
    assert "services are stopped by process group" in run.stderr
    assert "procs" not in status(sock)["web"]


def test_the_mount_table_is_read_with_its_escapes(tmp_path: Path) -> None:
    from otree.runtime.cgroups import mounts

    table = tmp_path / "mountinfo"
    table.write_text(
        "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
        "35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"
        "41 31 0:38 /kube /mnt/cgroup\\040two rw,relatime shared:9 - cgroup2 cgroup2 rw\n"
    )
    assert mounts(str(table)) == [("/kube", "/mnt/cgroup two")]


def test_a_cgroup2_otree_is_not_below_is_no_cgroup(tmp_path: Path) -> None:
    from otree.runtime.cgroups import Cgroups, Unavailable

    table = tmp_path / "mountinfo"
    table.write_text("41 31 0:38 /elsewhere /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n")
    with pytest.raises(Unavailable, match="is not below it"):
        Cgroups.create(str(table))


@needs_cgroups
def test_a_new_image_that_cannot_take_over_ends_the_handed_cgroups(tmp_path: Path) -> None:
    """The bootstrap's stop (standard library only) kills what is left in the handed-over
    cgroups and removes them, as the end of any otree does."""
    from otree.runtime.cgroups import Cgroups

    cgroups = Cgroups.create()
    daemon = None
    try:
        cgroups.enter(cgroups.group("web"))
        daemon = subprocess.Popen(["sleep", "100"], start_new_session=True)
        cgroups.settle()
        handoff = tmp_path / "handoff"
        handoff.write_text(json.dumps({"otree_handoff": 3, "cgroup": cgroups.base}) + "\n")
        with open(handoff, "rb") as f:
            script = "import otree.reload.rescue as r; raise SystemExit(r.give_up('a test'))"
            done = subprocess.run(
                [sys.executable, "-c", script],
                env={**os.environ, "OTREE_HANDOFF_FD": str(f.fileno())},
                pass_fds=[f.fileno()],
                capture_output=True,
                text=True,
                timeout=60,
            )
        assert done.returncode == 4, done.stderr
        assert daemon.wait(20) == -signal.SIGKILL
        assert not os.path.exists(cgroups.base)
    finally:
        if daemon is not None and daemon.poll() is None:
            daemon.kill()
            daemon.wait()
        cgroups.close()


@needs_cgroups
def test_a_swept_empty_base_is_made_again_at_the_next_start() -> None:
    """Another otree may remove otree-<pid> while it is empty (it cannot tell a live otree
    of another PID namespace from a dead one): the next spawn makes it again."""
    from otree.runtime.cgroups import Cgroups

    cgroups = Cgroups.create()
    try:
        os.rmdir(cgroups.base)
        group = cgroups.group("app.web")
        assert os.path.isdir(group.directory)
    finally:
        cgroups.close()
    assert not os.path.exists(cgroups.base)


def _own_cgroup() -> str:
    return Path("/proc/self/cgroup").read_text().splitlines()[-1].partition("::")[2]


@needs_cgroups
def test_a_batch_of_spawns_moves_otree_straight_on_and_anything_else_brings_it_home() -> None:
    """``enter`` takes otree from one service's cgroup to the next without going home in
    between; a spawn not placed (a probe's), a count, a signal or ``settle`` brings it
    back first, so it is never among what a service's cgroup counts or kills."""
    from otree.runtime import posix
    from otree.runtime.cgroups import Cgroups

    cgroups = Cgroups.create()
    home = _own_cgroup()
    posix.use_settle(cgroups.settle)
    pids: list[int] = []
    try:
        a, b = cgroups.group("a"), cgroups.group("b")
        cgroups.enter(a)
        pids.append(posix.spawn(["sleep", "100"], dict(os.environ), placed=True))
        cgroups.enter(b)
        assert _own_cgroup().endswith("/b")
        pids.append(posix.spawn(["sleep", "100"], dict(os.environ), placed=True))
        assert a.members() == [pids[0]]  # counted from home: otree is not one of them
        assert _own_cgroup() == home
        cgroups.enter(b)
        probe = posix.spawn(["sleep", "100"], dict(os.environ))  # not placed: from home
        pids.append(probe)
        assert _own_cgroup() == home and b.members() == [pids[1]]
        cgroups.enter(b)
        assert b.signal(signal.SIGKILL) == 1  # otree went home first: it is alive to see it
        assert wait_until(lambda: not b.populated(), 10)
    finally:
        posix.use_settle(None)
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        cgroups.close()
    assert _own_cgroup() == home and not os.path.exists(cgroups.base)
