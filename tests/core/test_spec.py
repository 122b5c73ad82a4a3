"""Specs: defaults (R1 adapted), per-field validation with exact messages (R2, R3),
every bad field at once, and check_tree's cross-field rules (R4, R39, names, cmd/target).

The messages here are a public interface: the TOML loader shows the same ones
with the file and line in front (docs/tree-file.md "Errors").
"""

from __future__ import annotations

from typing import Any

import pytest
from support.specs import svc

from otree.core.spec import (
    RESERVED_NAMES,
    ROOT_FIELDS,
    SERVICE_FIELDS,
    SUPERVISOR_FIELDS,
    AutoShutdown,
    Backoff,
    Log,
    ReadyCmd,
    ReadyDelay,
    ReadyNotify,
    ReadyTcp,
    Restart,
    Service,
    Strategy,
    Supervisor,
    check_tree,
    service_argv,
    walk,
)
from otree.errors import ConfigError, Issue


def issues(make: Any) -> list[str]:
    """The issues ``make()`` raises, as ``path: message`` lines."""
    with pytest.raises(ConfigError) as info:
        make()
    return [str(i) for i in info.value.issues]


def tree_issues(root: Supervisor) -> list[str]:
    return issues(lambda: check_tree(root))


# --- R1 defaults (adapted) ------------------------------------------------------------


def test_r1_service_defaults() -> None:
    """R1 (otree): a service is permanent, not significant, stopped with TERM and 5 s
    before KILL; exit 0 is normal; no readiness check, no backoff, no log file."""
    s = Service("a", cmd=["run"])
    assert s.restart is Restart.PERMANENT
    assert s.significant is False
    assert s.shutdown == 5.0
    assert s.stop_signal == "TERM"
    assert s.normal_exit_codes == (0,)
    assert (s.ready, s.backoff, s.log) == (None, None, None)
    assert (s.target, s.args, s.env, s.cwd) == (None, (), (), None)


def test_r1_supervisor_defaults() -> None:
    """R1 (otree: intensity 3 and period 5, Elixir's defaults; OTP's intensity is 1):
    one_for_one, never auto-shutdown, permanent, shutdown infinity."""
    s = Supervisor("web")
    assert s.strategy is Strategy.ONE_FOR_ONE
    assert (s.intensity, s.period) == (3, 5.0)
    assert s.auto_shutdown is AutoShutdown.NEVER
    assert s.restart is Restart.PERMANENT
    assert s.shutdown == "infinity"
    assert s.significant is False
    assert s.children == ()


def test_r1_nested_defaults() -> None:
    """Readiness, backoff and log defaults (docs/tree-file.md: backoff initial 0.1, max 30,
    factor 2, reset_after 60)."""
    assert Backoff() == Backoff(initial=0.1, max=30, factor=2, reset_after=60, jitter=0.1)
    assert ReadyDelay(delay=1).timeout == 30.0
    assert ReadyTcp("127.0.0.1:5432").address == ("127.0.0.1", 5432)
    assert ReadyTcp("[::1]:80").address == ("::1", 80)
    assert ReadyNotify().notify is True
    assert ReadyCmd(cmd="true").interval == 0.1
    assert Log() == Log(file=None, max_bytes=10 * 1024 * 1024, backups=3)


def test_values_are_normalised() -> None:
    """Enums from their names, cmd strings split with shlex (no shell), lists to
    tuples, numbers to floats, signals upper-case without SIG, env sorted."""
    s = Service(
        "a",
        cmd="serve --name 'my app'",
        restart="transient",
        stop_signal="sigint",
        shutdown=3,
        env={"B": "2", "A": "1"},
        normal_exit_codes=[0, 3],
    )
    assert s.cmd == ("serve", "--name", "my app")
    assert s.restart is Restart.TRANSIENT
    assert s.stop_signal == "INT"
    assert s.shutdown == 3.0 and isinstance(s.shutdown, float)
    assert s.env == (("A", "1"), ("B", "2"))
    assert s.environ == {"A": "1", "B": "2"}
    assert s.normal_exit_codes == (0, 3)
    sup = Supervisor("w", strategy="rest_for_one", period=2, children=[s])
    assert sup.strategy is Strategy.REST_FOR_ONE
    assert sup.period == 2.0 and isinstance(sup.period, float)
    assert sup.children == (s,)
    assert sup.child("a") is s
    assert sup.child("b") is None


def test_specs_are_frozen_and_comparable() -> None:
    a = svc("a")
    assert a == svc("a")
    assert hash(a) == hash(svc("a"))
    with pytest.raises(AttributeError):
        a.restart = Restart.TEMPORARY  # type: ignore[misc]


# --- R2 supervisor flags ---------------------------------------------------------------


