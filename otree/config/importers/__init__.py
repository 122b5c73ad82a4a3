"""``otree import``: supervisord configurations and Procfiles translated into tree files.

:func:`import_file` reads the input, translates it (``supervisord.py``,
``procfile.py``), writes the TOML text (``writer.py``) and loads that text with
otree's own loader: the result always passes ``otree check``, or a
``ConfigError`` names the input line that could not be translated.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from otree.config.importers import procfile, supervisord
from otree.config.importers.common import Note, display_path, read_text
from otree.config.importers.writer import Source, Table, render
from otree.errors import ConfigError, Issue

_INI_HEADER = re.compile(r"^\s*\[[^\]]+\]\s*(?:[;#].*)?$", re.M)
_PROCFILE_LINE = re.compile(r"^[A-Za-z0-9_-]+\s*:", re.M)
_VARIABLE = re.compile(r"(?<!\$)(?:\$\$)*\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_OTREE_VARIABLES = {"OTREE_TREE_DIR", "OTREE_PATH", "OTREE_REPLICA"}


@dataclass(frozen=True)
class Imported:
    """The tree file's text and what had no equivalent (already comments in the text)."""

    text: str
    notes: list[Note]
    kind: str  # "supervisord" or "Procfile"
    unset: list[str]  # the ${NAME}s the tree uses that this environment does not set


def kind_of(path: str) -> str:
    """``Procfile`` for a file named Procfile* or holding only ``name: command`` lines, else
    ``supervisord``."""
    if os.path.basename(path).lower().startswith("procfile"):
        return "Procfile"
    text = read_text(path)
    if _INI_HEADER.search(text) is None and _PROCFILE_LINE.search(text) is not None:
        return "Procfile"
    return "supervisord"


def import_file(path: str, out: str | None = None, *, check: bool = True) -> Imported:
    """The tree for the supervisord configuration or Procfile at ``path``; ``out`` is where it
    will be written (None: stdout, taken to be beside the input). Raises ``ConfigError``.

    With ``check`` (always, from the command line) the text is loaded as ``otree check``
    loads it, and a problem is a ``ConfigError`` at the input line it came from."""
    out_dir = os.path.dirname(out) if out else os.path.dirname(path)
    kind = kind_of(path)
    files = [path]
    if kind == "Procfile":
        tables, notes = procfile.translate(path, procfile.env_file_for(path, out_dir))
    else:
        sections, notes, files = supervisord.read_sections(path)
        translator = supervisord.Translator(sections, out_dir)
        tables = translator.tables()
        notes = notes + translator.notes
        if not any(t.keys for t in tables):
            raise ConfigError([Issue("", "no [program:x] section: nothing to run", path)])
    _attach(tables, notes)
    names = ", ".join(display_path(f) for f in files)
    tables[0].comments.insert(0, f"Made by `otree import` from {names} ({kind}).\n\n")
    rendered = render(tables)
    if check:
        tree_file = out or os.path.join(out_dir, "tree.toml")
        _validate(rendered.text, rendered.sources, tree_file, path)
    return Imported(rendered.text, notes, kind, unset_variables(rendered.text))


def _attach(tables: list[Table], notes: list[Note]) -> None:
    """Each note as a comment in the table of its section (or the root's)."""
    by_label: dict[str, Table] = {}
    for table in tables:
        if table.comments and table.comments[-1].startswith("["):
            by_label[table.comments[-1][1 : table.comments[-1].index("]")]] = table
    files: dict[str, int] = {}
    for note in notes:
        files.setdefault(note.source.file, len(files))
    notes.sort(key=lambda n: (files[n.source.file], n.source.line))
    for note in notes:
        label = note.path.split(".", 1)[0]
        table = by_label.get(label, tables[0])
        table.notes.append(note.comment())


def unset_variables(text: str) -> list[str]:
    """The ``${NAME}`` (no default) of ``text`` not set in this environment, in order."""
    names = dict.fromkeys(m[1] for m in _VARIABLE.finditer(text) if m[1] not in _OTREE_VARIABLES)
    return [n for n in names if n not in os.environ]


def _validate(text: str, sources: dict[int, Source], out: str, path: str) -> None:
    """Load ``text`` as ``otree check`` would (``out`` names it); a problem is reported at the
    input line the output line came from. A variable this environment lacks is given a
    placeholder for the check (the tree runs where it is set)."""
    from otree.config.loader import loads

    missing = unset_variables(text)
    try:
        for name in missing:
            os.environ[name] = "x"
        loads(text, out)
    except ConfigError as exc:
        issues = []
        for issue in exc.issues:
            src = sources.get(issue.line or 0)
            what = f"{issue.path}: {issue.message}" if issue.path else issue.message
            message = f"cannot translate: otree says {what}"
            if src is None:
                issues.append(Issue("", message, path))
            else:
                issues.append(Issue("", message, src.file, src.line))
        raise ConfigError(issues) from None
    finally:
        for name in missing:
            os.environ.pop(name, None)
