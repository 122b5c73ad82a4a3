"""Tree sources -> specs: TOML files (file, line and key path in every error) and Python trees.

Loading starts nothing. The public names, loaded on first use (PEP 562):
``load(path)`` reads a tree file, ``loads(text, file)`` a tree file's text,
``load_target("app/tree.py:tree")`` a tree declared in Python, and
``load_tree(arg)`` any of the three forms a command line can name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from otree.config.loader import load, load_tree, loads
    from otree.config.pytree import load_target

_HOMES = {
    "load": "otree.config.loader",
    "loads": "otree.config.loader",
    "load_tree": "otree.config.loader",
    "load_target": "otree.config.pytree",
}

__all__ = ["load", "load_target", "load_tree", "loads"]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(home), name)
