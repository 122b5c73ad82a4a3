"""examples/postgres/tree.toml runs PostgreSQL as the postgres user (issue 13): the
cluster is made on the first start, the server is ready when pg_isready says so, and
a stop is PostgreSQL's fast shutdown (SIGINT), which its own log says ended cleanly.

PostgreSQL comes from Debian's packages (``.ci/run`` installs them and sets
``OTREE_REQUIRE_POSTGRES=1``, so that CI fails rather than skips without them)."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support import procfs
from support.otreeproc import OtreeProc
from support.procfs import pid_alive
from support.treefiles import free_port
from support.waits import wait_until

Run = Callable[..., OtreeProc]

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "postgres" / "tree.toml"


def _bindir() -> str | None:
    """PostgreSQL's server programs: Debian keeps them out of PATH."""
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if os.access(os.path.join(candidate, "postgres"), os.X_OK):
            return candidate
    found = shutil.which("postgres")
    return os.path.dirname(found) if found else None


def _require_postgres() -> str:
    bindir = _bindir()
    missing = []
    if bindir is None or not os.access(os.path.join(bindir, "initdb"), os.X_OK):
        missing.append("postgres and initdb")
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        missing.append("the postgres user")
    if os.geteuid() != 0:
        missing.append("root")
    if missing:
        why = f"needs {', '.join(missing)} (apt-get install postgresql)"
        if os.environ.get("OTREE_REQUIRE_POSTGRES"):
            pytest.fail(why)
        pytest.skip(why)
    assert bindir is not None
    return bindir


@pytest.fixture
def pg_dir() -> Iterator[Path]:
    """A directory the postgres user may pass (the tests' own are root's, 0700)."""
    base = tempfile.mkdtemp(prefix="otree-pg-", dir="/tmp")
    os.chmod(base, 0o755)
    try:
        yield Path(base)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _start(otree: Run, pg_dir: Path, sock: str) -> tuple[OtreeProc, int, dict[str, str]]:
    bindir = _require_postgres()
    port = free_port()
    # the example as written, but on a port of the test's own
    (pg_dir / "tree.toml").write_text(EXAMPLE.read_text().replace("5432", str(port)))
    env = {"PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}"}
    run = otree("run", "tree.toml", "--socket", sock, cwd=pg_dir, env=env)
    run.wait_for("ready", "db", timeout=120)
    return run, port, env


def _psql(port: int, env: dict[str, str], sql: str) -> subprocess.Popen[str]:
    argv = ["psql", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-At", "-c", sql]
    return subprocess.Popen(
        argv,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_postgres_runs_as_postgres_and_shuts_down_cleanly(
    otree: Run, pg_dir: Path, sock: str
) -> None:
    run, port, env = _start(otree, pg_dir, sock)
    pid = run.running_pid("db")
    assert os.stat(f"/proc/{pid}").st_uid == pwd.getpwnam("postgres").pw_uid
    query = _psql(port, env, "select current_user, 6 * 7")
    out, _ = query.communicate(timeout=30)
    assert out.strip() == "postgres|42", out
    run.send(signal.SIGTERM)
    assert run.wait_exit(timeout=90) == 0, run.describe()
    assert run.find("exit", "db", code=0)  # SIGINT: the fast shutdown, exit 0
    log = (pg_dir / "postgres.log").read_text()
    assert "received fast shutdown request" in log
    assert log.rstrip().endswith("database system is shut down"), log[-2000:]
    assert not pid_alive(pid)
    wait_until(lambda: not any(pid_alive(p) for p in run.child_pids()))


def _backend_running(postmaster: int, what: str) -> int | None:
    """The PID of the postmaster's backend whose title says ``what`` (its query state)."""
    for pid in procfs.children(postmaster):
        if what in procfs.cmdline(pid):
            return pid
    return None


def test_a_kill_9_of_the_postmaster_during_a_query_recovers(
    otree: Run, pg_dir: Path, sock: str
) -> None:
    """The backend of a CPU-bound query has left the postmaster's process group (PostgreSQL
    calls setsid() in each child) and goes on after a kill -9 of the postmaster, holding
    the shared memory: a new postmaster is refused until it is gone. In the service's
    cgroup it is killed with the postmaster, and the new one recovers by itself."""
    run, port, env = _start(otree, pg_dir, sock)
    postmaster = run.running_pid("db")
    if "/otree-" not in Path(f"/proc/{postmaster}/cgroup").read_text():
        pytest.fail("this test needs the cgroups kill mode (auto, with a writable cgroup2)")
    query = _psql(port, env, "select count(*) from generate_series(1, 20000000000)")
    backend = wait_until(lambda: _backend_running(postmaster, "SELECT"), what="the query")
    os.kill(postmaster, signal.SIGKILL)
    run.wait_for("ready", "db", count=2, timeout=120)
    wait_until(lambda: not pid_alive(backend), what="the backend to be gone")
    query.communicate(timeout=30)  # its connection was cut
    again = _psql(port, env, "select 6 * 7")
    out, _ = again.communicate(timeout=30)
    assert out.strip() == "42", out
    log = (pg_dir / "postgres.log").read_text()
    assert "database system was interrupted" in log or "not properly shut down" in log, log[-3000:]
    assert log.count("database system is ready to accept connections") == 2
    assert len(run.find("spawn", "db")) == 2  # one restart, not a crash loop
    run.send(signal.SIGTERM)
    assert run.wait_exit(timeout=90) == 0, run.describe()
