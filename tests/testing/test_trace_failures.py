"""A failing property shows the whole simulated timeline, with no ``-vv`` (issue 10).

pytest passes a non-string ``assert`` message through ``saferepr``, which cuts
``assert cond, trace`` to about 240 characters; ``trace.format()`` (a string) and
``trace.expect(...)`` show every event.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from support.specs import root, svc

from otree.testing import simulate

#: ten crashes of a, each a restart: far more than 240 characters of trace
CRASHES = [(float(t), "a", "crash") for t in range(1, 11)]
TREE = root(svc("a"), svc("b"), intensity=100)


def test_expect_is_silent_when_the_condition_holds() -> None:
    trace = simulate(TREE, CRASHES)
    trace.expect(trace.count("restart", "") == 10, "unused")


def test_expect_raises_with_the_message_and_every_event() -> None:
    trace = simulate(TREE, CRASHES)
    with pytest.raises(AssertionError) as info:
        trace.expect(trace.count("spawn", "b") == 2, "b was restarted")
    text = str(info.value)
    lines = text.splitlines()
    assert lines[0] == "b was restarted"
    assert (
        lines[1]
        == f"<Trace {len(trace.events)} events, exit_code=None, running={{'b': 101, 'a': 111}}>"
    )
    assert lines[2:] == trace.format().splitlines()
    assert len(lines[2:]) == len(trace.events) > 40


def test_pytest_shows_the_whole_trace_without_vv(tmp_path: Path) -> None:
    """Run pytest on a failing property three ways: ``assert ..., trace`` is cut
    (saferepr keeps its two ends); ``trace.format()`` and ``trace.expect`` show the
    events in the middle too."""
    (tmp_path / "test_user.py").write_text(
        textwrap.dedent(
            """
            from otree import Service, Supervisor
            from otree.testing import simulate

            TREE = Supervisor("root", children=[Service("a", cmd="x"), Service("b", cmd="x")],
                              intensity=100)
            CRASHES = [(float(t), "a", "crash") for t in range(1, 11)]

            def test_cut():
                trace = simulate(TREE, CRASHES)
                assert trace.count("spawn", "b") == 2, trace

            def test_format():
                trace = simulate(TREE, CRASHES)
                assert trace.count("spawn", "b") == 2, trace.format()

            def test_expect():
                trace = simulate(TREE, CRASHES)
                trace.expect(trace.count("spawn", "b") == 2, "b was restarted")
            """
        )
    )
    middle = "5.000  exit          a"  # the fifth crash

    def failure_of(test: str) -> str:
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "-p",
                "no:cacheprovider",
                f"test_user.py::{test}",
            ],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert run.returncode == 1, run.stdout + run.stderr
        return run.stdout

    assert middle not in failure_of("test_cut")  # what issue 10 saw
    assert middle in failure_of("test_format")
    out = failure_of("test_expect")
    assert middle in out and "b was restarted" in out
