"""The client commands that observe and poke a running tree: ``otree metrics``, ``otree events``,
``otree signal``.

They find the tree and map errors to exit codes as every control command does
(``otree.cli.control``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from otree.cli.control import connect, guard
from otree.errors import ExitCode, stderr_line

TYPE_CHECKING = False  # typing is not imported: the client commands start without it
if TYPE_CHECKING:
    from typing import Any


@guard
def cmd_metrics(args: argparse.Namespace) -> int:
    """The Prometheus text exposition, as ``GET /metrics`` of ``otree run --metrics`` serves it."""
    with connect(args) as client:
        reply = client.call("metrics")
    sys.stdout.write(str(reply.get("text", "")))
    sys.stdout.flush()
    return ExitCode.OK


@guard
def cmd_events(args: argparse.Namespace) -> int:
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
        raise argparse.ArgumentTypeError(f"unknown signal name: {text!r} (see 'kill -l')")
    return name


@guard
def cmd_signal(args: argparse.Namespace) -> int:
    with connect(args) as client:
        reply = client.call("signal", path=args.path, signal=args.signal, group=args.group)
    whom = f"process group {reply.get('pid')}" if args.group else f"pid {reply.get('pid')}"
    print(f"{args.path}: sent {args.signal} to {whom}")
    return ExitCode.OK


def _count(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"not a number of events: {text!r}")
    return int(text)


def add_commands(sub: Any, common: Callable[[argparse.ArgumentParser], None]) -> None:
    """Add ``metrics`` and ``signal`` to ``otree``'s subparsers (``common``: the options every
    control command takes)."""
    p = sub.add_parser("metrics")
    common(p)
    p.set_defaults(func=cmd_metrics)

    p = sub.add_parser("events")
    p.add_argument(
        "-n",
        "--lines",
        type=_count,
        metavar="N",
        help="how many of the recent events (default: all the tree keeps, up to 1000)",
    )
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new events")
    common(p)
    p.set_defaults(func=cmd_events)

    p = sub.add_parser("signal")
    p.add_argument("path", metavar="PATH", help="a service, e.g. web.nginx")
    p.add_argument("signal", metavar="SIGNAL", type=_signal_name, help="HUP, USR2, TERM ...")
    p.add_argument("--group", action="store_true", help="signal its whole process group instead")
    common(p)
    p.set_defaults(func=cmd_signal)
