"""The core's row of the layer rule, checked by running it: ``otree.core`` is pure.

It imports no OS module and nothing of otree outside ``otree.core`` except
``otree.errors`` (docs/architecture.md "The import rule"). ``tests/test_layers.py``
checks every package's imports in the source; here every ``otree.core``
module is imported in a fresh interpreter whose meta path refuses the
forbidden modules, and the AST walk that lists the core's dependencies for
that interpreter is itself tested.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import otree.core

CORE = Path(otree.core.__file__).parent
FORBIDDEN = ("os", "signal", "socket", "subprocess", "select", "selectors", "time", "threading")
ALLOWED_OTREE = ("otree.core", "otree.errors")


def core_files() -> list[Path]:
    return sorted(CORE.rglob("*.py"))


def module_name(path: Path) -> str:
    rel = path.relative_to(CORE.parent.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_names(path: Path) -> list[tuple[int, str]]:
    """Every module ``path`` imports, absolute, with the line it is imported on."""
    package = module_name(path)
    if path.name != "__init__.py":
        package = package.rpartition(".")[0]
    return imports_in(path.read_text(encoding="utf-8"), package)


def imports_in(source: str, package: str) -> list[tuple[int, str]]:
    """Every module ``source`` (a module of ``package``) imports, with its line."""
    out: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join([*base, node.module] if node.module else base)
            else:
                mod = node.module or ""
            if mod == "otree":  # ``from otree import errors`` imports otree.errors
                out.extend((node.lineno, f"otree.{alias.name}") for alias in node.names)
            else:
                out.append((node.lineno, mod))
        elif isinstance(node, ast.Call) and isinstance(node.func, (ast.Name, ast.Attribute)):
            name = node.func.id if isinstance(node.func, ast.Name) else node.func.attr
            if name in ("__import__", "import_module") and node.args:
                arg = node.args[0]
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    out.append((node.lineno, arg.value))
                else:
                    out.append((node.lineno, "<dynamic import>"))
    return out


def violation(name: str) -> str | None:
    top = name.split(".")[0]
    if name == "<dynamic import>":
        return "a dynamic import cannot be checked"
    if top in FORBIDDEN:
        return f"imports the OS module {top!r}"
    if top == "otree" and name != "otree":
        if not any(name == a or name.startswith(a + ".") for a in ALLOWED_OTREE):
            return f"imports {name!r}, outside otree.core (only otree.errors is allowed)"
    if name == "otree":
        return "imports the otree package itself (its __init__ is outside otree.core)"
    return None


def test_core_has_the_expected_modules() -> None:
    names = {p.stem for p in core_files()}
    assert {
        "spec",
        "events",
        "actions",
        "intensity",
        "engine",
        "node",
        "service",
        "supervisor",
        "snapshot",
        "rules",
    } <= names


def test_the_ast_check_catches_what_it_should() -> None:
    """The checker itself: each forbidden form is caught, the allowed ones pass."""
    assert violation("os.path") is not None
    assert violation("selectors") is not None
    assert violation("otree.runtime.driver") is not None
    assert violation("otree.testing._simulator") is not None
    assert violation("otree") is not None
    assert violation("<dynamic import>") is not None


@pytest.mark.parametrize(
    ("source", "names"),
    [
        ("import os.path", ["os.path"]),
        ("from otree import errors, runtime", ["otree.errors", "otree.runtime"]),
        ("from . import spec", ["otree.core"]),
        ("from ..errors import Issue", ["otree.errors"]),
        ("from .. import runtime", ["otree.runtime"]),
        ("if TYPE_CHECKING:\n    import socket", ["socket"]),
        ("def f():\n    import time", ["time"]),
        ("import importlib\nimportlib.import_module('select')", ["importlib", "select"]),
        ("__import__(name)", ["<dynamic import>"]),
    ],
)
def test_the_ast_walk_finds_every_import(source: str, names: list[str]) -> None:
    assert [name for _, name in imports_in(source, "otree.core")] == names
    assert violation("otree.errors") is None
    assert violation("otree.core.spec") is None
    assert violation("attrs") is None
    assert violation("random") is None


BLOCKER = textwrap.dedent(
    """
    import importlib, importlib.abc, pkgutil, sys

    FORBIDDEN = set({forbidden!r})
    ALLOWED = {allowed!r}

    class Refuse(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            top = name.split(".")[0]
            if top in FORBIDDEN:
                raise ImportError(f"otree.core imported the forbidden module {{name!r}}")
            if top == "otree" and name not in ("otree",) and not any(
                name == a or name.startswith(a + ".") for a in ALLOWED
            ):
                raise ImportError(f"otree.core imported {{name!r}}, outside otree.core")
            return None

    # what otree.core may use from outside is loaded first (it may use the OS
    # modules itself); then the OS modules are forgotten, so that an import of
    # one from otree.core has to go through the finder again
    for dep in {deps!r}:
        importlib.import_module(dep)
    for mod in list(sys.modules):
        if mod.split(".")[0] in FORBIDDEN or mod.split(".")[0] == "otree":
            del sys.modules[mod]
    sys.meta_path.insert(0, Refuse())

    # the otree package's __init__ may import anything: load an empty stand-in
    import types
    pkg = types.ModuleType("otree")
    pkg.__path__ = [{otree_dir!r}]
    sys.modules["otree"] = pkg

    import otree.core
    names = sorted(m.name for m in pkgutil.iter_modules(otree.core.__path__, "otree.core."))
    for name in names:
        importlib.import_module(name)
    print(" ".join(names))
    """
)


def blocker(extra: str = "") -> str:
    """The blocking script; ``extra`` is imported after the hook is in place."""
    deps = sorted(
        {
            name.split(".")[0]
            for path in core_files()
            for _, name in imported_names(path)
            if violation(name) is None and name.split(".")[0] not in ("otree", "__future__")
        }
    )
    code = BLOCKER.format(
        forbidden=FORBIDDEN, allowed=ALLOWED_OTREE, otree_dir=str(CORE.parent), deps=deps
    )
    return code.replace("import otree.core\n", f"{extra}import otree.core\n")


def test_every_core_module_imports_with_os_modules_blocked() -> None:
    code = blocker()
    proc = subprocess.run(
        [sys.executable, "-I", "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=str(CORE.parent.parent),
    )
    assert proc.returncode == 0, proc.stderr
    imported = set(proc.stdout.split())
    assert {module_name(p) for p in core_files() if p.name != "__init__.py"} <= imported


def test_the_blocker_refuses_a_forbidden_import() -> None:
    """The meta-path hook really blocks: importing ``time`` through it fails."""
    code = blocker(extra="import time\n")
    proc = subprocess.run(
        [sys.executable, "-I", "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=str(CORE.parent.parent),
    )
    assert proc.returncode != 0
    assert "forbidden module 'time'" in proc.stderr
