"""The public surfaces (docs/architecture.md) are deliberate: this test fails on any drift."""

from __future__ import annotations

import importlib
import importlib.resources
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest

import otree
import otree.core
import otree.testing

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

PUBLIC = {
    "AutoShutdown",
    "Backoff",
    "ConfigError",
    "Log",
    "OtreeError",
    "HealthCmd",
    "HealthHttp",
    "HealthTcp",
    "ReadyCmd",
    "ReadyDelay",
    "ReadyExited",
    "ReadyHttp",
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


# --- otree.core: what users of the core may use ------------------------------------------

CORE_PUBLIC = {
    # specs
    "AutoShutdown",
    "Backoff",
    "Log",
    "HealthCmd",
    "HealthHttp",
    "HealthTcp",
    "ReadyCmd",
    "ReadyDelay",
    "ReadyExited",
    "ReadyHttp",
    "ReadyNotify",
    "ReadyTcp",
    "Restart",
    "Service",
    "Strategy",
    "Supervisor",
    "check_tree",
    "walk",
    # events in
    "Command",
    "Event",
    "Exited",
    "Ready",
    "ReadyFailed",
    "SpawnFailed",
    "Spawned",
    "TimerFired",
    "Unhealthy",
    # actions out
    "Action",
    "CancelTimer",
    "Exit",
    "Kill",
    "Reply",
    "Report",
    "SetTimer",
    "Signal",
    "Spawn",
    # the engine
    "Engine",
    "NodeStatus",
}

#: where each core name is defined (the package re-exports, it defines nothing)
CORE_HOMES = {"spec": 18, "events": 9, "actions": 9, "engine": 2}

#: what a package ``__init__`` may hold besides its public names: typing machinery
TYPING_HELPERS = {"annotations", "TYPE_CHECKING", "Any", "ModuleType"}


def leaked_names(module: types.ModuleType, public: set[str]) -> set[str]:
    """Public-looking attributes of ``module`` that are not in its public set."""
    return {
        name
        for name in vars(module)
        if not name.startswith("_")
        and name not in public
        and name not in TYPING_HELPERS
        and not isinstance(getattr(module, name), types.ModuleType)  # submodules are fine
    }


def test_core_all_lists_exactly_the_public_names() -> None:
    assert set(otree.core.__all__) == CORE_PUBLIC
    assert len(otree.core.__all__) == len(CORE_PUBLIC)
    assert sum(CORE_HOMES.values()) == len(CORE_PUBLIC)


def test_every_core_name_is_the_object_its_module_defines() -> None:
    homes: dict[str, int] = {}
    for name in CORE_PUBLIC:
        value = getattr(otree.core, name)
        found = [
            home
            for home in CORE_HOMES
            if getattr(importlib.import_module(f"otree.core.{home}"), name, None) is value
        ]
        assert found, name
        home = found[0] if len(found) == 1 else _defining_module(value, found)
        homes[home] = homes.get(home, 0) + 1
    assert homes == CORE_HOMES


def _defining_module(value: object, candidates: list[str]) -> str:
    """Of the modules that hold ``value``, the one that defines it."""
    module = getattr(value, "__module__", "")
    (home,) = [c for c in candidates if module == f"otree.core.{c}"]
    return home


def test_core_dir_and_unknown_names() -> None:
    assert set(dir(otree.core)) >= CORE_PUBLIC
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        _ = otree.core.Nope


def test_no_other_core_attribute_leaks() -> None:
    assert leaked_names(otree.core, CORE_PUBLIC) == set()


LIGHT_CORE = textwrap.dedent(
    """
    import sys, types
    # the otree package's own __init__ may import anything: load an empty stand-in
    pkg = types.ModuleType("otree")
    pkg.__path__ = [{otree_dir!r}]
    sys.modules["otree"] = pkg

    import otree.core
    loaded = lambda: sorted(m for m in sys.modules if m.startswith("otree.core."))
    print(loaded())
    otree.core.Service
    print(loaded())
    otree.core.Engine
    print("engine" if "otree.core.engine" in sys.modules else "no engine")
    """
)


def test_import_otree_core_loads_no_core_module_until_a_name_is_used() -> None:
    """``otree.core``'s ``__init__`` is light: each name loads its own module on first use."""
    code = LIGHT_CORE.format(otree_dir=str(Path(otree.__file__).parent))
    proc = subprocess.run(
        [sys.executable, "-I", "-c", code], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    before, spec_only, engine = proc.stdout.splitlines()
    assert before == "[]"
    # the specs' module, with its field checks, its readiness and health checks and the
    # one repr they share
    assert spec_only == (
        "['otree.core.checks', 'otree.core.fields', 'otree.core.reprs', 'otree.core.spec']"
    )
    assert engine == "engine"


# --- otree.testing ------------------------------------------------------------------------

TESTING_PUBLIC = {
    "FAIL_START_REASON",
    "HOWS",
    "EngineFactory",
    "EngineLike",
    "Simulation",
    "Trace",
    "simulate",
    # the Hypothesis strategies (loaded on first use)
    "backoffs",
    "crash_schedules",
    "healths",
    "logs",
    "names",
    "readies",
    "service_paths",
    "services",
    "shutdowns",
    "supervisors",
    "trees",
}


def test_testing_all_lists_exactly_the_public_names() -> None:
    assert set(otree.testing.__all__) == TESTING_PUBLIC
    assert len(otree.testing.__all__) == len(TESTING_PUBLIC)


def test_every_testing_name_exists() -> None:
    for name in TESTING_PUBLIC:
        assert getattr(otree.testing, name) is not None, name
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        _ = otree.testing.Nope


def test_no_other_testing_attribute_leaks() -> None:
    assert leaked_names(otree.testing, TESTING_PUBLIC) == set()


# --- py.typed --------------------------------------------------------------------------------


def test_the_installed_package_ships_py_typed() -> None:
    """PEP 561: type checkers use otree's annotations only if the package says so."""
    marker = importlib.resources.files("otree").joinpath("py.typed")
    assert marker.is_file()
    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    assert "py.typed" in pyproject["tool"]["setuptools"]["package-data"]["otree"]


def test_otree_config_offers_the_loaders_by_their_short_names() -> None:
    import otree.config
    from otree.config import loader, pytree

    assert sorted(otree.config.__all__) == ["load", "load_target", "load_tree", "loads"]
    assert otree.config.load is loader.load
    assert otree.config.loads is loader.loads
    assert otree.config.load_tree is loader.load_tree
    assert otree.config.load_target is pytree.load_target
    with pytest.raises(AttributeError):
        _ = otree.config.nothing_here  # type: ignore[attr-defined]
