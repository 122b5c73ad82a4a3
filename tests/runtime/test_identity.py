"""Services run as another user, with limits (issue 13): real processes, as root, with a
user and group made for the test. What the child has is read from its own /proc."""

from __future__ import annotations

import os
import signal
import socket
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support.accounts import Account, make_account
from support.otreeproc import OtreeProc
from support.procfs import pid_alive
from support.treefiles import argv, toml_string, write_tree
from support.waits import wait_until

Run = Callable[..., OtreeProc]


def _others_may_run(path: str) -> bool:
    """Whether a user other than the owner may execute ``path`` (every directory on the
    way passable by others, the file executable by them)."""
    path = os.path.realpath(path)
    parts = path.split("/")
    for i in range(2, len(parts)):
        if not os.stat("/".join(parts[:i]) or "/").st_mode & 0o001:
            return False
    return os.path.isfile(path) and bool(os.stat(path).st_mode & 0o001)


#: an interpreter the test user may run (a venv's or pyenv's may be in root's home)
PYTHON = next(
    (
        p
        for p in (sys.executable, "/usr/bin/python3", "/usr/local/bin/python3")
        if _others_may_run(p)
    ),
    "/usr/bin/python3",
)

#: what the service records of itself, in its cwd, before it sleeps (``$$$$`` in the tree
#: file is the shell's ``$$``: each ``$$`` is one ``$``)
RECORD = (
    "cat /proc/$$$$/status > status.txt; cat /proc/$$$$/limits > limits.txt;"
    " cat /proc/$$$$/oom_score_adj > oom.txt; cat /proc/$$$$/stat > stat.txt;"
    " env > env.txt; umask > umask.txt; : > created; mv status.txt status.done;"
    " exec sleep 120"
)


@pytest.fixture(scope="module")
def account() -> Iterator[Account]:
    with make_account() as made:
        yield made


def _status_ids(text: str, key: str) -> list[int]:
    line = next(x for x in text.splitlines() if x.startswith(key + ":"))
    return [int(v) for v in line.split()[1:]]


def test_a_service_runs_as_its_user_with_its_groups_limits_and_priorities(
    otree: Run, tmp_path: Path, sock: str, account: Account
) -> None:
    work = Path(account.work)
    tree = write_tree(
        tmp_path,
        f"[svc]\ncmd = {argv('sh', '-c', RECORD)}\ncwd = {toml_string(account.work)}\n"
        f'user = "{account.name}"\numask = "0077"\nnice = 5\noom_score_adj = 500\n'
        "limits = { nofile = 1234, nproc = [500, 600], core = 'unlimited' }\n"
        'env = { EXTRA = "yes" }\n',
    )
    run = otree("run", tree, "--socket", sock)
    run.wait_for("tree_ready")
    wait_until(lambda: (work / "status.done").exists(), what="the service's record")
    status = (work / "status.done").read_text()
    assert _status_ids(status, "Uid") == [account.uid] * 4
    assert _status_ids(status, "Gid") == [account.gid] * 4
    assert set(_status_ids(status, "Groups")) == {account.gid, account.extra_gid}  # initgroups
    env = dict(line.split("=", 1) for line in (work / "env.txt").read_text().splitlines())
    assert (env["USER"], env["LOGNAME"], env["HOME"]) == (account.name, account.name, account.home)
    assert env["EXTRA"] == "yes"
    assert (work / "umask.txt").read_text().strip() == "0077"
    assert (work / "created").stat().st_mode & 0o777 == 0o600
    assert (work / "created").stat().st_uid == account.uid
    assert (work / "oom.txt").read_text().strip() == "500"
    stat = (work / "stat.txt").read_text().rpartition(")")[2].split()
    assert int(stat[16]) == 5  # field 19: nice
    limits = {
        line[:26].strip(): line[26:].split()[:2]
        for line in (work / "limits.txt").read_text().splitlines()[1:]
    }
    assert limits["Max open files"] == ["1234", "1234"]
    assert limits["Max processes"] == ["500", "600"]
    assert limits["Max core file size"] == ["unlimited", "unlimited"]
    pid = run.running_pid("svc")
    run.send(signal.SIGTERM)
    assert run.wait_exit() == 0, run.describe()
    assert not pid_alive(pid)


