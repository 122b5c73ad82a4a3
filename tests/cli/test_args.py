"""``otree.cli.args``: a client command's plain line is read as argparse reads it, or not at all.

The fast reading exists for start-up time (no argparse, re or enum in ``otree
status``); it must never give a line a meaning argparse would not. Each case
checks it against ``otree.cli.parser``'s argparse parser: on lines built in the
plain form it reads them, and the same as argparse; on any line at all, what it
reads (when it does not decline) is what argparse reads, and argparse accepts it.
"""

from __future__ import annotations

import contextlib
import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from otree.cli import control, main, observe
from otree.cli.args import Args, Command, Option, Positional, parse
from otree.cli.parser import build_parser

PLAIN: dict[str, Command] = {**main.PLAIN, **control.PLAIN, **observe.PLAIN}


def argparse_reads(words: list[str]) -> dict[str, object] | None:
    """What argparse makes of ``words``: every attribute, or None for a usage error, help,
    or arguments it leaves over."""
    out = io.StringIO()
    try:
        with contextlib.redirect_stderr(out), contextlib.redirect_stdout(out):
            args, extra = build_parser(words).parse_known_args(words, namespace=Args())
    except SystemExit:
        return None
    return None if extra else dict(vars(args))


def fast_reads(words: list[str]) -> dict[str, object] | None:
    args = parse(PLAIN[words[0]], words)
    return None if args is None else dict(vars(args))


@pytest.mark.parametrize(
    "words",
    [
        ["status"],
        ["status", "web.api"],
        ["status", "--json"],
        ["status", "--check", "-v", "--timeout", "2"],
        ["status", "web", "--socket=/tmp/x.sock", "--tree", "tree.toml"],
        ["start", "web"],
        ["stop", "web", "--socket", "s"],
        ["restart", "db"],
        ["scale", "workers.w", "3"],
        ["logs"],
        ["logs", "web", "-n", "5", "-f"],
        ["logs", "web", "--lines=0", "--follow"],
        ["reload", "--dry-run", "--timeout=2.5"],
        ["shutdown"],
        ["events", "-n", "10", "-f"],
        ["metrics", "--socket", "s"],
        ["signal", "web", "HUP", "--group"],
        ["signal", "web", "sigusr2"],
        ["run", "tree.toml"],
        ["run", "app.py:tree", "--events", "e.jsonl", "--subreaper", "--metrics=127.0.0.1:9464"],
        ["check", "tree.toml"],
    ],
)
def test_the_usual_lines_are_read_without_argparse_and_as_argparse_reads_them(
    words: list[str],
) -> None:
    fast = fast_reads(words)
    assert fast is not None
    assert fast == argparse_reads(words)


@pytest.mark.parametrize(
    "words",
    [
        ["status", "--help"],
        ["status", "--js"],  # argparse's abbreviation of --json
        ["status", "--json", "web"],  # an option before a positional
        ["status", "a", "b"],
        ["stop"],
        ["logs", "-fn", "5"],  # bundled
        ["logs", "-n5"],
        ["logs", "-n", "x"],
        ["logs", "-n", "-5"],
        ["scale", "w", "-1"],
        ["status", "--timeout", "0"],
        ["status", "--socket"],
        ["status", "--socket="],
        ["status", "--json=1"],
        ["status", "--", "web"],
        ["signal", "web", "NOSUCH"],
        ["run"],
        ["run", "--preflight", "tree.toml"],
        ["check", "a", "b"],
    ],
)
def test_anything_else_is_left_to_argparse(words: list[str]) -> None:
    assert fast_reads(words) is None


def _value(option: Option) -> st.SearchStrategy[str]:
    if option.dest in ("lines",):
        return st.integers(0, 10_000).map(str)
    if option.dest == "timeout":
        return st.floats(0.001, 1e6).map(repr)
    return st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1).filter(
        lambda t: not t.startswith("-")
    )


def _positional(arg: Positional) -> st.SearchStrategy[str]:
    if arg.dest == "count":
        return st.integers(0, 10_000).map(str)
    if arg.dest == "signal":
        return st.sampled_from(["HUP", "usr1", "SIGTERM", "Int"])
    return st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1).filter(
        lambda t: not t.startswith("-")
    )


@st.composite
def plain_lines(draw: st.DrawFn) -> list[str]:
    """A command, its positionals (the optional ones or not), then options in any order,
    each in one of the forms the plain reading takes."""
    command = draw(st.sampled_from(sorted(PLAIN)))
    spec = PLAIN[command]
    words = [command]
    for arg in spec.arguments:
        if isinstance(arg, Positional) and (not arg.optional or draw(st.booleans())):
            words.append(draw(_positional(arg)))
    options = [a for a in spec.arguments if isinstance(a, Option)]
    for option in draw(st.lists(st.sampled_from(options), max_size=5)) if options else []:
        flag = draw(st.sampled_from(option.flags))
        if option.is_flag:
            words.append(flag)
        elif flag.startswith("--") and draw(st.booleans()):
            words.append(f"{flag}={draw(_value(option))}")
        else:
            words += [flag, draw(_value(option))]
    return words


@settings(max_examples=300, deadline=None)
@given(plain_lines())
def test_a_line_of_the_plain_form_is_read_as_argparse_reads_it(words: list[str]) -> None:
    fast = fast_reads(words)
    assert fast is not None
    assert fast == argparse_reads(words)


def _tokens(command: str) -> st.SearchStrategy[str]:
    spec = PLAIN[command]
    flags = [f for a in spec.arguments if isinstance(a, Option) for f in a.flags] or ["--x"]
    return st.one_of(
        st.sampled_from([*flags, "--", "-", "--help", "-h", "--js", "-fn", "-n5", "="]),
        st.sampled_from(flags).map(lambda f: f + "="),
        st.from_regex(r"\A-?[0-9]{1,3}\Z"),
        st.sampled_from(["web", "HUP", "", "a=b", "-x", "--bogus"]),
        st.text(max_size=6),
    )


@st.composite
def near_plain_lines(draw: st.DrawFn) -> list[str]:
    """A plain line with a few edits: a token put in, a word taken out, two words swapped
    (the lines argparse and the plain reading are most likely to differ on)."""
    words = draw(plain_lines())
    for _ in range(draw(st.integers(1, 3))):
        edit = draw(st.sampled_from(["insert", "delete", "swap"]))
        if edit == "insert":
            at = draw(st.integers(1, len(words)))
            words.insert(at, draw(_tokens(words[0])))
        elif len(words) > 1:
            at = draw(st.integers(1, len(words) - 1))
            if edit == "delete":
                del words[at]
            elif at + 1 < len(words):
                words[at], words[at + 1] = words[at + 1], words[at]
    return words


@settings(max_examples=1000, deadline=None)
@given(near_plain_lines())
def test_whatever_the_plain_reading_takes_argparse_reads_the_same(words: list[str]) -> None:
    fast = fast_reads(words)
    if fast is not None:
        assert fast == argparse_reads(words)
