"""A throwaway user and group for the identity tests (root only): created with
``useradd``/``groupadd`` under a random name, removed with everything they own."""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass

import pytest


@dataclass(frozen=True)
class Account:
    name: str
    uid: int
    gid: int
    #: a supplementary group the user is a member of
    extra_group: str
    extra_gid: int
    home: str
    #: a directory the user owns (a service's cwd), inside a world-passable one
    work: str


def _run(*argv: str) -> None:
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


@contextlib.contextmanager
def make_account() -> Iterator[Account]:
    if os.geteuid() != 0:
        pytest.skip("creating a user needs root (CI runs as root)")
    suffix = secrets.token_hex(3)
    name, extra = f"otr{suffix}", f"otrg{suffix}"
    base = tempfile.mkdtemp(prefix="otree-acct-", dir="/tmp")
    os.chmod(base, 0o755)
    home = os.path.join(base, "home")
    _run("groupadd", extra)
    try:
        _run("useradd", "--no-create-home", "--home-dir", home, "--user-group", "-G", extra, name)
        try:
            entry = pwd.getpwnam(name)
            work = os.path.join(base, "work")
            os.mkdir(work, 0o700)
            os.chown(work, entry.pw_uid, entry.pw_gid)
            yield Account(
                name, entry.pw_uid, entry.pw_gid, extra, grp.getgrnam(extra).gr_gid, home, work
            )
        finally:
            _kill_processes_of(pwd.getpwnam(name).pw_uid)
            _run("userdel", name)
            with contextlib.suppress(subprocess.CalledProcessError, KeyError):
                grp.getgrnam(name)
                _run("groupdel", name)
    finally:
        _run("groupdel", extra)
        shutil.rmtree(base, ignore_errors=True)


def _kill_processes_of(uid: int) -> None:
    """Kill (by PID) whatever still runs as ``uid``: a test that failed half-way."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError):
            if os.stat(f"/proc/{entry}").st_uid == uid:
                os.kill(int(entry), signal.SIGKILL)