def test_env_sets_home_and_user_over_the_password_database(
    otree: Run, tmp_path: Path, sock: str, account: Account
) -> None:
    work = Path(account.work)
    script = "env > env.tmp && mv env.tmp env.done && exec sleep 120"
    tree = write_tree(
        tmp_path,
        f"[svc]\ncmd = {argv('sh', '-c', script)}\ncwd = {toml_string(account.work)}\n"
        f'user = {account.uid}\ngroup = "{account.extra_group}"\n'
        'env = { HOME = "/elsewhere" }\n',
    )
    run = otree("run", tree, "--socket", sock)
    run.wait_for("tree_ready")
    wait_until(lambda: (work / "env.done").exists())
    env = dict(line.split("=", 1) for line in (work / "env.done").read_text().splitlines())
    assert env["HOME"] == "/elsewhere"
    assert env["USER"] == account.name
    status = Path(f"/proc/{run.running_pid('svc')}/status").read_text()
    assert _status_ids(status, "Gid") == [account.extra_gid] * 4  # group overrides the primary


def test_a_notify_service_of_another_user_reaches_its_socket_and_nobody_else_does(
    otree: Run, tmp_path: Path, sock: str, account: Account
) -> None:
    """Its notify socket is in a directory of its user's own (it was root-only 0700), and
    the service cannot open otree's control socket (0600, otree's user)."""
    os.chmod(os.path.dirname(sock), 0o755)  # so that only the socket's own mode refuses
    (Path(account.work) / "notify.py").write_text(
        "import os, socket, sys\n"
        "s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)\n"
        "try:\n"
        "    s.connect(sys.argv[1])\n"
        "    answer = 'connected'\n"
        "except OSError as exc:\n"
        "    answer = type(exc).__name__\n"
        "open('control.txt', 'w').write(answer)\n"
        "n = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n"
        "n.sendto(b'READY=1', os.environ['NOTIFY_SOCKET'])\n"
        "import time; time.sleep(120)\n"
    )
    tree = write_tree(
        tmp_path,
        f"[svc]\ncmd = {argv(PYTHON, 'notify.py', sock)}\ncwd = {toml_string(account.work)}\n"
        f'user = "{account.name}"\nready = {{ notify = true, timeout = 20 }}\n',
    )
    run = otree("run", tree, "--socket", sock)
    run.wait_for("ready", "svc")
    assert (Path(account.work) / "control.txt").read_text() == "PermissionError"
    pid = run.running_pid("svc")
    notify = dict(
        item.split("=", 1)
        for item in Path(f"/proc/{pid}/environ").read_bytes().decode().split("\0")
        if "=" in item
    )["NOTIFY_SOCKET"]
    directory = os.stat(os.path.dirname(notify))
    assert (directory.st_uid, directory.st_mode & 0o777) == (account.uid, 0o700)
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.connect(sock)  # otree's own user (root here) still can
    client.close()
    run.send(signal.SIGTERM)
    assert run.wait_exit() == 0, run.describe()
    assert not os.path.exists(os.path.dirname(notify))  # removed with otree's directory


def test_a_service_of_another_user_still_dies_with_otree(
    otree: Run, tmp_path: Path, sock: str, account: Account
) -> None:
    """The parent-death signal is set after the uid changes (a change of uid clears it)."""
    tree = write_tree(
        tmp_path,
        f'[svc]\ncmd = "sleep 120"\nuser = "{account.name}"\nnice = 1\n',
    )
    run = otree("run", tree, "--socket", sock)
    run.wait_for("tree_ready")
    pid = run.running_pid("svc")
    assert os.stat(f"/proc/{pid}").st_uid == account.uid
    run.send(signal.SIGKILL)
    run.wait_exit()
    wait_until(lambda: not pid_alive(pid), what="the service to die with otree")
