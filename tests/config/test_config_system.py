"""A tree checked against this machine at load (otree.config.system), and otree check's
warning about shell syntax in a string cmd (issue 13).

The checks for an otree that is not root run ``otree check`` as ``nobody`` (with
``setpriv``) when the tests run as root, else as the user running them.
"""

from __future__ import annotations

import os
import pwd
import resource
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.cli import cli_env, otree_cli
from support.waits import DEADLINE

from otree.config.loader import loads
from otree.errors import ConfigError

NO_USER = "no-such-user-otree"
NO_GROUP = "no-such-group-otree"


def test_an_unknown_user_or_group_by_name_or_id(tmp_path: Path) -> None:
    file = str(tmp_path / "tree.toml")
    with pytest.raises(ConfigError) as info:
        loads(
            f'[a]\ncmd = "x"\nuser = "{NO_USER}"\n'
            f'[b]\ncmd = "x"\ngroup = "{NO_GROUP}"\n'
            '[c]\ncmd = "x"\nuser = 3999999\ngroup = 3999999\n',
            file,
        )
    assert [str(i) for i in info.value.issues] == [
        f"{file}:3: a.user: no user {NO_USER!r} on this machine",
        f"{file}:6: b.group: no group {NO_GROUP!r} on this machine",
        f"{file}:9: c.user: no uid '3999999' on this machine",
        f"{file}:10: c.group: no gid '3999999' on this machine",
    ]


def test_known_ids_pass() -> None:
    me = pwd.getpwuid(os.geteuid())
    tree = loads(f'[a]\ncmd = "x"\nuser = "{me.pw_name}"\ngroup = {os.getegid()}\n')
    assert tree.children[0].user == me.pw_name  # type: ignore[union-attr]


# --- as a user other than root -------------------------------------------------------


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory ``nobody`` can read (pytest's tmp_path is root's own)."""
    path = Path(tempfile.mkdtemp(prefix="otree-sys-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path)


def _unprivileged() -> tuple[list[str], pwd.struct_passwd]:
    if os.geteuid() != 0:
        return [], pwd.getpwuid(os.geteuid())
    setpriv = shutil.which("setpriv")
    assert setpriv is not None, "setpriv (util-linux) runs the check as nobody"
    nobody = pwd.getpwnam("nobody")
    return [
        setpriv,
        f"--reuid={nobody.pw_uid}",
        f"--regid={nobody.pw_gid}",
        "--clear-groups",
    ], nobody


def _check_unprivileged(directory: Path, tree: str) -> subprocess.CompletedProcess[str]:
    prefix, _ = _unprivileged()
    return subprocess.run(
        [*prefix, sys.executable, "-m", "otree", "check", tree],
        cwd=directory,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=DEADLINE * 2,
        stdin=subprocess.DEVNULL,
    )


def test_not_root_another_user_or_group_or_a_limit_above_the_hard_one(shared_dir: Path) -> None:
    _, me = _unprivileged()
    other = "root" if me.pw_uid != 0 else "nobody"
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]  # the child inherits it
    assert hard != resource.RLIM_INFINITY
    (shared_dir / "tree.toml").write_text(
        f'[db]\ncmd = "x"\nuser = "{other}"\n'
        f'[web]\ncmd = "x"\ngroup = "{other}"\n'
        f"limits = {{ nofile = {hard + 1}, nproc = [1, 2] }}\n"
        f'[own]\ncmd = "x"\nuser = "{me.pw_name}"\nlimits = {{ nofile = [1, {hard}] }}\n'
    )
    r = _check_unprivileged(shared_dir, "tree.toml")
    assert (r.returncode, r.stdout) == (2, ""), r.stderr
    who = f"{me.pw_name} (uid {me.pw_uid})"
    assert r.stderr.splitlines() == [
        f"otree: tree.toml:3: db.user: otree runs as {who}, not root: it cannot run a service"
        f" as {other!r}",
        f"otree: tree.toml:6: web.group: otree runs with gid {me.pw_gid}, not root: it cannot"
        f" run a service with group {other!r}",
        f"otree: tree.toml:7: web.limits.nofile: the hard limit {hard + 1} is above otree's own"
        f" hard limit {hard} (only root may raise it)",
    ]


def test_not_root_a_python_tree_is_checked_too(shared_dir: Path) -> None:
    _, me = _unprivileged()
    other = "root" if me.pw_uid != 0 else "nobody"
    (shared_dir / "tree.py").write_text(
        "from otree import Service, Supervisor\n"
        f"tree = Supervisor('root', children=[Service('db', cmd='x', user={other!r})])\n"
    )
    r = _check_unprivileged(shared_dir, "tree.py:tree")
    assert r.returncode == 2, r.stderr
    assert r.stderr == (
        f"otree: tree.py: db.user: otree runs as {me.pw_name} (uid {me.pw_uid}), not root: it"
        f" cannot run a service as {other!r}\n"
    )


# --- shell syntax in a string cmd ----------------------------------------------------


@pytest.mark.parametrize("syntax", ["|", "&&", ";", ">", "<", "$(", "`"])
def test_check_warns_of_shell_syntax_in_a_string_cmd(tmp_path: Path, syntax: str) -> None:
    cmd = f"echo a {syntax} b"
    (tmp_path / "tree.toml").write_text(
        f'[ok]\ncmd = ["echo", "a", "{syntax}", "b"]\n[web]\ncmd = "{cmd}"\n'
    )
    r = otree_cli("check", "tree.toml", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("root ")
    assert r.stderr == (
        f"otree: warning: tree.toml:4: web.cmd: {syntax!r} is shell syntax, but cmd is split"
        " into words and run without a shell; to use a shell write:"
        f' cmd = ["sh", "-c", "{cmd}"]\n'
    )


def test_a_plain_string_cmd_gets_no_warning(tmp_path: Path) -> None:
    (tmp_path / "tree.toml").write_text('[web]\ncmd = "python3 -m http.server 8000"\n')
    r = otree_cli("check", "tree.toml", cwd=tmp_path)
    assert (r.returncode, r.stderr) == (0, "")
