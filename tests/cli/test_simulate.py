"""``otree simulate``: the tree on the real engine in the simulator, printed as a timeline.

Its exit code is the simulated tree's; a fault the tree cannot take is exit 2
naming the argument. It starts no process, and loads none of the running
machinery (only the console's own event lines, ``runtime.output``).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from support.cli import otree_cli

import otree
from otree.cli.main import run_cli
from otree.testing import simulate

TREE = """\
intensity = 2
period = 10

[db]
cmd = "postgres"
ready = { delay = 1.5 }

[web]
strategy = "one_for_all"
intensity = 1
period = 5

[web.api]
cmd = "api"

[web.worker]
cmd = "worker"

[w]
cmd = "w"
replicas = 2
"""


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    path = tmp_path / "tree.toml"
    path.write_text(TREE)
    return path


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[str], str]:
    code = run_cli(["simulate", *args])
    out, err = capsys.readouterr()
    return code, out.splitlines(), err


def timeline(lines: list[str]) -> list[tuple[float, str]]:
    """``(t, text)`` of each timeline line (the final ``exit code`` line left out)."""
    out = []
    for line in lines:
        m = re.fullmatch(r"\s*(\d+\.\d{3})  (.*)", line)
        if m:
            out.append((float(m[1]), m[2]))
    return out


def test_the_root_giving_up_exits_1_and_shows_the_chain(
    tree: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [str(tree), "--crash", "db@5", "--kill", "db@8", "--crash", "db@12"]
    code, lines, err = run(capsys, *args)
    assert code == 1 and err == ""
    events = timeline(lines)
    assert (5.0, "otree: db: exit pid 100 code 1 (abnormal)") in events
    assert (5.0, "otree: (root): restart (one_for_one) after db (1 of 2 in 10 s)") in events
    assert (8.0, "otree: (root): restart (one_for_one) after db (2 of 2 in 10 s)") in events
    assert (12.0, "otree: (root): giving up after 3 restarts in 10.0 s") in events
    assert events[-2] == (12.0, "otree: tree stopped (exit code 1)")
    assert "gave up" in events[-1][1]
    assert lines[-1] == "exit code 1"
    stops = [text for t, text in events if t == 12.0 and ": stop pid" in text]
    assert [s.split(":")[1].strip() for s in stops] == ["w.1", "w.0", "web.worker", "web.api"]


def test_a_tree_that_survives_exits_0_and_says_what_still_runs(
    tree: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [str(tree), "--crash", "db@5", "--crash", "db@20", "--crash", "db@40"]
    code, lines, _ = run(capsys, *args, "--until", "60")
    assert code == 0
    events = timeline(lines)
    counts = [text[-16:] for _, text in events if "restart (one_for_one) after db" in text]
    assert counts == ["(1 of 2 in 10 s)"] * 3  # the window slid: never more than one in it
    assert events[-1][0] == 60.0
    assert events[-1][1].startswith("simulation ends: the tree still runs: ")
    assert "db (pid " in events[-1][1]
    assert lines[-1] == "exit code 0"


def test_an_escalation_restarts_the_supervisor_and_only_it(
    tree: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, lines, _ = run(capsys, str(tree), "--crash", "web.api@3", "--crash", "web.worker@4")
    assert code == 0
    events = [text for _, text in timeline(lines)]
    i = events.index("otree: web: giving up after 2 restarts in 5.0 s")
    assert events[i + 3] == "otree: (root): restart (one_for_one) after web (1 of 2 in 10 s)"
    assert not any("db: stop" in text for text in events)  # one_for_one: db keeps running


def test_a_readiness_delay_shows_the_exec_then_ready(
    tree: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, lines, _ = run(capsys, str(tree), "--until", "2")
    events = timeline(lines)
    assert events[:3] == [
        (0.0, "otree: db: exec pid 100, waiting until ready"),
        (1.5, "otree: db: ready pid 100"),
        (1.5, "otree: web.api: spawn pid 101"),
    ]
    assert (1.5, "otree: tree ready") in events


def test_json_prints_the_simulators_trace(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, lines, _ = run(
        capsys, str(tree), "--unhealthy", "w.1@2", "--exit0", "web.api@3", "--json"
    )
    assert code == 0
    expected = simulate(otree.load(str(tree)), [(2, "w.1", "unhealthy"), (3, "web.api", "exit0")])
    assert [json.loads(line) for line in lines] == expected.events
    unhealthy = [json.loads(line) for line in lines if '"unhealthy"' in line]
    assert unhealthy[0]["path"] == "w.1" and unhealthy[0]["ts"] == 2.0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--crash", "web.apii@2"], "--crash web.apii@2: 'web.apii' is not a service of the"),
        (["--crash", "web@2"], "--crash web@2: 'web' is a supervisor: name one of its services"),
        (["--kill", "w@2"], "--kill w@2: 'w' is a pool: name one of its instances (w.0 ...)"),
        (["--crash", "db@soon"], "--crash db@soon: 'soon' is not a time: expected seconds >= 0"),
        (["--exit0", "db@-1"], "--exit0 db@-1: '-1' is not a time"),
        (["--unhealthy", "db@nan"], "--unhealthy db@nan: 'nan' is not a time"),
        (["--crash", "db"], "--crash db: expected PATH@T"),
        (["--crash", "db@30", "--until", "10"], "--crash db@30: 30 s is after --until 10"),
        (["--until", "later"], "--until later: 'later' is not a time"),
    ],
)
def test_a_bad_fault_exits_2_naming_the_argument(
    tree: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    code, lines, err = run(capsys, str(tree), *args)
    assert code == 2 and lines == []
    assert err.startswith(f"otree: {message}") and err.count("\n") == 1


def test_the_did_you_mean_of_an_unknown_path(
    tree: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, _, err = run(capsys, str(tree), "--crash", "web.apii@2")
    assert err.endswith("did you mean 'web.api'?\n")


def test_a_bad_tree_exits_2_with_its_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[db]\ncmd = "x"\nrestart = "permanet"\n')
    proc = otree_cli("simulate", str(bad), "--crash", "db@1")
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith(f"otree: {bad}:3: db.restart: 'permanet' is not one of")
    assert "Traceback" not in proc.stderr


def test_a_process_that_dies_before_it_is_ready_shows_its_exec_then_why(
    tree: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, lines, _ = run(capsys, str(tree), "--kill", "db@4", "--crash", "db@5", "--until", "8")
    events = timeline(lines)
    start = events.index((4.0, "otree: (root): restart (one_for_one) after db (1 of 2 in 10 s)"))
    assert events[start + 1 : start + 4] == [
        (4.0, "otree: db: exec pid 105, waiting until ready"),
        (5.0, "otree: db: cannot start: exited (code 1) before it was ready"),
        (5.0, "otree: (root): restart (one_for_one) after db (2 of 2 in 10 s)"),
    ]
