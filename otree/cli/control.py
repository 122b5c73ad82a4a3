"""The client side of the control plane: ``otree status|start|stop|restart|logs|shutdown|reload``.

``PLAIN`` lists their arguments (:mod:`otree.cli.args`: a plain command line is
read without argparse); ``add_commands(subparsers)`` registers them with
``otree``'s argparse parser.
Each finds the running tree (``--socket P``, ``OTREE_SOCKET``, ``--tree
TREE``, else the tree run from the current directory), sends one request and
turns the answer into output and an exit code:

    0  done
    1  refused by the tree (``otree: <reason>`` on stderr)
    2  bad arguments (or several trees match: pick one)
    3  no tree is running there
"""

from __future__ import annotations

import os
import sys

from otree.cli.args import Args, BadValue, Command, Option, Positional, add_arguments, register
from otree.control.address import default_socket, socket_dir
from otree.control.client import Client, NotRunning, check_socket_dir, find_running
from otree.errors import ControlError, ExitCode, stderr_line

TYPE_CHECKING = False  # typing is not imported: the client commands start without it
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from typing import Any, TextIO

_STATE_COLOURS = {
    "running": "32",
    "starting": "33",
    "restarting": "33",
    "stopping": "33",
    "stopped": "2",
    "exited": "2",
    "dead": "31",
}


def _fail(message: str, code: int) -> int:
    stderr_line(message)
    return code


def _colour_on(stream: TextIO) -> bool:
    try:
        return stream.isatty() and not os.environ.get("NO_COLOR")
    except (AttributeError, ValueError):
        return False


# --- finding the tree --------------------------------------------------------------


class _Ambiguous(ControlError):
    pass


def resolve_socket(socket_arg: str | None, tree_arg: str | None, cwd: str | None = None) -> str:
    """Where the tree is: --socket, OTREE_SOCKET, --tree's default, else the one run here."""
    if socket_arg:
        return socket_arg
    env = os.environ.get("OTREE_SOCKET")
    if env:
        return env
    if tree_arg:
        path = default_socket(tree_arg)
        check_socket_dir(os.path.dirname(path))
        return path
    cwd = cwd or os.getcwd()
    found = find_running(cwd)
    if len(found) == 1:
        return str(found[0]["socket"])
    if not found:
        raise NotRunning(
            f"no otree is running for {cwd} (no tree in {socket_dir()} was run here"
            " or from a file here); pass --socket P or --tree TREE"
        )
    trees = ", ".join(f"{i.get('tree') or '?'} (pid {i.get('pid')})" for i in found)
    raise _Ambiguous(f"several trees run from here: {trees}; pick one with --tree or --socket")


#: how long a client command waits for each answer unless ``--timeout`` says otherwise
DEFAULT_TIMEOUT = 10.0


def _connect(args: Args) -> Client:
    timeout = args.timeout if args.timeout is not None else DEFAULT_TIMEOUT
    return Client(resolve_socket(args.socket, args.tree_file), timeout=timeout)


def _long_wait(client: Client, args: Args) -> None:
    """What may take as long as the tree needs (a shutdown, a reload): only an explicit
    ``--timeout`` limits it."""
    client.sock.settimeout(args.timeout)


def _guard(body: Callable[[Args], int]) -> Callable[[Args], int]:
    """Turn the control errors of ``body`` into a message and an exit code."""

    def handler(args: Args) -> int:
        try:
            return body(args)
        except NotRunning as exc:
            return _fail(str(exc), ExitCode.NOT_RUNNING)
        except _Ambiguous as exc:
            return _fail(str(exc), ExitCode.USAGE)
        except ControlError as exc:
            return _fail(str(exc), ExitCode.REFUSED)
        except BrokenPipeError:  # `otree logs | head`: the reader left; that is fine
            _silence_stdout()
            return ExitCode.OK

    return handler


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


#: the same two, for the other client command modules (``otree.cli.observe``)
connect = _connect
guard = _guard


# --- status ---------------------------------------------------------------------------


def human_duration(seconds: float | None) -> str:
    """``4.2s``, ``42s``, ``5m 02s``, ``3h 05m``, ``2d 03h``; empty for None."""
    if seconds is None:
        return ""
    if seconds < 10:
        return f"{max(seconds, 0.0):.1f}s"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60:02d}m"
    return f"{s // 86400}d {s % 86400 // 3600:02d}h"


def describe_exit(last: dict[str, Any] | None) -> str:
    if not last:
        return ""
    if last.get("gave_up"):
        return "gave up"
    if last.get("start_failed"):
        return f"start failed: {last['start_failed']}"
    if last.get("signal") is not None:
        text = f"signal {last['signal']}"
    elif last.get("code") is not None:
        text = f"code {last['code']}"
    else:
        text = "exited"
    return text if last.get("normal", True) else f"{text} (crash)"


