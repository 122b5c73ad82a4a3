"""A picture of a tree, for ``otree check`` (and, with other columns, ``otree status``).

::

    root           supervisor             one_for_one, intensity 3 per 5s
    ├── db         service     permanent  postgres -D data  (ready: tcp 127.0.0.1:5432)
    └── web        supervisor  permanent  rest_for_one, intensity 3 per 5s
        ├── cache  service     permanent  redis-server --port 6380  (shutdown 10s)
        └── api    service     permanent  target myapp.api:main  (ready: notify)

Columns: name in the tree, kind, restart type (none for the root), what it
runs or how it supervises, then in brackets only what differs from the
defaults (readiness, backoff, shutdown, stop signal, ...). Environment
variables are shown by name only: their values may be secrets.

Rows are in start order. :func:`tree_rows` gives the tree-drawing prefix of
each node with its path, so other views can add their own columns.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable

import attrs

from otree.core.expand import finish
from otree.core.reprs import plain_repr
from otree.core.spec import (
    DEFAULT_EXITED_TIMEOUT,
    DEFAULT_READY_TIMEOUT,
    INFINITY,
    AutoShutdown,
    Backoff,
    Cgroups,
    HealthCmd,
    HealthHttp,
    HealthTcp,
    Limit,
    ReadyCmd,
    ReadyDelay,
    ReadyExited,
    ReadyHttp,
    ReadyNotify,
    ReadyTcp,
    Restart,
    Service,
    Supervisor,
)

__all__ = ["TreeRow", "render_tree", "tree_rows"]

_BRANCH, _LAST, _PIPE, _BLANK = "├── ", "└── ", "│   ", "    "

_RESET = "\x1b[0m"
_STYLE = {
    "name": "\x1b[1m",
    "service": "\x1b[36m",
    "supervisor": "\x1b[35m",
    Restart.PERMANENT.value: "\x1b[32m",
    Restart.TRANSIENT.value: "\x1b[33m",
    Restart.TEMPORARY.value: "\x1b[31m",
    "hint": "\x1b[2m",
}

_DEFAULT_SERVICE = Service("x", cmd=["x"])
_DEFAULT_BACKOFF = Backoff()


@plain_repr
@attrs.frozen(repr=False)
class TreeRow:
    """One node of the picture: its path ("" for the root), the node, its prefix."""

    path: str
    node: Service | Supervisor
    prefix: str  # "" for the root, then "├── ", "│   └── ", ...


def tree_rows(root: Supervisor) -> list[TreeRow]:
    """The root and every node below it, in start order, with tree-drawing prefixes."""
    rows = [TreeRow("", root, "")]

    def visit(sup: Supervisor, path: str, indent: str) -> None:
        for i, child in enumerate(sup.children):
            last = i == len(sup.children) - 1
            cpath = f"{path}.{child.name}" if path else child.name
            rows.append(TreeRow(cpath, child, indent + (_LAST if last else _BRANCH)))
            if isinstance(child, Supervisor):
                visit(child, cpath, indent + (_BLANK if last else _PIPE))

    visit(root, "", "")
    return rows


def _s(seconds: float) -> str:
    return f"{seconds:g}s"


def _supervision(sup: Supervisor) -> str:
    return f"{sup.strategy.value}, intensity {sup.intensity} per {_s(sup.period)}"


def _command(svc: Service) -> str:
    if svc.cmd is not None:
        return shlex.join(svc.cmd)
    return " ".join(["target", str(svc.target), *(shlex.quote(a) for a in svc.args)])


def _ready_hint(svc: Service) -> list[str]:
    ready = svc.ready
    if ready is None:
        return []
    if isinstance(ready, ReadyDelay):
        text = f"ready: after {_s(ready.delay)}"
    elif isinstance(ready, ReadyTcp):
        text = f"ready: tcp {ready.tcp}"
    elif isinstance(ready, ReadyNotify):
        text = "ready: notify"
    elif isinstance(ready, ReadyCmd):
        text = f"ready: cmd {shlex.join(ready.cmd)}"
    elif isinstance(ready, ReadyHttp):
        text = f"ready: http {ready.http}"
    elif isinstance(ready, ReadyExited):
        text = "ready: once exited"
    else:  # pragma: no cover - every kind is listed above
        text = "ready"
    default = DEFAULT_EXITED_TIMEOUT if isinstance(ready, ReadyExited) else DEFAULT_READY_TIMEOUT
    if ready.timeout != default:
        text += f" within {_s(ready.timeout)}"
    return [text]


def _liveness_hints(svc: Service) -> list[str]:
    out = []
    health = svc.health
    if isinstance(health, HealthTcp):
        out.append(f"health: tcp {health.tcp}")
    elif isinstance(health, HealthHttp):
        out.append(f"health: http {health.http}")
    elif isinstance(health, HealthCmd):
        out.append(f"health: cmd {shlex.join(health.cmd)}")
    if health is not None:
        out[-1] += f" every {_s(health.interval)}, {health.failures} failures"
    if svc.watchdog is not None:
        out.append(f"watchdog {_s(svc.watchdog)}")
    return out


def _limit(limit: Limit) -> str:
    def shown(value: int | None) -> str:
        return "unlimited" if value is None else str(value)

    if limit.soft == limit.hard:
        return shown(limit.soft)
    return f"{shown(limit.soft)}:{shown(limit.hard)}"


def _shutdown_hint(value: object, default: object) -> list[str]:
    if value == default:
        return []
    return [f"shutdown {_s(value)}" if isinstance(value, float) else f"shutdown {value}"]


def _service_hints(svc: Service) -> list[str]:
    hints = _ready_hint(svc) + _liveness_hints(svc)
    if svc.backoff is not None:
        b = svc.backoff
        text = f"backoff {_s(b.initial)}..{_s(b.max)}"
        if b.factor != _DEFAULT_BACKOFF.factor:
            text += f" x{b.factor:g}"
        hints.append(text)
    hints += _shutdown_hint(svc.shutdown, _DEFAULT_SERVICE.shutdown)
    if svc.stop_signal != _DEFAULT_SERVICE.stop_signal:
        hints.append(f"stop {svc.stop_signal}")
    if svc.normal_exit_codes != _DEFAULT_SERVICE.normal_exit_codes:
        hints.append("normal exit " + ",".join(str(c) for c in svc.normal_exit_codes))
    if svc.significant:
        hints.append("significant")
    if svc.cwd is not None:
        hints.append(f"cwd {svc.cwd}")
    hints += [f"{key} {getattr(svc, key)}" for key in ("user", "group") if getattr(svc, key)]
    if svc.umask is not None:
        hints.append(f"umask {svc.umask:04o}")
    hints += [
        f"{key} {getattr(svc, key)}"
        for key in ("nice", "oom_score_adj")
        if getattr(svc, key) is not None
    ]
    if not svc.autostart:
        hints.append("autostart false")
    if svc.limits:
        hints.append("limits " + ",".join(f"{lim.name}={_limit(lim)}" for lim in svc.limits))
    if svc.env_file:
        hints.append("env_file " + ",".join(svc.env_file))
    if svc.env:
        hints.append("env " + ",".join(k for k, _ in svc.env))  # names only: values may be secrets
    if svc.log is not None and svc.log.file is not None:
        hints.append(f"log {svc.log.file}")
    return hints


def _supervisor_hints(sup: Supervisor, is_root: bool) -> list[str]:
    hints = []
    if sup.auto_shutdown is not AutoShutdown.NEVER:
        hints.append(f"auto_shutdown {sup.auto_shutdown.value}")
    if not is_root:
        hints += _shutdown_hint(sup.shutdown, INFINITY)
        if sup.significant:
            hints.append("significant")
    elif sup.cgroups is not Cgroups.AUTO:
        hints.append(f"cgroups {sup.cgroups.value}")
    return hints


def _as_written(pool: Service) -> Service:
    """A pool's fields as one reads them: ``$$`` as ``$``, ``${OTREE_REPLICA}`` and
    ``${OTREE_PATH}`` as written (each instance gets its own: ``otree.core.pool``)."""

    def text(value: str) -> str:
        return finish(value, {})

    log = pool.log
    if log is not None and log.file is not None:
        log = attrs.evolve(log, file=text(log.file))
    return attrs.evolve(
        pool,
        cmd=None if pool.cmd is None else [text(a) for a in pool.cmd],
        args=[text(a) for a in pool.args],
        cwd=None if pool.cwd is None else text(pool.cwd),
        log=log,
        user=None if pool.user is None else text(pool.user),
        group=None if pool.group is None else text(pool.group),
    )


def _cells(row: TreeRow) -> tuple[str, str, str, str, list[str]]:
    """(name, kind, restart, description, hints) of one row."""
    node = row.node
    name = node.name
    if isinstance(node, Service):
        if node.replicas is not None:
            node = _as_written(node)
        return name, "service", node.restart.value, _command(node), _service_hints(node)
    restart = "" if not row.path else node.restart.value
    return name, "supervisor", restart, _supervision(node), _supervisor_hints(node, not row.path)


def render_tree(root: Supervisor, color: bool = False) -> str:
    """The tree as aligned text lines (no trailing newline); ANSI colours if ``color``."""
    rows = tree_rows(root)
    cells = [_cells(r) for r in rows]
    name_width = max(len(r.prefix) + len(c[0]) for r, c in zip(rows, cells, strict=True))
    kind_width = max(len(c[1]) for c in cells)
    restart_width = max(len(c[2]) for c in cells)

    paint: Callable[[str, str], str]
    if color:

        def paint(text: str, style: str) -> str:
            return f"{_STYLE[style]}{text}{_RESET}" if text and style in _STYLE else text

    else:

        def paint(text: str, style: str) -> str:
            return text

    lines = []
    for row, (name, kind, restart, description, hints) in zip(rows, cells, strict=True):
        parts: list[str] = [
            row.prefix + paint(name, "name") + " " * (name_width - len(row.prefix) - len(name)),
            paint(kind, kind) + " " * (kind_width - len(kind)),
        ]
        if restart_width:  # a lone root has no restart column
            parts.append(paint(restart, restart) + " " * (restart_width - len(restart)))
        parts.append(description + (paint(f"  ({', '.join(hints)})", "hint") if hints else ""))
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)
