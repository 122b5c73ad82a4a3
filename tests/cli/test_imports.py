"""The lazy-import rule: what ``import otree``, ``otree status`` and ``otree run`` must not load.

Each case runs a fresh interpreter that writes ``sys.modules`` to a file as
it exits, and checks the list. The client commands stay
fast and small by importing neither the runtime nor the engine nor attrs;
``import otree`` loads no part of the running machinery; and ``otree run``
loads the handoff document only when it is a re-exec with a handoff to read.
"""

from __future__ import annotations

import os
import site
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]

#: (case, modules it must not import, with their submodules)
IMPORT_OTREE = ("otree.runtime", "otree.reload", "otree.control", "otree.launch")
CLIENT = (
    "otree.runtime",
    "otree.reload",
    "otree.launch",
    "otree.core.engine",
    "attr",
    "attrs",
    "cattrs",
    "hypothesis",
)
#: ``otree simulate`` forks nothing and talks to no tree (its lines are the console's own,
#: ``runtime.output``, the one part of the runtime the command line may use)
SIMULATE = (
    "otree.runtime.driver",
    "otree.runtime.loop",
    "otree.runtime.posix",
    "otree.runtime.processes",
    "otree.reload",
    "otree.launch",
    "otree.control.server",
)
#: ``otree status`` reads its plain command line without argparse, talks through
#: ``_socket`` and json's C parts, and imports no other command's module: none of
#: argparse, re, enum, json, socket, typing (together about 20 ms of start-up)
STATUS = (
    *CLIENT,
    "typing",
    "argparse",
    "re",
    "enum",
    "json",
    "socket",
    "selectors",
    "gettext",
    "locale",
    "functools",
    "collections",
    "contextlib",
    "otree.cli.migrate",
    "otree.cli.simulate",
    "otree.cli.observe",
    "otree.core",
    "otree.config",
)
#: ``otree run`` builds the ``run`` parser only: no other command's module (nor difflib),
#: reads its tree file without cattrs (13 ms of start-up: only a reload needs it), and
#: parses no URL where no check has one (urllib.parse imports ipaddress: 8 ms), and
#: compiles the patterns that place an issue on its line only for a file with one
RUN_START = (
    "otree.config.keylines",
    "otree.config.syntax",
    "cattrs",
    "urllib.parse",
    "ipaddress",
    "otree.reload.document",
    "hypothesis",
    "otree.testing",
    "otree.cli.control",
    "otree.cli.observe",
    "otree.cli.migrate",
    "otree.cli.simulate",
    "difflib",
)
#: not inherited from the test's environment: a re-exec, a fault, another socket
OTREE_VARS = ("OTREE_HANDOFF_FD", "OTREE_TEST_FAULT", "OTREE_TEST_HOLD", "OTREE_SOCKET")

JOB_TREE = """\
auto_shutdown = "any_significant"

[job]
cmd = ["true"]
restart = "temporary"
significant = true
"""


#: run first in each fresh interpreter: at exit, every module it imported goes to a file
#: (one name a line: json would be among them)
DUMP = """\
import atexit, os, sys
def _dump():
    with open(os.environ["IMPORTED_OUT"], "w") as f:
        f.write("\\n".join(sorted(sys.modules)))
atexit.register(_dump)
"""
#: what ``python -m otree ARGS`` runs (``sys.argv[1:]`` are the arguments)
OTREE = "from otree.cli.main import main\nmain()\n"


def imported(
    body: str, args: list[str], cwd: Path, env: dict[str, str] | None = None
) -> tuple[int, set[str]]:
    """Run ``body`` with ``args`` in a fresh interpreter: its exit code and every module
    loaded by the time it exits. No ``site`` (``-S``), the repository and site-packages
    on ``PYTHONPATH`` instead: the development venv's editable install has a ``.pth``
    hook that imports pathlib and urllib.parse into every process, a user's does not."""
    out = cwd / "imported.txt"
    clean = {k: v for k, v in os.environ.items() if k not in OTREE_VARS}
    path = os.pathsep.join([str(REPO), *site.getsitepackages()])
    proc = subprocess.run(
        [sys.executable, "-S", "-c", DUMP + body, *args],
        cwd=cwd,
        env={**clean, **(env or {}), "IMPORTED_OUT": str(out), "PYTHONPATH": path},
        capture_output=True,
        text=True,
        timeout=60,
    )
    return proc.returncode, set(out.read_text().splitlines())


