"""examples/deploy/: the systemd unit, the Dockerfile and the Kubernetes Deployment say
what docs/deploy.md says they do (issue 15)."""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from otree.config import load
from otree.core.spec import Service, walk

ROOT = Path(__file__).parent.parent
DEPLOY = ROOT / "examples" / "deploy"


def worst_shutdown() -> float:
    """The example tree's longest stop: every service taking its whole shutdown time,
    one after another (the stop order is sequential)."""
    tree = load(str(ROOT / "examples" / "webstack.toml"))
    total = 0.0
    for _, node in walk(tree):
        if isinstance(node, Service) and isinstance(node.shutdown, float):
            total += node.shutdown
    return total


def unit() -> configparser.SectionProxy:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(DEPLOY / "otree.service")
    return parser["Service"]


def test_the_systemd_unit() -> None:
    service = unit()
    assert service["Type"] == "notify-reload"  # otree speaks sd_notify (READY, RELOADING)
    assert service["ExecStart"].split()[1:3] == ["run", "/etc/otree/tree.toml"]
    assert service["KillMode"] == "mixed"  # TERM to otree alone: it stops the tree in order
    assert int(service["TimeoutStopSec"]) > worst_shutdown()
    assert int(service["WatchdogSec"]) > 0
    assert service["RuntimeDirectory"] == "otree"  # where --socket points
    assert "/run/otree/" in service["ExecStart"]
    assert service["RestartPreventExitStatus"] == "2"  # a bad tree file is not retried


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
def test_the_systemd_unit_verifies(tmp_path: Path) -> None:
    otree = Path(sys.executable).parent / "otree"
    text = (DEPLOY / "otree.service").read_text().replace("/opt/otree/venv/bin/otree", str(otree))
    copy = tmp_path / "otree.service"
    copy.write_text(text)
    r = subprocess.run(
        ["systemd-analyze", "verify", str(copy)], capture_output=True, text=True, check=False
    )
    version = subprocess.run(
        ["systemd-analyze", "--version"], capture_output=True, text=True, check=False
    ).stdout
    number = int(re.search(r"systemd (\d+)", version).group(1))  # type: ignore[union-attr]
    said = [line for line in (r.stdout + r.stderr).splitlines() if line.strip()]
    if number < 253:  # notify-reload is systemd 253's: older ones say so, and nothing else
        said = [line for line in said if "notify-reload" not in line]
    assert r.returncode == 0 and said == []


def test_the_dockerfile() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    assert re.search(r"^FROM python:[\d.]+-slim$", text, re.M)
    assert re.search(r"^STOPSIGNAL SIGTERM$", text, re.M)
    assert 'CMD ["otree", "status", "--check"]' in text  # HEALTHCHECK
    assert re.search(r'^ENTRYPOINT \["otree", "run", ', text, re.M)  # otree is PID 1


def test_the_kubernetes_deployment() -> None:
    text = (DEPLOY / "kubernetes.yaml").read_text()
    probe = re.search(r"livenessProbe:\s+exec:\s+command: (\[.*\])", text)
    assert probe is not None and probe.group(1) == '["otree", "status", "--check"]'
    grace = re.search(r"terminationGracePeriodSeconds: (\d+)", text)
    assert grace is not None and int(grace.group(1)) > worst_shutdown()
