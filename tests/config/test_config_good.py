"""Good tree files: every field lands in the right spec, defaults, document order."""

from __future__ import annotations

from pathlib import Path

import pytest

from otree.config.loader import ROOT_NAME, load, load_tree, loads
from otree.core.spec import (
    AutoShutdown,
    Backoff,
    Log,
    ReadyCmd,
    ReadyDelay,
    ReadyNotify,
    ReadyTcp,
    Restart,
    Service,
    Strategy,
    Supervisor,
    walk,
)

EVERY_FIELD = """\
strategy = "rest_for_one"
intensity = 7
period = 2.5
auto_shutdown = "any_significant"

[db]
cmd = ["postgres", "-D", "data dir"]
env = { PGDATA = "data", LANG = "C" }
cwd = "/srv/db"
restart = "transient"
normal_exit_codes = [0, 143]
stop_signal = "SIGINT"
shutdown = 10
ready = { tcp = "127.0.0.1:5432", timeout = 60 }
backoff = { initial = 0.5, max = 20, factor = 3, reset_after = 120, jitter = 0.25 }
significant = true
log = { file = "db.log", max_bytes = 1000, backups = 2 }

[web]
strategy = "one_for_all"
intensity = 0
period = 1
auto_shutdown = "all_significant"
restart = "temporary"
shutdown = "brutal_kill"
significant = true

[web.api]
target = "myapp.api:main"
args = ["--port", "8000"]
restart = "temporary"
significant = true
ready = { notify = true }

[web.api.env]
PORT = "8000"

[web.cache]
cmd = "redis-server --port 6380 --dir '/var/lib/my redis'"
shutdown = "infinity"
restart = "transient"

[web.cache.ready]
cmd = "redis-cli ping"
interval = 0.5

[web.job]
cmd = "true"
ready.delay = 1.5
restart = "transient"
significant = true
"""


def test_every_field_round_trips() -> None:
    expected = Supervisor(
        ROOT_NAME,
        strategy="rest_for_one",
        intensity=7,
        period=2.5,
        auto_shutdown="any_significant",
        children=[
            Service(
                "db",
                cmd=["postgres", "-D", "data dir"],
                env={"PGDATA": "data", "LANG": "C"},
                cwd="/srv/db",
                restart="transient",
                normal_exit_codes=[0, 143],
                stop_signal="INT",
                shutdown=10,
                ready=ReadyTcp("127.0.0.1:5432", timeout=60),
                backoff=Backoff(initial=0.5, max=20, factor=3, reset_after=120, jitter=0.25),
                significant=True,
                log=Log(file="/srv/db.log", max_bytes=1000, backups=2),  # beside the tree file
            ),
            Supervisor(
                "web",
                strategy="one_for_all",
                intensity=0,
                period=1,
                auto_shutdown="all_significant",
                restart="temporary",
                shutdown="brutal_kill",
                significant=True,
                children=[
                    Service(
                        "api",
                        target="myapp.api:main",
                        args=["--port", "8000"],
                        env={"PORT": "8000"},
                        restart="temporary",
                        significant=True,
                        ready=ReadyNotify(),
                    ),
                    Service(
                        "cache",
                        cmd=["redis-server", "--port", "6380", "--dir", "/var/lib/my redis"],
                        shutdown="infinity",
                        restart="transient",
                        ready=ReadyCmd(["redis-cli", "ping"], interval=0.5),
                    ),
                    Service(
                        "job",
                        cmd=["true"],
                        ready=ReadyDelay(1.5),
                        restart="transient",
                        significant=True,
                    ),
                ],
            ),
        ],
    )
    tree = loads(EVERY_FIELD, "/srv/tree.toml")
    assert tree == expected
    db = tree.children[0]
    assert isinstance(db, Service)
    assert db.restart is Restart.TRANSIENT
    assert db.environ == {"PGDATA": "data", "LANG": "C"}
    assert tree.strategy is Strategy.REST_FOR_ONE
    assert tree.auto_shutdown is AutoShutdown.ANY_SIGNIFICANT


