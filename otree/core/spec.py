"""Tree specs: frozen attrs classes for services and supervisors.

Construction checks each field on its own (``otree.core.fields``) and reports
every bad field of the node at once (``ConfigError``); :func:`check_tree` then
checks the rules that span fields and nodes (OTP's ``bad_combination``,
duplicate and reserved names, a service with neither ``cmd`` nor ``target``)
over a whole tree. The readiness and health checks are in ``otree.core.checks``
and are re-exported here.

Values are normalised at construction: enums from their names, ``cmd``
strings split with shlex, lists to tuples, numbers to floats.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping
from typing import Any, TypeAlias, cast

import attrs

from otree.core.checks import (
    DEFAULT_EXITED_TIMEOUT,
    HEALTH_KINDS,
    READY_KINDS,
    Health,
    HealthCmd,
    HealthHttp,
    HealthTcp,
    Ready,
    ReadyCmd,
    ReadyDelay,
    ReadyExited,
    ReadyHttp,
    ReadyNotify,
    ReadyTcp,
)
from otree.core.fields import (
    BRUTAL_KILL,
    DEFAULT_READY_TIMEOUT,
    INFINITY,
    LIMIT_NAMES,
    STOP_SIGNALS,
    UNLIMITED,
    Limit,
    Shutdown,
    _args,
    _argv,
    _bad,
    _bool,
    _collect,
    _enum,
    _env,
    _env_files,
    _exit_codes,
    _factor,
    _identity,
    _instance,
    _intensity,
    _Invalid,
    _limits,
    _nice,
    _non_negative,
    _oom_score_adj,
    _optional_intensity,
    _optional_positive,
    _optional_str,
    _positive,
    _replicas,
    _shutdown,
    _signal,
    _target,
    _umask,
)
from otree.core.reprs import plain_repr
from otree.errors import ConfigError, Issue

__all__ = [
    "BRUTAL_KILL",
    "DEFAULT_EXITED_TIMEOUT",
    "DEFAULT_READY_TIMEOUT",
    "HEALTH_KINDS",
    "INFINITY",
    "LIMIT_NAMES",
    "NAME_RE",
    "READY_KINDS",
    "RESERVED_NAMES",
    "ROOT_FIELDS",
    "SERVICE_FIELDS",
    "STOP_SIGNALS",
    "SUPERVISOR_FIELDS",
    "UNLIMITED",
    "AutoShutdown",
    "Backoff",
    "Cgroups",
    "Health",
    "HealthCmd",
    "HealthHttp",
    "HealthTcp",
    "Limit",
    "Log",
    "Node",
    "Ready",
    "ReadyCmd",
    "ReadyDelay",
    "ReadyExited",
    "ReadyHttp",
    "ReadyNotify",
    "ReadyTcp",
    "Restart",
    "Service",
    "Shutdown",
    "Strategy",
    "Supervisor",
    "check_tree",
    "service_argv",
    "walk",
]

NAME_RE = re.compile(r"[A-Za-z0-9_-]+\Z")


class Strategy(str, enum.Enum):
    ONE_FOR_ONE = "one_for_one"
    ONE_FOR_ALL = "one_for_all"
    REST_FOR_ONE = "rest_for_one"


class Restart(str, enum.Enum):
    PERMANENT = "permanent"
    TRANSIENT = "transient"
    TEMPORARY = "temporary"


class AutoShutdown(str, enum.Enum):
    NEVER = "never"
    ANY_SIGNIFICANT = "any_significant"
    ALL_SIGNIFICANT = "all_significant"


class Cgroups(str, enum.Enum):
    """The root's ``cgroups``: how a service's processes are kept together and stopped."""

    #: a cgroup per service where a writable cgroup2 is found, else process groups
    AUTO = "auto"
    #: a cgroup per service, or the tree does not start
    ON = "on"
    #: process groups only
    OFF = "off"


def _to_cgroups(value: Any) -> Any:
    return _enum(Cgroups, value)


def _to_strategy(value: Any) -> Any:
    return _enum(Strategy, value)


def _to_restart(value: Any) -> Any:
    return _enum(Restart, value)


def _to_auto_shutdown(value: Any) -> Any:
    return _enum(AutoShutdown, value)


# --- readiness, backoff, log ------------------------------------------------


@plain_repr
@attrs.frozen(repr=False)
class Backoff:
    """Delay before a restart: ``initial``, times ``factor`` each time, up to ``max``.

    The delay goes back to ``initial`` once the child has stayed up
    ``reset_after`` seconds. Each delay is scaled by a random factor in
    ``[1 - jitter, 1 + jitter]`` drawn from the engine's injected ``Random``.
    """

    initial: float = attrs.field(default=0.1, converter=_non_negative)
    max: float = attrs.field(default=30.0, converter=_non_negative)
    factor: float = attrs.field(default=2.0, converter=_factor)
    reset_after: float = attrs.field(default=60.0, converter=_non_negative)
    jitter: float = attrs.field(default=0.1, converter=_non_negative)

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.jitter, _Invalid) and self.jitter > 1:
            object.__setattr__(self, "jitter", _bad(f"must be at most 1, got {self.jitter:g}"))
        if not any(isinstance(getattr(self, f), _Invalid) for f in ("initial", "max")):
            if self.max < self.initial:
                message = f"must be at least initial ({self.initial:g}), got {self.max:g}"
                object.__setattr__(self, "max", _bad(message))
        _collect(self, "backoff")


def _max_bytes(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return _bad(f"expected a number of bytes >= 0 (0: no rotation), got {value!r}")
    return value


def _ring_bytes(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return _bad(f"expected a number of bytes >= 0 (0: keep none), got {value!r}")
    return value


def _backups(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return _bad(f"expected an integer >= 0, got {value!r}")
    return value


@plain_repr
@attrs.frozen(repr=False)
class Log:
    """A per-service log file with size rotation (``file.1`` ... ``file.N``)."""

    file: str | None = attrs.field(default=None, converter=_optional_str)
    max_bytes: int = attrs.field(default=10 * 1024 * 1024, converter=_max_bytes)
    backups: int = attrs.field(default=3, converter=_backups)
    #: how much of its latest output ``otree logs`` keeps in memory (whole lines)
    ring_bytes: int = attrs.field(default=256 * 1024, converter=_ring_bytes)

    def __attrs_post_init__(self) -> None:
        _collect(self, "log")


# --- nodes ------------------------------------------------------------------


def _to_ready(value: Any) -> Any:
    what = "ReadyDelay, ReadyTcp, ReadyNotify, ReadyCmd, ReadyHttp or ReadyExited"
    return _instance(value, READY_KINDS, what)


def _to_health(value: Any) -> Any:
    return _instance(value, HEALTH_KINDS, "HealthTcp, HealthHttp or HealthCmd")


def _watchdog(value: Any) -> Any:
    return None if value is None else _positive(value)


def _to_backoff(value: Any) -> Any:
    return _instance(value, Backoff, "a Backoff")


def _to_log(value: Any) -> Any:
    return _instance(value, Log, "a Log")


def _name(value: Any) -> Any:
    if not isinstance(value, str):
        return _bad(f"expected a string, got {value!r}")
    return value


def _children(value: Any) -> Any:
    if isinstance(value, Iterable) and not isinstance(value, (str, Mapping)):
        items = tuple(value)
        if all(isinstance(c, (Service, Supervisor)) for c in items):
            return items
    return _bad(f"expected a list of Service and Supervisor, got {value!r}")


@plain_repr
@attrs.frozen(repr=False)
class Service:
    """A leaf of the tree: one OS process (and its process group)."""

    name: str = attrs.field(converter=_name)
    cmd: tuple[str, ...] | None = attrs.field(default=None, converter=_argv, kw_only=True)
    target: str | None = attrs.field(default=None, converter=_target, kw_only=True)
    args: tuple[str, ...] = attrs.field(default=(), converter=_args, kw_only=True)
    env: tuple[tuple[str, str], ...] = attrs.field(default=(), converter=_env, kw_only=True)
    cwd: str | None = attrs.field(default=None, converter=_optional_str, kw_only=True)
    restart: Restart = attrs.field(default=Restart.PERMANENT, converter=_to_restart, kw_only=True)
    normal_exit_codes: tuple[int, ...] = attrs.field(
        default=(0,), converter=_exit_codes, kw_only=True
    )
    stop_signal: str = attrs.field(default="TERM", converter=_signal, kw_only=True)
    shutdown: Shutdown = attrs.field(default=5.0, converter=_shutdown, kw_only=True)
    ready: Ready | None = attrs.field(default=None, converter=_to_ready, kw_only=True)
    health: Health | None = attrs.field(default=None, converter=_to_health, kw_only=True)
    watchdog: float | None = attrs.field(default=None, converter=_watchdog, kw_only=True)
    backoff: Backoff | None = attrs.field(default=None, converter=_to_backoff, kw_only=True)
    significant: bool = attrs.field(default=False, converter=_bool, kw_only=True)
    log: Log | None = attrs.field(default=None, converter=_to_log, kw_only=True)
    #: a pool of this many instances (``otree.core.pool``); None: one process
    replicas: int | None = attrs.field(default=None, converter=_replicas, kw_only=True)
    #: with ``replicas`` only: the pool's restart window (default 3 in 5 s)
    intensity: int | None = attrs.field(default=None, converter=_optional_intensity, kw_only=True)
    period: float | None = attrs.field(default=None, converter=_optional_positive, kw_only=True)
    #: run as this user (a name or a numeric id; None: otree's own)
    user: str | None = attrs.field(default=None, converter=_identity, kw_only=True)
    #: and this group (None: the user's primary group)
    group: str | None = attrs.field(default=None, converter=_identity, kw_only=True)
    #: the file mode creation mask (None: otree's own)
    umask: int | None = attrs.field(default=None, converter=_umask, kw_only=True)
    nice: int | None = attrs.field(default=None, converter=_nice, kw_only=True)
    oom_score_adj: int | None = attrs.field(default=None, converter=_oom_score_adj, kw_only=True)
    #: resource limits (``RLIMIT_*``), by name
    limits: tuple[Limit, ...] = attrs.field(default=(), converter=_limits, kw_only=True)
    #: dotenv files read at load, in order, under ``env`` (their values are in ``env``)
    env_file: tuple[str, ...] = attrs.field(default=(), converter=_env_files, kw_only=True)
    #: False: in the tree but not started with it (``otree start PATH`` starts it)
    autostart: bool = attrs.field(default=True, converter=_bool, kw_only=True)

    def __attrs_post_init__(self) -> None:
        _collect(self, self.name if isinstance(self.name, str) else "")

    @property
    def environ(self) -> dict[str, str]:
        return dict(self.env)


@plain_repr
@attrs.frozen(repr=False)
class Supervisor:
    """An inner node: starts, watches and restarts its children by ``strategy``."""

    name: str = attrs.field(converter=_name)
    children: tuple[Service | Supervisor, ...] = attrs.field(
        default=(), converter=_children, kw_only=True
    )
    strategy: Strategy = attrs.field(
        default=Strategy.ONE_FOR_ONE, converter=_to_strategy, kw_only=True
    )
    intensity: int = attrs.field(default=3, converter=_intensity, kw_only=True)
    period: float = attrs.field(default=5.0, converter=_positive, kw_only=True)
    auto_shutdown: AutoShutdown = attrs.field(
        default=AutoShutdown.NEVER, converter=_to_auto_shutdown, kw_only=True
    )
    restart: Restart = attrs.field(default=Restart.PERMANENT, converter=_to_restart, kw_only=True)
    shutdown: Shutdown = attrs.field(default=INFINITY, converter=_shutdown, kw_only=True)
    significant: bool = attrs.field(default=False, converter=_bool, kw_only=True)
    #: the root only: a cgroup per service (``otree.runtime.cgroups``)
    cgroups: Cgroups = attrs.field(default=Cgroups.AUTO, converter=_to_cgroups, kw_only=True)

    def __attrs_post_init__(self) -> None:
        _collect(self, self.name if isinstance(self.name, str) else "")

    def child(self, name: str) -> Service | Supervisor | None:
        for c in self.children:
            if c.name == name:
                return c
        return None


Node: TypeAlias = Service | Supervisor

SERVICE_FIELDS = tuple(f.name for f in attrs.fields(Service) if f.name != "name")
SUPERVISOR_FIELDS = tuple(
    f.name for f in attrs.fields(Supervisor) if f.name not in ("name", "children", "cgroups")
)
ROOT_FIELDS = ("strategy", "intensity", "period", "auto_shutdown", "cgroups")
#: names a child may not take: they are field names in the tree file
RESERVED_NAMES = (
    frozenset(SERVICE_FIELDS) | frozenset(SUPERVISOR_FIELDS) | frozenset(ROOT_FIELDS)
) | {"children", "name"}


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def walk(root: Supervisor) -> Iterable[tuple[str, Node]]:
    """Every node below ``root`` with its path, in start order (depth first)."""
    stack: list[tuple[str, Node]] = [(c.name, c) for c in reversed(root.children)]
    while stack:
        path, node = stack.pop()
        yield path, node
        if isinstance(node, Supervisor):
            stack.extend((_join(path, c.name), c) for c in reversed(node.children))


def check_tree(root: Supervisor) -> None:
    """Check the rules that span fields and nodes; raise one ConfigError with all of them."""
    issues: list[Issue] = []
    _check_supervisor(root, "", issues, is_root=True)
    if issues:
        raise ConfigError(issues)


def _check_supervisor(sup: Supervisor, path: str, issues: list[Issue], *, is_root: bool) -> None:
    seen: set[str] = set()
    for child in sup.children:
        cpath = _join(path, child.name)
        if not NAME_RE.match(child.name):
            issues.append(Issue(cpath, f"name {child.name!r} must match [A-Za-z0-9_-]+"))
        elif child.name in RESERVED_NAMES:
            issues.append(Issue(cpath, f"{child.name!r} is a field name and cannot name a child"))
        if child.name in seen:
            issues.append(Issue(cpath, f"duplicate name {child.name!r} under the same supervisor"))
        seen.add(child.name)
        if child.significant:
            if child.restart is Restart.PERMANENT:
                issues.append(
                    Issue(
                        _join(cpath, "significant"),
                        "a permanent child cannot be significant (use transient or temporary)",
                    )
                )
            if sup.auto_shutdown is AutoShutdown.NEVER:
                where = f"{path!r}" if path else "the root"
                issues.append(
                    Issue(
                        _join(cpath, "significant"),
                        f"significant has no effect: auto_shutdown of {where} is 'never'",
                    )
                )
        if isinstance(child, Service):
            _check_service(child, cpath, issues)
        else:
            if child.cgroups is not Cgroups.AUTO:
                message = "cgroups is set on the root only (it is the whole tree's kill mode)"
                issues.append(Issue(_join(cpath, "cgroups"), message))
            _check_supervisor(child, cpath, issues, is_root=False)


def _check_service(svc: Service, path: str, issues: list[Issue]) -> None:
    if svc.cmd is None and svc.target is None:
        issues.append(Issue(path, "a service needs 'cmd' or 'target'"))
    elif svc.cmd is not None and svc.target is not None:
        issues.append(Issue(path, "'cmd' and 'target' exclude each other: give one"))
    if svc.args and svc.target is None:
        issues.append(Issue(_join(path, "args"), "'args' goes with 'target' (put them in 'cmd')"))
    if svc.replicas is None:
        for name in ("intensity", "period"):
            if getattr(svc, name) is not None:
                message = f"'{name}' on a service goes with 'replicas' (the pool's window)"
                issues.append(Issue(_join(path, name), message))
    elif svc.significant:
        message = "a pool cannot be significant (its instances are its children)"
        issues.append(Issue(_join(path, "significant"), message))
    if isinstance(svc.ready, ReadyExited) and svc.restart is Restart.PERMANENT:
        message = "a one-shot step cannot be permanent (use transient or temporary)"
        issues.append(Issue(_join(path, "ready.exited"), message))


def service_argv(svc: Service, python: str) -> list[str]:
    """The argv that runs ``svc``: its ``cmd``, or ``python -m otree._target``."""
    if svc.cmd is not None:
        return list(svc.cmd)
    return [python, "-m", "otree._target", cast(str, svc.target), *svc.args]
