"""The import rule: who may import whom, one row per package (docs/architecture.md).

Every ``import`` in every file under ``otree/`` (wherever it sits: in a function,
under ``if TYPE_CHECKING:``) is checked against the table below. A row names a
layer, the otree layers it may import at run time, those it may import for
types only (under ``TYPE_CHECKING``), the standard modules it must not touch,
and why. Two more rules hold everywhere: nothing outside a package imports a
private name (``_x``) or a private module of it, and the table itself has no
cycle, so the packages have none either. ``tests/core/test_layering.py`` adds
the dynamic half of the core's row: its modules import with the OS modules
blocked.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import NamedTuple

import pytest

import otree

OTREE = Path(otree.__file__).parent
OS_MODULES = ("os", "signal", "socket", "subprocess", "select", "selectors", "time", "threading")


class Layer(NamedTuple):
    may_import: frozenset[str]
    types_only: frozenset[str]
    forbidden_stdlib: tuple[str, ...]
    why: str


def _layer(imports: str, why: str, types_only: str = "", forbidden: tuple[str, ...] = ()) -> Layer:
    return Layer(frozenset(imports.split()), frozenset(types_only.split()), forbidden, why)


# layer -> what it may import. A layer is a package (``core``) or a top-level module
# (``launch``); ``__init__`` is the public surface ``otree`` itself.
LAYERS: dict[str, Layer] = {
    "core": _layer(
        "errors",
        "the core is pure: events in, actions out, no OS access, nothing but errors",
        forbidden=OS_MODULES,
    ),
    "errors": _layer("", "errors is the bottom layer: everything may import it"),
    "paths": _layer(
        "", "the rule for paths otree writes as root: stdlib only, for config and runtime"
    ),
    "config": _layer(
        "core errors paths", "config turns tree sources into specs; it starts nothing"
    ),
    "testing": _layer(
        "core errors", "the simulator drives the same core as the runtime, with no OS"
    ),
    "runtime": _layer(
        "core errors paths", "the runtime carries out actions; reload and control build on it"
    ),
    "control": _layer(
        "core errors", "the control socket serves a runtime it is given", types_only="runtime"
    ),
    "reload": _layer(
        "runtime control config core errors",
        "self-reload builds on the runtime and the control socket, never the reverse",
    ),
    "launch": _layer(
        "runtime control reload config core errors",
        "launch is the one place that wires runtime, control and reload",
    ),
    "cli": _layer(
        "launch config control errors runtime.output testing _version",
        "the command line goes through launch, config and the control client"
        " (and prints `otree logs` with the console's own line prefixes, runtime.output;"
        " `otree simulate` runs the public simulator, testing)",
        types_only="core",
    ),
    "__init__": _layer(
        "core config launch errors reload.bootstrap",
        "the public surface re-exports; it has no logic (but arms the re-exec bootstrap,"
        " stdlib only, before anything else can fail)",
    ),
    "__main__": _layer("cli", "python -m otree is the otree command"),
    "_target": _layer("", "_target runs in every target child: it imports nothing of otree"),
    "_version": _layer("", "the version, written once: it imports nothing"),
}


def layer_of(module: str) -> str:
    """``otree.runtime.loop`` -> ``runtime``; ``otree`` -> ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


