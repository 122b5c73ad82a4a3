"""Hypothesis strategies for the CLI fuzzing: tree files and control-socket traffic."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st
from support.treefiles import to_toml

from . import chaostree

# --- tree files --------------------------------------------------------------------

KEYS = (
    "cmd", "target", "args", "env", "cwd", "restart", "normal_exit_codes", "stop_signal",
    "shutdown", "ready", "backoff", "significant", "log", "strategy", "intensity", "period",
    "auto_shutdown", "delay", "tcp", "notify", "timeout", "interval", "initial", "max",
    "factor", "reset_after", "file", "max_bytes", "backups", "restrat", "children",
    "db", "web", "api", "x", "a-b", "my api", "a.b", "é", "",
)  # fmt: skip
WORDS = (
    "permanent", "transient", "temporary", "one_for_one", "one_for_all", "rest_for_one",
    "never", "any_significant", "all_significant", "brutal_kill", "infinity", "TERM",
    "SIGKILL", "NOPE", "sleep 1", "x:y", "127.0.0.1:1", "'", "a\nb", "\x00", "../..",
)  # fmt: skip

text = st.text(st.characters(exclude_categories=("Cs",)), max_size=8)
scalars: st.SearchStrategy[Any] = st.one_of(
    st.integers(-(2**63), 2**63 - 1),
    st.integers(-3, 100),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.sampled_from(WORDS),
    text,
    st.lists(st.one_of(st.sampled_from(WORDS), st.integers(-1, 300), text), max_size=3),
)
documents: st.SearchStrategy[dict[str, Any]] = st.recursive(
    st.dictionaries(st.sampled_from(KEYS), scalars, max_size=4),
    lambda inner: st.dictionaries(st.sampled_from(KEYS), st.one_of(scalars, inner), max_size=5),
    max_leaves=30,
)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A valid tree file (the chaos tree) with a few bytes or lines changed."""
    data = bytearray(chaostree.render().encode())
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data)))
        how = draw(st.sampled_from(["delete", "insert", "dup_line", "replace"]))
        if how == "delete":
            del data[at : at + draw(st.integers(1, 40))]
        elif how == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8) | st.sampled_from(
                [b"[", b"]", b'"', b"=", b"\n", b"[x]\n", b"restart = 'x'\n", b"{", b"."]
            ))  # fmt: skip
        elif how == "dup_line":
            start = data.rfind(b"\n", 0, at) + 1
            end = data.find(b"\n", at)
            end = len(data) if end < 0 else end + 1
            data[end:end] = data[start:end]
        else:
            if at < len(data):
                data[at] = draw(st.integers(0, 255))
    return bytes(data)


def mostly(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A valid value 29 times in 30, anything otherwise (shrinks towards valid)."""
    return st.sampled_from(range(30)).flatmap(lambda i: scalars if i == 29 else valid)


services = st.fixed_dictionaries(
    {"cmd": mostly(st.sampled_from(["sleep 1", ["sleep", "1"], "sh -c 'exit 3'", "nope"]))},
    optional={
        "restart": mostly(st.sampled_from(["permanent", "transient", "temporary"])),
        "shutdown": mostly(st.one_of(st.floats(0, 10), st.sampled_from(["brutal_kill"]))),
        "stop_signal": mostly(st.sampled_from(["TERM", "INT", "SIGHUP", "KILL"])),
        "normal_exit_codes": mostly(st.lists(st.integers(0, 255), max_size=3)),
        "env": mostly(st.dictionaries(st.sampled_from(["A", "PORT"]), st.sampled_from(["1"]))),
        "ready": mostly(
            st.sampled_from(
                [
                    {"delay": 0.5},
                    {"tcp": "127.0.0.1:1", "timeout": 3},
                    {"notify": True},
                    {"cmd": ["true"], "interval": 0.2},
                ]
            )
        ),
        "backoff": mostly(st.fixed_dictionaries({}, optional={"initial": st.floats(0, 1)})),
        "log": mostly(st.fixed_dictionaries({}, optional={"max_bytes": st.integers(0, 9)})),
        "significant": mostly(st.just(False)),
    },
)
supervisor_fields = st.fixed_dictionaries(
    {},
    optional={
        "strategy": mostly(st.sampled_from(["one_for_one", "one_for_all", "rest_for_one"])),
        "intensity": mostly(st.integers(0, 10)),
        "period": mostly(st.floats(0.1, 60)),
        "auto_shutdown": mostly(st.sampled_from(["never", "any_significant"])),
    },
)
names = st.sampled_from(["api", "db", "web", "worker", "a-b", "x_1", "Z9"])


def with_children(node: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.builds(
        lambda fields, children: {**fields, **children},
        supervisor_fields,
        st.dictionaries(names, node, min_size=1, max_size=4),
    )


#: trees that are valid more often than not, so that drawing them is fuzzed too
plausible = with_children(st.recursive(services, with_children, max_leaves=10))

tree_files: st.SearchStrategy[bytes] = st.one_of(
    plausible.map(lambda d: to_toml(d).encode()),
    plausible.map(lambda d: to_toml(d).encode()),
    documents.map(lambda d: to_toml(d).encode()),
    mutated(),
    st.binary(max_size=300),
)

# --- control traffic -----------------------------------------------------------------

PATHS = ["db", "web", "web.api", "web.cache"]  # the paths of the tree the socket fuzzing runs
CMDS = ("status", "info", "start", "stop", "restart", "logs", "nope", "", "STATUS")
json_values: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=10,
)
requests = st.fixed_dictionaries(
    {"cmd": st.sampled_from(CMDS) | json_values},
    optional={
        "id": st.integers(-(2**70), 2**70) | json_values,
        "path": st.sampled_from([*PATHS, "", ".", "nope", "s1.", "a..b"]) | json_values,
        "n": st.integers(-5, 10**9) | json_values,
        "follow": st.booleans() | json_values,
        "junk": json_values,
    },
)


def _line(value: Any) -> bytes:
    return json.dumps(value).encode() + b"\n"


messages: st.SearchStrategy[bytes] = st.one_of(
    requests.map(_line),
    requests.map(_line),
    json_values.map(_line),
    st.binary(max_size=200),
    st.binary(max_size=50).map(lambda b: b + b"\n"),
    st.sampled_from(
        [
            b"x" * 70_000 + b"\n",  # over the 64 KiB line limit
            b"[" * 100_000 + b"\n",  # too deep for json
            b'{"id": 1, "cmd": "status"}',  # no newline, then the connection ends
            b"\xff\xfe\n",
            b"\n\n\n",
            b'{"id": 1, "cmd": "status"}\n' * 50,  # pipelined
        ]
    ),
)
#: how the client ends: close at once, half-close and read the replies, or read a little
endings = st.sampled_from(["close", "shutdown_read", "read_some"])
