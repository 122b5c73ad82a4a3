"""``otree metrics`` and ``otree run --metrics ADDR``: the exposition of a real tree, read by
prometheus_client's own parser, its counters across a crash and a reload, the HTTP listener's
refusals."""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from support import cli
from support.otreeproc import OtreeProc, RunOtree
from support.treefiles import free_port
from support.waits import DEADLINE, wait_until

from otree.control.metrics import escape

TREE = """\
[db]
cmd = "sleep 60"

[web]
strategy = "one_for_one"

[web.api]
cmd = ["sh", "-c", "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; exec sleep 60"]
"""

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> tuple[Samples, dict[str, str]]:
    """Every sample by (name, sorted labels), and each family's type, as Prometheus reads them."""
    samples: Samples = {}
    types: dict[str, str] = {}
    for family in text_string_to_metric_families(text):
        types[family.name] = family.type
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples, types


def metrics(sock: str) -> Samples:
    r = cli.otree_cli("metrics", "--socket", sock)
    assert r.returncode == 0, r.stderr
    return parse(r.stdout)[0]


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def start(otree: RunOtree, tmp_path: Path, sock: str, *extra: str) -> OtreeProc:
    (tmp_path / "tree.toml").write_text(TREE)
    run = otree("run", "tree.toml", "--socket", sock, *extra)
    run.wait_for("tree_ready")
    return run


def test_the_exposition_parses_and_its_counters_grow_after_a_crash(
    otree: RunOtree, tmp_path: Path, sock: str
) -> None:
    run = start(otree, tmp_path, sock)
    r = cli.otree_cli("metrics", "--socket", sock)
    assert r.returncode == 0 and r.stderr == ""
    samples, types = parse(r.stdout)
    assert types["otree_node_up"] == "gauge"
    assert types["otree_restarts"] == "counter"  # the parser names a counter without _total
    assert types["otree_process_resident_bytes"] == "gauge"
    for path, kind in (("", "supervisor"), ("db", "service"), ("web", "supervisor")):
        assert value(samples, "otree_node_up", path=path, kind=kind) == 1
    assert value(samples, "otree_restarts_total", path="web.api") == 0
    assert value(samples, "otree_exits_total", path="web.api", normal="false") == 0
    assert value(samples, "otree_give_ups_total", path="web") == 0
    assert value(samples, "otree_reexecs_total") == 0
    # what the service costs: its shell counted to 200000 before it exec'd sleep
    assert value(samples, "otree_process_cpu_seconds_total", path="web.api") > 0
    assert value(samples, "otree_process_resident_bytes", path="db") > 100_000
    # otree's own, under the names every Prometheus client uses
    assert value(samples, "process_resident_memory_bytes") > 1_000_000
    assert value(samples, "process_open_fds") >= 3
    started = value(samples, "process_start_time_seconds")
    assert time.time() - 60 < started <= time.time()

    os.kill(run.running_pid("web.api"), signal.SIGKILL)
    run.wait_for("spawn", "web.api", count=2)
    run.wait_for("ready", "web.api", count=2)
    after = metrics(sock)
    assert value(after, "otree_restarts_total", path="web.api") == 1
    assert value(after, "otree_exits_total", path="web.api", normal="false") == 1
    assert value(after, "otree_exits_total", path="web.api", normal="true") == 0
    assert value(after, "otree_restarts_total", path="db") == 0
    assert value(after, "otree_node_up", path="web.api", kind="service") == 1

    cli.otree_cli("stop", "db", "--socket", sock)
    stopped = metrics(sock)
    assert value(stopped, "otree_node_up", path="db", kind="service") == 0
    assert value(stopped, "otree_exits_total", path="db", normal="true") == 1
    assert ("otree_process_resident_bytes", (("path", "db"),)) not in stopped  # no process


