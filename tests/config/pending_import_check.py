"""``otree import`` outputs that use fields other work is building: ``user``, ``umask``,
``autostart`` and ``${VAR}``/``$$`` expansion (wt-ident), ``env_file`` (wt-ident).

PENDING: this file is not collected (pytest takes test_*.py). Once those fields are on
main, rename it to tests/config/test_import_check.py: every test here must then pass.
Until then tests/config/test_import.py checks the text these outputs have exactly.
"""

from __future__ import annotations

import shlex
import shutil
from pathlib import Path

import pytest
from support.cli import otree_cli

from otree.config.loader import loads
from otree.core.spec import Service, Supervisor, walk

DATA = Path(__file__).parent / "data" / "import"


def _services(tree: Supervisor) -> dict[str, Service]:
    return {path.split(".")[-1]: node for path, node in walk(tree) if isinstance(node, Service)}


def _import_and_check(directory: Path, name: str, env: dict[str, str] | None = None) -> Supervisor:
    made = otree_cli("import", name, "-o", "tree.toml", cwd=directory, env=env)
    assert made.returncode == 0, made.stderr
    check = otree_cli("check", "tree.toml", cwd=directory, env=env)
    assert check.returncode == 0, check.stderr
    return loads((directory / "tree.toml").read_text(), str(directory / "tree.toml"))


def test_the_container_init_configuration(tmp_path: Path) -> None:
    shutil.copytree(DATA / "container", tmp_path / "container")
    tree = _import_and_check(tmp_path / "container", "supervisord.conf")
    services = _services(tree)
    assert list(services) == ["app", "cron", "sshd"]
    assert services["app"].cmd == ("python3", "-m", "http.server", "8080", "--bind", "127.0.0.1")
    assert services["app"].stop_signal == "INT" and services["app"].log is None
    assert services["cron"].cmd == ("cron", "-f", "-L", "15")
    assert services["sshd"].autostart is False  # type: ignore[attr-defined]
    text = (tmp_path / "container" / "tree.toml").read_text()
    assert "# [eventlistener:memmon] (supervisord.conf:33): no equivalent" in text


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
    env = {"PGDATA": "/var/lib/pg data"}
    monkeypatch.setenv("PGDATA", env["PGDATA"])
    tree = _import_and_check(tmp_path, "supervisord.conf", env)
    (db,) = tree.children
    assert isinstance(db, Service)
    assert list(db.cmd or ()) == [
        "postgres",
        "-D",
        "/var/lib/pg data",
        "-c",
        "log_line_prefix=%m $user ",
    ]
    assert db.cwd == str(tmp_path)
    assert dict(db.env)["HOME"] == f"{tmp_path}/home"
    assert (db.user, db.umask, db.autostart) == ("nobody", "0077", False)  # type: ignore[attr-defined]


def test_an_unset_variable_is_said_and_the_import_still_succeeds(tmp_path: Path) -> None:
    (tmp_path / "supervisord.conf").write_text("[program:w]\ncommand=w --n %(ENV_NOT_SET_HERE)s\n")
    made = otree_cli("import", "supervisord.conf", "-o", "tree.toml", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    assert made.stderr.splitlines()[-1] == (
        "otree: ${NOT_SET_HERE}: NOT_SET_HERE is not set here; otree check and otree run need it"
    )


def test_a_procfile_with_port_and_an_env_file(tmp_path: Path) -> None:
    shutil.copytree(DATA / "procfile-python", tmp_path / "app")
    tree = _import_and_check(tmp_path / "app", "Procfile")
    services = _services(tree)
    assert list(services) == ["release", "web", "worker", "clock"]
    lines = (tmp_path / "app" / "Procfile").read_text().splitlines()
    for name, command in (line.split(":", 1) for line in lines):
        cmd = list(services[name].cmd or ())
        assert cmd in (["sh", "-c", command.strip()], shlex.split(command))
    assert dict(services["web"].env)["DATABASE_URL"] == "postgres://localhost/app"


def test_an_imported_procfile_gives_each_process_its_port(tmp_path: Path) -> None:
    (tmp_path / "Procfile").write_text(
        "web: echo web on $PORT; touch web.up; sleep 60\n"
        "worker: while [ ! -f web.up ]; do sleep 0.05; done; echo worker on $PORT\n"
    )
    made = otree_cli("import", "Procfile", "-o", "tree.toml", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    run = otree_cli("run", "tree.toml", "--socket", str(tmp_path / "s"), cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    out = " ".join((run.stdout + run.stderr).split())
    assert "web | web on 5000" in out and "worker | worker on 5100" in out
