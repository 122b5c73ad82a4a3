"""``otree import`` outputs with the fields of issue 13 (``user``, ``umask``, ``autostart``,
``limits``, ``env_file``) and ``${VAR}``/``$$``: ``otree check`` accepts them as
supervisord meant them, and ``otree run`` runs them so.
"""

from __future__ import annotations

import os
import pwd
from collections.abc import Callable
from pathlib import Path

import pytest
from support.cli import otree_cli, status
from support.otreeproc import OtreeProc

from otree.config.loader import loads
from otree.core.spec import Service, Supervisor, walk

Run = Callable[..., OtreeProc]


def _services(tree: Supervisor) -> dict[str, Service]:
    return {path.split(".")[-1]: node for path, node in walk(tree) if isinstance(node, Service)}


def _import_and_check(directory: Path, name: str, env: dict[str, str] | None = None) -> Supervisor:
    made = otree_cli("import", name, "-o", "tree.toml", cwd=directory, env=env)
    assert made.returncode == 0, made.stderr
    check = otree_cli("check", "tree.toml", cwd=directory, env=env)
    assert check.returncode == 0, check.stderr
    return loads((directory / "tree.toml").read_text(), str(directory / "tree.toml"))


def test_user_umask_autostart_and_expansions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "supervisord.conf").write_text(
        "[program:db]\n"
        "command=postgres -D %(ENV_PGDATA)s -c 'log_line_prefix=%%m $user '\n"
        "directory=%(here)s\n"
        "user=nobody\n"
        "umask=077\n"
        "autostart=false\n"
        'environment=PGPORT="5432",HOME="%(here)s/home"\n'
    )
    env = {"PGDATA": "/var/lib/pgdata"}
    monkeypatch.setenv("PGDATA", env["PGDATA"])
    tree = _import_and_check(tmp_path, "supervisord.conf", env)
    (db,) = tree.children
    assert isinstance(db, Service)
    assert list(db.cmd or ()) == [
        "postgres",
        "-D",
        "/var/lib/pgdata",
        "-c",
        "log_line_prefix=%m $user ",
    ]
    assert db.cwd == str(tmp_path)
    assert dict(db.env)["HOME"] == f"{tmp_path}/home"
    assert (db.user, db.autostart) == ("nobody", False)
    assert db.umask in ("0077", 0o077)


def test_an_unset_variable_is_said_and_the_import_still_succeeds(tmp_path: Path) -> None:
    (tmp_path / "supervisord.conf").write_text("[program:w]\ncommand=w --n %(ENV_NOT_SET_HERE)s\n")
    made = otree_cli("import", "supervisord.conf", "-o", "tree.toml", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    assert made.stderr.splitlines()[-1] == (
        "otree: ${NOT_SET_HERE}: NOT_SET_HERE is not set here; otree check and otree run need it"
    )
    assert 'cmd = "w --n ${NOT_SET_HERE}"' in (tmp_path / "tree.toml").read_text()


def _proc_status(pid: int, key: str) -> str:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(f"{key}:"):
                return line.split(":", 1)[1].strip()
    raise KeyError(key)


def _nofile(pid: int) -> tuple[str, str]:
    with open(f"/proc/{pid}/limits") as f:
        for line in f:
            if line.startswith("Max open files"):
                soft, hard = line.split()[3:5]
                return soft, hard
    raise KeyError("Max open files")


def test_an_imported_configuration_runs_with_its_user_umask_limits_and_autostart(
    tmp_path: Path, otree: Run, sock: str
) -> None:
    """[supervisord] umask and minfds on every program, a program's own user and umask,
    autostart=false: what otree run makes of the imported tree, read from /proc."""
    me = pwd.getpwuid(os.getuid()).pw_name
    (tmp_path / "supervisord.conf").write_text(
        "[supervisord]\n"
        "umask=027\n"
        "minfds=1500\n"
        "[program:web]\n"
        "command=sleep 600\n"
        "startsecs=0\n"
        f"user={me}\n"
        "umask=077\n"
        "[program:cron]\n"
        "command=sleep 600\n"
        "startsecs=0\n"
        "autostart=false\n"
    )
    _import_and_check(tmp_path, "supervisord.conf")
    run = otree("run", "tree.toml", "--socket", sock)
    run.wait_for("tree_ready")
    web = run.running_pid("web")
    assert _proc_status(web, "Umask") == "0077"
    assert _proc_status(web, "Uid").split()[0] == str(os.getuid())
    assert _nofile(web) == ("1500", "1500")
    assert status(sock)["cron"]["state"] == "stopped"
    started = otree_cli("start", "cron", "--socket", sock)
    assert started.returncode == 0, started.stderr
    cron = run.running_pid("cron")
    assert _proc_status(cron, "Umask") == "0027"  # supervisord's own umask, inherited
    assert _nofile(cron) == ("1500", "1500")
    down = otree_cli("shutdown", "--socket", sock)
    assert down.returncode == 0, down.stderr
    assert run.wait_exit() == 0


def test_a_procfiles_dotenv_reaches_its_processes(tmp_path: Path) -> None:
    """honcho and foreman read the .env beside the Procfile: the import makes it the
    services' env_file, read when otree loads the tree."""
    (tmp_path / "Procfile").write_text("web: echo web has $SECRET and $PORT\n")
    (tmp_path / ".env").write_text("SECRET='s3 cret'\n")
    made = otree_cli("import", "Procfile", "-o", "tree.toml", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    assert 'env_file = ".env"' in (tmp_path / "tree.toml").read_text()
    run = otree_cli("run", "tree.toml", "--socket", str(tmp_path / "s"), cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert "web | web has s3 cret and 5000" in " ".join((run.stdout + run.stderr).split())