def test_counters_are_kept_across_a_reload(otree: RunOtree, tmp_path: Path, sock: str) -> None:
    port = free_port()
    run = start(otree, tmp_path, sock, "--metrics", f"127.0.0.1:{port}")
    os.kill(run.running_pid("web.api"), signal.SIGKILL)
    run.wait_for("ready", "web.api", count=2)
    assert value(metrics(sock), "otree_restarts_total", path="web.api") == 1

    r = cli.otree_cli("reload", "--socket", sock)
    assert r.returncode == 0, (r.stderr, run.describe())
    run.wait_for("tree_ready", count=2)
    after = metrics(sock)
    assert value(after, "otree_reexecs_total") == 1
    assert value(after, "otree_restarts_total", path="web.api") == 1
    assert value(after, "otree_exits_total", path="web.api", normal="false") == 1
    # the new image listens again at the same address, with the same counts
    status, _, body = http(port, b"GET /metrics HTTP/1.1\r\n\r\n")
    assert status == "HTTP/1.1 200 OK"
    assert value(parse(body.decode())[0], "otree_reexecs_total") == 1

    os.kill(run.running_pid("web.api"), signal.SIGKILL)
    run.wait_for("ready", "web.api", count=3)
    assert value(metrics(sock), "otree_restarts_total", path="web.api") == 2

    # a node a reload removes is forgotten: back in a later reload, it counts from 0
    os.kill(run.running_pid("db"), signal.SIGKILL)
    run.wait_for("ready", "db", count=2)
    assert value(metrics(sock), "otree_restarts_total", path="db") == 1
    (tmp_path / "tree.toml").write_text(TREE.split("[web]")[0].replace("[db]", "[other]"))
    assert cli.otree_cli("reload", "--socket", sock).returncode == 0
    run.wait_for("tree_ready", count=3)
    gone = metrics(sock)
    assert not [k for k in gone if ("path", "db") in k[1] or ("path", "web.api") in k[1]]
    assert value(gone, "otree_reexecs_total") == 2
    (tmp_path / "tree.toml").write_text(TREE)
    assert cli.otree_cli("reload", "--socket", sock).returncode == 0
    run.wait_for("tree_ready", count=4)
    back = metrics(sock)
    assert value(back, "otree_restarts_total", path="db") == 0
    assert value(back, "otree_restarts_total", path="web.api") == 0
    assert value(back, "otree_reexecs_total") == 3


def http(port: int, request: bytes) -> tuple[str, dict[str, str], bytes]:
    """Send ``request`` and read the whole answer: status line, headers, body."""
    with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE) as s:
        s.sendall(request)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status, *lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines)}
    return status, headers, body


def test_the_http_listener_serves_get_metrics_and_nothing_else(
    otree: RunOtree, tmp_path: Path, sock: str
) -> None:
    port = free_port()
    run = start(otree, tmp_path, sock, "--metrics", f"127.0.0.1:{port}")
    status, headers, body = http(port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status == "HTTP/1.1 200 OK"
    assert headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert int(headers["content-length"]) == len(body)
    samples, _ = parse(body.decode())
    assert value(samples, "otree_node_up", path="db", kind="service") == 1
    assert http(port, b"GET /metrics?x=1 HTTP/1.0\r\n\r\n")[0] == "HTTP/1.1 200 OK"

    status, headers, _ = http(port, b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
    assert status == "HTTP/1.1 405 Method Not Allowed" and headers["allow"] == "GET"
    assert http(port, b"GET / HTTP/1.1\r\n\r\n")[0] == "HTTP/1.1 404 Not Found"
    assert http(port, b"GET /metrics/../x HTTP/1.1\r\n\r\n")[0] == "HTTP/1.1 404 Not Found"
    assert http(port, b"hello\r\n\r\n")[0] == "HTTP/1.1 400 Bad Request"
    big = b"GET /metrics HTTP/1.1\r\nX: " + b"a" * 20000 + b"\r\n\r\n"
    assert http(port, big)[0] == "HTTP/1.1 431 Request Header Fields Too Large"

    # a client that never finishes its request is cut off, and the tree serves on
    with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE) as slow:
        slow.sendall(b"GET /metrics HTTP/1.1\r\n")
        t0 = time.monotonic()
        assert slow.recv(100) == b""  # closed by otree, not by this test's timeout
        assert time.monotonic() - t0 < DEADLINE
        assert http(port, b"GET /metrics HTTP/1.1\r\n\r\n")[0] == "HTTP/1.1 200 OK"
    assert run.proc.poll() is None

    # past MAX_CLIENTS at once, a connection gets a 503 at once; the first ones are served
    idle = [socket.create_connection(("127.0.0.1", port), timeout=DEADLINE) for _ in range(16)]
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE) as extra:
            assert extra.recv(100).startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
        idle[0].sendall(b"GET /metrics HTTP/1.1\r\n\r\n")
        assert idle[0].recv(100).startswith(b"HTTP/1.1 200 OK")
    finally:
        for s in idle:
            s.close()
    wait_until(
        lambda: http(port, b"GET /metrics HTTP/1.1\r\n\r\n")[0] == "HTTP/1.1 200 OK",
        what="a scrape once the idle clients are gone",
    )