def test_defaults() -> None:
    tree = loads('[web]\n[web.api]\ncmd = "x"\n')
    assert tree == Supervisor(
        ROOT_NAME, children=[Supervisor("web", children=[Service("api", cmd=["x"])])]
    )
    web = tree.children[0]
    assert isinstance(web, Supervisor)
    api = web.children[0]
    assert isinstance(api, Service)
    assert (tree.strategy, tree.intensity, tree.period) == (Strategy.ONE_FOR_ONE, 3, 5.0)
    assert tree.auto_shutdown is AutoShutdown.NEVER
    assert (web.restart, web.shutdown, web.significant) == (Restart.PERMANENT, "infinity", False)
    assert api.restart is Restart.PERMANENT
    assert api.normal_exit_codes == (0,)
    assert api.stop_signal == "TERM"
    assert api.shutdown == 5.0
    assert (api.ready, api.backoff, api.log, api.cwd, api.env) == (None, None, None, None, ())


def test_sub_table_defaults() -> None:
    tree = loads(
        "[a]\ncmd = 'x'\nready = { delay = 0 }\nbackoff = {}\nlog = {}\n"
        "[b]\ncmd = 'x'\nready = { cmd = 'check' }\n"
    )
    a, b = tree.children
    assert isinstance(a, Service) and isinstance(b, Service)
    assert a.ready == ReadyDelay(0.0, timeout=30.0)
    assert a.backoff == Backoff(initial=0.1, max=30.0, factor=2.0, reset_after=60.0, jitter=0.1)
    assert a.log == Log(file=None, max_bytes=10 * 1024 * 1024, backups=3)
    assert b.ready == ReadyCmd(("check",), timeout=30.0, interval=0.1)


def test_document_order_is_start_order() -> None:
    text = """
[zeta]
cmd = "z"

[alpha]
[alpha.second]
cmd = "s"
[alpha.first]
cmd = "f"

[mid]
cmd = "m"

[alpha.third]
cmd = "t"
"""
    paths = [path for path, _ in walk(loads(text))]
    assert paths == ["zeta", "alpha", "alpha.second", "alpha.first", "alpha.third", "mid"]


def test_dotted_and_inline_tables_declare_children_too() -> None:
    text = 'web.api.cmd = "a"\nweb.db = { cmd = "d", ready = { tcp = "h:1" } }\n'
    tree = loads(text)
    assert [path for path, _ in walk(tree)] == ["web", "web.api", "web.db"]
    web = tree.children[0]
    assert isinstance(web, Supervisor)
    assert web.children[1] == Service("db", cmd=["d"], ready=ReadyTcp("h:1"))


@pytest.mark.parametrize(
    ("cmd", "argv"),
    [
        ('"redis-server --port 6380"', ("redis-server", "--port", "6380")),
        ("\"sh -c 'echo $HOME; sleep 1'\"", ("sh", "-c", "echo $HOME; sleep 1")),
        ('"a\\\\ b c"', ("a b", "c")),
        ('["sh", "-c", "a | b"]', ("sh", "-c", "a | b")),
        ("'''one\n  two'''", ("one", "two")),
    ],
)
def test_cmd_string_is_split_with_shlex(cmd: str, argv: tuple[str, ...]) -> None:
    tree = loads(f"[api]\ncmd = {cmd}\n")
    api = tree.children[0]
    assert isinstance(api, Service)
    assert api.cmd == argv


def test_load_reads_a_path(tmp_path: Path) -> None:
    path = tmp_path / "tree.toml"
    path.write_text(EVERY_FIELD)
    assert load(path) == loads(EVERY_FIELD, str(path))
    assert load(str(path)) == loads(EVERY_FIELD, str(path))
    assert load_tree(str(path)) == loads(EVERY_FIELD, str(path))


def test_design_example_loads() -> None:
    """The tree-file example that docs/tree-file.md opens with (root, db, web.cache, web.api)."""
    text = """\
strategy = "one_for_one"     # root supervisor
intensity = 3
period = 5

[db]
cmd = ["postgres", "-D", "data"]       # list = argv; a string is split with shlex, no shell
ready = { tcp = "127.0.0.1:5432", timeout = 30 }

[web]
strategy = "rest_for_one"

[web.cache]
cmd = "redis-server --port 6380"
restart = "permanent"                  # permanent | transient | temporary
shutdown = 10                          # seconds | "brutal_kill" | "infinity"

[web.api]
target = "myapp.api:main"              # a Python callable, run in its own process
env = { PORT = "8000" }
cwd = "."
backoff = { initial = 0.5, max = 30 }
ready = { notify = true }              # NOTIFY_SOCKET, sd_notify READY=1
"""
    tree = loads(text)
    assert [p for p, _ in walk(tree)] == ["db", "web", "web.cache", "web.api"]
