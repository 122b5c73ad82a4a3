"""The ``otree`` command: ``run`` and ``check``; the control commands are ``otree.cli.control``'s.

Exit codes of ``otree run``: 0 shutdown (requested or automatic), 1 the root
gave up, 2 bad input (nothing starts), 3 the initial start failed, 4 the
re-exec guard tripped (or a re-exec could not be completed), 70 a bug in otree
(a traceback and a request to report it).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Callable, Sequence

from otree.errors import ConfigError, ExitCode, Issue, OtreeError, stderr_line

TYPE_CHECKING = False  # typing is not imported: the client commands start without it
if TYPE_CHECKING:
    from typing import Any, NoReturn

    from otree.core.spec import Supervisor


BUG_LINE = "otree: this is a bug in otree; please report it with the traceback above"

Handler = Callable[[argparse.Namespace], int]


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


def _load(arg: str, warnings: list[Issue] | None = None) -> Supervisor:
    from otree.config.loader import load_tree

    return load_tree(arg, warnings=warnings)


def _print_issues(exc: ConfigError) -> int:
    for line in exc.lines():
        stderr_line(line)
    return ExitCode.USAGE


def cmd_run(args: argparse.Namespace) -> int:
    from otree import launch

    if args.preflight:
        return launch.preflight(args.tree, args.events, args.log_dir)
    try:
        prepared = launch.prepare_tree_file(
            args.tree,
            events=args.events,
            log_dir=args.log_dir,
            socket=args.socket,
            subreaper=args.subreaper,
            metrics=args.metrics,
            metrics_public=args.metrics_public,
            # only an otree that is its process's own command line can re-exec itself
            own_process=bool(getattr(args, "own_process", False)),
        )
    except ConfigError as exc:
        return _print_issues(exc)
    except OtreeError as exc:
        stderr_line(str(exc))
        return ExitCode.USAGE
    if not isinstance(prepared, launch.Launch):  # a handoff could not be taken over
        return prepared
    return prepared.run()


def cmd_check(args: argparse.Namespace) -> int:
    from otree.config.render import render_tree

    warnings: list[Issue] = []
    try:
        tree = _load(args.tree, warnings)
    except ConfigError as exc:
        return _print_issues(exc)
    finally:
        for warning in warnings:
            stderr_line(f"warning: {warning}")
    colour = sys.stdout.isatty() and not os.environ.get("NO_COLOR")
    print(render_tree(tree, color=colour))
    return ExitCode.OK


#: every subcommand, in the order of ``otree --help``: the module that adds its arguments
#: (``main``: this one) and its help line
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("main", "run a tree in the foreground"),
    "check": ("main", "validate a tree and print it"),
    "status": ("control", "show the running tree: states, PIDs, uptimes, restarts"),
    "start": ("control", "start a stopped child (OTP restart_child)"),
    "stop": ("control", "stop a child; it stays stopped (OTP terminate_child)"),
    "restart": ("control", "stop and start a child: a new PID, not counted as a crash"),
    "scale": ("control", "run N instances of a pool (a service with replicas)"),
    "logs": ("control", "recent output of one service, a supervisor's, or all"),
    "reload": ("control", "re-exec otree with the re-read tree file, keeping unchanged children"),
    "events": ("observe", "the supervision events as JSON lines (the last N, then -f)"),
    "metrics": ("observe", "print the tree's metrics (Prometheus text format)"),
    "signal": (
        "observe",
        "send a signal to a service's main process (HUP to re-read its config);"
        " supervision is unchanged",
    ),
    "shutdown": ("control", "stop the tree in order; 'otree run' exits 0"),
    "import": ("migrate", "translate a supervisord configuration or a Procfile into a tree file"),
    "simulate": ("simulate", "a what-if run of a tree in the simulator, printed as a timeline"),
}


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


def _chosen(argv: Sequence[str]) -> str:
    """The subcommand of ``argv``: its first word that is not an option (``otree`` takes
    no option with a value); ``""`` when there is none."""
    return next((arg for arg in argv if not arg.startswith("-")), "")


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
    chosen = None if argv is None else _chosen(argv)

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
        _run_arguments(sub.add_parser("run"))
        check = sub.add_parser("check")
        check.add_argument("tree", metavar="TREE", help="tree.toml, file.py:attr or module:attr")
        check.set_defaults(func=cmd_check)
    if "control" in modules:
        from otree.cli import control  # status, start, stop, restart, logs, shutdown ...

        control.add_commands(sub)
    if "observe" in modules:
        from otree.cli import control, observe  # metrics, signal

        observe.add_commands(sub, control.common_options)
    if "migrate" in modules:
        from otree.cli import migrate  # otree import

        migrate.add_command(sub)
    if "simulate" in modules:
        from otree.cli import simulate  # otree simulate: the tree in the simulator

        simulate.add_command(sub)
    return parser


def _run_arguments(run: argparse.ArgumentParser) -> None:
    run.add_argument("tree", metavar="TREE", help="tree.toml, file.py:attr or module:attr")
    run.add_argument("--socket", metavar="P", help="control socket path")
    run.add_argument("--events", metavar="F", help="append JSON-lines supervision events to F")
    run.add_argument("--log-dir", metavar="D", help="write each service's output to D/PATH.log")
    run.add_argument("--subreaper", action="store_true", help="adopt and reap orphaned descendants")
    run.add_argument(
        "--metrics",
        metavar="ADDR",
        help="serve Prometheus metrics at http://ADDR/metrics (e.g. 127.0.0.1:9464)",
    )
    run.add_argument(
        "--metrics-public",
        action="store_true",
        help="allow a --metrics address that is not loopback",
    )
    run.add_argument(
        "--preflight",
        action="store_true",
        help="only check that this otree can start TREE (what a reload runs before it execs)",
    )
    run.set_defaults(func=cmd_run)


def run_cli(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default: ``sys.argv[1:]``); return the exit code."""
    try:
        parser = build_parser(sys.argv[1:] if argv is None else argv)
        args, extra = parser.parse_known_args(argv)
        if args.command is None:  # bare `otree`: what it can do, as a usage error
            parser.print_help(sys.stderr)
            return ExitCode.USAGE
        if extra:  # an option the subcommand does not know: point to its own help
            stderr_line(
                f"unrecognized arguments: {' '.join(extra)} (see 'otree {args.command} --help')"
            )
            return ExitCode.USAGE
        args.own_process = argv is None  # sys.argv: this process is the otree command
        handler: Handler = args.func
        return handler(args)
    except SystemExit as exc:
        if isinstance(exc.code, int):
            return exc.code
        return ExitCode.OK if exc.code is None else 1  # sys.exit("text") exits 1, as Python does
    except KeyboardInterrupt:
        return ExitCode.INTERRUPTED
    except BrokenPipeError:  # `otree check TREE | head`: the reader left, as `cat` would
        with contextlib.suppress(OSError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())  # the interpreter's final flush fails quietly
        return ExitCode.BROKEN_PIPE
    except Exception as exc:
        _report_bug(exc)
        return ExitCode.BUG


def _report_bug(exc: Exception) -> None:
    """The traceback and BUG_LINE on stderr; with no fd or memory left to import
    ``traceback`` (it reads source files), the exception alone."""
    try:
        import traceback

        traceback.print_exception(type(exc), exc, exc.__traceback__)
    except Exception:
        with contextlib.suppress(Exception):
            sys.stderr.write(f"{type(exc).__name__}: {exc}\n")
    with contextlib.suppress(Exception):
        sys.stderr.write(BUG_LINE + "\n")
        sys.stderr.flush()


def main(argv: Sequence[str] | None = None) -> NoReturn:
    raise SystemExit(run_cli(argv))
