"""A start that failed is visible afterwards: ``otree status`` says why in LAST EXIT, and
``otree start`` and ``otree reload`` exit non-zero (scripts and systemd's ``ExecReload=``)."""

from __future__ import annotations

from pathlib import Path

from support import cli
from support.otreeproc import RunOtree


def missing(directory: Path) -> str:
    """``./app.sh`` is the tree file's directory's ``app.sh``: its absolute path."""
    return f"No such file or directory: '{directory / 'app.sh'}'"


def test_status_shows_why_a_start_failed_and_start_exits_1(
    otree: RunOtree, tmp_path: Path, sock: str
) -> None:
    missing_text = missing(tmp_path)
    app = tmp_path / "app.sh"
    app.write_text("#!/bin/sh\nexec sleep 60\n")
    app.chmod(0o755)
    (tmp_path / "tree.toml").write_text('[db]\ncmd = "sleep 60"\n\n[app]\ncmd = "./app.sh"\n')
    run = otree("run", "tree.toml", "--socket", sock)
    run.wait_for("tree_ready")
    assert cli.otree_cli("stop", "app", "--socket", sock).returncode == 0
    app.rename(tmp_path / "app.off")  # the program went away while it was stopped

    r = cli.otree_cli("start", "app", "--socket", sock)
    assert (r.returncode, r.stdout) == (1, "")
    assert r.stderr == f"otree: app: cannot start: {missing_text}\n"
    assert cli.status(sock)["app"]["last_exit"] == {"start_failed": missing_text, "normal": False}
    r = cli.otree_cli("status", "--socket", sock)
    row = next(line for line in r.stdout.splitlines() if line.startswith("  app"))
    assert row.split()[1] == "stopped"
    assert row.endswith(f"start failed: {missing_text}")

    (tmp_path / "app.off").rename(app)  # back: it starts, and its last exit is no more news
    assert cli.otree_cli("start", "app", "--socket", sock).returncode == 0
    assert cli.status(sock)["app"]["state"] == "running"


def test_reload_exits_1_when_a_service_it_started_failed(
    otree: RunOtree, tmp_path: Path, sock: str
) -> None:
    missing_text = missing(tmp_path)
    tree = tmp_path / "tree.toml"
    tree.write_text('[db]\ncmd = "sleep 60"\n')
    run = otree("run", "tree.toml", "--socket", sock)
    run.wait_for("tree_ready")
    tree.write_text('[db]\ncmd = "sleep 60"\n\n[app]\ncmd = "./app.sh"\nrestart = "temporary"\n')

    r = cli.otree_cli("reload", "--socket", sock)
    assert r.returncode == 1, (r.stdout, r.stderr, run.describe())
    assert f"  failed:  app: {missing_text}" in r.stdout.splitlines()
    run.wait_for("tree_ready", count=2)
    assert cli.status(sock)["db"]["state"] == "running"
    assert cli.status(sock)["app"]["last_exit"] == {"start_failed": missing_text, "normal": False}
