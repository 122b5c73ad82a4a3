"""render_tree: the picture ``otree check`` prints."""

from __future__ import annotations

import re

from otree.config.loader import loads
from otree.config.render import render_tree, tree_rows
from otree.core.spec import (
    Backoff,
    Log,
    ReadyCmd,
    ReadyDelay,
    ReadyNotify,
    ReadyTcp,
    Service,
    Supervisor,
)

DESIGN_EXAMPLE = """\
strategy = "one_for_one"
intensity = 3
period = 5

[db]
cmd = ["postgres", "-D", "data"]
ready = { tcp = "127.0.0.1:5432", timeout = 30 }

[web]
strategy = "rest_for_one"

[web.cache]
cmd = "redis-server --port 6380"
restart = "permanent"
shutdown = 10

[web.api]
target = "myapp.api:main"
env = { PORT = "8000" }
cwd = "."
backoff = { initial = 0.5, max = 30 }
ready = { notify = true }
"""

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def test_design_example() -> None:
    assert render_tree(loads(DESIGN_EXAMPLE, "/srv/myapp/tree.toml")) == (
        "root           supervisor             one_for_one, intensity 3 per 5s\n"
        "├── db         service     permanent  postgres -D data  (ready: tcp 127.0.0.1:5432)\n"
        "└── web        supervisor  permanent  rest_for_one, intensity 3 per 5s\n"
        "    ├── cache  service     permanent  redis-server --port 6380  (shutdown 10s)\n"
        "    └── api    service     permanent  target myapp.api:main"
        "  (ready: notify, backoff 0.5s..30s, cwd /srv/myapp, env PORT)"
    )


def test_every_hint_and_nested_pipes() -> None:
    tree = Supervisor(
        "root",
        auto_shutdown="any_significant",
        intensity=0,
        period=0.5,
        children=[
            Supervisor(
                "a",
                shutdown=20,
                strategy="one_for_all",
                children=[
                    Service("a1", cmd=["x", "y z"]),
                    Supervisor(
                        "a2",
                        restart="transient",
                        significant=True,
                        auto_shutdown="all_significant",
                        children=[
                            Service(
                                "deep",
                                target="m:f",
                                args=["--x", "a b"],
                                restart="temporary",
                                significant=True,
                            )
                        ],
                    ),
                ],
            ),
            Service(
                "b",
                cmd="sleep 1",
                ready=ReadyDelay(2),
                stop_signal="INT",
                shutdown="brutal_kill",
                normal_exit_codes=[0, 1],
                log=Log(file="b.log"),
                backoff=Backoff(factor=3),
                env={"TOKEN": "secret", "A": "1"},
            ),
            Service("c", cmd="x", ready=ReadyCmd("pg_isready -q", timeout=10)),
            Service("d", cmd="x", ready=ReadyNotify(timeout=5), shutdown="infinity"),
            Service("e", cmd="x", ready=ReadyTcp("[::1]:80"), backoff=Backoff()),
        ],
    )
    text = render_tree(tree)
    assert text == (
        "root              supervisor             one_for_one, intensity 0 per 0.5s"
        "  (auto_shutdown any_significant)\n"
        "├── a             supervisor  permanent  one_for_all, intensity 3 per 5s  (shutdown 20s)\n"
        "│   ├── a1        service     permanent  x 'y z'\n"
        "│   └── a2        supervisor  transient  one_for_one, intensity 3 per 5s"
        "  (auto_shutdown all_significant, significant)\n"
        "│       └── deep  service     temporary  target m:f --x 'a b'  (significant)\n"
        "├── b             service     permanent  sleep 1  (ready: after 2s, backoff 0.1s..30s x3,"
        " shutdown brutal_kill, stop INT, normal exit 0,1, env A,TOKEN, log b.log)\n"
        "├── c             service     permanent  x  (ready: cmd pg_isready -q within 10s)\n"
        "├── d             service     permanent  x  (ready: notify within 5s, shutdown infinity)\n"
        "└── e             service     permanent  x  (ready: tcp [::1]:80, backoff 0.1s..30s)"
    )
    assert "secret" not in text


def test_lone_root() -> None:
    assert render_tree(Supervisor("root")) == "root  supervisor  one_for_one, intensity 3 per 5s"


def test_color_is_the_same_text_with_ansi_codes() -> None:
    tree = loads(DESIGN_EXAMPLE)
    colored = render_tree(tree, color=True)
    assert "\x1b[" in colored
    assert ANSI.sub("", colored) == render_tree(tree)
    assert "\x1b[" not in render_tree(tree, color=False)
    assert "\x1b[1mcache\x1b[0m" in colored  # names in bold
    assert "\x1b[32mpermanent\x1b[0m" in colored


def test_rows_are_in_start_order_with_paths() -> None:
    rows = tree_rows(loads(DESIGN_EXAMPLE))
    assert [(r.path, r.prefix) for r in rows] == [
        ("", ""),
        ("db", "├── "),
        ("web", "└── "),
        ("web.cache", "    ├── "),
        ("web.api", "    └── "),
    ]


def test_identity_limits_autostart_and_cgroups_are_shown() -> None:
    tree = Supervisor(
        "root",
        cgroups="off",
        children=[
            Service(
                "a",
                cmd="sleep 1",
                user="nobody",
                umask="0077",
                nice=3,
                oom_score_adj=-100,
                autostart=False,
                limits={"nofile": 10, "core": "unlimited"},
            ),
            Service("b", cmd="sleep 1", nice=0, umask=0),
        ],
    )
    lines = render_tree(tree).splitlines()
    assert lines[0].endswith("(cgroups off)")
    assert lines[1].endswith(
        "(user nobody, umask 0077, nice 3, oom_score_adj -100, autostart false,"
        " limits core=unlimited,nofile=10)"
    )
    assert lines[2].endswith("(umask 0000, nice 0)")  # set to what is also a default
