"""The client commands that observe and poke a running tree: ``otree metrics``, ``otree events``,
``otree signal``.

They find the tree and map errors to exit codes as every control command does
(``otree.cli.control``).
"""

from __future__ import annotations

import sys

from otree.cli.args import Args, BadValue, Command, Option, Positional, register
from otree.cli.control import COMMON, connect, guard
from otree.errors import ExitCode, stderr_line

TYPE_CHECKING = False  # typing is not imported: the client commands start without it
if TYPE_CHECKING:
    from typing import Any


@guard
def cmd_metrics(args: Args) -> int:
    """The Prometheus text exposition, as ``GET /metrics`` of ``otree run --metrics`` serves it."""
    with connect(args) as client:
        reply = client.call("metrics")
    sys.stdout.write(str(reply.get("text", "")))
    sys.stdout.flush()
    return ExitCode.OK


@guard
def cmd_events(args: Args) -> int:
    """The event log's lines from the tree's ring (the last N), then live with ``-f``."""
    out = sys.stdout
    with connect(args) as client:
        for message in client.stream("events", n=args.lines, follow=args.follow):
            if "event" in message:
                out.write(str(message["event"]) + "\n")
                if args.follow:
                    out.flush()
            elif "dropped" in message:
                out.flush()
                stderr_line(f"{message['dropped']} events skipped (this reader fell behind)")
    out.flush()
    return ExitCode.OK


def _signal_name(text: str) -> str:
    """``HUP``, ``SIGHUP`` or ``hup`` -> ``HUP``; a name Linux has no signal for is a bad
    argument (exit 2)."""
    import signal

    name = text.strip().upper().removeprefix("SIG")
    if not name.isalnum() or name.isdigit() or not hasattr(signal.Signals, "SIG" + name):
        raise BadValue(f"unknown signal name: {text!r} (see 'kill -l')")
    return name


@guard
def cmd_signal(args: Args) -> int:
    with connect(args) as client:
        reply = client.call("signal", path=args.path, signal=args.signal, group=args.group)
    whom = f"process group {reply.get('pid')}" if args.group else f"pid {reply.get('pid')}"
    print(f"{args.path}: sent {args.signal} to {whom}")
    return ExitCode.OK


def _count(text: str) -> int:
    if not text.isdigit():
        raise BadValue(f"not a number of events: {text!r}")
    return int(text)


#: ``metrics``, ``events`` and ``signal`` (:mod:`otree.cli.args`), in the order of ``otree --help``
PLAIN: dict[str, Command] = {
    command.name: command
    for command in (
        Command(
            "events",
            cmd_events,
            [
                Option(
                    "-n",
                    "--lines",
                    convert=_count,
                    metavar="N",
                    help="how many of the recent events (default: all the tree keeps, up to 1000)",
                ),
                Option("-f", "--follow", help="keep printing new events"),
                *COMMON,
            ],
        ),
        Command("metrics", cmd_metrics, COMMON),
        Command(
            "signal",
            cmd_signal,
            [
                Positional("path", "PATH", "a service, e.g. web.nginx"),
                Positional("signal", "SIGNAL", "HUP, USR2, TERM ...", convert=_signal_name),
                Option("--group", help="signal its whole process group instead"),
                *COMMON,
            ],
        ),
    )
}


def add_commands(sub: Any) -> None:
    """Add ``events``, ``metrics`` and ``signal`` to ``otree``'s subparsers."""
    register(sub, PLAIN.values())
