"""The web stack of examples/webstack.toml, declared in Python.

Run it directly (``python examples/tree.py``) or with the CLI
(``otree run examples/tree.py:tree``). The port comes from $EXAMPLE_PORT
(default 18765).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from otree import Backoff, ReadyNotify, ReadyTcp, Service, Supervisor, run

HERE = Path(__file__).resolve().parent
PORT = int(os.environ.get("EXAMPLE_PORT", "18765"))
PYTHON = sys.executable

tree = Supervisor(
    "root",
    strategy="one_for_one",
    intensity=3,
    period=10,
    children=[
        Supervisor(
            "web",
            strategy="rest_for_one",  # a server crash restarts the worker too
            intensity=5,
            period=30,
            children=[
                Service(
                    "server",
                    cmd=[PYTHON, "-m", "http.server", str(PORT), "--bind", "127.0.0.1"],
                    cwd=str(HERE),
                    ready=ReadyTcp(tcp=f"127.0.0.1:{PORT}", timeout=10),
                    shutdown=3,
                ),
                Service(
                    "worker",
                    cmd=[PYTHON, str(HERE / "worker.py")],
                    env={"WEB_URL": f"http://127.0.0.1:{PORT}/"},
                    ready=ReadyNotify(timeout=10),
                ),
            ],
        ),
        Supervisor(
            "jobs",
            intensity=20,
            period=30,
            children=[
                Service(
                    "warmup",
                    cmd=["sh", "-c", "echo warming the cache; sleep 0.2; echo cache warm"],
                    restart="temporary",
                ),
                Service(
                    "report",
                    cmd=[PYTHON, str(HERE / "report.py")],
                    backoff=Backoff(initial=2, factor=1, max=2, jitter=0),
                ),
            ],
        ),
    ],
)

if __name__ == "__main__":
    raise SystemExit(run(tree))
