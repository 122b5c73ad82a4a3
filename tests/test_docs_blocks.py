"""Every Python and TOML block in README.md and docs/*.md is run or loaded here.

- A ``toml`` block is loaded with otree's own tree-file loader and must be a
  valid tree. A block that shows a bad tree on purpose is marked by the line
  ``<!-- docs-test: error -->`` right before its fence; it must be refused
  with a ``ConfigError``.
- The ``python`` blocks of one page run in order in one namespace (a later
  block may use the ``tree`` an earlier one built), as ``__name__ ==
  "docs_block"``: code under ``if __name__ == "__main__":`` (``otree.run``)
  does not run, so a block whose services need postgres only builds its tree.
  Every ``Supervisor`` a block leaves in the namespace must pass
  ``check_tree``. Every ``test_*`` function a block defines is called;
  property tests (``@given``) run with few examples (their ``@settings`` are
  replaced). A block that cannot run at all (it would ``os.execv``) is marked
  ``<!-- docs-test: compile-only -->`` and is only compiled.

The TOML of docs/comparison.md is loaded by its own test
(tests/config/test_comparison_doc.py), which checks more about it; its other
blocks, and every block of the other pages, are tested here.
"""

from __future__ import annotations

import ast
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, settings

from otree.config.loader import loads
from otree.core.spec import Supervisor, check_tree
from otree.errors import ConfigError

ROOT = Path(__file__).parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
#: pages whose TOML blocks their own tests load (and check further)
TOML_TESTED_ELSEWHERE = {"docs/comparison.md"}
MARKERS = ("error", "compile-only")
#: property tests from the docs run with this many examples
FEW = settings(
    max_examples=10,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)

FENCE = re.compile(
    r"^(?:<!-- docs-test: (?P<mark>[a-z-]+) -->\n)?```(?P<lang>\w*)\n(?P<body>.*?)^```$",
    re.S | re.M,
)


@attrs.frozen
class Block:
    page: str  # relative to the repository
    line: int  # of the opening fence
    lang: str
    mark: str | None
    body: str

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"


def blocks_of(text: str, page: str) -> Iterator[Block]:
    for m in FENCE.finditer(text):
        line = text.count("\n", 0, m.start("lang")) + 1
        yield Block(page, line, m["lang"], m["mark"], m["body"])


def all_blocks(lang: str) -> list[Block]:
    return [
        b
        for path in PAGES
        for b in blocks_of(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))
        if b.lang == lang
    ]


TOML = [b for b in all_blocks("toml") if b.page not in TOML_TESTED_ELSEWHERE]
PYTHON_PAGES = sorted({b.page for b in all_blocks("python")})


def test_blocks_are_found_and_marks_are_known() -> None:
    assert len(all_blocks("python")) >= 20
    assert len(all_blocks("toml")) >= 11
    marks = {b.mark for lang in ("python", "toml") for b in all_blocks(lang)}
    assert marks <= {None, *MARKERS}


@pytest.mark.parametrize("block", TOML, ids=lambda b: b.where)
def test_toml_block_loads_with_otrees_loader(block: Block) -> None:
    assert block.mark in (None, "error"), block.where
    if block.mark == "error":
        with pytest.raises(ConfigError):
            loads(block.body, block.where)
    else:
        assert isinstance(loads(block.body, block.where), Supervisor)


class _FewExamples(ast.NodeTransformer):
    """``@given`` tests get ``FEW`` settings in place of any ``@settings`` of their own."""

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.FunctionDef:
        def called(dec: ast.expr, name: str) -> bool:
            func = dec.func if isinstance(dec, ast.Call) else dec
            return (isinstance(func, ast.Name) and func.id == name) or (
                isinstance(func, ast.Attribute) and func.attr == name
            )

        if any(called(d, "given") for d in node.decorator_list):
            kept = [d for d in node.decorator_list if not called(d, "settings")]
            node.decorator_list = [ast.Name("__docs_settings__", ast.Load()), *kept]
        return node


def run_block(block: Block, namespace: dict[str, Any]) -> list[str]:
    """Run ``block`` in ``namespace``; call the tests it defines; return their names."""
    if block.mark == "compile-only":
        compile(block.body, block.where, "exec")
        return []
    assert block.mark is None, block.where
    module = ast.fix_missing_locations(_FewExamples().visit(ast.parse(block.body, block.where)))
    before = set(namespace)
    exec(compile(module, block.where, "exec"), namespace)
    for value in namespace.values():
        if isinstance(value, Supervisor):
            check_tree(value)
    tests = sorted(n for n in set(namespace) - before if n.startswith("test_"))
    for name in tests:
        namespace[name]()
    return tests


@pytest.mark.parametrize("page", PYTHON_PAGES)
def test_python_blocks_of_the_page_run(
    page: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # a block that writes a file writes it here
    namespace: dict[str, Any] = {"__name__": "docs_block", "__docs_settings__": FEW}
    ran = []
    for block in (b for b in all_blocks("python") if b.page == page):
        ran += run_block(block, namespace)
    assert os.getcwd() == str(tmp_path)
    if page == "README.md":
        assert ran == ["test_web_crashes_never_restart_the_db"]


def test_the_readme_property_test_says_what_it_means() -> None:
    """Crashing only the web services, the db is never restarted; crashing all, it is."""
    namespace: dict[str, Any] = {"__name__": "docs_block", "__docs_settings__": FEW}
    readme = [b for b in all_blocks("python") if b.page == "README.md"]
    run_block(readme[0], namespace)
    from otree.testing import simulate

    tree = namespace["tree"]
    assert simulate(tree, [(1.0, "db", "crash")]).count("spawn", "db") == 2
    assert simulate(tree, [(1.0, "web.api", "crash")]).count("spawn", "db") == 1


def test_the_settings_rewrite_replaces_settings_and_keeps_given() -> None:
    source = "@settings(max_examples=200)\n@given(x)\ndef test_a(s):\n    pass\n"
    module = _FewExamples().visit(ast.parse(source))
    decorators = [ast.unparse(d) for d in module.body[0].decorator_list]
    assert decorators == ["__docs_settings__", "given(x)"]


def test_marks_are_read_from_the_line_before_the_fence() -> None:
    text = "x\n<!-- docs-test: error -->\n```toml\n[a]\n```\n\n```python\npass\n```\n"
    found = list(blocks_of(text, "p.md"))
    assert [(b.lang, b.mark, b.line, b.body) for b in found] == [
        ("toml", "error", 3, "[a]\n"),
        ("python", None, 7, "pass\n"),
    ]
