"""supervisord's INI dialect, read with the line of every section and key.

supervisord reads its files with Python's ``RawConfigParser`` (``=`` or ``:``
between key and value, keys in lower case, ``;`` and ``#`` comments, inline
ones only after whitespace, indented lines continue a value, a section written
twice in one file is merged). ``configparser`` gives no line numbers, so this
reads the same dialect itself; a line it cannot read is a ``ConfigError`` with
the file and line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from otree.config.importers.writer import Source
from otree.errors import ConfigError, Issue

_SECTION = re.compile(r"^\[(?P<name>[^\]]+)\]$")
_OPTION = re.compile(r"^(?P<key>[^=:\s][^=:]*?)\s*[=:]\s*(?P<value>.*)$")
_INLINE_COMMENT = re.compile(r"\s[;#]")


@dataclass(frozen=True)
class Option:
    """One ``key = value``: its value (continuation lines joined with newlines) and line."""

    value: str
    source: Source


@dataclass
class Section:
    """One ``[name]`` section, its options in file order."""

    name: str
    source: Source
    options: dict[str, Option] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        """``program`` for ``[program:web]``; the whole name for ``[supervisord]``."""
        return self.name.split(":", 1)[0].strip()

    @property
    def label(self) -> str:
        """``program:web`` for ``[program:web]``: the key path prefix in messages."""
        kind, _, rest = self.name.partition(":")
        return f"{kind.strip()}:{rest.strip()}" if rest else kind.strip()


def _strip_comment(line: str) -> str:
    m = _INLINE_COMMENT.search(line)
    return (line[: m.start()] if m else line).rstrip()


def parse_ini(text: str, file: str) -> list[Section]:
    """The sections of ``text`` (the file named ``file``), merged by name, in file order."""
    sections: dict[str, Section] = {}
    current: Section | None = None
    open_key: str | None = None  # the option that an indented line continues
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not stripped or stripped[0] in "#;":
            continue
        indented = raw[0].isspace()
        line = _strip_comment(stripped)
        if indented and current is not None and open_key is not None:
            old = current.options[open_key]
            joined = f"{old.value}\n{line}" if old.value else line
            current.options[open_key] = Option(joined, old.source)
            continue
        m = _SECTION.match(line)
        if m:
            name = m["name"].strip()
            current = sections.setdefault(name, Section(name, Source(file, number)))
            open_key = None
            continue
        m = _OPTION.match(line)
        if m is None and current is None:
            message = (
                f"not a supervisord configuration (INI): expected a '[section]' first,"
                f" got {stripped!r}"
            )
            raise ConfigError([Issue("", message, file, number)])
        if m is None:
            message = f"not an INI line: expected '[section]' or 'key = value', got {stripped!r}"
            raise ConfigError([Issue("", message, file, number)])
        if current is None:
            message = (
                f"not a supervisord configuration (INI): expected a '[section]' first,"
                f" got {stripped!r}"
            )
            raise ConfigError([Issue("", message, file, number)])
        open_key = m["key"].strip().lower()
        current.options[open_key] = Option(m["value"].strip(), Source(file, number))
    return list(sections.values())
