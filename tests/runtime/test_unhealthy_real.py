"""Health checks and the watchdog on real processes (issue 12): a live but broken
service becomes ``unhealthy`` -> ``stop`` -> ``exit`` (abnormal, reason unhealthy),
and its supervisor's strategy and intensity decide."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from support.cli import otree_cli, status
from support.otreeproc import OtreeProc
from support.procfs import pid_alive
from support.treefiles import PROG, argv, free_port, prog, write_tree
from support.waits import wait_until

Run = Callable[..., OtreeProc]

HTTP_SERVER = (
    "import http.server, sys\n"
    "class H(http.server.BaseHTTPRequestHandler):\n"
    "    def do_GET(self):\n"
    "        import os\n"
    "        code = 503 if os.path.exists(sys.argv[2]) else 200\n"
    "        self.send_response(code); self.end_headers()\n"
    "    def log_message(self, *a): pass\n"
    "http.server.HTTPServer(('127.0.0.1', int(sys.argv[1])), H).serve_forever()\n"
)


def _assert_unhealthy_cycle(run: OtreeProc, path: str, reason_start: str) -> dict[str, object]:
    bad = run.wait_for("unhealthy", path)
    assert str(bad["reason"]).startswith(reason_start), bad
    stop = run.wait_for("stop", path, pid=bad["pid"])
    end = run.wait_for("exit", path, pid=bad["pid"])
    assert end["normal"] is False and end["reason"] == "unhealthy", end
    assert stop["ts"] <= end["ts"]
    return bad


def test_tcp_health_restarts_the_service_and_its_one_for_all_sibling(
    otree: Run, tmp_path: Path
) -> None:
    port = str(free_port())
    tree = write_tree(
        tmp_path,
        f"""[web]
strategy = "one_for_all"
[web.side]
cmd = "sleep 120"
[web.api]
cmd = {prog("listen_for", port, "0.6")}
ready = {{ tcp = "127.0.0.1:{port}" }}
health = {{ tcp = "127.0.0.1:{port}", interval = 0.2, timeout = 0.1, failures = 2 }}
""",
    )
    run = otree("run", tree)
    side = run.wait_for("spawn", "web.side")["pid"]
    bad = _assert_unhealthy_cycle(run, "web.api", f"tcp 127.0.0.1:{port}")
    assert bad["failures"] == 2
    restart = run.wait_for("restart", "web")
    assert restart["child"] == "web.api" and restart["strategy"] == "one_for_all"
    run.wait_for("exit", "web.side", pid=side)  # the sibling went down and up again
    assert run.wait_for("spawn", "web.side", count=2)["pid"] != side


def test_http_health_always_failing_makes_the_root_give_up_and_exit_1(
    otree: Run, tmp_path: Path
) -> None:
    port = str(free_port())
    broken = tmp_path / "broken"
    broken.touch()
    url = f"http://127.0.0.1:{port}/healthz"
    tree = write_tree(
        tmp_path,
        f"""intensity = 1
period = 60
[api]
cmd = {argv(sys.executable, "-c", HTTP_SERVER, port, str(broken))}
ready = {{ tcp = "127.0.0.1:{port}" }}
health = {{ http = "{url}", interval = 0.2, timeout = 0.1, failures = 1 }}
""",
    )
    run = otree("run", tree)
    assert run.wait_exit() == 1, run.describe()
    unhealthy = run.find("unhealthy", "api")
    assert len(unhealthy) == 2 and all(e["reason"] == "http 503" for e in unhealthy)
    assert run.find("give_up", "")


def test_one_success_resets_the_count(otree: Run, tmp_path: Path) -> None:
    """A cmd probe that fails every other time never reaches 2 failures in a row."""
    port = str(free_port())
    counter = tmp_path / "count"
    flip = (
        f"n=$(cat {counter} 2>/dev/null || echo 0); echo $((n+1)) > {counter}; [ $((n % 2)) = 0 ]"
    )
    tree = write_tree(
        tmp_path,
        f"""[api]
