"""Where each key of a TOML document is written: a light scan of the source text.

``tomllib`` gives values but no positions, so the tree-file loader finds the
line of a key path itself. The scan understands just enough TOML for that:
``[table]`` and ``[[array]]`` headers, ``key = value`` lines with bare, quoted
and dotted keys, inline tables (``ready = { tcp = "..." }``, nested too),
arrays spanning lines, strings of all four kinds (so a ``#`` or a ``key =``
inside a string is not mistaken for anything) and comments.

It is run only on text that ``tomllib`` accepted, and it is best effort: on
anything it does not follow it skips to the next line, and a key it missed is
simply looked up through its parents (a table's header line).
"""

from __future__ import annotations

import contextlib
import re
import sys

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib  # type: ignore[import-not-found, no-redef, unused-ignore]

Keys = tuple[str, ...]

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_BASIC_STRING = re.compile(r'"(?:[^"\\\n]|\\.)*"')
_LITERAL_STRING = re.compile(r"'[^'\n]*'")
_SCALAR = re.compile(r"[^\s,\]}#]+")


class KeyLines:
    """Line numbers (1-based) of the key paths of one TOML document."""

    def __init__(self, text: str) -> None:
        #: key paths written out: a header, or a key before ``=``
        self.explicit: dict[Keys, int] = {}
        #: tables only implied (``a`` by ``[a.b]`` or ``a.b = 1``): first mention
        self.implicit: dict[Keys, int] = {}
        scan = _Scan(text, self)
        # defensive: the text was accepted by tomllib, but a scan bug must not hide the issues
        with contextlib.suppress(IndexError, ValueError, tomllib.TOMLDecodeError):
            scan.document()

    def record(self, keys: Keys, line: int) -> None:
        self.explicit.setdefault(keys, line)
        for k in range(1, len(keys)):
            self.implicit.setdefault(keys[:k], line)

    def find(self, keys: Keys) -> int | None:
        """The line of ``keys``, else of its nearest written parent, else None."""
        for k in range(len(keys), 0, -1):
            prefix = keys[:k]
            line = self.explicit.get(prefix, self.implicit.get(prefix))
            if line is not None:
                return line
        return None


class _Scan:
    def __init__(self, text: str, out: KeyLines) -> None:
        self.s = text
        self.i = 0
        self.line = 1
        self.out = out

    # --- low level ------------------------------------------------------

    def peek(self, n: int = 1) -> str:
        return self.s[self.i : self.i + n]

    def blanks(self) -> None:
        """Skip spaces and tabs."""
        while self.i < len(self.s) and self.s[self.i] in " \t":
            self.i += 1

    def comment(self) -> None:
        if self.peek() == "#":
            end = self.s.find("\n", self.i)
            self.i = len(self.s) if end < 0 else end

    def newline(self) -> bool:
        if self.peek() == "\n":
            self.i += 1
            self.line += 1
            return True
        if self.peek(2) == "\r\n":
            self.i += 2
            self.line += 1
            return True
        return False

    def space(self) -> None:
        """Skip blanks, comments and newlines (inside arrays and inline tables)."""
        while self.i < len(self.s):
            self.blanks()
            self.comment()
            if not self.newline():
                return

    def skip_line(self) -> None:
        end = self.s.find("\n", self.i)
        self.i = len(self.s) if end < 0 else end
        self.newline()

    # --- grammar --------------------------------------------------------

    def document(self) -> None:
        table: Keys = ()
        while True:
            self.space()
            if self.i >= len(self.s):
                return
            line = self.line
            if self.peek() == "[":
                self.i += 2 if self.peek(2) == "[[" else 1
                keys = self.key()
                if keys:
                    table = keys
                    self.out.record(keys, line)
            else:
                keys = self.key()
                self.blanks()
                if keys and self.peek() == "=":
                    self.i += 1
                    self.out.record(table + keys, line)
                    self.value(table + keys)
            self.skip_line()

    def key(self) -> Keys:
        parts: list[str] = []
        while True:
            self.blanks()
            c = self.peek()
            if c == '"':
                m = _BASIC_STRING.match(self.s, self.i)
                if not m:
                    return ()
                parts.append(tomllib.loads(f"k = {m.group()}")["k"])
            elif c == "'":
                m = _LITERAL_STRING.match(self.s, self.i)
                if not m:
                    return ()
                parts.append(m.group()[1:-1])
            else:
                m = _BARE_KEY.match(self.s, self.i)
                if not m:
                    return ()
                parts.append(m.group())
            self.i = m.end()
            self.blanks()
            if self.peek() != ".":
                return tuple(parts)
            self.i += 1

    def value(self, keys: Keys | None) -> None:
        self.blanks()
        c = self.peek()
        if c == "{":
            self.inline_table(keys)
        elif c == "[":
            self.array()
        elif c in ('"', "'"):
            self.string()
        else:
            m = _SCALAR.match(self.s, self.i)
            if m:
                self.i = m.end()

    def inline_table(self, keys: Keys | None) -> None:
        self.i += 1
        while self.i < len(self.s):
            self.space()
            c = self.peek()
            if c == "}":
                self.i += 1
                return
            if c == ",":
                self.i += 1
                continue
            line = self.line
            sub = self.key()
            self.blanks()
            if not sub or self.peek() != "=":
                return
            self.i += 1
            full = None if keys is None else keys + sub
            if full is not None:
                self.out.record(full, line)
            self.value(full)

    def array(self) -> None:
        self.i += 1
        while self.i < len(self.s):
            self.space()
            c = self.peek()
            if c == "]":
                self.i += 1
                return
            if c == ",":
                self.i += 1
                continue
            start = self.i
            self.value(None)  # tables inside arrays have no key path of their own
            if self.i == start:
                return

    def string(self) -> None:
        for quote in ('"""', "'''"):
            if self.peek(3) == quote:
                self.i += 3
                while self.i < len(self.s):
                    if self.peek(3) == quote:
                        # a closing delimiter may be followed by up to two more quotes
                        self.i += 3
                        while self.peek() == quote[0]:
                            self.i += 1
                        return
                    if quote == '"""' and self.peek() == "\\":
                        self.i += 1
                        if self.newline():
                            continue
                        self.i += 1
                        continue
                    if not self.newline():
                        self.i += 1
                return
        pattern = _BASIC_STRING if self.peek() == '"' else _LITERAL_STRING
        m = pattern.match(self.s, self.i)
        self.i = m.end() if m else self.i + 1
