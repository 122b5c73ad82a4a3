"""``otree import FILE [-o OUT]``: a supervisord configuration or a Procfile as a tree file."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from typing import Any

from otree.errors import ConfigError, ExitCode, stderr_line


def add_command(sub: Any) -> None:
    """The ``import`` subcommand on ``sub`` (the parser's subparsers)."""
    imp = sub.add_parser(
        "import",
        description="Translate a supervisord configuration (with its [include] files) or a"
        " Procfile into a tree file that 'otree check' accepts. What has no equivalent is a"
        " comment in the output and a line on stderr. Exit codes: 0 written, 2 the input"
        " cannot be read or translated (nothing is written).",
    )
    imp.add_argument("file", metavar="FILE", help="supervisord.conf (or any name) or Procfile")
    imp.add_argument(
        "-o", "--output", metavar="OUT", help="write the tree file to OUT (default: stdout)"
    )
    imp.set_defaults(func=cmd_import)


def cmd_import(args: argparse.Namespace) -> int:
    from otree.config.importers import import_file

    out: str | None = args.output
    if out is not None and os.path.abspath(out) == os.path.abspath(args.file):
        stderr_line(f"{out}: the output would overwrite the input; choose another -o")
        return ExitCode.USAGE
    try:
        result = import_file(args.file, out)
    except ConfigError as exc:
        for line in exc.lines():
            stderr_line(line)
        return ExitCode.USAGE
    for note in result.notes:
        stderr_line(f"{note} (a comment in the output)")
    for name in result.unset:
        stderr_line(f"${{{name}}}: {name} is not set here; otree check and otree run need it")
    if out is None:
        sys.stdout.write(result.text)
        return ExitCode.OK
    try:
        _write(out, result.text)
    except OSError as exc:
        stderr_line(f"{out}: cannot write: {exc.strerror or exc}")
        return ExitCode.USAGE
    return ExitCode.OK


def _write(out: str, text: str) -> None:
    """``text`` into ``out`` whole or not at all (a temporary file renamed over it)."""
    tmp = os.path.join(os.path.dirname(out) or ".", f".{os.path.basename(out)}.{os.getpid()}.tmp")
    try:
        with open(tmp, "x", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, out)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
