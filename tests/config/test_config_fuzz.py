"""Random TOML documents with otree-like keys and values.

Whatever the document, loading gives a valid Supervisor or a ConfigError whose
issues all name the file (never another exception); and the line scanner finds
every key exactly where the generator wrote it.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from support.treefiles import toml_key, toml_value

from otree.config.keylines import KeyLines
from otree.config.loader import loads
from otree.config.render import render_tree
from otree.core.spec import SERVICE_FIELDS, SUPERVISOR_FIELDS, Supervisor, check_tree
from otree.errors import ConfigError

FIELD_KEYS = (
    *SERVICE_FIELDS,
    *SUPERVISOR_FIELDS,
    *("delay", "tcp", "notify", "timeout", "interval"),
    *("initial", "max", "factor", "reset_after", "jitter", "file", "max_bytes", "backups"),
    *("restrat", "cmnd", "name", "children", "PORT"),
)
CHILD_KEYS = ("api", "db", "web", "x", "a-b", "my api", "a.b")
WORDS = (
    "permanent", "transient", "temporary", "one_for_one", "one_for_all", "rest_for_one",
    "never", "any_significant", "all_significant", "brutal_kill", "infinity", "TERM", "SIGINT",
    "x:y", "myapp.api:main", "127.0.0.1:5432", "localhost", "echo hi", "", "'", "a b 'c",
)  # fmt: skip

keys = st.sampled_from(FIELD_KEYS + CHILD_KEYS)
scalars: st.SearchStrategy[Any] = st.one_of(
    st.integers(-5, 300),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(WORDS),
    st.text(st.characters(exclude_categories=("Cs",)), max_size=6),
    st.booleans(),
    st.lists(st.one_of(st.sampled_from(WORDS), st.integers(-1, 300)), max_size=3),
)

#: anything at all made of otree-like keys and values
wild_tables = st.recursive(
    st.dictionaries(keys, scalars, max_size=4),
    lambda inner: st.dictionaries(
        keys, st.one_of(scalars, inner, st.lists(inner, max_size=2)), max_size=5
    ),
    max_leaves=25,
)


def valid_or(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly a valid value, sometimes anything."""
    return st.one_of(valid, valid, valid, valid, valid, valid, scalars)


services = st.fixed_dictionaries(
    {"cmd": valid_or(st.sampled_from(["echo hi", ["sleep", "1"], "sh -c 'exit 1'"]))},
    optional={
        "restart": valid_or(st.sampled_from(["permanent", "transient", "temporary"])),
        "significant": valid_or(st.booleans()),
        "shutdown": valid_or(st.one_of(st.floats(0, 10), st.just("brutal_kill"))),
        "stop_signal": valid_or(st.sampled_from(["TERM", "INT", "SIGHUP"])),
        "normal_exit_codes": valid_or(st.lists(st.integers(0, 255), max_size=3)),
        "env": valid_or(st.dictionaries(st.sampled_from(["A", "PORT"]), st.sampled_from(["1"]))),
        "ready": valid_or(
            st.sampled_from(
                [{"delay": 1}, {"tcp": "h:1", "timeout": 3}, {"notify": True}, {"cmd": "true"}]
            )
        ),
        "backoff": valid_or(
            st.fixed_dictionaries({}, optional={"initial": st.floats(0, 1), "max": st.floats(1, 9)})
        ),
        "log": valid_or(st.fixed_dictionaries({}, optional={"file": st.just("x.log")})),
    },
)
supervisor_fields = st.fixed_dictionaries(
    {},
    optional={
        "strategy": valid_or(st.sampled_from(["one_for_one", "one_for_all", "rest_for_one"])),
        "intensity": valid_or(st.integers(0, 5)),
        "period": valid_or(st.floats(0.1, 60)),
        "auto_shutdown": valid_or(st.sampled_from(["never", "any_significant"])),
    },
)
child_names = st.sampled_from(["api", "db", "web", "worker", "a-b", "x_1"])


def with_children(node: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.builds(
        lambda fields, children: {**fields, **children},
        supervisor_fields,
        st.dictionaries(child_names, node, min_size=1, max_size=3),
    )


#: trees that are often valid, so that the success path is exercised too
plausible_roots = with_children(st.recursive(services, with_children, max_leaves=8))
tables = st.one_of(wild_tables, plausible_roots)


def serialize(doc: dict[str, Any], draw: st.DataObject) -> tuple[str, dict[tuple[str, ...], int]]:
    """TOML text for ``doc`` and the line of every key path it writes."""
    out: list[str] = []
    where: dict[tuple[str, ...], int] = {}

    def record_inline(path: tuple[str, ...], value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                where[(*path, k)] = len(out)
                record_inline((*path, k), v)

    def table(path: tuple[str, ...], body: dict[str, Any]) -> None:
        headers = []
        for k, v in body.items():
            if isinstance(v, dict) and not draw.draw(st.booleans(), label="inline"):
                headers.append((k, v))
                continue
            out.append(f"{toml_key(k)} = {toml_value(v)}")
            where[(*path, k)] = len(out)
            record_inline((*path, k), v)
            if draw.draw(st.booleans(), label="comment"):
                out.append("# key = 1 [table]")
        for k, v in headers:
            out.append("")
            out.append("[" + ".".join(toml_key(p) for p in (*path, k)) + "]")
            where[(*path, k)] = len(out)
            table((*path, k), v)

    table((), doc)
    return "\n".join(out) + "\n", where


def check_outcome(text: str) -> bool:
    """Load ``text``; True if it was valid. Anything but a clean ConfigError fails."""
    try:
        tree = loads(text, "fuzz.toml")
    except ConfigError as exc:
        assert exc.issues
        n_lines = text.count("\n") + 1
        for issue in exc.issues:
            assert issue.file == "fuzz.toml"
            assert issue.line is None or 1 <= issue.line <= n_lines
            assert issue.message
        assert str(exc).startswith("fuzz.toml")
        return False
    assert isinstance(tree, Supervisor)
    check_tree(tree)
    assert render_tree(tree)
    return True


@settings(max_examples=150, deadline=None)
@given(doc=tables, data=st.data())
def test_any_document_loads_or_fails_cleanly(doc: dict[str, Any], data: st.DataObject) -> None:
    text, where = serialize(doc, data)
    check_outcome(text)
    lines = KeyLines(text)
    for path, line in where.items():
        assert lines.explicit.get(path) == line, (path, text)


@settings(max_examples=100, deadline=None)
@given(doc=plausible_roots, data=st.data())
def test_damaged_documents_fail_cleanly(doc: dict[str, Any], data: st.DataObject) -> None:
    text, _ = serialize(doc, data)
    at = data.draw(st.integers(0, len(text)), label="at")
    junk = data.draw(st.sampled_from(["[", "]", "{", "=", '"', "'", "\n", "#", ".", "\\", "x"]))
    check_outcome(text[:at] + junk + text[at:])


def test_the_generator_makes_valid_trees_too() -> None:
    """Guard against a generator that only ever makes bad files."""
    valid = []

    @settings(max_examples=50, deadline=None, database=None)
    @given(doc=plausible_roots, data=st.data())
    def run(doc: dict[str, Any], data: st.DataObject) -> None:
        valid.append(check_outcome(serialize(doc, data)[0]))

    run()
    assert any(valid) and not all(valid)
