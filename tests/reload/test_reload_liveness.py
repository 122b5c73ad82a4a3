"""A reload keeps a service's liveness (issue 12): its notify socket stays bound (sends
after the re-exec reach the new image), its STATUS= text, and its watchdog goes on."""

from __future__ import annotations

from pathlib import Path

from reloadkit import Start, pids, reload, status
from support.treefiles import prog
from support.waits import wait_until


def _count(text: object) -> int:
    return int(str(text).rpartition(" ")[2]) if text else 0


def test_notify_socket_status_and_watchdog_survive_a_reload(tree: Start, tmp_path: Path) -> None:
    stop, errors = tmp_path / "stop", tmp_path / "errors"
    run = tree(
        f"""[svc]
cmd = {prog("watchdog_until", str(stop), str(errors))}
ready = {{ notify = true }}
watchdog = 1
restart = "temporary"
"""
    )
    pid = pids(run)["svc"]
    wait_until(lambda: _count(status(run)["svc"]["status_text"]) > 0, what="a STATUS= text")
    reload(run, run.sock, 1)  # type: ignore[attr-defined]
    assert pids(run)["svc"] == pid  # kept
    after = _count(status(run)["svc"]["status_text"])
    assert after > 0  # the text came across the exec
    wait_until(
        lambda: _count(status(run)["svc"]["status_text"]) > after + 5,
        what="datagrams sent after the re-exec to reach the new image",
    )
    assert not errors.exists(), errors.read_text()
    assert not run.find("unhealthy"), run.describe()  # pinged through the exec
    stop.touch()  # no more pings: the new image's watchdog fires
    bad = run.wait_for("unhealthy", "svc")
    assert bad["pid"] == pid and bad["reason"] == "watchdog"
    assert run.wait_for("exit", "svc")["reason"] == "unhealthy"