def describe_liveness(node: dict[str, Any]) -> str:
    """A service's sd_notify ``STATUS=`` text, and its failing health checks if any."""
    text = node.get("status_text") or ""
    failures = (node.get("health") or {}).get("failures") or 0
    if failures:
        failing = f"health: {failures} failed in a row"
        text = f"{text} ({failing})" if text else failing
    return text


def human_bytes(count: int) -> str:
    """``512B``, ``3.4M``, ``1.2G``."""
    size = float(count)
    for unit in ("B", "K", "M", "G"):
        if size < 1024 or unit == "G":
            return f"{size:.0f}{unit}" if unit == "B" else f"{size:.1f}{unit}"
        size /= 1024
    return f"{size:.1f}G"


def cgroup_columns(
    nodes: list[dict[str, Any]],
) -> tuple[tuple[str, ...], list[tuple[str, ...]]] | None:
    """The PROCS and CPU columns (MEM too where a service has it) of services in their
    cgroups (``cgroups``): the header and each node's cells; None when no service is."""
    if not any("procs" in node for node in nodes):
        return None
    memory = any(node.get("memory") is not None for node in nodes)
    header = ("PROCS", "CPU") + (("MEM",) if memory else ())
    cells = []
    for node in nodes:
        procs, cpu, mem = node.get("procs"), node.get("cpu_seconds"), node.get("memory")
        row = ("" if procs is None else str(procs), "" if cpu is None else f"{cpu:.2f}s")
        cells.append(row + ((human_bytes(mem) if mem is not None else "",) if memory else ()))
    return header, cells


def render_status(nodes: list[dict[str, Any]], colour: bool = False) -> str:
    """The tree as a table: paths indented by depth, states coloured, times humanised."""
    header: tuple[str, ...] = ("PATH", "STATE", "PID", "UPTIME", "RESTARTS", "LAST EXIT")
    usage = cgroup_columns(nodes)
    if usage:
        header += usage[0]
    from otree.cli.nodeview import cost_columns

    costs = cost_columns(nodes) if any("rss_bytes" in node for node in nodes) else None
    if costs:
        header += costs[0]
    notes = [describe_liveness(node) for node in nodes]
    if any(notes):  # the STATUS column only when a service said something or is failing
        header += ("STATUS",)
    rows: list[tuple[str, ...]] = []
    for i, (node, note) in enumerate(zip(nodes, notes, strict=True)):
        path = node.get("path") or ""
        depth = path.count(".") + 1 if path else 0
        name = "  " * depth + (path or "(root)")
        pid = node.get("pid")
        state = str(node.get("state", "?"))
        if node.get("kind") == "pool":  # one line: how many of its instances run
            below = [n for n in nodes if (n.get("path") or "").startswith(path + ".")]
            running = sum(1 for n in below if n.get("state") == "running")
            state = f"{state} {running}/{node.get('replicas', len(below))}"
        rows.append(
            (
                name,
                state,
                "" if pid is None else str(pid),
                human_duration(node.get("uptime")),
                str(node.get("restarts", 0)),
                describe_exit(node.get("last_exit")),
            )
            + (usage[1][i] if usage else ())
            + (costs[1][i] if costs else ())
            + ((note,) if header[-1] == "STATUS" else ())
        )
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: tuple[str, ...], colours: tuple[str | None, ...] = ()) -> str:
        out = []
        for i, cell in enumerate(cells):
            text = cell if i == len(cells) - 1 else cell.ljust(widths[i])
            code = colours[i] if i < len(colours) else None
            if colour and code and cell:
                text = f"\x1b[{code}m{cell}\x1b[0m" + text[len(cell) :]
            out.append(text)
        return "  ".join(out).rstrip()

    lines = [line(header, ("1",) * len(header))]
    for node, row in zip(nodes, rows, strict=True):
        exit_colour = "31" if (node.get("last_exit") or {}).get("normal") is False else None
        state_colour = _STATE_COLOURS.get(row[1].split(" ")[0])  # a pool's "running 2/3"
        lines.append(line(row, (None, state_colour, None, None, None, exit_colour)))
    return "\n".join(lines)


def render_header(info: dict[str, Any]) -> str:
    tree = info.get("tree") or info.get("tree_file") or "tree"
    return f"{tree}: otree pid {info.get('pid')}, up {human_duration(info.get('uptime'))}"


