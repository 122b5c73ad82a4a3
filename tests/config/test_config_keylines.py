"""Line numbers of key paths, found by scanning TOML text (tomllib gives none)."""

from __future__ import annotations

from otree.config.keylines import KeyLines

DOC = """\
# a comment with key = value and [table]
strategy = "one_for_one"   # trailing comment
intensity=3

[db]
cmd = ["postgres",
       "-D", "data # not a comment",   # a comment [x]
       "x = y"]
ready = { tcp = "127.0.0.1:5432", timeout = 30 }

[ web . api ]
target = "myapp.api:main"
doc = '''
fake = 1
[fake]
'''
more = \"\"\"
[fake2]\\\"\"\"
x = 2 \"\"\"
env = { "QUOTED KEY" = "a", 'lit' = "b", nested = { deep = { deeper = 1 } } }
backoff.initial = 0.5
"dotted.name" = 1

[[jobs]]
cmd = "a"
list = [ { inner = 1 }, { inner = 2 } ]

[web.api.log]
file = "api.log"
"""


def test_every_kind_of_key() -> None:
    lines = KeyLines(DOC)
    assert lines.explicit == {
        ("strategy",): 2,
        ("intensity",): 3,
        ("db",): 5,
        ("db", "cmd"): 6,
        ("db", "ready"): 9,
        ("db", "ready", "tcp"): 9,
        ("db", "ready", "timeout"): 9,
        ("web", "api"): 11,
        ("web", "api", "target"): 12,
        ("web", "api", "doc"): 13,
        ("web", "api", "more"): 17,
        ("web", "api", "env"): 20,
        ("web", "api", "env", "QUOTED KEY"): 20,
        ("web", "api", "env", "lit"): 20,
        ("web", "api", "env", "nested"): 20,
        ("web", "api", "env", "nested", "deep"): 20,
        ("web", "api", "env", "nested", "deep", "deeper"): 20,
        ("web", "api", "backoff", "initial"): 21,
        ("web", "api", "dotted.name"): 22,
        ("jobs",): 24,
        ("jobs", "cmd"): 25,
        ("jobs", "list"): 26,
        ("web", "api", "log"): 28,
        ("web", "api", "log", "file"): 29,
    }


def test_implied_tables_and_fallback_to_parents() -> None:
    lines = KeyLines(DOC)
    assert lines.find(("web",)) == 11  # only implied by [web.api]
    assert lines.find(("web", "api", "backoff")) == 21  # only implied by a dotted key
    assert lines.find(("web", "api", "restart")) == 11  # not written: its table's header
    assert lines.find(("db", "ready", "delay")) == 9
    assert lines.find(("nowhere",)) is None
    assert lines.find(()) is None


def test_explicit_header_wins_over_earlier_implication() -> None:
    text = '[web.api]\ncmd = "x"\n\n[web]\nstrategy = "one_for_all"\n'
    lines = KeyLines(text)
    assert lines.find(("web",)) == 4
    assert lines.find(("web", "strategy")) == 5


def test_crlf_line_endings() -> None:
    lines = KeyLines('a = 1\r\n\r\n[b]\r\ncmd = "x"\r\nc = { d = 1 }\r\n')
    assert lines.explicit == {
        ("a",): 1,
        ("b",): 3,
        ("b", "cmd"): 4,
        ("b", "c"): 5,
        ("b", "c", "d"): 5,
    }


def test_inline_table_across_lines_and_literal_strings() -> None:
    # TOML 1.1 allows newlines in inline tables; the scan follows them
    text = "a = { b = 1,\n  c = 'x # y',\n  d = [1,\n 2] }\ne = 2\n"
    lines = KeyLines(text)
    assert lines.explicit == {("a",): 1, ("a", "b"): 1, ("a", "c"): 2, ("a", "d"): 3, ("e",): 5}