@pytest.mark.parametrize("value", [0, 1, 100])
def test_r2_intensity_zero_and_up_is_valid(value: int) -> None:
    """R2: intensity is an integer >= 0; 0 is valid."""
    assert Supervisor("s", intensity=value).intensity == value


@pytest.mark.parametrize("value", [-1, 1.5, True, "3", None])
def test_r2_bad_intensity(value: Any) -> None:
    """R2: invalid_intensity."""
    assert issues(lambda: Supervisor("s", intensity=value)) == [
        f"s.intensity: expected an integer >= 0, got {value!r}"
    ]


@pytest.mark.parametrize("value", [0.5, 1, 3600])
def test_r2_period_is_seconds_above_zero(value: float) -> None:
    """R2 (otree: a float number of seconds, not only an integer)."""
    assert Supervisor("s", period=value).period == float(value)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (0, "must be greater than 0, got 0"),
        (-1, "must be greater than 0, got -1"),
        (float("inf"), "expected a number of seconds, got inf"),
        (float("nan"), "expected a number of seconds, got nan"),
        ("5", "expected a number of seconds, got '5'"),
        (True, "expected a number of seconds, got True"),
    ],
)
def test_r2_bad_period(value: Any, message: str) -> None:
    """R2: invalid_period: 0 and infinity are rejected."""
    assert issues(lambda: Supervisor("s", period=value)) == [f"s.period: {message}"]


def test_r2_bad_strategy_and_auto_shutdown() -> None:
    """R2: invalid_strategy, invalid_auto_shutdown (the message lists the valid values)."""
    assert issues(lambda: Supervisor("s", strategy="simple_one_for_one")) == [
        "s.strategy: 'simple_one_for_one' is not one of one_for_one, one_for_all, rest_for_one"
    ]
    assert issues(lambda: Supervisor("s", auto_shutdown="always")) == [
        "s.auto_shutdown: 'always' is not one of never, any_significant, all_significant"
    ]


def test_r2_unknown_keys_are_refused() -> None:
    """R2 (otree differs: OTP ignores unknown flag keys; otree refuses them, so that a
    typo is never silently a default)."""
    with pytest.raises(TypeError):
        Supervisor("s", silly_flag=1)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        Service("a", cmd="x", restrat="transient")  # type: ignore[call-arg]


# --- R3 child specs --------------------------------------------------------------------


@pytest.mark.parametrize("value", [0, 0.5, 10, "brutal_kill", "infinity"])
def test_r3_shutdown_values(value: Any) -> None:
    """R3: shutdown is brutal_kill, infinity or a number of seconds >= 0 (0 allowed)."""
    expected = value if isinstance(value, str) else float(value)
    assert svc("a", shutdown=value).shutdown == expected
    assert Supervisor("s", shutdown=value).shutdown == expected


@pytest.mark.parametrize("value", [-10, "forever", float("inf"), None, True])
def test_r3_bad_shutdown(value: Any) -> None:
    """R3: shutdown -10 is rejected (as is a float infinity: write "infinity")."""
    assert issues(lambda: svc("a", shutdown=value)) == [
        f"a.shutdown: expected seconds >= 0, 'brutal_kill' or 'infinity', got {value!r}"
    ]


def test_r3_bad_restart_and_significant() -> None:
    """R3: restart must be one of the three types; significant must be a boolean."""
    assert issues(lambda: svc("a", restart="permanet")) == [
        "a.restart: 'permanet' is not one of permanent, transient, temporary"
    ]
    assert issues(lambda: svc("a", significant="yes")) == [
        "a.significant: expected true or false, got 'yes'"
    ]
    assert issues(lambda: Supervisor("s", restart="always", significant=1)) == [
        "s.restart: 'always' is not one of permanent, transient, temporary",
        "s.significant: expected true or false, got 1",
    ]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("cmd", [], "must not be empty"),
        ("cmd", "", "must not be empty"),
        ("cmd", "a 'b", 'cannot split "a \'b": No closing quotation'),
        ("cmd", ["a", 1], "expected a list of strings or a string, got ['a', 1]"),
        ("target", "nocolon", "expected 'module:function', got 'nocolon'"),
        ("args", "x", "expected a list of strings, got 'x'"),
        ("env", {"A": 1}, "expected a table of string values, got {'A': 1}"),
        ("cwd", 3, "expected a string, got 3"),
        ("normal_exit_codes", [256], "expected a list of exit codes 0-255, got [256]"),
        ("normal_exit_codes", [True], "expected a list of exit codes 0-255, got [True]"),
        (
            "stop_signal",
            "STOP",
            "'STOP' is not one of TERM, INT, QUIT, HUP, KILL, USR1, USR2, WINCH, ABRT",
        ),
        (
            "ready",
            "tcp",
            "expected ReadyDelay, ReadyTcp, ReadyNotify, ReadyCmd, ReadyHttp or ReadyExited,"
            " got 'tcp'",
        ),
        ("backoff", 1, "expected a Backoff, got 1"),
        ("log", "f.log", "expected a Log, got 'f.log'"),
    ],
)
def test_r3_bad_service_field(field: str, value: Any, message: str) -> None:
    """R3: each service field checked on its own, with a message naming the key path."""
    kw = {"cmd": "x", field: value}
    assert issues(lambda: Service("a", **kw)) == [f"a.{field}: {message}"]


