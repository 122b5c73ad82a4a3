"""Hypothesis strategies for specs, trees and crash schedules (re-exported by ``otree.testing``).

Every field of :class:`~otree.core.spec.Service` and
:class:`~otree.core.spec.Supervisor` gets drawn here, default or not, so a
property test over ``trees()`` sees everything a user can write; a test
checks that each field takes a non-default value (add a new field here when
you add it to the spec). Generated trees always pass ``check_tree``: names
are unique among siblings and not reserved, ``significant`` appears only on
transient/temporary children of a supervisor with ``auto_shutdown`` set, and
``args`` only with ``target``.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from hypothesis import strategies as st

from otree.core.pool import services as pool_services
from otree.core.spec import (
    LIMIT_NAMES,
    RESERVED_NAMES,
    STOP_SIGNALS,
    UNLIMITED,
    AutoShutdown,
    Backoff,
    Cgroups,
    HealthCmd,
    HealthHttp,
    HealthTcp,
    Log,
    ReadyCmd,
    ReadyDelay,
    ReadyExited,
    ReadyHttp,
    ReadyNotify,
    ReadyTcp,
    Restart,
    Service,
    Strategy,
    Supervisor,
)
from otree.testing._simulator import HOWS

_NICE_NAMES = ("db", "web", "api", "worker", "cache", "queue", "job", "w1", "w2", "w3", "a", "b")
_TARGET_RE = r"[a-z]{1,5}(\.[a-z]{1,5})?:[a-z_]{1,6}"
_WORDS = ("sleep", "infinity", "python3", "-c", "pass", "--port", "8000", "serve", "x y")


_NAMES = st.one_of(
    st.sampled_from(_NICE_NAMES),
    st.from_regex(r"[A-Za-z0-9_-]{1,10}", fullmatch=True),
).filter(lambda n: n not in RESERVED_NAMES)


def names() -> st.SearchStrategy[str]:
    """Valid child names (``[A-Za-z0-9_-]+``, never a reserved field name)."""
    return _NAMES


def _seconds(lo: float, hi: float) -> st.SearchStrategy[float]:
    return st.one_of(
        st.sampled_from([v for v in (0.0, 0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0) if lo <= v <= hi]),
        st.floats(lo, hi, allow_nan=False, allow_infinity=False),
    )


def readies(*, delays: bool = True) -> st.SearchStrategy[Any]:
    """Any readiness check; ``delays=False`` keeps ``ReadyDelay`` at 0 s (ready at once)."""
    timeouts = st.floats(0.5, 60.0)
    delay = _seconds(0.0, 5.0) if delays else st.just(0.0)
    return st.one_of(
        st.builds(lambda d, extra: ReadyDelay(d, timeout=d + extra), delay, st.floats(0.5, 30.0)),
        st.builds(
            lambda port, t: ReadyTcp(f"127.0.0.1:{port}", timeout=t),
            st.integers(1, 65535),
            timeouts,
        ),
        st.builds(lambda t: ReadyNotify(timeout=t), timeouts),
        st.builds(
            lambda cmd, t, i: ReadyCmd(cmd, timeout=t, interval=i),
            st.lists(st.sampled_from(_WORDS), min_size=1, max_size=3),
            timeouts,
            st.floats(0.01, 5.0),
        ),
        st.builds(lambda url, t: ReadyHttp(url, timeout=t), _URLS, timeouts),
        st.builds(lambda t: ReadyExited(timeout=t), st.floats(0.5, 600.0)),
    )


_URLS = st.builds(
    lambda host, port, path: f"http://{host}:{port}{path}",
    st.sampled_from(["127.0.0.1", "localhost", "[::1]"]),
    st.integers(1, 65535),
    st.sampled_from(["", "/", "/healthz", "/a/b?x=1"]),
)


@st.composite
def healths(draw: st.DrawFn) -> Any:
    """Any health check: tcp, http or cmd, with ``timeout < interval``."""
    interval = draw(st.floats(0.02, 120.0))
    common = {
        "interval": interval,
        "timeout": draw(st.floats(0.01, 1.0)) * interval * 0.99,
        "failures": draw(st.integers(1, 10)),
        "grace": draw(_seconds(0.0, 60.0)),
    }
    kind = draw(st.sampled_from(["tcp", "http", "cmd"]))
    if kind == "tcp":
        return HealthTcp(f"127.0.0.1:{draw(st.integers(1, 65535))}", **common)
    if kind == "http":
        return HealthHttp(draw(_URLS), **common)
    return HealthCmd(draw(st.lists(st.sampled_from(_WORDS), min_size=1, max_size=3)), **common)


@st.composite
def backoffs(draw: st.DrawFn) -> Backoff:
    """A valid ``Backoff`` (``max >= initial``, ``factor >= 1``, ``jitter <= 1``)."""
    initial = draw(_seconds(0.0, 5.0))
    return Backoff(
        initial=initial,
        max=initial + draw(_seconds(0.0, 60.0)),
        factor=draw(st.floats(1.0, 4.0)),
        reset_after=draw(_seconds(0.0, 120.0)),
        jitter=draw(st.floats(0.0, 1.0)),
    )


def logs() -> st.SearchStrategy[Log]:
    return st.builds(
        Log,
        file=st.one_of(st.none(), st.sampled_from(["app.log", "logs/web.log"])),
        max_bytes=st.integers(0, 10**8),
        backups=st.integers(0, 10),
        ring_bytes=st.integers(0, 10**7),
    )


def shutdowns() -> st.SearchStrategy[Any]:
    """Seconds, ``"brutal_kill"`` or ``"infinity"``."""
    return st.one_of(_seconds(0.0, 30.0), st.sampled_from(["brutal_kill", "infinity"]))


def _maybe(draw: st.DrawFn, strategy: st.SearchStrategy[Any]) -> Any:
    """None (keep the field's default) or a drawn value."""
    return draw(st.one_of(st.none(), strategy))


@functools.cache
def _service_fields(backoff: bool, ready_delays: bool) -> dict[str, st.SearchStrategy[Any]]:
    """Per optional field: None (the default) or a value. Built once per option set."""
    fields: dict[str, st.SearchStrategy[Any]] = {
        "args": st.lists(st.sampled_from(_WORDS), max_size=3),
        "env": st.dictionaries(
            st.from_regex(r"[A-Z_]{1,6}", fullmatch=True), st.text(max_size=5), max_size=3
        ),
        "cwd": st.sampled_from([".", "/tmp", "sub/dir"]),
        "restart": st.sampled_from(list(Restart)),
        "normal_exit_codes": st.lists(
            st.one_of(st.integers(0, 3), st.integers(0, 255)), max_size=3, unique=True
        ),
        "stop_signal": st.sampled_from(STOP_SIGNALS),
        "shutdown": shutdowns(),
        "ready": readies(delays=ready_delays),
        "health": healths(),
        "watchdog": st.floats(0.01, 600.0),
        "log": logs(),
        "user": st.sampled_from(["root", "nobody", "0", "65534", "postgres"]),
        "group": st.sampled_from(["root", "nogroup", "0", "postgres"]),
        "umask": st.one_of(st.integers(0, 0o777), st.sampled_from(["0022", "0077", "027"])),
        "nice": st.integers(-20, 19),
        "oom_score_adj": st.integers(-1000, 1000),
        "limits": limits(),
        "env_file": st.one_of(
            st.sampled_from([".env", "/etc/app.env"]),
            st.lists(st.sampled_from(["a.env", "b.env", "../c.env"]), min_size=1, max_size=3),
        ),
        "autostart": st.booleans(),
    }
    if backoff:
        fields["backoff"] = backoffs()
    return {k: st.one_of(st.none(), v) for k, v in fields.items()}


_LIMIT_VALUES = st.one_of(st.integers(0, 1 << 20), st.just(UNLIMITED))


@st.composite
def _limit_entry(draw: st.DrawFn) -> Any:
    soft, hard = draw(_LIMIT_VALUES), draw(_LIMIT_VALUES)
    if hard == UNLIMITED or (soft != UNLIMITED and soft <= hard):
        return [soft, hard]
    return soft  # soft = hard


def limits() -> st.SearchStrategy[dict[str, Any]]:
    """A ``limits`` table: RLIMIT names with a value, ``"unlimited"`` or ``[soft, hard]``."""
    return st.dictionaries(st.sampled_from(LIMIT_NAMES), _limit_entry(), min_size=1, max_size=3)


_CMDS = st.one_of(
    st.lists(st.sampled_from(_WORDS), min_size=1, max_size=4),
    st.sampled_from(["sleep 1", "python3 -m http.server", "'a b' c"]),
)
_TARGETS = st.from_regex(_TARGET_RE, fullmatch=True)
_NOT_PERMANENT = st.sampled_from([Restart.TRANSIENT, Restart.TEMPORARY])


@st.composite
def services(
    draw: st.DrawFn,
    name: str | None = None,
    *,
    significant_allowed: bool = False,
    backoff: bool = True,
    ready_delays: bool = True,
    pools: bool = True,
) -> Service:
    """A valid ``Service`` with any mix of fields.

    ``pools``: one in four is a pool (``replicas`` 0 .. 3, perhaps its own
    ``intensity`` and ``period``); ``pools=False`` draws none.

    ``significant_allowed``: the parent has ``auto_shutdown`` set, so a
    transient/temporary service may be significant. ``backoff=False`` leaves
    ``backoff`` unset; ``ready_delays=False`` makes every ``ready`` immediate.
    """
    return _draw_service(draw, name, significant_allowed, backoff, ready_delays, pools)


def _draw_service(
    draw: st.DrawFn,
    name: str | None,
    significant_allowed: bool,
    backoff: bool,
    ready_delays: bool,
    pools: bool = True,
) -> Service:
    kwargs: dict[str, Any] = {}
    use_cmd = draw(st.booleans())
    if use_cmd:
        kwargs["cmd"] = draw(_CMDS)
    else:
        kwargs["target"] = draw(_TARGETS)
    for field, strategy in _service_fields(backoff, ready_delays).items():
        if field == "args" and use_cmd:
            continue
        value = draw(strategy)
        if value is not None:
            kwargs[field] = value
    if isinstance(kwargs.get("ready"), ReadyExited) and kwargs.get("restart") in (
        None,
        Restart.PERMANENT,
    ):
        kwargs["restart"] = draw(_NOT_PERMANENT)  # a one-shot step is never permanent
    if significant_allowed and draw(st.booleans()):
        # half the children of an auto_shutdown supervisor are significant
        if kwargs.get("restart", Restart.PERMANENT) is Restart.PERMANENT:
            kwargs["restart"] = draw(_NOT_PERMANENT)
        kwargs["significant"] = True
    elif pools and draw(_ONE_IN_FOUR) == 0:  # a pool (never significant)
        kwargs["replicas"] = draw(st.integers(0, 3))
        for field, values in (("intensity", _INTENSITIES), ("period", _PERIODS)):
            value = draw(st.one_of(st.none(), values))
            if value is not None:
                kwargs[field] = value
    return Service(name if name is not None else draw(_NAMES), **kwargs)


_STRATEGIES = st.sampled_from(list(Strategy))
_INTENSITIES = st.one_of(st.integers(0, 5), st.integers(0, 100))
_PERIODS = st.one_of(st.sampled_from([0.5, 1.0, 5.0, 10.0, 60.0]), st.floats(0.01, 3600.0))
_AUTO_SHUTDOWNS = st.sampled_from(list(AutoShutdown))
_CGROUPS = st.sampled_from(list(Cgroups))
_MAYBE_RESTART = st.one_of(st.none(), st.sampled_from(list(Restart)))
_MAYBE_SHUTDOWN = st.one_of(st.none(), shutdowns())
_ONE_IN_THREE = st.integers(0, 2)
_ONE_IN_FOUR = st.integers(0, 3)


@st.composite
def supervisors(
    draw: st.DrawFn,
    max_depth: int = 3,
    max_children: int = 4,
    *,
    name: str | None = None,
    root: bool = True,
    min_children: int = 1,
    significant_allowed: bool = False,
    backoff: bool = True,
    ready_delays: bool = True,
    pools: bool = True,
) -> Supervisor:
    """A valid tree of supervisors and services, at most ``max_depth`` supervisor levels deep.

    ``root=True`` (the default) draws only the fields a root takes
    (``strategy``, ``intensity``, ``period``, ``auto_shutdown``, ``cgroups``); ``root=False``
    also draws ``restart``, ``shutdown`` and (if ``significant_allowed``)
    ``significant``. ``backoff``, ``ready_delays`` and ``pools`` as for
    :func:`services`.
    """
    return _draw_supervisor(
        draw,
        max_depth,
        max_children,
        name,
        root,
        min_children,
        significant_allowed,
        backoff,
        ready_delays,
        pools,
    )


def _draw_supervisor(
    draw: st.DrawFn,
    max_depth: int,
    max_children: int,
    name: str | None,
    root: bool,
    min_children: int,
    significant_allowed: bool,
    backoff: bool,
    ready_delays: bool,
    pools: bool = True,
) -> Supervisor:
    kwargs: dict[str, Any] = {
        "strategy": draw(_STRATEGIES),
        "intensity": draw(_INTENSITIES),
        "period": draw(_PERIODS),
        "auto_shutdown": draw(_AUTO_SHUTDOWNS),
    }
    if root:
        kwargs["cgroups"] = draw(_CGROUPS)
    else:
        restart = draw(_MAYBE_RESTART)
        if restart is not None:
            kwargs["restart"] = restart
        shutdown = draw(_MAYBE_SHUTDOWN)
        if shutdown is not None:
            kwargs["shutdown"] = shutdown
        if significant_allowed and draw(st.booleans()):
            if restart in (None, Restart.PERMANENT):
                kwargs["restart"] = draw(_NOT_PERMANENT)
            kwargs["significant"] = True
    n = draw(st.integers(min_children, max(min_children, max_children)))
    child_names = draw(st.lists(_NAMES, min_size=n, max_size=n, unique=True))
    allowed = kwargs["auto_shutdown"] is not AutoShutdown.NEVER
    children: list[Service | Supervisor] = []
    for child_name in child_names:
        if max_depth > 1 and draw(_ONE_IN_THREE) == 0:
            child: Service | Supervisor = _draw_supervisor(
                draw,
                max_depth - 1,
                max_children,
                child_name,
                False,
                min_children,
                allowed,
                backoff,
                ready_delays,
                pools,
            )
        else:
            child = _draw_service(draw, child_name, allowed, backoff, ready_delays, pools)
        children.append(child)
    return Supervisor(name if name is not None else "root", children=children, **kwargs)


#: the same as :func:`supervisors` (reads better for a whole tree)
trees = supervisors


def service_paths(tree: Supervisor) -> list[str]:
    """The paths of every service in ``tree``, in start order (a pool's instances in
    place of the pool)."""
    return [path for path, _ in pool_services(tree)]


@st.composite
def crash_schedules(
    draw: st.DrawFn,
    tree: Supervisor,
    max_crashes: int = 20,
    within: float = 60.0,
    hows: Sequence[str] = ("crash", "exit0", "kill"),
    *,
    paths: Sequence[str] | None = None,
    min_gap: float = 0.0,
) -> list[tuple[float, str, str]]:
    """Sorted ``(at_seconds, path, how)`` schedules for :func:`~otree.testing.simulate`.

    Up to ``max_crashes`` items in ``[0, within]``, aimed at every service of
    ``tree`` (or only at ``paths``), doing one of ``hows`` (any of
    ``crash exit0 kill hang_on_stop fail_start``), at least ``min_gap``
    seconds apart.
    """
    targets = list(paths) if paths is not None else service_paths(tree)
    known = set(service_paths(tree))
    for p in targets:
        if p not in known:
            raise ValueError(f"{p!r} is not a service of the tree")
    for h in hows:
        if h not in HOWS:
            raise ValueError(f"how must be one of {', '.join(HOWS)}, got {h!r}")
    if not targets or not hows or max_crashes <= 0:
        return []
    limit = max_crashes if min_gap <= 0 else min(max_crashes, int(within // min_gap) + 1)
    n = draw(st.integers(0, limit))
    span = within - (n - 1) * min_gap if n else within
    times = sorted(draw(st.lists(st.floats(0.0, max(span, 0.0)), min_size=n, max_size=n)))
    return [
        (t + i * min_gap, draw(st.sampled_from(targets)), draw(st.sampled_from(list(hows))))
        for i, t in enumerate(times)
    ]
