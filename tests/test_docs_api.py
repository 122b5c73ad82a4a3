"""docs/api.md documents every public name of ``otree`` and ``otree.testing``, and all of it.

The page has a ``## `otree` `` and a ``## `otree.testing` `` section; each public
name (each name in the package's ``__all__``) has a ``### `name` `` heading
in its package's section, and nothing else does. Within a name's entry, every
field of a spec class, every member of an enum and every parameter of a
function or constructor is written in code (between backticks).
"""

from __future__ import annotations

import enum
import inspect
import re
import types
from pathlib import Path
from typing import Any

import attrs
import pytest

import otree
import otree.testing

DOC = (Path(__file__).parents[1] / "docs" / "api.md").read_text(encoding="utf-8")
PACKAGES: dict[str, types.ModuleType] = {"otree": otree, "otree.testing": otree.testing}


def sections(text: str, level: str) -> dict[str, str]:
    """``{heading: body}`` of the headings ``level`` (``##``) whose title is one code span."""
    parts = re.split(rf"^{level} `([^`]+)`\n", text, flags=re.M)
    found: dict[str, str] = {}
    for title, body in zip(parts[1::2], parts[2::2], strict=True):
        assert title not in found, f"{title!r} is documented twice"
        # a section ends where the next heading of its level or above starts
        found[title] = re.split(rf"^#{{1,{len(level)}}} ", body, flags=re.M)[0]
    return found


PACKAGE_SECTIONS = sections(DOC, "##")
ENTRIES: dict[str, dict[str, str]] = {
    package: sections(PACKAGE_SECTIONS.get(package, ""), "###") for package in PACKAGES
}


def code_words(text: str) -> set[str]:
    """Every identifier written in code (``...``) in ``text``, with dotted tails split."""
    spans = re.findall(r"`([^`]+)`", text)
    return {word for span in spans for word in re.findall(r"[A-Za-z_][A-Za-z0-9_]*", span)}


def documented(package: str, name: str) -> str:
    entry = ENTRIES[package].get(name)
    assert entry is not None, f"{package}.{name} has no '### `{name}`' entry in docs/api.md"
    return entry


def parameters(obj: Any) -> list[str]:
    """The parameters a user passes to ``obj`` (a function or a class's constructor)."""
    target = obj.__init__ if inspect.isclass(obj) else obj
    names = []
    for param in inspect.signature(target).parameters.values():
        if param.name == "self" or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        if param.name.startswith("_"):  # a private parameter, for the package's own callers
            continue
        names.append(param.name)
    return names


def public(package: str) -> list[tuple[str, str]]:
    return [(package, name) for name in PACKAGES[package].__all__]


ALL_PUBLIC = [item for package in PACKAGES for item in public(package)]


def test_the_page_has_one_section_per_package() -> None:
    assert set(PACKAGES) <= set(PACKAGE_SECTIONS)


@pytest.mark.parametrize("package", PACKAGES)
def test_each_package_section_documents_exactly_its_public_names(package: str) -> None:
    assert sorted(ENTRIES[package]) == sorted(PACKAGES[package].__all__)


@pytest.mark.parametrize(("package", "name"), ALL_PUBLIC, ids=lambda v: v)
def test_every_field_member_and_parameter_is_written_down(package: str, name: str) -> None:
    entry = documented(package, name)
    words = code_words(entry)
    obj = getattr(PACKAGES[package], name)
    if inspect.isclass(obj) and attrs.has(obj):
        wanted = [field.name for field in attrs.fields(obj)]
    elif inspect.isclass(obj) and issubclass(obj, enum.Enum):
        wanted = [member.name for member in obj]
    elif inspect.isclass(obj) and getattr(obj, "_is_protocol", False):
        methods = [n for n, v in vars(obj).items() if inspect.isfunction(v) and n[0] != "_"]
        wanted = [*obj.__annotations__, *methods]
    elif inspect.isclass(obj) and not issubclass(obj, BaseException):
        wanted = parameters(obj)
    elif inspect.isfunction(obj) or inspect.ismethod(obj):
        wanted = parameters(obj)
    else:  # a constant or a type alias: the entry is enough
        wanted = []
    missing = [w for w in wanted if w not in words]
    assert missing == [], f"{package}.{name}: not written in code in its entry: {missing}"


def test_the_checker_sees_what_is_missing() -> None:
    """The parsing itself: a name without its own heading, or a field not in code, is caught."""
    page = "## `otree`\n\n### `Log`\n\n`Log(file=None)` and max_bytes\n\n## `other`\n\n### `x`\n"
    entries = sections(sections(page, "##")["otree"], "###")
    assert list(entries) == ["Log"]
    assert "file" in code_words(entries["Log"])
    assert "max_bytes" not in code_words(entries["Log"])
