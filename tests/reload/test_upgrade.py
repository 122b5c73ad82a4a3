"""Upgrading otree in place, then reloading: a broken new otree never takes the tree down.

Each test runs otree from a throwaway copy of the package (``PYTHONPATH``), breaks
the copy as a bad upgrade would, and reloads.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from reloadkit import Start, ctl, pids, reload
from support.otreeproc import OtreeProc
from support.procfs import pid_alive
from support.waits import wait_until

import otree

TREE = '[a]\ncmd = "sleep 60"\n[b]\ncmd = "sleep 60"\n'


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    """A copy of the otree package in its own directory (put first on PYTHONPATH)."""
    site = tmp_path / "site"
    src = Path(otree.__file__).parent
    shutil.copytree(src, site / "otree", ignore=shutil.ignore_patterns("__pycache__"))
    return site


def start_from(
    tree: Start, site: Path, text: str = TREE, env: dict[str, str] | None = None
) -> OtreeProc:
    env = {"PYTHONPATH": str(site), **(env or {})}
    where = subprocess.run(  # where the tree runs (the otree fixture's directory)
        [sys.executable, "-c", "import otree; print(otree.__file__)"],
        env={**os.environ, **env},
        cwd=site.parent,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert where == str(site / "otree" / "__init__.py")  # the copy is the otree that runs
    return tree(text, env=env)


def break_file(site: Path, module: str, edit: Callable[[str], str]) -> Callable[[], None]:
    """Change ``otree/MODULE`` in the copy; return what puts it back."""
    path = site / "otree" / module
    good = path.read_text()
    path.write_text(edit(good))
    return lambda: path.write_text(good)


@pytest.mark.parametrize(
    ("module", "edit", "said"),
    [
        (
            "cli/control.py",
            lambda text: text + "\ndef broken(:\n",
            "SyntaxError: invalid syntax",
        ),
        (
            "reload/document.py",
            lambda text: text.replace(
                "import annotations\n", "import annotations\nimport otree_missing_dependency\n"
            ),
            "ModuleNotFoundError: No module named 'otree_missing_dependency'",
        ),
    ],
    ids=["syntax error", "missing dependency"],
)
def test_a_broken_upgrade_is_refused_before_the_exec(
    tree: Start, copy: Path, module: str, edit: Callable[[str], str], said: str
) -> None:
    """Finding: with a syntax error in the new otree, the new image died while importing
    and every service was left to init (and the next ``otree run`` ran them twice); with a
    missing dependency the whole tree was stopped (exit 4)."""
    run = start_from(tree, copy)
    before = pids(run)
    undo = break_file(copy, module, edit)

    r = ctl("reload", sock=run.sock)  # type: ignore[attr-defined]

    assert r.returncode == 1
    assert "the new otree cannot start (exit " in r.stderr and said in r.stderr, r.stderr
    assert module in r.stderr  # where
    assert not run.find("reexec")  # no exec: the running otree carries on, untouched
    assert run.proc.poll() is None and pids(run) == before
    # the upgrade is mended: the reload goes through
    undo()
    reload(run, run.sock, 1)  # type: ignore[attr-defined]
    assert pids(run) == before


def test_a_sighup_into_a_broken_upgrade_is_refused_on_stderr(tree: Start, copy: Path) -> None:
    run = start_from(tree, copy)
    before = pids(run)
    break_file(copy, "runtime/probes.py", lambda text: text + "\n)\n")
    run.send(signal.SIGHUP)
    line = "otree: reload (SIGHUP) refused: the new otree cannot start (exit "
    wait_until(lambda: line in run.stderr, what="the refusal")
    assert "SyntaxError: unmatched ')'" in run.stderr
    assert "probes.py" in run.stderr  # where
    assert run.proc.poll() is None and pids(run) == before and not run.find("reexec")


def test_a_fatal_reexec_into_a_broken_upgrade_stops_the_children_in_order(
    tree: Start, copy: Path, tmp_path: Path
) -> None:
    """No preflight can run before a fatal re-exec: if the new image cannot even import,
    the bootstrap ``import otree`` armed stops what it was handed, in reverse start
    order, and otree exits 4 (before, every service was left to init)."""
    order = tmp_path / "order.txt"

    def service(name: str) -> str:
        script = f"trap 'echo {name} >> {order}; exit 0' TERM; while :; do sleep 0.05; done"
        return f"[{name}]\ncmd = {json.dumps(['sh', '-c', script])}\n"

    text = service("a") + '[b]\ncmd = "sleep 60"\n' + service("c")
    run = start_from(tree, copy, text, env={"OTREE_TEST_FAULT": "exited:b"})
    before = pids(run)
    break_file(copy, "cli/main.py", lambda text: text + "\ndef broken(:\n")

    os.kill(before["b"], signal.SIGKILL)  # handling b's exit fails: a fatal re-exec

    assert run.wait_exit() == 4
    err = run.stderr
    assert "SyntaxError" in err  # the new image's own traceback
    assert "otree: the re-executed otree could not start; stopping the children" in err
    assert order.read_text().split() == ["c", "a"]  # reverse start order, each its signal
    assert not any(pid_alive(pid) for pid in before.values())  # none left to init


def test_a_reload_to_a_log_file_that_cannot_be_opened_is_refused(
    tree: Start, tmp_path: Path
) -> None:
    """Finding 4: a reload that passed the pre-check and then failed in the new image (a
    log file it cannot open) stopped the whole tree (exit 4). The preflight opens every
    file the new image will write; the reload is refused and nothing changes."""
    run = tree(TREE)
    before = pids(run)
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    run.file.write_text(  # type: ignore[attr-defined]
        TREE + f'[c]\ncmd = "sleep 60"\nlog = {{ file = "{blocker}/c.log" }}\n'
    )
    r = ctl("reload", sock=run.sock)  # type: ignore[attr-defined]
    assert r.returncode == 1
    assert "the new otree cannot start (exit 1): cannot open" in r.stderr, r.stderr
    assert str(blocker) in r.stderr  # which file, and why
    assert run.proc.poll() is None and pids(run) == before and not run.find("reexec")


def test_the_preflight_lists_the_modules_pkgutil_would(copy: Path) -> None:
    """The preflight imports every module of the new otree, found by walking its files
    (``pkgutil.walk_packages`` costs 20 ms of imports and probes): the same list, a module
    the upgrade added included, and nothing from a directory that is not a package."""
    from otree.reload.preflight import modules

    package = copy / "otree"
    (package / "runtime" / "added.py").write_text("")
    (package / "notes").mkdir()
    (package / "notes" / "loose.py").write_text("")
    found = modules(str(package))
    assert "otree.runtime.added" in found and "otree.cli.main" in found
    assert not any("loose" in name or "__pycache__" in name for name in found)
    # in a fresh interpreter that imports the copy (walk_packages imports the subpackages)
    code = "import pkgutil, sys\nfor m in pkgutil.walk_packages(sys.argv[1:], 'otree.'):\n"
    code += "    print(m.name)"
    env = {**os.environ, "PYTHONPATH": str(copy)}
    out = subprocess.run(
        [sys.executable, "-c", code, str(package)],
        env=env,
        cwd=copy.parent,
        capture_output=True,
        text=True,
    )
    walked = out.stdout.split()
    assert out.returncode == 0 and "otree.runtime.added" in walked, out.stderr
    assert sorted(found) == sorted(walked)
