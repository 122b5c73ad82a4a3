"""Procfiles -> otree trees (``otree import Procfile``), as honcho and foreman run them.

Each ``name: command`` line is a service, its command run by ``sh -c`` (as
foreman and honcho do) when it holds shell syntax, with ``PORT`` set as
honcho sets it (5000, 5100, ... in file order). The tree ends when any process
ends: every service is ``temporary`` and ``significant`` under a root with
``auto_shutdown = "any_significant"``. A ``release`` line (Heroku's release
phase) becomes a one-shot first step: ``ready = { exited = true }``, started
before the others wherever it is written.
"""

from __future__ import annotations

import os
import re

from otree.config.importers.common import Note, check_name, dollars, read_text
from otree.config.importers.writer import Source, Table
from otree.errors import ConfigError, Issue

_LINE = re.compile(r"^(?P<name>[A-Za-z0-9_-]+)\s*:\s*(?P<cmd>.*)$")
_SHELL = re.compile(r"[$|&;<>()`*?~{}\[\]\\#]|\s[!=]|^\S+=")
BASE_PORT = 5000
PORT_STEP = 100


def shell_syntax(command: str) -> bool:
    """Whether ``command`` needs a shell (variables, pipes, globs, redirections, ``A=b cmd``)."""
    return bool(_SHELL.search(command))


def translate(path: str, env_file: str | None) -> tuple[list[Table], list[Note]]:
    """The tables of the tree for the Procfile at ``path``; ``env_file`` is the ``.env`` beside
    it as the output names it (honcho and foreman read it), or None."""
    notes: list[Note] = []
    entries: list[tuple[str, str, Source]] = []
    seen: dict[str, Source] = {}
    for number, raw in enumerate(read_text(path).splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        m = _LINE.match(line)
        if m is None:
            message = f"not a Procfile line: expected 'name: command', got {line!r}"
            raise ConfigError([Issue("", message, path, number)])
        source = Source(path, number)
        name = check_name(m["name"], m["name"], source)
        if name in seen:
            message = f"is declared twice (first at line {seen[name].line})"
            raise ConfigError([Issue(name, message, path, number)])
        if not m["cmd"].strip():
            raise ConfigError([Issue(name, "has no command", path, number)])
        seen[name] = source
        entries.append((name, m["cmd"].strip(), source))
    if not entries:
        raise ConfigError([Issue("", "no process: expected 'name: command' lines", path)])
    root = Table(())
    root.comments.append(
        "honcho and foreman stop every process when one ends: here each service is\n"
        "temporary and significant, and the root shuts down when any of them exits."
    )
    root.set("auto_shutdown", "any_significant")
    tables = [root]
    release = [e for e in entries if e[0] == "release"]
    port = BASE_PORT
    for name, command, source in release + [e for e in entries if e[0] != "release"]:
        table = Table((name,), source)
        table.comments.append(f"{source}: {name}: {command}")
        cmd: str | list[str] = dollars(command)
        if shell_syntax(command):
            cmd = ["sh", "-c", dollars(command)]
        table.set("cmd", cmd, source)
        if name == "release":
            table.comments.append("the release phase: a one-shot step before the others")
            table.set("restart", "transient", source)
            table.set("ready", {"exited": True}, source)
        else:
            table.set("env", {"PORT": str(port)}, source)
            port += PORT_STEP
            table.set("restart", "temporary", source)
            table.set("significant", True, source)
        if env_file is not None:
            table.set("env_file", env_file, source)
        tables.append(table)
    return tables, notes


def env_file_for(path: str, out_dir: str) -> str | None:
    """The ``.env`` beside the Procfile, as a path the output resolves (relative to it)."""
    env = os.path.join(os.path.dirname(path), ".env")
    if not os.path.isfile(env):
        return None
    return os.path.relpath(os.path.abspath(env), os.path.abspath(out_dir or "."))
