"""The public surfaces (docs/architecture.md) are deliberate: this test fails on any drift."""

from __future__ import annotations

import otree

PUBLIC = {
    "AutoShutdown",
    "Backoff",
    "ConfigError",
    "Log",
    "OtreeError",
    "ReadyCmd",
    "ReadyDelay",
    "ReadyNotify",
    "ReadyTcp",
    "Restart",
    "Service",
    "Strategy",
    "Supervisor",
    "check_tree",
    "load",
    "run",
}


def test_all_lists_exactly_the_public_names() -> None:
    assert set(otree.__all__) == PUBLIC
    assert len(otree.__all__) == len(PUBLIC)


def test_every_public_name_exists() -> None:
    for name in PUBLIC:
        assert getattr(otree, name) is not None, name


def test_no_other_public_attribute_leaks() -> None:
    leaked = {
        name
        for name in vars(otree)
        if not name.startswith("_")
        and name not in PUBLIC
        and not isinstance(getattr(otree, name), type(otree))  # submodules are fine
        and name != "annotations"
    }
    assert leaked == set()


def test_init_holds_no_logic() -> None:
    """``otree/__init__.py`` re-exports; the one function it defines only delegates."""
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(otree))
    defs = [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))]
    assert [d.name for d in defs] == ["load"]
    assert len(defs[0].body) <= 3
