"""A host name lookup that hangs (issue 11, finding 7): otree runs in a mount namespace
whose /etc/resolv.conf points at a UDP port on loopback that never answers, so
``getaddrinfo`` of a tcp readiness check's host waits for the resolver's 30 s timeout.
The loop must not wait with it."""

from __future__ import annotations

import os
import random
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support.cli import otree_cli
from support.otreeproc import OtreeProc
from support.treefiles import argv, free_port, prog, write_tree
from support.waits import wait_until

Run = Callable[..., OtreeProc]

HUNG = "hung.example.test"


class DeafDns:
    """A UDP socket on 127.x.y.z:53 that takes every query and answers none."""

    def __init__(self) -> None:
        self.address = f"127.53.{random.randrange(1, 255)}.{random.randrange(1, 255)}"
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((self.address, 53))
        self.sock.setblocking(False)
        self.queries: list[bytes] = []

    def poll(self) -> list[bytes]:
        """Every query received so far."""
        while True:
            try:
                self.queries.append(self.sock.recv(4096))
            except BlockingIOError:
                return self.queries


@pytest.fixture
def deaf_dns() -> Iterator[DeafDns]:
    dns = DeafDns()
    try:
        yield dns
    finally:
        dns.sock.close()


def _namespace_command(etc: Path, dns: DeafDns, otree_args: list[str]) -> list[str]:
    """``unshare -m``: /etc/resolv.conf, /etc/nsswitch.conf and /etc/hosts bind-mounted
    from ``etc`` (private to the namespace), then exec otree."""
    etc.mkdir()
    (etc / "resolv.conf").write_text(f"nameserver {dns.address}\noptions timeout:30 attempts:1\n")
    (etc / "nsswitch.conf").write_text("hosts: files dns\n")
    (etc / "hosts").write_text(f"127.0.0.1 localhost\n127.0.0.1 {HUNG}\n")
    mounts = " && ".join(
        f"mount --bind {etc / name} /etc/{name}"
        for name in ("resolv.conf", "nsswitch.conf", "hosts")
    )
    script = f'{mounts} && exec "$0" -m otree "$@"'
    return ["unshare", "-m", "sh", "-c", script, sys.executable, *otree_args]


def test_f7_a_hung_name_lookup_never_blocks_the_loop(
    otree: Run, tmp_path: Path, sock: str, deaf_dns: DeafDns
) -> None:
    """A tcp readiness check's host name is found in /etc/hosts at the start; then it is
    taken out, so the check of the restarted service asks the DNS, which never answers
    (30 s). Meanwhile another service crashes: its exit is handled and it is started
    again at once, and ``otree status`` answers. The check fails by its own timeout (3 s)
    and the check after that waits on the same lookup: one query to the DNS in all, not
    one per restart."""
    port = free_port()
    flag = tmp_path / "crash-now"
    tree = write_tree(
        tmp_path,
        f"""[crash]
cmd = {argv("sh", "-c", f"while [ ! -e {flag} ]; do sleep 0.05; done; rm {flag}; exit 3")}
[api]
intensity = 20
[api.web]
cmd = {prog("listen", str(port), "0")}
ready = {{ tcp = "{HUNG}:{port}", timeout = 3 }}
""",
    )
    etc = tmp_path / "etc"
    events = str(tmp_path / "events.jsonl")
    command = _namespace_command(
        etc, deaf_dns, ["run", str(tree), "--socket", sock, "--events", events]
    )
    run = otree(command=command)
    run.wait_for("ready", "api.web")
    (etc / "hosts").write_text("127.0.0.1 localhost\n")  # same file: the name is gone
    os.kill(run.running_pid("api.web"), signal.SIGKILL)
    wait_until(deaf_dns.poll, what="the restarted check's query to the DNS")

    flag.touch()
    crashed = time.time()
    exited = run.wait_for("exit", "crash", timeout=10)
    assert exited["ts"] - crashed < 3, run.describe()
    run.wait_for("spawn", "crash", count=2, timeout=5)

    began = time.monotonic()
    r = otree_cli("status", "--socket", sock, timeout=10)
    assert r.returncode == 0, r.stderr
    assert time.monotonic() - began < 5, "status took too long"

    # the lookup hangs on: the check fails by its timeout, the next one joins the lookup
    failed = run.wait_for("start_failed", "api.web", timeout=10)
    assert "not ready after 3s" in failed["reason"], failed
    run.wait_for("start_failed", "api.web", count=2, timeout=10)
    assert len(deaf_dns.poll()) <= 2, deaf_dns.queries  # A and AAAA of one lookup
    assert run.proc.poll() is None, run.describe()
