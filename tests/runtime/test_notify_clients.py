"""A service's notify socket lives as long as its process (issue 12).

Real sd_notify clients send ``STATUS=``, ``WATCHDOG=1`` and ``STOPPING=1`` after
``READY=1``: ``systemd-notify`` (Debian's ``systemd`` package; it also waits for
its ``BARRIER=1`` to be answered), the ``sdnotify`` package from PyPI and
libsystemd's own ``sd_notify`` (through ctypes). Each must succeed.
``systemd-python`` is not among them: it builds only against libsystemd's
headers (``libsystemd-dev``), and libsystemd's ``sd_notify`` is what it wraps.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from support.otreeproc import OtreeProc
from support.treefiles import argv, prog, write_tree
from support.waits import wait_until

Run = Callable[..., OtreeProc]

CLIENTS = ("systemd_notify", "sdnotify", "libsystemd")


def _shell_client(go: Path, result: Path) -> str:
    """``systemd-notify`` from a ``set -e`` script: any failing call ends it."""
    script = f"""set -e
systemd-notify --ready
while [ ! -e {go} ]; do sleep 0.01; done
systemd-notify --status=serving
systemd-notify WATCHDOG=1
systemd-notify STOPPING=1
echo ok > {result}
exec sleep 120
"""
    return argv("sh", "-c", script)


def test_datagrams_after_ready_never_fail(otree: Run, tmp_path: Path) -> None:
    assert shutil.which("systemd-notify"), "systemd-notify is missing (.ci/run installs it)"
    go = tmp_path / "go"
    results = {c: tmp_path / f"{c}.result" for c in CLIENTS}
    tables = []
    for client in CLIENTS:
        if client == "systemd_notify":
            cmd = _shell_client(go, results[client])
        else:
            cmd = prog("notify_client", client, str(go), str(results[client]))
        tables.append(f"[{client}]\ncmd = {cmd}\nready = {{ notify = true, timeout = 20 }}\n")
    run = otree("run", write_tree(tmp_path, "\n".join(tables)))
    run.wait_for("tree_ready")  # every client's READY=1 was taken
    go.touch()

    def settled() -> bool:
        return all(r.exists() and r.read_text() for r in results.values()) or bool(run.find("exit"))

    wait_until(settled, what="every client's result")
    outcomes = {c: r.read_text().strip() if r.exists() else "none" for c, r in results.items()}
    assert outcomes == dict.fromkeys(CLIENTS, "ok"), run.describe()
    assert not run.find("exit"), run.describe()
