"""A reload applies a change to how a service is supervised in place: same PID, ``update``."""

from __future__ import annotations

from reloadkit import Start, pids, reload, since_reexec

TREE = """\
[db]
cmd = "sleep 60"
ready = {{ delay = {delay} }}
shutdown = {shutdown}

[api]
cmd = "{api}"
"""


def test_changing_shutdown_and_ready_keeps_the_pid_and_logs_update(tree: Start) -> None:
    run = tree(TREE.format(delay=0.1, shutdown=5, api="sleep 60"))
    before = pids(run)
    run.file.write_text(  # type: ignore[attr-defined]
        TREE.format(delay=0.5, shutdown=12, api="sleep 61")
    )

    r = reload(run, run.sock, 1)  # type: ignore[attr-defined]

    assert r.stdout.splitlines()[1:] == [
        "  kept:    db",
        "  updated: db",
        "  stopped: api",
        "  started: api",
    ]
    assert since_reexec(run) == [
        ("reexec", ""),
        ("adopt", "db"),
        ("update", "db"),
        ("stop", "api"),  # its cmd changed: a new process
        ("exit", "api"),
        ("spawn", "api"),
        ("ready", "api"),
        ("tree_ready", ""),
    ]
    update = run.find("update", "db")[0]
    assert update["fields"] == ["shutdown", "ready"]
    after = pids(run)
    assert after["db"] == before["db"] and after["api"] != before["api"]
    assert "otree: db: updated in place (shutdown, ready)" in run.stdout
