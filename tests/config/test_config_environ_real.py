"""Env files, expansion and relative paths with real processes (issue 13): what the child
gets, read from /proc, and a reload after an env-file edit restarting only that service."""

from __future__ import annotations

from pathlib import Path

from support.cli import otree_cli, status
from support.otreeproc import RunOtree
from support.procfs import pid_alive
from support.waits import DEADLINE

SLEEP = 'cmd = ["sleep", "600"]'


def _environ(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/environ", "rb") as f:
        pairs = [item.split(b"=", 1) for item in f.read().split(b"\0") if b"=" in item]
    return {k.decode(): v.decode() for k, v in pairs}


def _cmdline(pid: int) -> list[str]:
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return [a.decode() for a in f.read().split(b"\0")[:-1]]


def _pids(sock: str) -> dict[str, int]:
    return {p: n["pid"] for p, n in status(sock).items() if n.get("pid") is not None}


def test_a_reload_after_an_env_file_edit_restarts_only_that_service(
    tmp_path: Path, otree: RunOtree, sock: str
) -> None:
    app = tmp_path / "app"  # not otree's working directory: the env files are found from here
    app.mkdir()
    (app / "a.env").write_text("GREETING=one\nSHARED=from-a\n")
    (app / "b.env").write_text("GREETING=bee\n")
    (app / "tree.toml").write_text(
        f'[a]\n{SLEEP}\nenv_file = "a.env"\nenv = {{ SHARED = "from-env" }}\n'
        f'[b]\n{SLEEP}\nenv_file = "b.env"\n'
    )
    run = otree("run", "app/tree.toml", "--socket", sock)
    run.wait_for("tree_ready")
    before = _pids(sock)
    assert _environ(before["a"])["GREETING"] == "one"
    assert _environ(before["a"])["SHARED"] == "from-env"  # env over the env file
    assert _environ(before["b"])["GREETING"] == "bee"

    (app / "a.env").write_text("GREETING=two\nSHARED=from-a\n")
    r = otree_cli("reload", "--socket", sock, timeout=DEADLINE * 2)
    assert r.returncode == 0, (r.stdout, r.stderr)
    run.wait_for("tree_ready", count=2)
    assert r.stdout.splitlines()[1:] == ["  kept:    b", "  stopped: a", "  started: a"]
    after = _pids(sock)
    assert after["b"] == before["b"]
    assert after["a"] != before["a"] and not pid_alive(before["a"])
    assert _environ(after["a"])["GREETING"] == "two"

    (app / "b.env").unlink()  # a reload to a tree that cannot load is refused
    r = otree_cli("reload", "--socket", sock, timeout=DEADLINE * 2)
    assert r.returncode != 0
    assert f"b.env_file: cannot read {app}/b.env: No such file or directory" in r.stderr
    assert _pids(sock) == after


def test_the_child_gets_expanded_fields_and_absolute_paths(
    tmp_path: Path, otree: RunOtree, sock: str
) -> None:
    app = tmp_path / "app"
    (app / "bin").mkdir(parents=True)
    (app / "data").mkdir()
    script = app / "bin" / "svc"
    script.write_text("#!/bin/sh\nsleep 600\n")  # sh stays, with the arguments it got
    script.chmod(0o755)
    (app / "tree.toml").write_text(
        "[one]\n"
        'cmd = ["./bin/svc", "${OTREE_PATH}", "${OTREE_REPLICA}", "$$1", "${UNSET_X:-dflt}"]\n'
        'cwd = "data"\n'
        'env = { HERE = "${OTREE_TREE_DIR}", FROM = "${FROM_OTREE}" }\n'
        "[pool]\n"
        'cmd = ["sh", "-c", "sleep 600; :", "${OTREE_PATH}", "${OTREE_REPLICA}", "$$"]\n'
        'env = { SLOT = "s${OTREE_REPLICA}" }\n'
        "replicas = 2\n"
    )
    run = otree("run", "app/tree.toml", "--socket", sock, env={"FROM_OTREE": "otree's"})
    run.wait_for("tree_ready")
    pids = _pids(sock)
    assert _cmdline(pids["one"]) == ["/bin/sh", str(script), "one", "0", "$1", "dflt"]
    env = _environ(pids["one"])
    assert (env["HERE"], env["FROM"]) == (str(app), "otree's")
    with open(f"/proc/{pids['one']}/cwd/../bin/svc") as f:  # cwd is app/data
        assert f.read().startswith("#!/bin/sh")
    for i in range(2):
        pid = pids[f"pool.{i}"]
        assert _cmdline(pid) == ["sh", "-c", "sleep 600; :", f"pool.{i}", str(i), "$"]
        assert _environ(pid)["SLOT"] == f"s{i}"
        assert _environ(pid)["OTREE_REPLICA"] == str(i)
