"""What both importers share: notes, names, reading a file, paths relative to the output."""

from __future__ import annotations

import os
from dataclasses import dataclass

from otree.config.importers.writer import Source
from otree.core.spec import NAME_RE, RESERVED_NAMES
from otree.errors import ConfigError, Issue


@dataclass(frozen=True)
class Note:
    """Something of the input with no equivalent: a comment in the output, a line on stderr."""

    source: Source
    path: str  # program:web.startretries
    setting: str  # what the input says: "startretries = 5", "[eventlistener:x]"
    reason: str  # why otree has no equivalent, and what it has instead

    def __str__(self) -> str:
        return f"{self.source}: {self.path}: no equivalent: {self.reason}"

    def comment(self) -> str:
        """The note as the output's comment."""
        return f"{self.setting} ({self.source}): no equivalent: {self.reason}"


def dollars(text: str) -> str:
    """``text`` with its ``$`` kept literal in the output: otree expands ``${NAME}`` at
    load, and ``$$`` is its literal ``$``."""
    return text.replace("$", "$$")


def read_text(file: str) -> str:
    """The text of ``file``; a ``ConfigError`` naming it when it cannot be read."""
    try:
        with open(file, "rb") as f:
            data = f.read()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ConfigError([Issue("", f"cannot read the file: {reason}", file)]) from None
    try:
        return data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        message = f"not UTF-8 text: byte 0x{data[exc.start]:02x} is not valid"
        raise ConfigError([Issue("", message, file, line)]) from None


def display_path(path: str) -> str:
    """``path`` as messages show it: relative to the working directory when under it."""
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel


def check_name(name: str, label: str, source: Source) -> str:
    """``name`` if otree takes it as a node name; else a ``ConfigError`` at ``source``."""
    if not NAME_RE.match(name):
        message = (
            f"{name!r} cannot name a service or supervisor in otree "
            "(letters, digits, '_' and '-' only): rename it"
        )
    elif name in RESERVED_NAMES:
        message = f"{name!r} is a field name in otree and cannot name a service: rename it"
    else:
        return name
    raise ConfigError([Issue(label, message, source.file, source.line)])


def same_dir(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a or ".", b or ".")
    except OSError:
        return os.path.abspath(a or ".") == os.path.abspath(b or ".")


def relative_to(directory: str, out_dir: str) -> str:
    """``directory`` as the output names it: ``${OTREE_TREE_DIR}`` when the output is written
    there, else its absolute path."""
    if same_dir(directory, out_dir):
        return "${OTREE_TREE_DIR}"
    return dollars(os.path.abspath(directory))