class Import(NamedTuple):
    line: int
    module: str
    names: tuple[str, ...]
    types_only: bool


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_in(source: str, package: str) -> list[Import]:
    """Every import in ``source`` (a module of ``package``), absolute, with its context."""
    out: list[Import] = []

    def visit(node: ast.AST, types_only: bool) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.body:
                visit(child, True)
            for child in node.orelse:
                visit(child, types_only)
            return
        if isinstance(node, ast.Import):
            out.extend(Import(node.lineno, a.name, (), types_only) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join([*base, node.module] if node.module else base)
            else:
                mod = node.module or ""
            names = tuple(a.name for a in node.names)
            if mod == "otree":  # ``from otree import errors`` may name modules
                for name in names:
                    out.append(Import(node.lineno, f"otree.{name}", (), types_only))
            else:
                out.append(Import(node.lineno, mod, names, types_only))
        for child in ast.iter_child_nodes(node):
            visit(child, types_only)

    visit(ast.parse(source), False)
    return out


def module_of(path: Path) -> str:
    rel = path.relative_to(OTREE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def otree_files() -> list[Path]:
    return sorted(OTREE.rglob("*.py"))


def problems_of(module: str, imports: list[Import]) -> list[str]:
    """What is wrong with ``module``'s imports, by the table (empty when nothing is)."""
    here = layer_of(module)
    row = LAYERS[here]
    found: list[str] = []
    for imp in imports:
        top = imp.module.split(".")[0]
        if top in row.forbidden_stdlib:
            found.append(f"{imp.line}: imports {imp.module!r}: {row.why}")
            continue
        if top != "otree":
            continue
        if imp.module == "otree":
            if here != "__init__":
                found.append(f"{imp.line}: imports the otree package itself: {row.why}")
            continue
        there = layer_of(imp.module)
        if imp.module.removeprefix("otree.") in row.may_import:  # one module, by name
            there = here
        if there != here:
            allowed = row.may_import | (row.types_only if imp.types_only else frozenset())
            if there not in allowed:
                kind = "for types " if there in row.types_only else ""
                found.append(
                    f"{imp.line}: imports {imp.module!r} {kind}: {row.why}".replace(" :", ":")
                )
                continue
            private = [n for n in imp.names if n.startswith("_") and n != "__version__"]
            private_mod = [p for p in imp.module.split(".")[2:] if p.startswith("_")]
            if (private or private_mod) and here != "__init__":
                found.append(
                    f"{imp.line}: imports private {', '.join(private + private_mod)} "
                    f"of {imp.module!r} from outside its package"
                )
    return found


@pytest.mark.parametrize("path", otree_files(), ids=lambda p: str(p.relative_to(OTREE)))
def test_every_module_imports_only_what_its_layer_may(path: Path) -> None:
    module = module_of(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    assert layer_of(module) in LAYERS, f"{module}: a layer the table does not know"
    assert problems_of(module, imports_in(path.read_text(encoding="utf-8"), package)) == []


def test_the_table_has_no_cycle() -> None:
    """Layers depend on layers below them only, so no two packages import each other."""
    order: list[str] = []
    seen: set[str] = set()

    def place(layer: str, path: tuple[str, ...]) -> None:
        assert layer not in path, f"import cycle: {' -> '.join((*path, layer))}"
        if layer in seen:
            return
        row = LAYERS[layer]
        for dep in sorted({d.split(".")[0] for d in row.may_import | row.types_only}):
            place(dep, (*path, layer))
        seen.add(layer)
        order.append(layer)

    for layer in LAYERS:
        place(layer, ())
    assert order[0] == "errors"


def test_every_package_has_a_row() -> None:
    packages = {p.name for p in OTREE.iterdir() if (p / "__init__.py").exists()}
    modules = {p.stem for p in OTREE.glob("*.py")}
    assert packages | modules == set(LAYERS)


@pytest.mark.parametrize(
    ("module", "source", "problem"),
    [
        ("otree.core.engine", "import os", "imports 'os': the core is pure"),
        ("otree.core.engine", "from otree.runtime import loop", "imports 'otree.runtime'"),
        ("otree.runtime.driver", "from otree.reload import reloader", "imports 'otree.reload'"),
        ("otree.runtime.driver", "if TYPE_CHECKING:\n    import otree.reload", "otree.reload"),
        ("otree.control.server", "def f():\n    from otree.runtime.driver import X", "runtime"),
        ("otree.cli.main", "from otree.config.loader import _converter", "private _converter"),
        ("otree.cli.main", "from otree.config._scan import Keys", "private _scan"),
        ("otree.cli.main", "from otree.reload import reloader", "imports 'otree.reload'"),
        ("otree._target", "from otree.errors import OtreeError", "imports nothing of otree"),
        ("otree.errors", "from .core import spec", "imports 'otree.core'"),
    ],
)
def test_the_checker_catches_what_it_should(module: str, source: str, problem: str) -> None:
    package = module.rpartition(".")[0]
    found = problems_of(module, imports_in(source, package))
    assert len(found) == 1 and problem in found[0], found


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("otree.control.server", "if TYPE_CHECKING:\n    from otree.runtime.driver import X"),
        ("otree.reload.reloader", "from otree.runtime.driver import Runtime"),
        ("otree.runtime.driver", "from otree.runtime.loop import _pidfd_open"),
        ("otree.testing", "from otree.testing._simulator import Trace"),
        ("otree.core.engine", "import random\nfrom . import spec"),
    ],
)
def test_the_checker_lets_pass_what_it_should(module: str, source: str) -> None:
    package = module if module == "otree" else module.rpartition(".")[0]
    assert problems_of(module, imports_in(source, package)) == []


def private_reaches(source: str) -> list[str]:
    """``x._name`` where ``x`` is not ``self``, ``cls`` or ``other``: a reach into another object.

    (``other`` is the other operand of a comparison, an object of the same class.)
    """
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Attribute):
            continue
        name = node.attr
        if not name.startswith("_") or name.startswith("__") or name == "_exit":
            continue
        if isinstance(node.value, ast.Name) and node.value.id in (
            "self",
            "cls",
            "other",
            "sys",
            "os",
        ):
            continue
        found.append(f"{node.lineno}: {ast.unparse(node)}")
    return sorted(found)


@pytest.mark.parametrize("path", otree_files(), ids=lambda p: str(p.relative_to(OTREE)))
def test_no_module_reaches_into_private_attributes(path: Path) -> None:
    """An object's private state is its own: others use its public surface."""
    assert private_reaches(path.read_text(encoding="utf-8")) == []


def test_the_reach_check_catches_what_it_should() -> None:
    assert private_reaches("rt._queue.append(e)\nself.x._y\nself._z\nos._exit(1)") == [
        "1: rt._queue",
        "2: self.x._y",
    ]