@_guard
def cmd_status(args: Args) -> int:
    if args.check:
        return _check(args)
    if args.path is not None:
        from otree.cli.nodeview import show_node

        with _connect(args) as client:
            return show_node(client.call("status", path=args.path), args.json)
    with _connect(args) as client:
        reply = client.call("status")
        info = None if args.json else client.call("info")
    nodes = reply.get("nodes", [])
    if args.json:
        import json

        print(json.dumps({"nodes": nodes}, indent=2))
        return ExitCode.OK
    assert info is not None
    print(render_header(info))
    print(render_status(nodes, colour=_colour_on(sys.stdout)))
    return ExitCode.OK


def _check(args: Args) -> int:
    """``otree status --check``: 0 when the root runs and no supervisor has given up (and
    stayed down), 1 otherwise, 3 when no tree answers; quiet unless ``-v``."""
    try:
        with _connect(args) as client:
            nodes = client.call("status").get("nodes", [])
    except (NotRunning, ControlError) as exc:
        if args.verbose:
            stderr_line(str(exc))
        return ExitCode.NOT_RUNNING
    problems = [] if nodes and nodes[0].get("state") == "running" else ["the root is not running"]
    problems += [
        f"{n['path']}: gave up"
        for n in nodes
        if n.get("kind") in ("supervisor", "pool")
        and n.get("state") != "running"
        and (n.get("last_exit") or {}).get("gave_up")
    ]
    if args.verbose:
        print("\n".join(problems) if problems else f"ok: {len(nodes)} nodes, the root running")
    return ExitCode.GAVE_UP if problems else ExitCode.OK


# --- start | stop | restart | shutdown ---------------------------------------------------


def _pid_of(client: Client, path: str) -> str:
    """`` (pid N)`` for a service that runs now, else nothing."""
    for node in client.call("status").get("nodes", []):
        if node.get("path") == path and node.get("pid") is not None:
            return f" (pid {node['pid']})"
    return ""


def _node_command(name: str, done: str) -> Callable[[Args], int]:
    @_guard
    def command(args: Args) -> int:
        with _connect(args) as client:
            client.call(name, path=args.path)
            pid = _pid_of(client, args.path) if name != "stop" else ""
            print(f"{args.path}: {done}{pid}")
        return ExitCode.OK

    return command


@_guard
def cmd_scale(args: Args) -> int:
    with _connect(args) as client:
        client.call("scale", path=args.path, n=args.count)
    print(f"{args.path}: {args.count} running")
    return ExitCode.OK


@_guard
def cmd_shutdown(args: Args) -> int:
    with _connect(args) as client:
        client.call("shutdown")
        _long_wait(client, args)
        for _ in client.messages():  # the tree closes the connection when it is down
            pass
    print("tree stopped")
    return ExitCode.OK


@_guard
def cmd_reload(args: Args) -> int:
    """Re-exec the tree's otree with the re-read tree file; answered once it is ready again."""
    if args.dry_run:  # what it would do: the same reconciliation, nothing changes
        from otree.cli.plan import render_plan

        with _connect(args) as client:
            try:
                reply = client.call("reload_plan")
            except NotRunning:
                raise
            except ControlError as exc:
                return _refused("a reload now would be refused", exc)
        print(render_plan(reply))
        return ExitCode.OK
    with _connect(args) as client:
        _long_wait(client, args)  # answered once the new image has the tree up again
        try:
            reply = client.call("reload")
        except NotRunning:
            raise
        except ControlError as exc:  # refused: an invalid file prints one line per issue
            return _refused("reload refused", exc)
    print(render_reload(reply))
    # reloaded, but a service it started did not come up: scripts (ExecReload=) must know
    return ExitCode.REFUSED if reply.get("failed") else ExitCode.OK


def _refused(what: str, exc: ControlError) -> int:
    """A refused reload on stderr: ``what: its first line``, then one line per issue."""
    first, *rest = str(exc).splitlines() or ["refused"]
    stderr_line(f"{what}: {first}")
    for line in rest:
        stderr_line(line)
    return ExitCode.REFUSED


def render_reload(reply: dict[str, Any]) -> str:
    """``reloaded (otree pid N)`` and what changed: kept, stopped, started and failed paths."""
    lines = [f"reloaded (otree pid {reply.get('pid')})"]
    shown = (
        ("adopted", "kept"),
        ("updated", "updated"),
        ("stopped", "stopped"),
        ("started", "started"),
    )
    for key, label in shown:
        paths = reply.get(key) or []
        if paths:
            lines.append(f"  {label + ':':<8} {', '.join(str(p) for p in paths)}")
    for failure in reply.get("failed") or []:  # "path: reason"
        lines.append(f"  failed:  {failure}")
    return "\n".join(lines)