def test_r3_every_bad_field_is_reported_at_once() -> None:
    """All bad fields of a node in one ConfigError, in field order."""
    got = issues(
        lambda: Service(
            "api",
            cmd=[],
            restart="permanet",
            shutdown=-1,
            stop_signal="FOO",
            significant="yes",
        )
    )
    assert got == [
        "api.cmd: must not be empty",
        "api.restart: 'permanet' is not one of permanent, transient, temporary",
        "api.stop_signal: 'FOO' is not one of TERM, INT, QUIT, HUP, KILL, USR1, USR2, WINCH, ABRT",
        "api.shutdown: expected seconds >= 0, 'brutal_kill' or 'infinity', got -1",
        "api.significant: expected true or false, got 'yes'",
    ]
    got = issues(
        lambda: Supervisor(
            "web", strategy="x", intensity=-1, period=0, auto_shutdown="y", children=[1]
        )
    )
    assert got == [
        "web.children: expected a list of Service and Supervisor, got [1]",
        "web.strategy: 'x' is not one of one_for_one, one_for_all, rest_for_one",
        "web.intensity: expected an integer >= 0, got -1",
        "web.period: must be greater than 0, got 0",
        "web.auto_shutdown: 'y' is not one of never, any_significant, all_significant",
    ]


def test_config_error_keeps_the_issues_and_prints_one_per_line() -> None:
    with pytest.raises(ConfigError) as info:
        Service("api", cmd=[], restart="x")
    err = info.value
    assert err.issues[0] == Issue("api.cmd", "must not be empty")
    assert str(err) == (
        "api.cmd: must not be empty\napi.restart: 'x' is not one of permanent, transient, temporary"
    )


def test_a_bad_name_is_reported_without_a_prefix() -> None:
    assert issues(lambda: Service(3, cmd="x")) == ["name: expected a string, got 3"]  # type: ignore[arg-type]


# --- nested specs ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (
            lambda: Backoff(initial=-1, max=-2, factor=0.5, reset_after=-1, jitter=2),
            [
                "backoff.initial: must be at least 0, got -1",
                "backoff.max: must be at least 0, got -2",
                "backoff.factor: must be at least 1, got 0.5",
                "backoff.reset_after: must be at least 0, got -1",
                "backoff.jitter: must be at most 1, got 2",
            ],
        ),
        (lambda: Backoff(initial=5, max=2), ["backoff.max: must be at least initial (5), got 2"]),
        (lambda: ReadyTcp("localhost"), ["ready.tcp: expected 'host:port', got 'localhost'"]),
        (
            lambda: ReadyTcp("h:0", timeout=0),
            [
                "ready.tcp: port must be 1-65535, got 0",
                "ready.timeout: must be greater than 0, got 0",
            ],
        ),
        (lambda: ReadyDelay(delay=-1), ["ready.delay: must be at least 0, got -1"]),
        (
            lambda: ReadyNotify(notify=False),
            ["ready.notify: must be true (remove 'ready' to turn it off)"],
        ),
        (
            lambda: ReadyCmd(cmd=[], interval=0),
            ["ready.cmd: must not be empty", "ready.interval: must be greater than 0, got 0"],
        ),
        (
            lambda: Log(file=3, max_bytes=-1, backups=1.5),
            [
                "log.file: expected a string, got 3",
                "log.max_bytes: expected a number of bytes >= 0 (0: no rotation), got -1",
                "log.backups: expected an integer >= 0, got 1.5",
            ],
        ),
    ],
)
def test_nested_spec_validation(make: Any, expected: list[str]) -> None:
    assert issues(make) == expected


# --- check_tree: cross-field rules -----------------------------------------------------------


def test_a_valid_tree_passes() -> None:
    check_tree(
        Supervisor(
            "root",
            auto_shutdown="any_significant",
            children=[
                svc("db"),
                svc("job", restart="temporary", significant=True),
                Supervisor(
                    "web", children=[svc("api"), Service("w", target="app.w:main", args=["1"])]
                ),
            ],
        )
    )


