"""Env files, ${VAR} expansion and relative paths at load (otree.config.environ, issue 13)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from otree.config.loader import load, load_tree, loads
from otree.core.expand import BadSyntax, Unset, escape, expand, finish
from otree.core.pool import instance_spec
from otree.core.spec import Service, Supervisor
from otree.errors import ConfigError


def _svc(tree: Supervisor, name: str) -> Service:
    node = tree.child(name)
    assert isinstance(node, Service)
    return node


def _error(text: str, file: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        loads(text, file)
    return [str(i) for i in info.value.issues]


# --- the parser ---------------------------------------------------------------------


def test_the_forms() -> None:
    env = {"A": "1", "E": "", "D": "x$y"}
    assert expand("${A}-${B:-two}-${E:-empty}-${A:-no}", env) == "1-two-empty-1"
    assert expand("cost $$5, $HOME, $", env) == "cost $5, $HOME, $"
    assert expand("${D}", env) == "x$y"  # a value is never read again
    with pytest.raises(Unset) as info:
        expand("a ${NOPE} b", env)
    assert info.value.name == "NOPE"
    assert str(info.value) == "${NOPE} is not set (give a default: ${NOPE:-VALUE})"
    with pytest.raises(BadSyntax, match=r"'\$\{1x\}' is not \$\{NAME\}"):
        expand("${1x}", env)
    with pytest.raises(BadSyntax):
        expand("${A", env)


def test_pending_form_keeps_names_and_each_dollar_for_one_later_pass() -> None:
    env = {"A": "$x"}
    pending = expand("${A} $$ ${R} ${R:-9} $", env, keep=("R",))
    assert pending == "$$x $$ ${R} ${R:-9} $$"
    assert finish(pending, {"R": "3"}) == "$x $ 3 3 $"


_TEXT = st.text(alphabet=st.sampled_from("ab ${}:-_R$/"), max_size=30)


@given(st.text())
def test_a_string_without_a_dollar_is_unchanged(text: str) -> None:
    text = text.replace("$", "")
    assert expand(text, {}) == text
    assert expand(text, {}, keep=("R",)) == text


@given(st.text())
def test_dollar_dollar_round_trip(text: str) -> None:
    assert expand(escape(text), {}) == text
    assert finish(escape(text), {"R": "1"}) == text


@given(_TEXT, st.sampled_from(["0", "7", "$", "${R}"]))
def test_two_passes_give_what_one_pass_gives(text: str, index: str) -> None:
    """What a pool's instance gets (the loader's pass, then instance_spec's) is what a
    single pass with its index would give: nothing is expanded twice."""
    env = {"A": "$$v"}
    try:
        once = expand(text, {**env, "R": index})
    except (Unset, BadSyntax):
        return
    assert finish(expand(text, env, keep=("R",)), {"R": index}) == once


# --- env files ------------------------------------------------------------------------


def test_env_files_in_order_under_env(tmp_path: Path) -> None:
    (tmp_path / "base.env").write_text(
        "# comment\nA=base\nB='single $HOME'\nexport C=\"two words\"\nD=base\n"
    )
    (tmp_path / "local.env").write_text("A=local\nE=\n")
    tree = loads(
        '[web]\ncmd = "x"\nenv_file = ["base.env", "local.env"]\nenv = { D = "env" }\n',
        str(tmp_path / "tree.toml"),
    )
    web = _svc(tree, "web")
    assert web.environ == {
        "A": "local",
        "B": "single $HOME",  # as written: no expansion inside an env file
        "C": "two words",
        "D": "env",
        "E": "",
    }
    assert web.env_file == (str(tmp_path / "base.env"), str(tmp_path / "local.env"))


def test_a_missing_or_bad_env_file_names_key_path_and_file(tmp_path: Path) -> None:
    (tmp_path / "bad.env").write_text("A=1\nthis is not a line\n")
    file = str(tmp_path / "tree.toml")
    assert _error(
        '[web]\ncmd = "x"\nenv_file = "nope.env"\n[db]\ncmd = "y"\n\nenv_file = "bad.env"\n',
        file,
    ) == [
        f"{file}:3: web.env_file: cannot read {tmp_path}/nope.env: No such file or directory",
        f"{file}:7: db.env_file: {tmp_path}/bad.env:2: cannot parse 'this is not a line'"
        " (expected NAME=VALUE)",
    ]


def test_a_changed_env_file_is_a_changed_spec(tmp_path: Path) -> None:
    (tmp_path / "a.env").write_text("A=1\n")
    (tmp_path / "tree.toml").write_text(
        '[a]\ncmd = "x"\nenv_file = "a.env"\n[b]\ncmd = "x"\nenv_file = "a.env"\nenv = {A = "b"}\n'
    )
    before = load(tmp_path / "tree.toml")
    (tmp_path / "a.env").write_text("A=2\n")
    after = load(tmp_path / "tree.toml")
    assert _svc(before, "a") != _svc(after, "a")
    assert _svc(before, "b") == _svc(after, "b")  # env wins over the file: no change


# --- expansion ------------------------------------------------------------------------


def test_expansion_in_every_listed_field(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APP_PORT", "8080")
    monkeypatch.setenv("APP_WORDS", "two words")
    file = tmp_path / "tree.toml"
    tree = loads(
        "[web]\n"
        'cmd = "serve --port ${APP_PORT} --name ${APP_WORDS} --cost $$1 --raw $HOME"\n'
        'env = { WHERE = "${OTREE_TREE_DIR}/${OTREE_PATH}/${OTREE_REPLICA}", U = "${NO:-x}" }\n'
        'cwd = "${OTREE_TREE_DIR}/srv"\n'
        'log = { file = "logs/${OTREE_PATH}.log" }\n'
        'user = "${APP_USER:-root}"\n'
        'group = "${APP_GROUP:-root}"\n'
        'ready = { tcp = "127.0.0.1:${APP_PORT}" }\n'
        'health = { http = "http://localhost:${APP_PORT}/up" }\n'
        "[job]\n"
        'target = "m:f"\n'
        'args = ["${APP_PORT}"]\n',
        str(file),
    )
    web = _svc(tree, "web")
    assert web.cmd == (
        "serve",
        "--port",
        "8080",
        "--name",
        "two words",  # one argument: the string was split before it was expanded
        "--cost",
        "$1",
        "--raw",
        "$HOME",
    )
    assert web.environ == {"WHERE": f"{tmp_path}/web/0", "U": "x"}
    assert web.cwd == f"{tmp_path}/srv"
    assert web.log is not None and web.log.file == f"{tmp_path}/logs/web.log"
    assert (web.user, web.group) == ("root", "root")
    assert web.ready is not None and web.ready.tcp == "127.0.0.1:8080"  # type: ignore[union-attr]
    assert web.health is not None and web.health.http == "http://localhost:8080/up"  # type: ignore[union-attr]
    assert _svc(tree, "job").args == ("8080",)


UNSET = "${NOT_SET_HERE} is not set (give a default: ${NOT_SET_HERE:-VALUE})"


def test_an_unset_name_is_an_error_with_its_line_and_key_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NOT_SET_HERE", raising=False)
    file = str(tmp_path / "tree.toml")
    assert _error(
        '[web]\ncmd = "x"\nenv = { A = "${NOT_SET_HERE}" }\n'
        'ready = { tcp = "127.0.0.1:${NOT_SET_HERE}" }\n'
        '[db]\ncmd = "run ${NOT_SET_HERE}"\ncwd = "${oops"\n',
        file,
    ) == [
        f"{file}:4: web.ready.tcp: {UNSET}",
    ]
    assert _error('[web]\ncmd = "x"\nenv = { A = "${NOT_SET_HERE}" }\n', file) == [
        f"{file}:3: web.env.A: {UNSET}"
    ]
    assert _error('[db]\ncmd = "run ${NOT_SET_HERE}"\ncwd = "${oops"\n', file) == [
        f"{file}:2: db.cmd: {UNSET}",
        f"{file}:3: db.cwd: '${{oops' is not ${{NAME}} or ${{NAME:-default}}"
        " (write $$ for a literal $)",
    ]


def test_a_pool_finishes_its_expansion_per_instance(tmp_path: Path) -> None:
    tree = loads(
        "[workers.w]\n"
        'cmd = ["work", "--id", "${OTREE_REPLICA}", "--path", "${OTREE_PATH}", "$$",'
        ' "${OTREE_TREE_DIR}"]\n'
        'env = { SLOT = "slot-${OTREE_REPLICA}", LIT = "$${OTREE_REPLICA}" }\n'
        'cwd = "run/${OTREE_REPLICA}"\n'
        'log = { file = "w.log" }\n'
        "replicas = 2\n",
        str(tmp_path / "tree.toml"),
    )
    sup = tree.child("workers")
    assert isinstance(sup, Supervisor)
    pool = sup.child("w")
    assert isinstance(pool, Service)
    one = instance_spec(pool, 1, "workers.w")
    assert one.cmd == ("work", "--id", "1", "--path", "workers.w.1", "$", str(tmp_path))
    assert one.environ == {"SLOT": "slot-1", "LIT": "${OTREE_REPLICA}", "OTREE_REPLICA": "1"}
    assert one.cwd == f"{tmp_path}/run/1"
    assert one.log is not None and one.log.file == f"{tmp_path}/w.1.log"


def test_a_tree_directory_with_a_dollar_is_taken_as_it_is(tmp_path: Path) -> None:
    where = tmp_path / "a$b"
    where.mkdir()
    tree = loads(
        '[p]\ncmd = "./run"\ncwd = "x"\nreplicas = 1\n[s]\ncmd = "./run"\n', str(where / "t.toml")
    )
    pool = _svc(tree, "p")
    assert instance_spec(pool, 0, "p").cmd == (f"{where}/run",)
    assert instance_spec(pool, 0, "p").cwd == f"{where}/x"
    assert _svc(tree, "s").cmd == (f"{where}/run",)


# --- relative paths -------------------------------------------------------------------


def test_relative_paths_resolve_against_the_tree_files_directory(tmp_path: Path) -> None:
    app = tmp_path / "app"
    app.mkdir()
    (app / ".env").write_text("A=1\n")
    (app / "tree.toml").write_text(
        "[web]\n"
        'cmd = ["./bin/web", "./not-the-program"]\n'
        'cwd = "data"\n'
        'env_file = ".env"\n'
        'log = { file = "../logs/web.log" }\n'
        "[plain]\n"
        'cmd = ["python3", "-c", "pass"]\n'
        'log = { file = "/dev/stdout" }\n'
    )
    here = os.getcwd()
    tree = load_tree(str(app / "tree.toml"))
    assert os.getcwd() == here
    web = _svc(tree, "web")
    assert web.cmd == (f"{app}/bin/web", "./not-the-program")
    assert web.cwd == f"{app}/data"
    assert web.env_file == (f"{app}/.env",)
    assert web.log is not None and web.log.file == f"{tmp_path}/logs/web.log"
    plain = _svc(tree, "plain")
    assert plain.cmd == ("python3", "-c", "pass")  # no "/": found on PATH
    assert plain.log is not None and plain.log.file == "/dev/stdout"


def test_a_python_tree_resolves_against_its_files_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = tmp_path / "pyapp"
    app.mkdir()
    (app / "vars.env").write_text("FROM_FILE=yes\n")
    # the import puts the file's directory on sys.path and the module in sys.modules
    monkeypatch.setattr(sys, "path", list(sys.path))
    (app / "envtree.py").write_text(
        "from otree import Service, Supervisor\n"
        "tree = Supervisor('root', children=[\n"
        "    Service('web', cmd=['./web', '${OTREE_PATH}'], cwd='data', env_file='vars.env'),\n"
        "])\n"
    )
    try:
        tree = load_tree(f"{app}/envtree.py:tree")
    finally:
        sys.modules.pop("_otree_tree_envtree", None)
    web = _svc(tree, "web")
    assert web.cmd == (f"{app}/web", "web")
    assert web.cwd == f"{app}/data"
    assert web.environ == {"FROM_FILE": "yes"}
    (app / "envtree.py").write_text(
        "from otree import Service, Supervisor\n"
        "tree = Supervisor('root', children=[Service('web', cmd='x', env_file='gone.env')])\n"
    )
    with pytest.raises(ConfigError) as info:
        try:
            load_tree(f"{app}/envtree.py:tree")
        finally:
            sys.modules.pop("_otree_tree_envtree", None)
    assert [str(i) for i in info.value.issues] == [
        f"{app}/envtree.py: web.env_file: cannot read {app}/gone.env: No such file or directory"
    ]
