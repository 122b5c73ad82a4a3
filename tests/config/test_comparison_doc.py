"""docs/comparison.md stays true: every tree in it loads, and the translations behave."""

from __future__ import annotations

import re
from pathlib import Path

from otree.config.loader import loads
from otree.core.spec import Service, Supervisor
from otree.testing import simulate

DOC = (Path(__file__).parents[2] / "docs" / "comparison.md").read_text()
TREES = [body for lang, body in re.findall(r"```(\w*)\n(.*?)```", DOC, re.S) if lang == "toml"]


def test_every_tree_in_the_page_loads() -> None:
    assert len(TREES) >= 3
    for body in TREES:
        assert isinstance(loads(body), Supervisor)


def test_the_supervisord_translation() -> None:
    tree = loads(next(t for t in TREES if "[program:api]" in t))
    (app,) = tree.children
    assert isinstance(app, Supervisor)
    api = app.children[0]
    assert isinstance(api, Service)
    assert api.cmd == ("/srv/api", "--port", "8000")
    assert (api.restart.value, api.normal_exit_codes, api.stop_signal, api.shutdown) == (
        "transient",
        (0, 3),
        "INT",
        20.0,
    )


def test_the_procfile_translation_ends_the_tree_when_any_process_ends() -> None:
    tree = loads(next(t for t in TREES if "Procfile" in t))
    trace = simulate(tree, [(1.0, "worker", "crash")])
    assert trace.count("spawn", "web") == 1 and trace.count("spawn", "worker") == 1
    assert trace.events[-1]["event"] == "tree_stopped"
    assert trace.count("auto_shutdown", "") == 1


def test_the_respawn_loop_translation_waits_a_second_and_has_a_limit() -> None:
    tree = loads(next(t for t in TREES if "while true" in t))
    ten = [(float(t), "server", "crash") for t in range(1, 21, 2)]
    trace = simulate(tree, ten)
    spawns = [e["ts"] for e in trace.events if e["event"] == "spawn"]
    exits = [e["ts"] for e in trace.events if e["event"] == "exit"]
    assert len(spawns) == 11 and len(exits) == 10
    assert all(round(s - x, 6) == 1.0 for x, s in zip(exits, spawns[1:], strict=True))
    assert not trace.gave_up("")
    # the eleventh crash within the minute: otree gives up (exit 1) instead of looping on
    trace = simulate(tree, [*ten, (21.0, "server", "crash")])
    assert trace.gave_up("") and trace.exit_code == 1