cmd = {prog("listen_for", port, "120")}
health = {{ cmd = {argv("sh", "-c", flip)}, interval = 0.1, timeout = 0.09, failures = 2 }}
""",
    )
    run = otree("run", tree)
    run.wait_for("tree_ready")
    wait_until(lambda: counter.exists() and int(counter.read_text() or 0) >= 8, what="8 probes")
    assert not run.find("unhealthy"), run.describe()


def test_cmd_health_failing_then_hanging_probe_killed_at_timeout(
    otree: Run, tmp_path: Path
) -> None:
    flag = tmp_path / "sick"
    pidfile = tmp_path / "probe.pid"
    check = f"echo $$ > {pidfile}; if [ -e {flag} ]; then exec sleep 30; fi"
    tree = write_tree(
        tmp_path,
        f"""[db]
cmd = "sleep 120"
restart = "temporary"
health = {{ cmd = {argv("sh", "-c", check)}, interval = 0.3, timeout = 0.2, failures = 1 }}
""",
    )
    run = otree("run", tree)
    run.wait_for("tree_ready")
    wait_until(pidfile.exists, what="a first probe")
    flag.touch()  # the next probe hangs: killed at 0.2 s, one failure
    bad = _assert_unhealthy_cycle(run, "db", "cmd: no answer within 0.2s")
    hung = int(pidfile.read_text())
    wait_until(lambda: not pid_alive(hung), what="the hung probe to be killed and reaped")
    assert run.find("spawn", "db")[0]["pid"] == bad["pid"]
    assert len(run.find("spawn", "db")) == 1  # temporary: not restarted


def test_watchdog_that_stops_pinging(otree: Run, tmp_path: Path) -> None:
    envfile = tmp_path / "env"
    tree = write_tree(
        tmp_path,
        f"""[svc]
cmd = {prog("watchdog_pings", "8", str(envfile))}
ready = {{ notify = true }}
watchdog = 0.4
restart = "transient"
""",
    )
    run = otree("run", tree)
    spawn = run.wait_for("spawn", "svc")
    bad = _assert_unhealthy_cycle(run, "svc", "watchdog")
    assert bad["pid"] == spawn["pid"]
    # 8 pings 0.1 s apart kept a 0.4 s watchdog fed for about 0.8 s
    assert bad["ts"] - spawn["ts"] >= 0.8
    usec, wpid, pid = envfile.read_text().split()
    assert usec == "400000" and wpid == pid == str(spawn["pid"])


def test_ready_http_gates_the_next_sibling(otree: Run, tmp_path: Path) -> None:
    port = str(free_port())
    server = f"import time; time.sleep(0.5); exec({HTTP_SERVER!r})"
    tree = write_tree(
        tmp_path,
        f"""[api]
cmd = {argv(sys.executable, "-c", server, port, str(tmp_path / "never"))}
ready = {{ http = "http://127.0.0.1:{port}/", timeout = 20 }}
[client]
cmd = {prog("connect", port)}
restart = "temporary"
""",
    )
    run = otree("run", tree)
    assert run.wait_for("exit", "client")["code"] == 0, "client started before api answered"


def test_ready_exited_runs_a_one_shot_step_first(otree: Run, tmp_path: Path) -> None:
    done = tmp_path / "migrated"
    tree = write_tree(
        tmp_path,
        f"""[migrate]
cmd = {argv("sh", "-c", f"sleep 0.3; touch {done}")}
ready = {{ exited = true }}
restart = "transient"
[app]
cmd = {argv("sh", "-c", f"test -e {done} && exec sleep 120")}
""",
    )
    run = otree("run", tree)
    run.wait_for("tree_ready")
    order = [(e["event"], e["path"]) for e in run.events()]
    assert order.index(("exit", "migrate")) < order.index(("spawn", "app")), order
    assert run.find("exit", "migrate")[0]["normal"] is True
    app = run.find("spawn", "app")[0]
    assert pid_alive(app["pid"])
    assert len(run.find("spawn", "migrate")) == 1  # transient, ended normally: stays exited


def test_status_text_and_health_failures_in_status_json(
    otree: Run, tmp_path: Path, sock: str
) -> None:
    envfile = tmp_path / "env"
    tree = write_tree(
        tmp_path,
        f"""[svc]
