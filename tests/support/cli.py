"""otree's command line from outside: ``python -m otree ARGS`` in a subprocess.

The caller's ``OTREE_SOCKET`` is never passed on (a command names its socket with
``--socket``, or finds it as a user would). In-process, call
``otree.cli.main.run_cli(argv)`` itself.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from support.waits import DEADLINE


def otree_argv(*args: str) -> list[str]:
    """``python -m otree ARGS`` with this Python."""
    return [sys.executable, "-m", "otree", *args]


def cli_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment without ``OTREE_SOCKET``, with ``env`` on top."""
    return {**{k: v for k, v in os.environ.items() if k != "OTREE_SOCKET"}, **(env or {})}


def otree_cli(
    *args: str,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float = DEADLINE * 2,
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m otree ARGS`` to completion (stdin closed, output captured as text)."""
    return subprocess.run(
        otree_argv(*args),
        cwd=cwd,
        env=cli_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def otree_popen(*args: str) -> subprocess.Popen[str]:
    """Start ``python -m otree ARGS`` and leave it running (stdout and stderr piped, text)."""
    return subprocess.Popen(
        otree_argv(*args),
        env=cli_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def status(sock: str) -> dict[str, dict[str, Any]]:
    """``otree status --json --socket SOCK``, which must succeed: each node by its path."""
    r = otree_cli("status", "--json", "--socket", sock)
    assert r.returncode == 0, r.stderr
    return {n["path"]: n for n in json.loads(r.stdout)["nodes"]}