@pytest.mark.parametrize(
    ("addr", "message"),
    [
        (
            "0.0.0.0:{port}",
            "--metrics 0.0.0.0:{port}: 0.0.0.0 is not a loopback address; metrics are served"
            " to this host only unless --metrics-public is given",
        ),
        ("127.0.0.1", "--metrics 127.0.0.1: expected HOST:PORT with a port from 1 to 65535"),
        (
            "metrics.example:{port}",
            "--metrics metrics.example:{port}: 'metrics.example' is not an IP address (give"
            " 127.0.0.1, ::1 or an address of this host)",
        ),
    ],
)
def test_a_bad_or_public_address_is_refused_before_anything_starts(
    tmp_path: Path, sock: str, addr: str, message: str
) -> None:
    port = free_port()
    (tmp_path / "tree.toml").write_text('[a]\ncmd = "sleep 60"\n')
    r = cli.otree_cli(
        "run", str(tmp_path / "tree.toml"), "--socket", sock, "--metrics", addr.format(port=port)
    )
    assert r.returncode == 2
    assert r.stderr == f"otree: {message.format(port=port)}\n"
    assert r.stdout == ""


def test_a_public_address_is_served_with_the_flag(
    otree: RunOtree, tmp_path: Path, sock: str
) -> None:
    port = free_port()
    start(otree, tmp_path, sock, "--metrics", f"0.0.0.0:{port}", "--metrics-public")
    assert http(port, b"GET /metrics HTTP/1.1\r\n\r\n")[0] == "HTTP/1.1 200 OK"


def test_a_port_in_use_is_refused(tmp_path: Path, sock: str) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        (tmp_path / "tree.toml").write_text('[a]\ncmd = "sleep 60"\n')
        r = cli.otree_cli(
            "run", str(tmp_path / "tree.toml"), "--socket", sock, "--metrics", f"127.0.0.1:{port}"
        )
    assert r.returncode == 2
    assert r.stderr == f"otree: --metrics 127.0.0.1:{port}: cannot listen: Address already in use\n"
    assert not os.path.exists(sock)  # nothing was left behind


def test_label_values_are_escaped_as_the_format_says() -> None:
    raw = 'a\\b "c"\nd'
    line = f'x{{path="{escape(raw)}"}} 1\n'
    (family,) = text_string_to_metric_families(line)
    labels: dict[str, Any] = family.samples[0].labels
    assert labels == {"path": raw}


def test_unhealthy_and_give_up_are_counted(otree: RunOtree, tmp_path: Path, sock: str) -> None:
    # sick fails its health check; flaky's supervisor allows no restart, so a crash of
    # flaky.x is a give-up of flaky, which the root restarts
    (tmp_path / "tree.toml").write_text(
        "intensity = 10\n\n"
        '[sick]\ncmd = "sleep 60"\n'
        'health = { cmd = "false", interval = 0.2, timeout = 0.1, failures = 1 }\n\n'
        '[flaky]\nintensity = 0\n\n[flaky.x]\ncmd = "sleep 60"\n'
    )
    run = otree("run", "tree.toml", "--socket", sock)
    run.wait_for("tree_ready")
    run.wait_for("unhealthy", "sick")
    os.kill(run.running_pid("flaky.x"), signal.SIGKILL)
    run.wait_for("give_up", "flaky")
    run.wait_for("spawn", "flaky.x", count=2)
    samples = metrics(sock)
    unhealthy = sum(1 for e in run.events() if e["event"] == "unhealthy" and e["path"] == "sick")
    assert value(samples, "otree_unhealthy_total", path="sick") >= unhealthy >= 1
    assert value(samples, "otree_give_ups_total", path="flaky") == 1
    assert value(samples, "otree_give_ups_total", path="") == 0
    assert value(samples, "otree_restarts_total", path="flaky") == 1  # the root restarted it


def test_an_ipv6_loopback_address_is_served(otree: RunOtree, tmp_path: Path, sock: str) -> None:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
            port = probe.getsockname()[1]
    except OSError:
        pytest.skip("no IPv6 loopback here (an IPv4 one is tested above)")
    start(otree, tmp_path, sock, "--metrics", f"[::1]:{port}")
    with socket.create_connection(("::1", port), timeout=DEADLINE) as s:
        s.sendall(b"GET /metrics HTTP/1.1\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    assert data.startswith(b"HTTP/1.1 200 OK\r\n")
