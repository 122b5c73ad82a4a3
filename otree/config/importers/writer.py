"""A small TOML writer for the trees ``otree import`` makes, with where each line came from.

The standard library reads TOML but does not write it. The importers need few
shapes: a document of tables (``[web.api]``), each with ``key = value`` lines
whose values are strings, integers, floats, booleans, lists of those and
inline tables of those, and comments. Every line written can name the input
line it was made from, so a problem found in the output is reported at the
input's line.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

Scalar = str | int | float | bool
Value = Scalar | Sequence[Scalar] | Mapping[str, Scalar]

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+\Z")
_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\t": "\\t",
    "\n": "\\n",
    "\f": "\\f",
    "\r": "\\r",
}


@dataclass(frozen=True)
class Source:
    """An input line: the file and its line number (1-based)."""

    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass
class Table:
    """One ``[keys]`` table (the root when ``keys`` is empty): comments before it, its entries."""

    keys: tuple[str, ...]
    source: Source | None = None
    comments: list[str] = field(default_factory=list)
    entries: list[tuple[str, Value, Source | None]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # comments after the entries

    def set(self, key: str, value: Value, source: Source | None = None) -> None:
        self.entries.append((key, value, source))


@dataclass
class Rendered:
    """The TOML text and, for each of its lines (1-based), the input line it came from."""

    text: str
    sources: dict[int, Source]


def key(name: str) -> str:
    """``name`` as a TOML key: bare when it can be, else a quoted string."""
    return name if _BARE_KEY.match(name) else string(name)


def string(text: str) -> str:
    """``text`` as a TOML basic string."""
    out = []
    for ch in text:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def value(v: Value) -> str:
    """``v`` as a TOML value."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        text = repr(v)
        return text if any(c in text for c in ".en") else text + ".0"
    if isinstance(v, str):
        return string(v)
    if isinstance(v, Mapping):
        if not v:
            return "{}"
        return "{ " + ", ".join(f"{key(k)} = {value(x)}" for k, x in v.items()) + " }"
    return "[" + ", ".join(value(x) for x in v) + "]"


def comment(text: str, width: int = 88) -> list[str]:
    """``text`` as comment lines: one or more per line of ``text``, none wider than ``width``."""
    out = []
    for line in text.splitlines() or [""]:
        wrapped = textwrap.wrap(line, width - 2, subsequent_indent="  ", break_on_hyphens=False)
        out += [("# " + w).rstrip() for w in wrapped or [""]]
    return out


def render(tables: Sequence[Table]) -> Rendered:
    """The document: the root table (``keys == ()``) first, then the others in order."""
    lines: list[str] = []
    sources: dict[int, Source] = {}

    def emit(text: str, source: Source | None = None) -> None:
        lines.append(text)
        if source is not None:
            sources[len(lines)] = source

    for table in tables:
        if lines and table.keys:
            emit("")
        for text in table.comments:
            for c in comment(text):
                emit(c)
        if table.keys:
            emit("[" + ".".join(key(k) for k in table.keys) + "]", table.source)
        for name, v, source in table.entries:
            emit(f"{key(name)} = {value(v)}", source or table.source)
        if table.notes and not table.keys:
            emit("")
        for text in table.notes:
            for c in comment(text):
                emit(c)
    return Rendered("\n".join(lines) + "\n", sources)