cmd = {prog("watchdog_pings", "100000", str(envfile))}
ready = {{ notify = true }}
[chk]
cmd = "sleep 120"
health = {{ cmd = "false", interval = 0.1, timeout = 0.05, failures = 1000 }}
""",
    )
    run = otree("run", tree, "--socket", sock)
    run.wait_for("tree_ready")

    def said() -> dict[str, dict[str, object]] | None:
        nodes = status(sock)
        text = str(nodes["svc"]["status_text"] or "")
        failing = (nodes["chk"]["health"] or {}).get("failures", 0)  # type: ignore[attr-defined]
        return nodes if text.startswith("pinging") and failing >= 2 else None

    nodes = wait_until(said, what="STATUS= text and failing probes in otree status")
    assert nodes["svc"]["health"] is None  # no health check: null
    assert nodes[""].get("status_text") is None  # supervisors have none
    text = otree_cli("status", "--socket", sock).stdout
    assert "pinging" in text and "health: " in text


def test_an_abnormal_exit_carries_its_last_lines(otree: Run, tmp_path: Path) -> None:
    script = "for i in $(seq 1 15); do echo line $i; done; echo boom >&2; exit 3"
    tree = write_tree(
        tmp_path,
        f"""intensity = 0
[job]
cmd = {argv("sh", "-c", script)}
""",
    )
    run = otree("run", tree)
    assert run.wait_exit() == 1
    end = run.find("exit", "job")[0]
    assert end["normal"] is False
    assert end["last_lines"] == [f"line {i}" for i in range(7, 16)] + ["boom"]


def test_readiness_answered_by_another_program_is_a_start_failure(
    otree: Run, tmp_path: Path
) -> None:
    """The port is held by this test, not by the service: `ready = { tcp }` must not
    take the other program's answer for the service's (issue 12)."""
    import socket

    other = socket.socket()
    other.bind(("127.0.0.1", 0))
    other.listen()
    port = other.getsockname()[1]
    try:
        tree = write_tree(
            tmp_path,
            f"""[web]
[web.server]
cmd = "sleep 120"
ready = {{ tcp = "127.0.0.1:{port}", timeout = 20 }}
""",
        )
        run = otree("run", tree)
        assert run.wait_exit() == 3, run.describe()
        failed = run.find("start_failed", "web.server")[0]
        assert failed["reason"] == f"port {port} is held by pid {os.getpid()} (not web.server)"
    finally:
        other.close()


def test_readiness_of_a_listener_in_the_services_group(otree: Run, tmp_path: Path) -> None:
    """A listener opened by a child of the service (same process group) is the service's."""
    port = str(free_port())
    script = f"{sys.executable} {PROG} listen {port} 0.2; exit 1"
    tree = write_tree(
        tmp_path,
        f"""[web]
cmd = {argv("sh", "-c", script)}
ready = {{ tcp = "127.0.0.1:{port}", timeout = 20 }}
""",
    )
    run = otree("run", tree)
    run.wait_for("tree_ready")
    assert not run.find("start_failed")


def test_a_probe_that_cannot_start_counts_a_failure_and_says_why_once(
    otree: Run, tmp_path: Path
) -> None:
    missing = str(tmp_path / "no-such-check")
    tree = write_tree(
        tmp_path,
        f"""[db]
cmd = "sleep 120"
restart = "temporary"
health = {{ cmd = {argv(missing)}, interval = 0.1, timeout = 0.05, failures = 3 }}
""",
    )
    run = otree("run", tree)
    bad = _assert_unhealthy_cycle(run, "db", "cmd: cannot start: No such file or directory")
    assert bad["failures"] == 3
    said = [line for line in run.stdout.splitlines() if "health cmd: cannot start" in line]
    assert len(said) == 1, run.stdout


def test_probes_stop_once_the_service_is_being_stopped(otree: Run, tmp_path: Path) -> None:
    """The service ignores TERM, so it is 'being stopped' for 1.5 s: no probe runs then."""
    probes = tmp_path / "probes"
    tree = write_tree(
        tmp_path,
        f"""[svc]
cmd = {prog("ignore_term")}
shutdown = 1.5
health = {{ cmd = {argv("sh", "-c", f"echo x >> {probes}")}, interval = 0.05, timeout = 0.04 }}
""",
    )
    run = otree("run", tree)
    run.wait_for("tree_ready")
    wait_until(lambda: probes.exists() and len(probes.read_text()) >= 6, what="a few probes")
    run.send(signal.SIGTERM)
    run.wait_for("stop", "svc")
    at_stop = len(probes.read_text().splitlines())
    assert run.wait_exit() == 0
    end = run.find("exit", "svc")[0]
    assert end["signal"] == "KILL"  # it was 'being stopped' for the whole 1.5 s
    assert len(probes.read_text().splitlines()) <= at_stop + 1  # one may have been in flight