# --- logs --------------------------------------------------------------------------------


def _log_messages(client: Client, args: Args) -> Iterator[dict[str, Any]]:
    yield from client.stream("logs", path=args.path, n=args.lines, follow=args.follow)
    if args.follow:
        yield from client.messages()


@_guard
def cmd_logs(args: Args) -> int:
    out = sys.stdout
    with _connect(args) as client:
        services = [
            n["path"] for n in client.call("status").get("nodes", []) if n.get("kind") == "service"
        ]
        prefix: dict[str, str] = {}
        if args.path not in services:  # several services: each line says whose it is
            from otree.runtime.output import prefixes  # as the tree's console shows them

            prefix = {p: b.decode() for p, b in prefixes(services, _colour_on(out)).items()}
        for message in _log_messages(client, args):
            if "line" in message:
                path = str(message.get("path", ""))
                out.write(prefix.get(path, f"{path} | " if prefix else "") + message["line"] + "\n")
                if args.follow:
                    out.flush()
            elif "dropped" in message:
                out.flush()
                stderr_line(
                    f"{message['dropped']} lines of {message.get('path')} skipped"
                    " (this reader fell behind)"
                )
    out.flush()
    return ExitCode.OK


# --- arguments ----------------------------------------------------------------------------


def _instances(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise BadValue(f"not a number of instances: {text!r}") from None
    if value < 0:
        raise BadValue(f"not a number of instances (>= 0): {text!r}")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise BadValue(f"not a number of lines: {text!r}") from None
    if value < 0:
        raise BadValue(f"not a number of lines: {text!r}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise BadValue(f"not a number of seconds: {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise BadValue(f"not a number of seconds: {text!r}")
    return value


#: the options every control command takes (``otree.cli.observe``'s too)
COMMON = (
    Option(
        "--timeout",
        convert=_seconds,
        metavar="S",
        help=f"give up (exit 3) when an answer takes longer (default {DEFAULT_TIMEOUT:g}s;"
        " shutdown and reload wait as long as the tree takes unless given)",
    ),
    Option("--socket", metavar="P", help="the tree's control socket (default: $OTREE_SOCKET)"),
    Option(
        "--tree",
        dest="tree_file",
        metavar="TREE",
        help="find the socket of 'otree run TREE' (default: the tree run from this directory)",
    ),
)

_VERBS = {"start": "started", "stop": "stopped", "restart": "restarted"}

#: the control commands, in the order of ``otree --help`` (``otree.cli.main.COMMANDS``)
PLAIN: dict[str, Command] = {
    command.name: command
    for command in (
        Command(
            "status",
            cmd_status,
            [
                Positional("path", "PATH", "one node in full (e.g. web.api)", optional=True),
                Option("--json", help='print {"nodes": [...]} for scripts'),
                Option(
                    "--check",
                    help="a health check: exit 0 when the root runs and no supervisor has"
                    " given up, 1 otherwise, 3 when no tree answers (quiet unless -v)",
                ),
                Option("-v", "--verbose", help="with --check: say why"),
                *COMMON,
            ],
        ),
        *(
            Command(
                name,
                _node_command(name, done),
                [Positional("path", "PATH", "a service or supervisor, e.g. web.api"), *COMMON],
            )
            for name, done in _VERBS.items()
        ),
        Command(
            "scale",
            cmd_scale,
            [
                Positional("path", "PATH", "a pool, e.g. workers.w"),
                Positional("count", "N", "how many instances (0 .. 10000)", convert=_instances),
                *COMMON,
            ],
        ),
        Command(
            "logs",
            cmd_logs,
            [
                Positional("path", "PATH", "a service or supervisor (default: all)", optional=True),
                Option(
                    "-n",
                    "--lines",
                    convert=_count,
                    default=50,
                    metavar="N",
                    help="how many lines (default 50)",
                ),
                Option("-f", "--follow", help="keep printing new lines"),
                *COMMON,
            ],
        ),
        Command(
            "reload",
            cmd_reload,
            [
                *COMMON,
                Option(
                    "--dry-run",
                    help="print what a reload would keep, update, restart, stop and start;"
                    " change nothing",
                ),
            ],
        ),
        Command("shutdown", cmd_shutdown, COMMON),
    )
}


def common_options(parser: Any) -> None:
    """Add :data:`COMMON` to an argparse parser."""
    add_arguments(parser, COMMON)


def add_commands(sub: Any) -> None:
    """Add the control commands to ``otree``'s subparsers (an argparse ``_SubParsersAction``;
    ``metrics`` and ``signal`` are :mod:`otree.cli.observe`'s)."""
    register(sub, PLAIN.values())
