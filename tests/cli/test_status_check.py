"""``otree status --check``: a health check for a Kubernetes exec probe or Docker's
HEALTHCHECK (issue 15): 0 healthy, 1 not, 3 no tree; quiet unless ``-v``."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path

from support.cli import otree_cli
from support.otreeproc import OtreeProc
from support.treefiles import write_tree
from support.waits import wait_until

Run = Callable[..., OtreeProc]

TREE = """\
[db]
cmd = "sleep 60"

[web]
restart = "temporary"
intensity = 0

[web.api]
cmd = "sleep 60"
"""


def check(sock: str, *extra: str) -> tuple[int, str]:
    r = otree_cli("status", "--check", *extra, "--socket", sock)
    return r.returncode, r.stdout + r.stderr


def test_status_check_says_healthy_gave_up_and_not_running(
    otree: Run, tmp_path: Path, sock: str
) -> None:
    run = otree("run", write_tree(tmp_path, TREE), "--socket", sock)
    run.wait_for("tree_ready")
    assert check(sock) == (0, "")  # quiet
    code, said = check(sock, "-v")
    assert code == 0 and said == "ok: 4 nodes, the root running\n"

    # web gives up (intensity 0) and, temporary, stays down: unhealthy
    api = run.running_pid("web.api")
    os.kill(api, signal.SIGKILL)
    run.wait_for("give_up", "web")
    wait_until(lambda: check(sock)[0] == 1, what="the check to fail")
    assert check(sock, "-v") == (1, "web: gave up\n")
    status = otree_cli("status", "--socket", sock)
    assert "gave up" in status.stdout  # its LAST EXIT column

    otree_cli("shutdown", "--socket", sock)
    run.wait_exit()
    assert check(sock) == (3, "")  # nothing answers: quiet too
    code, said = check(sock, "-v")
    assert code == 3 and said.startswith("otree: ")
