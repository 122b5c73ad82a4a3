"""TOML syntax errors in otree's own words, with the line and, where it can be told, the key path.

``tomllib`` says ``Cannot declare ('web',) twice (at line 4, column 5)``: a
message written for the parser's authors. The loader turns each into one
:class:`~otree.errors.Issue` whose text says what is wrong in the file's terms
(``[web] is declared twice``) and names the key path when the error is about a
key. A message this module does not know is kept as tomllib wrote it (with a
lower-case first letter), so no error is ever lost for want of a translation.
"""

from __future__ import annotations

import re

from otree.errors import Issue

_POSITION = re.compile(
    r"^(?P<msg>.*) \(at (?:line (?P<line>\d+), column (?P<col>\d+)|end of document)\)$", re.S
)
_DECLARED_TWICE = re.compile(r"^Cannot declare \((?P<keys>.*)\) twice$", re.S)
_ILLEGAL = re.compile(r"^Illegal character (?P<char>.+)$", re.S)
_HEADER = re.compile(r"^\s*\[\[?\s*(?P<keys>[^\]\[#]+?)\s*\]\]?\s*(?:#.*)?$")
_KEY = re.compile(r"^\s*(?P<keys>[^=#\[\s][^=#]*?)\s*=")
_KEY_PART = re.compile(r"""\s*(?:"((?:[^"\\]|\\.)*)"|'([^']*)'|([^.\s"']+))\s*(?:\.|$)""")

#: tomllib's fixed messages -> otree's
_MESSAGES = {
    "Unclosed array": "an array '[' is not closed with ']'",
    "Unclosed inline table": "an inline table '{' is not closed with '}'",
    "Invalid value": (
        "not a TOML value (a string needs quotes, true and false are lower case, "
        "an array is [a, b], a table { k = v })"
    ),
    "Expected ']' at the end of a table declaration": "a table header is not closed with ']'",
    "Expected ']]' at the end of an array declaration": "an array header is not closed with ']]'",
    "Expected '=' after a key in a key/value pair": (
        "expected '=' after the key (a key with spaces or dots in it needs quotes)"
    ),
    "Expected newline or end of document after a statement": (
        "expected the end of the line after the value (one key = value a line)"
    ),
    "Invalid initial character for a key part": (
        "not a valid key (a key is a name or a quoted string)"
    ),
    "Unterminated string": "a string is not closed",
    "Inline table must not have a trailing comma": "an inline table must not end with a comma",
    "Unclosed inline table and no trailing comma allowed": (
        "an inline table '{' is not closed with '}'"
    ),
}


def syntax_issue(message: str, text: str, file: str) -> Issue:
    """The issue for tomllib's ``message`` about ``text`` (the file named ``file``)."""
    line: int | None = None
    m = _POSITION.match(message)
    if m:
        message = m["msg"]
        line = int(m["line"]) if m["line"] else text.count("\n") + 1
    at_end = m is not None and m["line"] is None
    path, what = _translate(message, text, line, at_end)
    return Issue(path, what, file, line)


def _translate(message: str, text: str, line: int | None, at_end: bool) -> tuple[str, str]:
    twice = _DECLARED_TWICE.match(message)
    if twice:
        keys = ".".join(re.findall(r"'((?:[^'\\]|\\.)*)'", twice["keys"]))
        return keys, "the table is declared twice (write it once, with all its keys)"
    if message == "Cannot overwrite a value":
        keys = _key_at(text, line)
        if keys:
            return keys, "set twice (or written both as a value and as a table)"
        return "", "a value is set twice"
    illegal = _ILLEGAL.match(message)
    if illegal:
        if illegal["char"] == "'\\n'":
            return _key_at(text, line), "a string is not closed before the end of the line"
        return _key_at(text, line), f"the character {illegal['char']} is not allowed here"
    if at_end and message == "Invalid value":
        return "", "the file ends inside a value (an array, inline table or string is not closed)"
    known = _MESSAGES.get(message)
    if known is not None:
        return _key_at(text, line), known
    return _key_at(text, line), message[:1].lower() + message[1:]


def _key_at(text: str, line: int | None) -> str:
    """The key path written on ``line`` (under the table header in effect), or ``""``."""
    if line is None:
        return ""
    lines = text.splitlines()
    if not 1 <= line <= len(lines):
        return ""
    table: list[str] = []
    for previous in lines[: line - 1]:
        header = _HEADER.match(previous)
        if header:
            table = _parts(header["keys"])
    header = _HEADER.match(lines[line - 1])
    if header:
        return ".".join(_parts(header["keys"]))
    key = _KEY.match(lines[line - 1])
    if key is None:
        return ""
    parts = _parts(key["keys"])
    return ".".join([*table, *parts]) if parts else ""


def _parts(keys: str) -> list[str]:
    """The parts of a dotted key as written (``a."b.c".d`` -> a, b.c, d); [] if it is not one."""
    parts: list[str] = []
    pos = 0
    while pos < len(keys):
        m = _KEY_PART.match(keys, pos)
        if m is None or m.end() == pos:
            return []
        parts.append(next(g for g in m.groups() if g is not None))
        pos = m.end()
    return parts
