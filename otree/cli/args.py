"""The arguments of the control commands as data, read without argparse in their plain form.

``otree status`` is typed all day, and argparse (with ``re``, ``gettext`` and
``enum`` under it) is about a third of its start-up. So each control command's
positionals and options are listed once, as a :class:`Command`;
:func:`add_arguments` gives argparse exactly those arguments (its help text and
its usage errors stay argparse's), and :func:`parse` reads a command line of
the plain form into the namespace argparse would make of it.

The plain form is the command, its positionals, then its options, each option
whole: ``--name``, ``--name VALUE``, ``--name=VALUE`` or ``-n VALUE``. For
anything else :func:`parse` returns None and argparse reads the line: ``--help``,
an abbreviated option, ``--``, short flags bundled, a value that starts with
``-`` or that its type refuses, an option before a positional, a missing or an
extra argument. The plain reading never decides what a line means, only
sooner: tests/cli/test_args.py compares the two on generated command lines.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing is not imported: the client commands start without it
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence
    from typing import Any


class BadValue(ValueError):
    """An argument its type refuses; the message is argparse's for it (``argument -n/--lines:
    <message>``)."""


class Args:
    """A parsed command line: one attribute per argument, ``command`` and ``func`` (the
    subcommand and its handler). argparse fills one too (``namespace=Args()``)."""

    def __init__(self, **values: Any) -> None:
        self.__dict__.update(values)

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in sorted(self.__dict__.items()))
        return f"Args({fields})"

    if TYPE_CHECKING:

        def __getattr__(self, name: str) -> Any: ...
        def __setattr__(self, name: str, value: Any) -> None: ...


class Positional:
    """A positional argument; ``optional``: it may be left out (argparse's ``nargs="?"``,
    None then)."""

    __slots__ = ("convert", "dest", "help", "metavar", "optional")

    def __init__(
        self,
        dest: str,
        metavar: str,
        help: str,
        *,
        optional: bool = False,
        convert: Callable[[str], Any] | None = None,
    ) -> None:
        self.dest = dest
        self.metavar = metavar
        self.help = help
        self.optional = optional
        self.convert = convert


class Option:
    """An option: a flag (``metavar`` None: True when given, else False) or one that takes
    a value (``convert``-ed, ``default`` when not given)."""

    __slots__ = ("convert", "default", "dest", "flags", "help", "metavar")

    def __init__(
        self,
        *flags: str,
        help: str,
        metavar: str | None = None,
        dest: str | None = None,
        convert: Callable[[str], Any] | None = None,
        default: Any = None,
    ) -> None:
        self.flags = flags
        self.help = help
        self.metavar = metavar
        long = next((f for f in flags if f.startswith("--")), flags[0])
        self.dest = dest or long.lstrip("-").replace("-", "_")
        self.convert = convert
        self.default = False if metavar is None else default

    @property
    def is_flag(self) -> bool:
        return self.metavar is None


class Command:
    """A subcommand: its name, its handler and its arguments in the order of its help."""

    __slots__ = ("arguments", "handler", "name")

    def __init__(
        self,
        name: str,
        handler: Callable[[Args], int],
        arguments: Sequence[Positional | Option],
    ) -> None:
        self.name = name
        self.handler = handler
        self.arguments = tuple(arguments)
        positionals = [a for a in self.arguments if isinstance(a, Positional)]
        optional = [a.optional for a in positionals]
        if optional != sorted(optional):  # argparse would match them differently
            raise ValueError(f"{name}: an optional positional before a required one")


def add_arguments(parser: Any, arguments: Sequence[Positional | Option]) -> None:
    """Give an argparse parser ``arguments``: the same help, the same checks."""
    for arg in arguments:
        if isinstance(arg, Positional):
            parser.add_argument(
                arg.dest,
                metavar=arg.metavar,
                help=arg.help,
                **({"nargs": "?"} if arg.optional else {}),
                **({"type": _for_argparse(arg.convert)} if arg.convert else {}),
            )
        elif arg.is_flag:
            parser.add_argument(*arg.flags, dest=arg.dest, action="store_true", help=arg.help)
        else:
            parser.add_argument(
                *arg.flags,
                dest=arg.dest,
                metavar=arg.metavar,
                default=arg.default,
                help=arg.help,
                **({"type": _for_argparse(arg.convert)} if arg.convert else {}),
            )


def register(sub: Any, commands: Iterable[Command]) -> None:
    """Add ``commands`` to ``otree``'s argparse subparsers, each with its handler."""
    for command in commands:
        parser = sub.add_parser(command.name)
        add_arguments(parser, command.arguments)
        parser.set_defaults(func=command.handler)


def _for_argparse(convert: Callable[[str], Any]) -> Callable[[str], Any]:
    """``convert`` with its ``BadValue`` as argparse's ``ArgumentTypeError`` (whose message
    argparse prints as it is)."""
    import argparse

    def typed(text: str) -> Any:
        try:
            return convert(text)
        except BadValue as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    typed.__name__ = convert.__name__
    return typed


def parse(command: Command, words: Sequence[str]) -> Args | None:
    """``words`` (``command.name`` first) in the plain form as argparse would read them
    (``command``, ``func`` and every argument's value), or None: not the plain form."""
    if not words or words[0] != command.name:
        return None
    values: dict[str, Any] = {"command": command.name, "func": command.handler}
    positionals: list[Positional] = []
    options: dict[str, Option] = {}
    for arg in command.arguments:
        if isinstance(arg, Positional):
            positionals.append(arg)
            values[arg.dest] = None
        else:
            options.update((flag, arg) for flag in arg.flags)
            values[arg.dest] = arg.default
    i, end = 1, len(words)
    given = []
    while i < end and not words[i].startswith("-"):
        given.append(words[i])
        i += 1
    if not sum(not p.optional for p in positionals) <= len(given) <= len(positionals):
        return None
    try:
        for positional, text in zip(positionals, given, strict=False):
            values[positional.dest] = _converted(positional.convert, text)
        while i < end:
            word = words[i]
            i += 1
            name, equals, attached = (
                word.partition("=") if word.startswith("--") else (word, "", "")
            )
            option = options.get(name)
            if option is None:
                return None
            if option.is_flag:
                if equals:
                    return None
                values[option.dest] = True
                continue
            if equals:
                text = attached
            elif i < end:
                text = words[i]
                i += 1
            else:
                return None
            if not text or text.startswith("-"):
                return None
            values[option.dest] = _converted(option.convert, text)
    except (BadValue, TypeError, ValueError):
        return None
    return Args(**values)


def _converted(convert: Callable[[str], Any] | None, text: str) -> Any:
    return text if convert is None else convert(text)
