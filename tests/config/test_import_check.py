"""``otree import`` outputs that use ``user``, ``umask``, ``autostart``, ``env_file`` and
``${VAR}``/``$$`` expansion, checked with ``otree check`` and loaded (issue 15; the
fields and their load-time side are issue 13's). tests/config/test_import.py checks the
text these outputs have exactly (``target=DESIGNED``), and what an otree without the
fields gets (a comment for each).
"""

from __future__ import annotations

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
    assert (db.user, db.autostart) == ("nobody", False)  # type: ignore[attr-defined]
    assert db.umask in ("0077", 0o077)  # type: ignore[attr-defined]


def test_an_unset_variable_is_said_and_the_import_still_succeeds(tmp_path: Path) -> None:
    (tmp_path / "supervisord.conf").write_text("[program:w]\ncommand=w --n %(ENV_NOT_SET_HERE)s\n")
    made = otree_cli("import", "supervisord.conf", "-o", "tree.toml", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    assert made.stderr.splitlines()[-1] == (
        "otree: ${NOT_SET_HERE}: NOT_SET_HERE is not set here; otree check and otree run need it"
    )