def test_r4_duplicate_names_under_one_supervisor() -> None:
    """R4: two children with the same name under one supervisor are refused; the same
    name under different supervisors is fine."""
    root = Supervisor(
        "root",
        children=[svc("a"), Supervisor("web", children=[svc("a"), svc("x"), svc("x")]), svc("a")],
    )
    assert tree_issues(root) == [
        "web.x: duplicate name 'x' under the same supervisor",
        "a: duplicate name 'a' under the same supervisor",
    ]


@pytest.mark.parametrize("name", sorted(RESERVED_NAMES))
def test_reserved_names_cannot_name_a_child(name: str) -> None:
    """Field names are reserved: in a tree file a child table named ``restart`` could
    not be told from the field."""
    assert tree_issues(Supervisor("root", children=[svc(name)])) == [
        f"{name}: {name!r} is a field name and cannot name a child"
    ]


def test_reserved_names_are_the_field_names() -> None:
    fields = {*SERVICE_FIELDS, *SUPERVISOR_FIELDS, *ROOT_FIELDS, "children", "name"}
    assert fields == RESERVED_NAMES
    assert set(ROOT_FIELDS) - {"cgroups"} <= set(SUPERVISOR_FIELDS)  # cgroups: the root only


@pytest.mark.parametrize("name", ["a b", "a.b", "", "é", "a/b"])
def test_names_must_match_the_pattern(name: str) -> None:
    where = f"{name}: " if name else ""  # an empty name has an empty path
    assert tree_issues(Supervisor("root", children=[svc(name)])) == [
        f"{where}name {name!r} must match [A-Za-z0-9_-]+"
    ]


def test_cmd_and_target() -> None:
    """A service needs exactly one of cmd and target; args go with target only."""
    root = Supervisor(
        "root",
        children=[
            Service("none"),
            Service("both", cmd="x", target="m:f"),
            Service("extra", cmd="x", args=["1"]),
            Service("ok", target="m.sub:main", args=["1"]),
        ],
    )
    assert tree_issues(root) == [
        "none: a service needs 'cmd' or 'target'",
        "both: 'cmd' and 'target' exclude each other: give one",
        "extra.args: 'args' goes with 'target' (put them in 'cmd')",
    ]


def test_r39_significant_permanent_is_a_bad_combination() -> None:
    """R39: {bad_combination, [{restart,permanent},{significant,true}]}."""
    root = Supervisor(
        "root",
        auto_shutdown="any_significant",
        children=[
            svc("a", significant=True),
            Supervisor("w", significant=True, children=[svc("x")]),
        ],
    )
    assert tree_issues(root) == [
        "a.significant: a permanent child cannot be significant (use transient or temporary)",
        "w.significant: a permanent child cannot be significant (use transient or temporary)",
    ]


def test_r39_significant_under_never_is_a_bad_combination() -> None:
    """R39: {bad_combination, [{auto_shutdown,never},{significant,true}]}, also deep in
    the tree, naming the supervisor."""
    root = Supervisor(
        "root",
        children=[
            svc("a", restart="transient", significant=True),
            Supervisor("web", children=[svc("j", restart="temporary", significant=True)]),
        ],
    )
    assert tree_issues(root) == [
        "a.significant: significant has no effect: auto_shutdown of the root is 'never'",
        "web.j.significant: significant has no effect: auto_shutdown of 'web' is 'never'",
    ]


def test_every_tree_issue_is_reported_at_once_in_start_order() -> None:
    root = Supervisor(
        "root",
        children=[
            Service("a"),
            Supervisor(
                "web",
                children=[svc("x", significant=True, restart="transient"), svc("x"), svc("cmd")],
            ),
            svc("b", significant=True),
        ],
    )
    assert tree_issues(root) == [
        "a: a service needs 'cmd' or 'target'",
        "web.x.significant: significant has no effect: auto_shutdown of 'web' is 'never'",
        "web.x: duplicate name 'x' under the same supervisor",
        "web.cmd: 'cmd' is a field name and cannot name a child",
        "b.significant: a permanent child cannot be significant (use transient or temporary)",
        "b.significant: significant has no effect: auto_shutdown of the root is 'never'",
    ]


# --- helpers ------------------------------------------------------------------------------


def test_walk_gives_every_node_in_start_order() -> None:
    root = Supervisor(
        "root",
        children=[
            svc("a"),
            Supervisor("web", children=[svc("x"), Supervisor("api", children=[svc("p")])]),
            svc("z"),
        ],
    )
    assert [path for path, _ in walk(root)] == ["a", "web", "web.x", "web.api", "web.api.p", "z"]


def test_service_argv() -> None:
    assert service_argv(Service("a", cmd="run -x"), "/py") == ["run", "-x"]
    assert service_argv(Service("a", target="app.api:main", args=["1", "2"]), "/py") == [
        "/py",
        "-m",
        "otree._target",
        "app.api:main",
        "1",
        "2",
    ]
