"""Simulated = real (issue 10): random small trees and fault schedules run by the
simulator and by ``otree run`` with real processes make the same decisions.

A handful of seeds in CI (each some seconds of real time); many more with
``--run-slow``. Every failure names its seed; ``support.differential.example(seed)``
rebuilds the case.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from support.differential import (
    describe,
    differences,
    example,
    run_example,
    simulate_example,
    write,
)
from support.otreeproc import RunOtree


def check(seed: int, otree: RunOtree, tmp_path: Path, sock: str) -> int:
    ex = example(seed)
    simulated = simulate_example(ex)
    sim = simulated.events
    proc = otree("run", write(tmp_path, ex), "--socket", sock)
    real = run_example(proc, sock, simulated)
    diff = differences(sim, real)
    assert not diff, "\n".join(diff) + "\n" + describe(ex, sim, real)
    assert proc.proc.returncode == next(
        e["exit_code"] for e in reversed(sim) if e["event"] == "tree_stopped"
    ), describe(ex, sim, real)
    return len(sim)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_simulated_and_real_runs_agree(
    seed: int, otree: RunOtree, tmp_path: Path, sock: str
) -> None:
    check(seed, otree, tmp_path, sock)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(100, 130))
def test_simulated_and_real_runs_agree_long(
    seed: int, otree: RunOtree, tmp_path: Path, sock: str
) -> None:
    check(seed, otree, tmp_path, sock)
