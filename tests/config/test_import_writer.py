"""The TOML writer of ``otree import``: what it writes, tomllib reads back as it was."""

from __future__ import annotations

import sys

from hypothesis import given
from hypothesis import strategies as st

from otree.config.importers.writer import Source, Table, comment, render

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

scalars = st.one_of(
    st.text(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
)
values = st.one_of(
    scalars,
    st.lists(st.text(), max_size=4),
    st.dictionaries(st.text(min_size=1), scalars, max_size=4),
)
names = st.text(min_size=1, max_size=12)


@given(
    st.dictionaries(names, values, min_size=1, max_size=5), st.lists(names, min_size=1, max_size=3)
)
def test_every_value_reads_back_the_same(entries: dict[str, object], keys: list[str]) -> None:
    root = Table((), comments=["a comment\nover two lines"])
    table = Table(tuple(keys), Source("f", 3), comments=["x" * 200])
    for k, v in entries.items():
        table.set(k, v, Source("f", 4))  # type: ignore[arg-type]
    table.notes.append("a note")
    rendered = render([root, table])
    doc = tomllib.loads(rendered.text)
    for k in keys:
        doc = doc[k]
    assert doc == entries
    header = next(n for n, line in enumerate(rendered.text.splitlines(), 1) if line.startswith("["))
    assert rendered.sources[header] == Source("f", 3)
    assert all(rendered.sources[header + i] == Source("f", 4) for i in range(1, len(entries) + 1))


def test_comments_are_wrapped_and_never_hold_a_line_break() -> None:
    lines = comment("word " * 40)
    assert len(lines) > 1 and all(len(line) <= 88 and line.startswith("#") for line in lines)
    assert comment("one\ntwo") == ["# one", "# two"]
