"""How ``otree reload --dry-run`` prints the plan a tree sent (``reload_plan``)."""

from __future__ import annotations

from otree.cli.plan import render_plan


def test_every_kind_of_change_on_its_own_line() -> None:
    reply = {
        "kept": [{"path": "a", "pid": 10}, {"path": "b", "pid": 11}],
        "updated": [{"path": "db", "pid": 12, "fields": ["shutdown", "ready"]}],
        "restarted": [{"path": "api", "pid": 13, "fields": ["cmd", "env"]}],
        "stopped": [{"path": "cron", "pid": 14}],
        "started": ["metrics"],
    }
    assert render_plan(reply).splitlines() == [
        "a reload now would (nothing has been changed):",
        "  keep:    a (pid 10), b (pid 11)",
        "  update:  db (pid 12): shutdown, ready",
        "  restart: api (pid 13): cmd, env",
        "  stop:    cron (pid 14)",
        "  start:   metrics",
    ]


def test_an_empty_plan_and_a_busy_tree_say_so() -> None:
    text = render_plan({"kept": [], "busy": "db is starting"})
    assert text.splitlines()[1:] == [
        "  nothing: no service is running",
        "  (the tree is busy now: db is starting; a reload waits until it is quiet)",
    ]
