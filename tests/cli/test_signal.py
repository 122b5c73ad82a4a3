"""``otree signal PATH SIGNAL [--group]`` against real services: a shell's trap records what it
got, supervision goes on unchanged, and every refusal says why."""

from __future__ import annotations

from pathlib import Path

import pytest
from support import cli
from support.otreeproc import OtreeProc, RunOtree
from support.treefiles import argv
from support.waits import wait_until

from otree.control.client import Client
from otree.errors import ControlError

# the main shell and a child shell in its process group, each recording the HUPs it gets
MAIN = """\
trap 'echo main HUP >> {log}' HUP
trap 'echo main USR2 >> {log}' USR2
sh -c "trap 'echo child HUP >> {log}' HUP; echo child ready >> {log}; {loop}" &
echo main ready >> {log}
{loop}
"""
LOOP = "while :; do sleep 0.05; done"


def start(otree: RunOtree, tmp_path: Path, sock: str) -> tuple[OtreeProc, Path]:
    log = tmp_path / "signals.txt"
    tree = f"[web]\n[web.nginx]\ncmd = {argv('sh', '-c', MAIN.format(log=log, loop=LOOP))}\n"
    tree += '\n[idle]\ncmd = "sleep 60"\n'
    (tmp_path / "tree.toml").write_text(tree)
    run = otree("run", "tree.toml", "--socket", sock)
    run.wait_for("tree_ready")
    wait_until(lambda: lines(log) >= {"main ready", "child ready"}, what="both traps set")
    return run, log


def lines(log: Path) -> set[str]:
    try:
        return set(log.read_text().splitlines())
    except FileNotFoundError:
        return set()


def test_hup_reaches_the_main_process_only_and_supervision_is_unchanged(
    otree: RunOtree, tmp_path: Path, sock: str
) -> None:
    run, log = start(otree, tmp_path, sock)
    pid = run.running_pid("web.nginx")
    r = cli.otree_cli("signal", "web.nginx", "HUP", "--socket", sock)
    assert (r.returncode, r.stdout, r.stderr) == (0, f"web.nginx: sent HUP to pid {pid}\n", "")
    wait_until(lambda: "main HUP" in lines(log), what="the main shell's trap")
    r = cli.otree_cli("signal", "web.nginx", "sigusr2", "--socket", sock)
    assert r.stdout == f"web.nginx: sent USR2 to pid {pid}\n"
    wait_until(lambda: "main USR2" in lines(log), what="the USR2 trap")
    assert "child HUP" not in lines(log)
    # a protocol client gets the server's own refusal of a name it does not know
    with Client(sock) as client, pytest.raises(ControlError, match=r"^unknown signal 'BOGUS'$"):
        client.call("signal", path="web.nginx", signal="BOGUS")
    # not a stop, not an exit: the same process, nothing logged about it
    status = cli.status(sock)
    assert status["web.nginx"]["pid"] == pid and status["web.nginx"]["state"] == "running"
    assert [e["event"] for e in run.events() if e["path"] == "web.nginx"] == ["spawn", "ready"]


def test_group_reaches_a_child_of_the_service(otree: RunOtree, tmp_path: Path, sock: str) -> None:
    run, log = start(otree, tmp_path, sock)
    pid = run.running_pid("web.nginx")
    r = cli.otree_cli("signal", "web.nginx", "HUP", "--group", "--socket", sock)
    assert (r.returncode, r.stdout) == (0, f"web.nginx: sent HUP to process group {pid}\n")
    wait_until(lambda: {"main HUP", "child HUP"} <= lines(log), what="both traps")
    assert cli.status(sock)["web.nginx"]["pid"] == pid


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("nope", "HUP"), 1, "otree: no node at path 'nope'"),
        (("web", "HUP"), 1, "otree: web is a supervisor: only a service can be signalled"),
        (("", "HUP"), 1, "otree: (root) is a supervisor: only a service can be signalled"),
        (("idle", "HUP"), 1, "otree: idle is not running (stopped)"),
        (
            ("web.nginx", "BOGUS"),
            2,
            "otree: argument SIGNAL: unknown signal name: 'BOGUS' (see 'kill -l')"
            " (see 'otree signal --help')",
        ),
        (
            ("web.nginx", "9"),
            2,
            "otree: argument SIGNAL: unknown signal name: '9' (see 'kill -l')"
            " (see 'otree signal --help')",
        ),
    ],
)
def test_refusals_say_why(
    otree: RunOtree,
    tmp_path: Path,
    sock: str,
    args: tuple[str, str],
    code: int,
    message: str,
) -> None:
    run, log = start(otree, tmp_path, sock)
    assert cli.otree_cli("stop", "idle", "--socket", sock).returncode == 0
    r = cli.otree_cli("signal", *args, "--socket", sock)
    assert (r.returncode, r.stderr, r.stdout) == (code, message + "\n", "")
    assert "main HUP" not in lines(log)
    assert run.proc.poll() is None
