"""The ``otree`` command: its entry, ``run`` and ``check``.

``run_cli`` reads a client command's plain line without argparse
(``otree.cli.args``; the control commands are ``otree.cli.control``'s) and hands
every other line to argparse (``otree.cli.parser``).

Exit codes of ``otree run``: 0 shutdown (requested or automatic), 1 the root
gave up, 2 bad input (nothing starts), 3 the initial start failed, 4 the
re-exec guard tripped (or a re-exec could not be completed), 70 a bug in otree
(a traceback and a request to report it).
"""

from __future__ import annotations

import os
import sys

from otree.cli.args import Args, Command, Option, Positional
from otree.errors import ConfigError, ExitCode, Issue, OtreeError, stderr_line

TYPE_CHECKING = False  # typing is not imported: the client commands start without it
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import NoReturn

    from otree.core.spec import Supervisor

    Handler = Callable[[Args], int]


BUG_LINE = "otree: this is a bug in otree; please report it with the traceback above"


def _load(arg: str, warnings: list[Issue] | None = None) -> Supervisor:
    from otree.config.loader import load_tree

    return load_tree(arg, warnings=warnings)


def _print_issues(exc: ConfigError) -> int:
    for line in exc.lines():
        stderr_line(line)
    return ExitCode.USAGE


def cmd_run(args: Args) -> int:
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


def cmd_check(args: Args) -> int:
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


_TREE = "tree.toml, file.py:attr or module:attr"

#: ``run`` and ``check`` (:mod:`otree.cli.args`)
PLAIN: dict[str, Command] = {
    command.name: command
    for command in (
        Command(
            "run",
            cmd_run,
            [
                Positional("tree", "TREE", _TREE),
                Option("--socket", metavar="P", help="control socket path"),
                Option("--events", metavar="F", help="append JSON-lines supervision events to F"),
                Option("--log-dir", metavar="D", help="write each service's output to D/PATH.log"),
                Option("--subreaper", help="adopt and reap orphaned descendants"),
                Option(
                    "--metrics",
                    metavar="ADDR",
                    help="serve Prometheus metrics at http://ADDR/metrics (e.g. 127.0.0.1:9464)",
                ),
                Option("--metrics-public", help="allow a --metrics address that is not loopback"),
                Option(
                    "--preflight",
                    help="only check that this otree can start TREE (what a reload runs before"
                    " it execs)",
                ),
            ],
        ),
        Command("check", cmd_check, [Positional("tree", "TREE", _TREE)]),
    )
}


def chosen_command(argv: Sequence[str]) -> str:
    """The subcommand of ``argv``: its first word that is not an option (``otree`` takes
    no option with a value); ``""`` when there is none."""
    return next((arg for arg in argv if not arg.startswith("-")), "")


def _plain(words: list[str]) -> Args | None:
    """A plain line of a command of this module, ``otree.cli.control`` or
    ``otree.cli.observe``, read without argparse (:mod:`otree.cli.args`), or None."""
    module = COMMANDS.get(words[0] if words else "", ("",))[0]
    plain: dict[str, Command]
    if module == "main":
        plain = PLAIN
    elif module == "control":
        from otree.cli.control import PLAIN as plain
    elif module == "observe":
        from otree.cli.observe import PLAIN as plain
    else:
        return None
    from otree.cli.args import parse

    return parse(plain[words[0]], words)


def run_cli(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default: ``sys.argv[1:]``); return the exit code."""
    words = list(sys.argv[1:] if argv is None else argv)
    try:
        plain = _plain(words)
        if plain is not None:
            args = plain
        else:  # argparse: anything else, its help and its usage errors
            from otree.cli.parser import build_parser

            parser = build_parser(words)
            args, extra = parser.parse_known_args(words, namespace=Args())
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
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())  # the interpreter's final flush fails quietly
        except OSError:
            pass
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
        try:  # noqa: SIM105 - not contextlib: a client command does not import it
            sys.stderr.write(f"{type(exc).__name__}: {exc}\n")
        except Exception:
            pass
    try:
        sys.stderr.write(BUG_LINE + "\n")
        sys.stderr.flush()
    except Exception:
        pass


def main(argv: Sequence[str] | None = None) -> NoReturn:
    raise SystemExit(run_cli(argv))
