"""Findings 12 and 17 of issue 11: bad trees never trace back.

Tables nested beyond 64 levels, NUL bytes in any string or key, and ``=`` in an env
name are refused by ``otree check`` and ``otree run`` with exit 2 and the key path;
1000 or 2000 levels deep is no RecursionError.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from support.cli import otree_cli

DEEP_TABLES = '[{keys}]\ncmd = "sleep 1"\n'


@pytest.mark.parametrize("depth", [65, 1000, 2000])
def test_tables_nested_too_deep_are_refused_with_the_key_path(tmp_path: Path, depth: int) -> None:
    tree = tmp_path / "deep.toml"
    tree.write_text(DEEP_TABLES.format(keys=".".join(["a"] * depth)))
    for command in ("check", "run"):
        r = (
            otree_cli(command, str(tree), "--socket", str(tmp_path / "s"), cwd=tmp_path)
            if command == "run"
            else otree_cli(command, str(tree))
        )
        assert r.returncode == 2, (command, r.stderr[-2000:])
        assert "Traceback" not in r.stderr
        path = ".".join(["a"] * 65)
        assert r.stderr == (
            f"otree: {tree}:1: {path}: nested too deep: at most 64 levels of tables\n"
        )


def test_64_levels_are_fine(tmp_path: Path) -> None:
    tree = tmp_path / "deep.toml"
    tree.write_text(DEEP_TABLES.format(keys=".".join(["a"] * 64)))
    r = otree_cli("check", str(tree))
    assert r.returncode == 0, r.stderr


def test_arrays_nested_thousands_deep_are_refused(tmp_path: Path) -> None:
    tree = tmp_path / "deep.toml"
    tree.write_text("[a]\ncmd = " + "[" * 2000 + "]" * 2000 + "\n")
    r = otree_cli("check", str(tree))
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert r.stderr == (
        f"otree: {tree}: invalid TOML: arrays or inline tables nested too deep (at most 64)\n"
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('cmd = ["sleep", "1\\u0000"]', "a.cmd.1: contains a NUL byte"),
        ('cmd = "sleep 1"\ncwd = "/tmp\\u0000"', "a.cwd: contains a NUL byte"),
        ('cmd = "sleep 1"\nenv = { X = "a\\u0000b" }', "a.env.X: contains a NUL byte"),
        ('cmd = "sleep 1"\nenv = { "A=B" = "1" }', "a.env.A=B: an environment variable name"),
        ('cmd = "sleep 1"\n[a.env]\n"" = "1"', "a.env.: an environment variable name"),
        ('cmd = "sleep 1"\nlog = { file = "/tmp/x\\u0000" }', "a.log.file: contains a NUL byte"),
    ],
)
def test_nul_bytes_and_bad_env_names_are_refused(tmp_path: Path, body: str, message: str) -> None:
    tree = tmp_path / "tree.toml"
    tree.write_text(f"[a]\n{body}\n")
    r = otree_cli("check", str(tree))
    assert r.returncode == 2, r.stdout
    assert "Traceback" not in r.stderr
    assert r.stderr.startswith(f"otree: {tree}:") and message in r.stderr, r.stderr
