"""The one shared ``__repr__`` (``otree.core.reprs``): every attrs class of otree has it,
and it writes exactly what attrs' generated repr would."""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

import attrs
from hypothesis import given, settings
from hypothesis import strategies as st

import otree
from otree.core.actions import Exit
from otree.core.reprs import attrs_repr, plain_repr
from otree.core.spec import Supervisor, walk
from otree.testing import supervisors

SKIP = ("otree.__main__",)


def otree_attrs_classes() -> list[type]:
    found = []
    for mod in pkgutil.walk_packages(otree.__path__, "otree."):
        if mod.name in SKIP:
            continue
        module = importlib.import_module(mod.name)
        for value in vars(module).values():
            if attrs.has(value) and value.__module__ == mod.name:
                found.append(value)
    return found


def test_every_attrs_class_of_otree_shares_the_one_repr() -> None:
    classes = otree_attrs_classes()
    assert len(classes) >= 40  # the specs, checks, events, actions, snapshot records, ...
    assert [c.__qualname__ for c in classes if c.__repr__ is not attrs_repr] == []


def attrs_own_repr(value: Any) -> str:
    """What attrs' generated ``__repr__`` writes for ``value``: a clone of its class with
    the same fields (and their ``repr``), built with attrs' default repr."""
    fields = attrs.fields(type(value))
    clone = attrs.make_class(
        type(value).__name__, {a.name: attrs.field(repr=a.repr) for a in fields}, frozen=True
    )
    return repr(clone(*(getattr(value, a.name) for a in fields)))


@settings(max_examples=60, deadline=None)
@given(supervisors())
def test_the_shared_repr_is_attrs_own(tree: Supervisor) -> None:
    for _, node in walk(tree):
        assert repr(node) == attrs_own_repr(node)
        for part in (getattr(node, "ready", None), getattr(node, "health", None)):
            if part is not None:
                assert repr(part) == attrs_own_repr(part)


@given(st.integers(), st.text())
def test_a_field_declared_without_repr_or_with_its_own_is_written_as_attrs_does(
    code: int, message: str
) -> None:
    assert repr(Exit(code, message)) == attrs_own_repr(Exit(code, message))

    @plain_repr
    @attrs.frozen(repr=False)
    class Local:
        shown: int
        hidden: str = attrs.field(repr=False)
        own: str = attrs.field(repr=lambda v: f"<{len(v)}>")

    value = Local(code, message, message)
    assert repr(value) == f"Local(shown={code!r}, own=<{len(message)}>)"
    assert repr(value) == attrs_own_repr(value)
