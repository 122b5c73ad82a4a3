"""``otree reload --dry-run``: the reload's own reconciliation, run on a scratch engine in
the running otree; it changes nothing, and the real reload then does what it said."""

from __future__ import annotations

from typing import Any

from reloadkit import Start, ctl, pids, reload, status
from support.otreeproc import OtreeProc

from otree.control.client import Client

SLEEP = 'cmd = "sleep 60"'
BEFORE = f"""\
[db]
{SLEEP}
ready = {{ delay = 0.1 }}
shutdown = 5

[web]
strategy = "one_for_all"

[web.api]
{SLEEP}

[web.worker]
{SLEEP}

[cron]
{SLEEP}

[jobs]
[jobs.a]
{SLEEP}
"""
AFTER = f"""\
[db]
{SLEEP}
ready = {{ delay = 0.3 }}
shutdown = 12

[web]
strategy = "one_for_all"

[web.api]
cmd = "sleep 61"

[web.worker]
{SLEEP}
env = {{ MODE = "fast" }}

[metrics]
{SLEEP}

[batch]
[batch.b]
{SLEEP}
"""


def plan_of(run: OtreeProc) -> dict[str, Any]:
    with Client(run.sock, timeout=30) as client:  # type: ignore[attr-defined]
        return client.call("reload_plan")


#: what changes from one status to the next (CPU and memory: issue 16)
MOVING = frozenset({"uptime", "cpu_seconds", "cpu_percent", "cpu_percent_over", "rss_bytes"})


def without_uptime(nodes: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {p: {k: v for k, v in n.items() if k not in MOVING} for p, n in nodes.items()}


def test_dry_run_changes_nothing_and_the_reload_then_does_what_it_said(tree: Start) -> None:
    run = tree(BEFORE)
    run.file.write_text(AFTER)  # type: ignore[attr-defined]
    before, nodes, events = pids(run), status(run), len(run.events())

    r = ctl("reload", "--dry-run", sock=run.sock)  # type: ignore[attr-defined]
    plan = plan_of(run)

    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [
        "a reload now would (nothing has been changed):",
        f"  update:  db (pid {before['db']}): shutdown, ready",
        f"  restart: web.api (pid {before['web.api']}): cmd;"
        f" web.worker (pid {before['web.worker']}): env",
        f"  stop:    jobs.a (pid {before['jobs.a']}), cron (pid {before['cron']})",
        "  start:   metrics, batch.b",
    ]
    # nothing changed: every PID, every node's state and restarts, no event logged
    assert pids(run) == before
    assert without_uptime(status(run)) == without_uptime(nodes)
    assert len(run.events()) == events

    reload(run, run.sock, 1)  # type: ignore[attr-defined]
    done = run.events()[events:]
    adopted = [e["path"] for e in done if e["event"] == "adopt"]
    updated = {e["path"]: e["fields"] for e in done if e["event"] == "update"}
    stopped = {e["path"]: e["pid"] for e in done if e["event"] == "stop"}
    spawned = [e["path"] for e in done if e["event"] == "spawn"]
    assert adopted == [e["path"] for e in plan["kept"] + plan["updated"]]
    assert updated == {e["path"]: e["fields"] for e in plan["updated"]}
    assert stopped == {e["path"]: e["pid"] for e in plan["restarted"] + plan["stopped"]}
    assert sorted(spawned) == sorted([e["path"] for e in plan["restarted"]] + plan["started"])
    assert [p for p in spawned if p in plan["started"]] == plan["started"]
    assert pids(run)["db"] == before["db"]


def test_dry_run_of_an_unchanged_file_keeps_everything(tree: Start) -> None:
    run = tree(BEFORE)
    before = pids(run)
    plan = plan_of(run)
    assert plan["kept"] == [{"path": p, "pid": pid} for p, pid in before.items()]
    assert plan["updated"] == plan["restarted"] == plan["stopped"] == plan["started"] == []


def test_dry_run_of_an_invalid_file_is_refused_with_its_errors(tree: Start) -> None:
    run = tree(BEFORE)
    before, events = pids(run), len(run.events())
    run.file.write_text('[db]\ncmd = "x"\nrestart = "permanet"\n')  # type: ignore[attr-defined]

    r = ctl("reload", "--dry-run", sock=run.sock)  # type: ignore[attr-defined]

    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.splitlines() == [
        "otree: a reload now would be refused: the tree file is invalid;"
        " the running tree carries on:",
        "otree: tree.toml:3: db.restart: 'permanet' is not one of permanent, transient, temporary",
    ]
    assert pids(run) == before and len(run.events()) == events
