"""A tree checked against this machine at load (otree.config.system), and otree check's
warning about shell syntax in a string cmd (issue 13).

The checks for an otree that is not root run ``otree check`` in a process that is
``nobody`` when the tests run as root, else the user running them.
"""

from __future__ import annotations

import os
import pwd
import resource
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.cli import otree_cli

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


def _unprivileged() -> pwd.struct_passwd:
    """The user ``otree check`` runs as: ``nobody`` when the tests run as root."""
    return pwd.getpwnam("nobody") if os.geteuid() == 0 else pwd.getpwuid(os.geteuid())


def _check_unprivileged(directory: Path, tree: str) -> tuple[int, str]:
    """``otree check TREE`` in ``directory`` by a process that is not root: a fork of this
    one that drops to ``nobody`` (when root), so that it needs no file of the test's venv
    (which may be root's own): what the check imports is imported before the fork."""
    from dotenv import parser  # noqa: F401 - imported for the child

    import otree.cli.main
    import otree.config.loader
    import otree.config.render

    user = _unprivileged()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns to pytest
        code = 70
        try:
            os.close(read)
            if os.geteuid() == 0:
                os.setgroups([])
                os.setgid(user.pw_gid)
                os.setuid(user.pw_uid)
            os.chdir(directory)
            sys.stderr = sys.stdout = os.fdopen(write, "w")
            code = otree.cli.main.run_cli(["check", tree])
            sys.stderr.flush()
        finally:
            os._exit(code)
    os.close(write)
    with os.fdopen(read) as f:
        said = f.read()
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), said


def test_not_root_another_user_or_group_or_a_limit_above_the_hard_one(shared_dir: Path) -> None:
    me = _unprivileged()
    other = "root"
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]  # the child inherits it
    assert hard != resource.RLIM_INFINITY
    (shared_dir / "tree.toml").write_text(
        f'[db]\ncmd = "x"\nuser = "{other}"\n'
        f'[web]\ncmd = "x"\ngroup = "{other}"\n'
        f"limits = {{ nofile = {hard + 1}, nproc = [1, 2] }}\n"
        f'[own]\ncmd = "x"\nuser = "{me.pw_name}"\nlimits = {{ nofile = [1, {hard}] }}\n'
    )
    code, said = _check_unprivileged(shared_dir, "tree.toml")
    assert code == 2, said
    who = f"{me.pw_name} (uid {me.pw_uid})"
    assert said.splitlines() == [
        f"otree: tree.toml:3: db.user: otree runs as {who}, not root: it cannot run a service"
        f" as {other!r}",
        f"otree: tree.toml:6: web.group: otree runs with gid {me.pw_gid}, not root: it cannot"
        f" run a service with group {other!r}",
        f"otree: tree.toml:7: web.limits.nofile: the hard limit {hard + 1} is above otree's own"
        f" hard limit {hard} (only root may raise it)",
    ]


def test_not_root_a_python_tree_is_checked_too(shared_dir: Path) -> None:
    me = _unprivileged()
    other = "root"
    (shared_dir / "tree.py").write_text(
        "from otree import Service, Supervisor\n"
        f"tree = Supervisor('root', children=[Service('db', cmd='x', user={other!r})])\n"
    )
    code, said = _check_unprivileged(shared_dir, "tree.py:tree")
    assert code == 2, said
    assert said == (
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
