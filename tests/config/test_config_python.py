"""Trees declared in Python: ``file.py:attr`` and ``module:attr``, good and bad."""

from __future__ import annotations

import itertools
import sys
import textwrap
from pathlib import Path

import pytest

from otree.config.loader import load_target, load_tree
from otree.core.spec import Service, Supervisor
from otree.errors import ConfigError

TREE_PY = """\
from otree.core.spec import Service, Supervisor

tree = Supervisor("root", strategy="rest_for_one", children=[
    Service("db", cmd=["postgres", "-D", "data"]),
    Supervisor("web", strategy="one_for_all", intensity=5, period=10, children=[
        Service("api", target="myapp.api:main"),
    ]),
])

class trees:
    main = tree
"""

EXPECTED = Supervisor(
    "root",
    strategy="rest_for_one",
    children=[
        Service("db", cmd=["postgres", "-D", "data"]),
        Supervisor(
            "web",
            strategy="one_for_all",
            intensity=5,
            period=10,
            children=[Service("api", target="myapp.api:main")],
        ),
    ],
)

_names = itertools.count()


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run in tmp_path; sys.path and sys.modules are put back afterwards."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setattr(sys, "modules", dict(sys.modules))
    return tmp_path


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))


def package(root: Path, text: str) -> str:
    """A fresh package holding module ``tree`` with ``text``; returns 'pkgN.tree'."""
    name = f"otree_test_pkg{next(_names)}"
    write(root / name / "__init__.py", "")
    write(root / name / "tree.py", text)
    return f"{name}.tree"


def message(spec: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_target(spec)
    return str(info.value)


# --- good --------------------------------------------------------------------------


def test_file_attr(workdir: Path) -> None:
    write(workdir / "app" / "tree.py", TREE_PY)
    assert load_target("app/tree.py:tree") == EXPECTED
    assert load_tree("app/tree.py:tree") == EXPECTED


def test_file_dotted_attr(workdir: Path) -> None:
    write(workdir / "tree.py", TREE_PY)
    assert load_target("tree.py:trees.main") == EXPECTED


def test_file_can_import_its_neighbours(workdir: Path) -> None:
    write(
        workdir / "app" / "services.py",
        'from otree.core.spec import Service\nDB = Service("db", cmd="x")\n',
    )
    write(
        workdir / "app" / "tree.py",
        "from otree.core.spec import Supervisor\nfrom services import DB\n"
        'tree = Supervisor("root", children=[DB])\n',
    )
    assert load_target("app/tree.py:tree") == Supervisor("root", children=[Service("db", cmd="x")])


def test_module_attr_from_current_directory(workdir: Path) -> None:
    module = package(workdir, TREE_PY)
    assert load_target(f"{module}:tree") == EXPECTED
    assert load_tree(f"{module}:trees.main") == EXPECTED


def test_main_guard_is_not_run(workdir: Path) -> None:
    write(workdir / "tree.py", TREE_PY + 'if __name__ == "__main__":\n    raise SystemExit(9)\n')
    assert load_target("tree.py:tree") == EXPECTED


# --- bad --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("tree.py", "expected FILE.py:ATTR or MODULE:ATTR, got 'tree.py'"),
        (":tree", "expected FILE.py:ATTR or MODULE:ATTR, got ':tree'"),
        ("tree.py:", "expected FILE.py:ATTR or MODULE:ATTR, got 'tree.py:'"),
        ("tree.py:1x", "'1x' is not a Python name (in 'tree.py:1x')"),
        ("my-app:tree", "'my-app' is neither a .py file nor a module name (in 'my-app:tree')"),
        ("missing.py:tree", "missing.py: cannot read the tree file: No such file or directory"),
        (
            "otree_no_such_module:tree",
            "cannot import module 'otree_no_such_module': No module named 'otree_no_such_module'",
        ),
    ],
)
def test_bad_spec(workdir: Path, spec: str, expected: str) -> None:
    assert message(spec) == expected


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (
            "x = 1\ntree = 1 / 0\n",
            "tree.py:2: error while importing: ZeroDivisionError: division by zero",
        ),
        (
            "def f():\n    raise KeyError('k')\n\nf()\n",
            "tree.py:2: error while importing: KeyError: 'k'",
        ),
        (
            "import otree_not_installed_anywhere\n",
            "tree.py:1: error while importing: ModuleNotFoundError: "
            "No module named 'otree_not_installed_anywhere'",
        ),
        ("tree = (\n", "tree.py:1: SyntaxError: '(' was never closed"),
        (
            "import sys\nsys.exit(3)\n",
            "tree.py:2: exited while being imported (SystemExit: 3); "
            "call otree.run() under: if __name__ == '__main__'",
        ),
        (
            "from otree.core.spec import Service, Supervisor\n\n"
            "tree = Supervisor('root', children=[\n"
            "    Service('api', cmd='x', restart='permanet', shutdown=-1),\n"
            "])\n",
            "tree.py:4: api.restart: 'permanet' is not one of permanent, transient, temporary\n"
            "tree.py:4: api.shutdown: expected seconds >= 0, 'brutal_kill' or 'infinity', got -1",
        ),
        ("x = 1\n", "tree.py: has no attribute 'tree'"),
        ("tree = 42\n", "tree.py: 'tree' is a int, not an otree Supervisor"),
        (
            "from otree.core.spec import Service\ntree = Service('api', cmd='x')\n",
            "tree.py: 'tree' is a Service; a tree's root is a Supervisor: "
            "Supervisor('root', children=[tree])",
        ),
        (
            "from otree.core.spec import Service, Supervisor\n"
            "tree = Supervisor('root', children=[Service('a', cmd='x'), Service('a', cmd='y'),"
            " Service('b')])\n",
            "tree.py: a: duplicate name 'a' under the same supervisor\n"
            "tree.py: b: a service needs 'cmd' or 'target'",
        ),
    ],
    ids=[
        "exception",
        "exception-in-function",
        "missing-import",
        "syntax-error",
        "sys-exit",
        "spec-rejected",
        "no-attribute",
        "not-a-supervisor",
        "a-service",
        "check-tree",
    ],
)
def test_bad_file(workdir: Path, source: str, expected: str) -> None:
    write(workdir / "tree.py", source)
    assert message("tree.py:tree") == expected


def test_bad_module_names_its_file(workdir: Path) -> None:
    module = package(workdir, "x = 1\nraise RuntimeError('no database')\n")
    file = str(workdir / module.replace(".", "/")) + ".py"
    assert message(f"{module}:tree") == (
        f"{file}:2: error while importing: RuntimeError: no database"
    )


def test_module_missing_attribute(workdir: Path) -> None:
    module = package(workdir, "x = 1\n")
    file = str(workdir / module.replace(".", "/")) + ".py"
    assert message(f"{module}:tree") == f"{file}: has no attribute 'tree'"


def test_module_with_missing_dependency_is_not_called_missing(workdir: Path) -> None:
    module = package(workdir, "import otree_not_installed_anywhere\n")
    file = str(workdir / module.replace(".", "/")) + ".py"
    assert message(f"{module}:tree") == (
        f"{file}:1: error while importing: ModuleNotFoundError: "
        "No module named 'otree_not_installed_anywhere'"
    )


def test_failed_import_leaves_no_half_module(workdir: Path) -> None:
    write(workdir / "tree.py", "raise ValueError('x')\n")
    before = set(sys.modules)
    with pytest.raises(ConfigError):
        load_target("tree.py:tree")
    assert set(sys.modules) == before
