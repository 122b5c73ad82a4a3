"""docs/tree-file.md stays true: its TOML is valid and its first example prints as shown."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from otree.config.loader import loads
from otree.config.render import render_tree
from otree.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

DOC = (Path(__file__).parents[2] / "docs" / "tree-file.md").read_text()
BLOCKS = re.findall(r"```(\w*)\n(.*?)```", DOC, re.S)


def test_every_toml_block_is_valid_toml() -> None:
    toml_blocks = [body for lang, body in BLOCKS if lang == "toml"]
    assert len(toml_blocks) >= 6
    for body in toml_blocks:
        tomllib.loads(body)


def test_first_example_prints_the_picture_shown() -> None:
    example = next(body for lang, body in BLOCKS if lang == "toml")
    picture = next(
        body for lang, body in BLOCKS if body.startswith("$ otree check tree.toml\nroot")
    )
    # the run shown is of /srv/myapp/tree.toml: its relative cwd is /srv/myapp
    tree = loads(example, "/srv/myapp/tree.toml")
    assert picture == "$ otree check tree.toml\n" + render_tree(tree) + "\n"


def test_service_example_loads() -> None:
    worker = next(body for lang, body in BLOCKS if lang == "toml" and "[worker]" in body)
    tree = loads(worker)
    assert tree.children[0].cmd == (  # type: ignore[union-attr]
        "python", "-m", "myapp.worker", "--queue", "high priority",
    )  # fmt: skip


def test_the_bad_tree_prints_the_errors_shown() -> None:
    """The "Errors" example: the tree marked as an error, and what ``otree check`` says of it."""
    (bad,) = re.findall(r"<!-- docs-test: error -->\n```toml\n(.*?)```", DOC, re.S)
    shown = next(body for lang, body in BLOCKS if body.startswith("$ otree check tree.toml\notree"))
    with pytest.raises(ConfigError) as caught:
        loads(bad, "tree.toml")
    said = [f"otree: {issue}" for issue in caught.value.issues]
    assert shown.splitlines()[1 : 1 + len(said)] == said
    assert shown.splitlines()[1 + len(said) :] == ["$ echo $?", "2"]
