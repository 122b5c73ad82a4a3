"""The chaos checks catch what they claim to catch (on small hand-written logs)."""

from __future__ import annotations

from typing import Any

from otree.config.loader import loads

from .invariants import Command, Tree, check_all, check_reexecs

TREE = Tree(
    loads(
        """
[db]
cmd = "sleep 1"
[web]
strategy = "one_for_all"
intensity = 2
period = 4
[web.api]
cmd = "sleep 1"
restart = "transient"
normal_exit_codes = [0, 3]
[web.job]
cmd = "sleep 1"
restart = "temporary"
"""
    )
)


def ev(event: str, path: str, **fields: Any) -> dict[str, Any]:
    return {"ts": fields.pop("ts", 1.0), "event": event, "path": path, **fields}


START = [ev("spawn", "db", pid=10), ev("spawn", "web.api", pid=11), ev("spawn", "web.job", pid=12)]
STOP = [
    ev("stop", "web.job", pid=12),
    ev("exit", "web.job", pid=12, signal="TERM", normal=True),
    ev("stop", "web.api", pid=11),
    ev("exit", "web.api", pid=11, signal="TERM", normal=True),
    ev("stop", "db", pid=10),
    ev("exit", "db", pid=10, signal="TERM", normal=True),
    ev("tree_stopped", "", exit_code=0),
]


def test_a_clean_story_passes() -> None:
    crash = [
        ev("exit", "web.api", pid=11, signal="KILL", normal=False),
        ev("restart", "web", strategy="one_for_all", child="web.api"),
        ev("stop", "web.job", pid=12),
        ev("exit", "web.job", pid=12, signal="TERM", normal=True),
        ev("spawn", "web.api", pid=21),
        ev("stop", "web.api", pid=21),
        ev("exit", "web.api", pid=21, signal="TERM", normal=True),
        ev("stop", "db", pid=10),
        ev("exit", "db", pid=10, signal="TERM", normal=True),
        ev("tree_stopped", "", exit_code=0),
    ]
    assert check_all(START + crash, TREE) == []
    assert check_all(START + STOP, TREE) == []


def test_two_instances_and_unknown_pids_are_caught() -> None:
    log = [*START, ev("spawn", "db", pid=30), ev("exit", "web.api", pid=99, code=1, normal=False)]
    bad = check_all(log, TREE)
    assert any("spawn of db pid 30 while pid 10 runs" in b for b in bad)
    assert any("exit of web.api pid 99" in b for b in bad)


def test_a_process_left_at_tree_stopped_is_caught() -> None:
    bad = check_all([*START, ev("tree_stopped", "", exit_code=0)], TREE)
    assert any("tree_stopped while" in b for b in bad)


def test_an_unanswered_crash_is_caught() -> None:
    log = [*START, ev("exit", "db", pid=10, code=1, normal=False)]
    assert any("never answered" in b for b in check_all(log, TREE))
    # ... but a stop of it (a command) under way at the time answers it
    stop = Command("stop", "db", answered=2.0)
    assert not any("never answered" in b for b in check_all(log, TREE, [stop]))


def test_a_wrong_classification_is_caught() -> None:
    log = [*START, ev("exit", "web.api", pid=11, code=3, normal=False)]
    assert any("should have normal=True" in b for b in check_all(log, TREE))


def test_a_restarted_temporary_or_normal_transient_is_caught() -> None:
    log = [
        *START,
        ev("exit", "web.job", pid=12, code=1, normal=False),
        ev("restart", "web", strategy="one_for_all", child="web.job"),
    ]
    bad = check_all(log, TREE)
    assert any("temporary child's exit answered by a restart" in b for b in bad)
    assert any("a temporary child is never restarted" in b for b in bad)
    log = [
        *START,
        ev("exit", "web.api", pid=11, code=0, normal=True),
        ev("restart", "web", strategy="one_for_all", child="web.api"),
    ]
    assert any("transient child's exit answered by a restart" in b for b in check_all(log, TREE))


def test_wrong_decisions_are_caught() -> None:
    log = [
        *START,
        ev("restart", "web", strategy="one_for_one", child="web.api"),
        ev("give_up", "web", restarts=2, period=4.0),
    ]
    bad = check_all(log, TREE)
    assert any("'web' is one_for_all" in b for b in bad)
    assert any("still runs (pid 11)" in b for b in bad)
    assert any("intensity 2 period 4.0" in b for b in bad)


def test_a_reexec_must_keep_every_pid() -> None:
    reexec = [ev("reexec", "", reason="reload"), ev("adopt", "db", pid=10)]
    lost = [*START, *reexec, ev("adopt", "web.api", pid=11), ev("tree_ready", "")]
    assert check_reexecs(lost, {}) == ["reexec #1 (event #3): web.job pid 12 not adopted (None)"]
    died = [*lost[:-1], ev("exit", "web.job", pid=12, signal="KILL", normal=False)]
    assert check_reexecs([*died, ev("tree_ready", "")], {}) == []
    replaced = [
        *START,
        *reexec,
        ev("adopt", "web.job", pid=12),
        ev("stop", "web.api", pid=11),
        ev("exit", "web.api", pid=11, signal="TERM", normal=True),
        ev("spawn", "web.api", pid=40),
        ev("tree_ready", ""),
    ]
    assert check_reexecs(replaced, {1: {"web.api"}}) == []
    assert check_reexecs(replaced, {}) == [
        "reexec #1 (event #3): web.api pid 11 not adopted (stop pid 11)"
    ]
    kept = [*lost[:-1], ev("adopt", "web.job", pid=12), ev("tree_ready", "")]
    assert check_reexecs(kept, {1: {"web.api"}}) == [
        "reexec #1 (event #3): changed web.api kept pid 11"
    ]


def test_a_reused_pid_is_a_new_process() -> None:
    """PIDs wrap around in a long run: a stop of an earlier process with the same PID
    says nothing about this one."""
    log = [
        *START,
        ev("stop", "db", pid=10),
        ev("exit", "db", pid=10, signal="TERM", normal=True),
        ev("exit", "web.api", pid=11, signal="KILL", normal=False),
        ev("restart", "web", strategy="one_for_all", child="web.api"),
        ev("spawn", "web.api", pid=10),  # db's old PID, reused
        ev("exit", "web.api", pid=10, signal="KILL", normal=True),  # a crash, not a stop
    ]
    assert check_all(log, TREE) == [
        "#8 exit {'ts': 1.0, 'event': 'exit', 'path': 'web.api', 'pid': 10, 'signal': 'KILL',"
        " 'normal': True} should have normal=False"
    ]