def offending(names: set[str], forbidden: tuple[str, ...]) -> list[str]:
    return sorted(n for n in names if any(n == f or n.startswith(f + ".") for f in forbidden))


def test_import_otree_loads_no_machinery(tmp_path: Path) -> None:
    code, names = imported("import otree\notree.__all__\n", [], tmp_path)
    assert code == 0
    assert "otree" in names
    assert offending(names, IMPORT_OTREE) == []


def test_public_names_still_resolve_lazily(tmp_path: Path) -> None:
    code, names = imported("import otree\notree.Service, otree.ConfigError\n", [], tmp_path)
    assert code == 0
    assert "otree.core.spec" in names  # loaded on first use
    assert offending(names, IMPORT_OTREE) == []


def test_otree_status_is_a_small_client(tmp_path: Path) -> None:
    sock = tmp_path / "nobody.sock"
    code, names = imported(OTREE, ["status", "--socket", str(sock)], tmp_path)
    assert code == 3  # no tree answers there
    assert "otree.control.client" in names
    assert offending(names, STATUS) == []


def test_client_commands_against_a_running_tree_import_no_more(
    tmp_path: Path, otree: Any, sock: str
) -> None:
    """The same list for the table of a running tree, one node in full and its logs (the
    plain command lines; ``--help`` or a usage error is argparse's, which may import more)."""
    (tmp_path / "tree.toml").write_text('[web]\ncmd = ["sleep", "600"]\n')
    proc = otree("run", "tree.toml", "--socket", sock)
    proc.wait_for("tree_ready")
    for command in (["status"], ["status", "web"], ["logs", "web", "-n", "5"], ["stop", "web"]):
        code, names = imported(OTREE, [*command, "--socket", sock], tmp_path)
        assert code == 0, command
        assert offending(names, STATUS) == [], command
    code, names = imported(OTREE, ["status", "--json", "--socket", sock], tmp_path)
    assert code == 0 and "json" in names  # --json prints with json itself


@pytest.mark.parametrize(
    "command",
    [
        ["status"],
        ["logs", "web"],
        ["stop", "web"],
        ["metrics"],
        ["events"],
        ["signal", "web", "HUP"],
    ],
)
def test_no_client_command_imports_the_runtime(tmp_path: Path, command: list[str]) -> None:
    sock = tmp_path / "nobody.sock"
    code, names = imported(OTREE, [*command, "--socket", str(sock)], tmp_path)
    assert code == 3
    assert offending(names, CLIENT) == []


def test_otree_run_loads_the_handoff_document_only_for_a_re_exec(tmp_path: Path) -> None:
    (tmp_path / "tree.toml").write_text(JOB_TREE)
    env = {"OTREE_SOCKET": str(tmp_path / "run.sock")}
    code, names = imported(OTREE, ["run", "tree.toml"], tmp_path, env)
    assert code == 0  # the job ended: the tree shut itself down
    assert "otree.runtime.driver" in names and "otree.reload.reloader" in names
    assert offending(names, RUN_START) == []
    # metrics are served without --metrics too (the socket's `metrics`), but HTTP is not
    assert "otree.control.metrics" in names and "otree.control.httpmetrics" not in names


def test_otree_simulate_loads_none_of_the_running_machinery(tmp_path: Path) -> None:
    (tmp_path / "tree.toml").write_text('[db]\ncmd = "postgres"\n')
    code, names = imported(OTREE, ["simulate", "tree.toml", "--crash", "db@1"], tmp_path)
    assert code == 0
    assert "otree.core.engine" in names  # the real engine
    assert offending(names, SIMULATE) == []


def _sub_help(parser: object, name: str) -> str:
    import argparse

    assert isinstance(parser, argparse.ArgumentParser)
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    chosen = sub.choices[name]
    assert isinstance(chosen, argparse.ArgumentParser)
    return chosen.format_help()


def test_a_parser_built_for_one_command_is_the_full_parser_for_it() -> None:
    from otree.cli.main import COMMANDS
    from otree.cli.parser import build_parser

    full = build_parser()
    for name in COMMANDS:
        one = build_parser([name, "--socket", "x"])
        assert one.format_help() == full.format_help()  # every help line, in order
        assert _sub_help(one, name) == _sub_help(full, name)
    assert build_parser(["--help"]).format_help() == full.format_help()
    assert build_parser(["bogus"]).format_help() == full.format_help()
