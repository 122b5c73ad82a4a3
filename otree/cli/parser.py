"""``otree``'s argparse parser: its help, its usage errors, and every command line that is
not of the plain form :mod:`otree.cli.args` reads without it.

``build_parser(argv)`` registers every subcommand of ``otree.cli.main.COMMANDS`` (for
``otree --help``) but adds the arguments of the chosen one only.
"""

from __future__ import annotations

import argparse
import os
import sys

from otree.cli.args import register
from otree.cli.main import COMMANDS, chosen_command
from otree.errors import ExitCode, stderr_line

TYPE_CHECKING = False  # typing is not imported: the client commands start without it
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any, NoReturn


class _Formatter(argparse.HelpFormatter):
    """argparse's formatter, sized without ``shutil``: argparse builds one for every
    ``add_argument``, and ``shutil`` (with zlib, bz2 and lzma) would stay in memory for
    the life of ``otree run`` (about 0.6 MiB of RSS)."""

    def __init__(
        self,
        prog: str,
        indent_increment: int = 2,
        max_help_position: int = 24,
        width: int | None = None,
    ) -> None:
        if width is None:
            width = _columns() - 2
        super().__init__(prog, indent_increment, max_help_position, width)


def _columns() -> int:
    try:
        return int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        pass
    try:
        return os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
    except (AttributeError, ValueError, OSError):
        return 80


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one ``otree: ...`` line and exit code 2."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        stderr_line(f"{message} (see '{self.prog} --help')")
        raise SystemExit(ExitCode.USAGE)


class _Unbuilt:
    """The parser of a subcommand this command line does not run: ``otree --help`` lists
    it, but its arguments are never added (each ``add_argument`` costs a formatter and
    gettext look-ups)."""

    def _ignore(self, *args: Any, **kwargs: Any) -> _Unbuilt:
        return self

    add_argument = set_defaults = add_argument_group = add_mutually_exclusive_group = _ignore

    def parse_known_args(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise RuntimeError("otree: a subcommand that was not built was chosen")


class _Commands:
    """``otree``'s subcommands as the modules that add their arguments see them: every
    one is registered up front, in the order of :data:`COMMANDS` with its help line, and
    ``add_parser(name, description=...)`` hands back its parser (an :class:`_Unbuilt`
    unless it is the chosen one)."""

    def __init__(self, sub: Any) -> None:
        self.parsers = {
            name: sub.add_parser(name, help=line) for name, (_, line) in COMMANDS.items()
        }

    def add_parser(self, name: str, **attributes: Any) -> Any:
        parser = self.parsers[name]
        for key, value in attributes.items():  # description, epilog: plain attributes
            setattr(parser, key, value)
        return parser


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """``otree``'s parser; given ``argv``, with only the arguments of its subcommand (the
    modules of the other subcommands are not imported)."""
    from otree._version import __version__

    parser = _Parser(
        prog="otree",
        description="Erlang/OTP supervision trees for OS processes.",
        epilog="exit codes: 0 ok; 1 refused, or the tree gave up; 2 bad input (a tree file,"
        " an argument); 3 no tree answers, or the first start failed; 4 a re-exec could"
        " not be completed; 70 a bug in otree; 130 interrupted. 'otree COMMAND --help'"
        " for each command.",
    )
    parser.add_argument("--version", action="version", version=f"otree {__version__}")
    chosen = None if argv is None else chosen_command(argv)

    def parser_of(**kwargs: Any) -> Any:  # kwargs["prog"]: "otree NAME"
        if chosen is None or kwargs["prog"].rpartition(" ")[2] == chosen:
            return _Parser(**kwargs)
        return _Unbuilt()

    # argparse calls parser_class(**kwargs) only: a function is enough (typeshed wants a class)
    options: dict[str, Any] = {"parser_class": parser_of}
    sub = _Commands(parser.add_subparsers(dest="command", metavar="COMMAND", **options))
    modules = (
        {module for module, _ in COMMANDS.values()}
        if chosen is None
        else {COMMANDS[chosen][0]}
        if chosen in COMMANDS
        else set()
    )

    if "main" in modules:
        from otree.cli import main  # run, check

        register(sub, main.PLAIN.values())
    if "control" in modules:
        from otree.cli import control  # status, start, stop, restart, logs, shutdown ...

        control.add_commands(sub)
    if "observe" in modules:
        from otree.cli import observe  # events, metrics, signal

        observe.add_commands(sub)
    if "migrate" in modules:
        from otree.cli import migrate  # otree import

        migrate.add_command(sub)
    if "simulate" in modules:
        from otree.cli import simulate  # otree simulate: the tree in the simulator

        simulate.add_command(sub)
    return parser
