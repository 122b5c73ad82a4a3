"""Bad tree files and the exact messages they get: file, line, key path, text.

One row per mistake a user makes; each expected text is the whole ConfigError
(one issue per line, in line order), as ``otree check`` prints it after "otree: ".
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import otree.config.loader
from otree.config.loader import load, load_tree, loads
from otree.errors import ConfigError

SVC = '[api]\ncmd = "x"\n'  # a valid service to hang a field on

BAD_FILES: list[tuple[str, str, str]] = [
    # --- pools (issue 14) ----------------------------------------------------
    (
        "replicas-on-a-supervisor",
        '[web]\nreplicas = 2\n[web.a]\ncmd = "x"\n',
        "tree.toml:2: web.replicas: a service field, but this table is a supervisor "
        "(no 'cmd' or 'target')",
    ),
    (
        "intensity-without-replicas",
        SVC + "intensity = 2\n",
        "tree.toml:3: api.intensity: 'intensity' on a service goes with 'replicas' "
        "(the pool's window)",
    ),
    (
        "replicas-negative",
        SVC + "replicas = -3\n",
        "tree.toml:3: api.replicas: expected an integer >= 0, got -3",
    ),
    (
        "replicas-text",
        SVC + 'replicas = "4"\n',
        "tree.toml:3: api.replicas: expected an integer >= 0, got '4'",
    ),
    (
        "replicas-too-many",
        SVC + "replicas = 20000\n",
        "tree.toml:3: api.replicas: must be at most 10000, got 20000",
    ),
    # --- keys ---------------------------------------------------------------
    (
        "typo-did-you-mean",
        SVC + 'restrat = "permanent"\n',
        "tree.toml:3: api.restrat: unknown key; did you mean 'restart'?",
    ),
    (
        "unknown-key-no-close-match",
        SVC + "foo = 1\n",
        "tree.toml:3: api.foo: unknown key (expected one of: cmd, target, args, env, cwd, "
        "restart, normal_exit_codes, stop_signal, shutdown, ready, health, watchdog, backoff, "
        "significant, log, replicas, intensity, period, user, group, umask, nice, "
        "oom_score_adj, limits, env_file, autostart)",
    ),
    (
        "root-takes-only-five-fields",
        'shutdown = 10\n[a]\ncmd = "x"\n',
        "tree.toml:1: shutdown: not allowed at the top level: the root takes only strategy, "
        "intensity, period, auto_shutdown, cgroups",
    ),
    (
        "service-field-at-top-level",
        'cmd = "x"\n[a]\ncmd = "x"\n',
        "tree.toml:1: cmd: a service field at the top level, which is the root supervisor: "
        "put the service in its own table, e.g. [app]",
    ),
    (
        "supervisor-field-on-service",
        SVC + 'strategy = "one_for_all"\n',
        "tree.toml:3: api.strategy: a supervisor field, but this table is a service "
        "(it has 'cmd' or 'target')",
    ),
    (
        "service-field-on-supervisor",
        '[web]\ncwd = "."\n[web.api]\ncmd = "x"\n',
        "tree.toml:2: web.cwd: a service field, but this table is a supervisor "
        "(no 'cmd' or 'target')",
    ),
    (
        "ready-on-supervisor",
        '[web]\nready = { tcp = "a:1" }\n[web.a]\ncmd = "y"\n',
        "tree.toml:2: web.ready: a service field, but this table is a supervisor "
        "(no 'cmd' or 'target')",
    ),
    # --- shape of the tree ------------------------------------------------------
    (
        "neither-service-nor-supervisor",
        '[web]\n[db]\ncmd = "x"\n',
        "tree.toml:1: web: this table is neither a service (no 'cmd' or 'target') "
        "nor a supervisor (no child tables)",
    ),
    (
        "neither-with-typo-of-cmd",
        '[api]\ncmnd = "x"\n',
        "tree.toml:1: api: this table is neither a service (no 'cmd' or 'target') "
        "nor a supervisor (no child tables)\n"
        "tree.toml:2: api.cmnd: unknown key; did you mean 'cmd'?",
    ),
    (
        "empty-file",
        "",
        'tree.toml: the tree is empty: add a service, e.g. [app] with cmd = "..."',
    ),
    (
        "root-fields-only",
        '# nothing yet\nstrategy = "one_for_all"\n',
        'tree.toml: the tree is empty: add a service, e.g. [app] with cmd = "..."',
    ),
    (
        "service-with-child-table",
        SVC + '\n[api.worker]\ncmd = "y"\n',
        "tree.toml:4: api.worker: a service cannot have child tables ('api' has 'cmd')",
    ),
    (
        "reserved-name-as-child",
        '[restart]\ncmd = "x"\n',
        "tree.toml:1: restart: 'restart' is a field name and cannot name a child",
    ),
    (
        "field-table-name-as-child-of-supervisor",
        '[web]\n[web.ready]\ncmd = "x"\n[web.a]\ncmd = "y"\n',
        "tree.toml:2: web.ready: 'ready' is a field name and cannot name a child",
    ),
    (
        "array-of-tables",
        '[[api]]\ncmd = "x"\n',
        "tree.toml:1: api: an array of tables cannot declare children: "
        "give each child its own [table]",
    ),
    (
        "bad-child-name",
        '["my api"]\ncmd = "x"\n',
        "tree.toml:1: my api: name 'my api' must match [A-Za-z0-9_-]+",
    ),
    # --- values ---------------------------------------------------------------
    (
        "restart-misspelt-in-nested-table",
        '[web]\n\n[web.api]\ncmd = "x"\nrestart = "permanet"\n',
        "tree.toml:5: web.api.restart: 'permanet' is not one of permanent, transient, temporary",
    ),
    (
        "intensity-as-string",
        'intensity = "3"\n[a]\ncmd = "x"\n',
        "tree.toml:1: intensity: expected an integer >= 0, got '3'",
    ),
    (
        "period-zero",
        'period = 0\n[a]\ncmd = "x"\n',
        "tree.toml:1: period: must be greater than 0, got 0",
    ),
    (
        "cmd-as-number",
        "[api]\ncmd = 5\n",
        "tree.toml:2: api.cmd: expected a list of strings or a string, got 5",
    ),
    (
        "cmd-as-dotted-key-at-top",
        "api.cmd = 5\n",
        "tree.toml:1: api.cmd: expected a list of strings or a string, got 5",
    ),
    (
        "cmd-unbalanced-quote",
        '[api]\ncmd = "echo \'unterminated"\n',
        'tree.toml:2: api.cmd: cannot split "echo \'unterminated": No closing quotation',
    ),
    (
        "target-without-function",
        '[api]\ntarget = "myapp"\n',
        "tree.toml:2: api.target: expected 'module:function', got 'myapp'",
    ),
    (
        "strategy-misspelt",
        '[web]\nstrategy = "one_for_some"\n[web.a]\ncmd = "x"\n',
        "tree.toml:2: web.strategy: 'one_for_some' is not one of one_for_one, one_for_all, "
        "rest_for_one",
    ),
    (
        "stop-signal-unknown",
        SVC + 'stop_signal = "TERMINATE"\n',
        "tree.toml:3: api.stop_signal: 'TERMINATE' is not one of TERM, INT, QUIT, HUP, KILL, "
        "USR1, USR2, WINCH, ABRT",
    ),
    (
        "shutdown-word",
        SVC + 'shutdown = "never"\n',
        "tree.toml:3: api.shutdown: expected seconds >= 0, 'brutal_kill' or 'infinity', "
        "got 'never'",
    ),
    (
        "exit-code-out-of-range",
        SVC + "normal_exit_codes = [0, 300]\n",
        "tree.toml:3: api.normal_exit_codes: expected a list of exit codes 0-255, got [0, 300]",
    ),
    (
        "env-value-not-string",
        SVC + "env = { PORT = 8000 }\n",
        "tree.toml:3: api.env: expected a table of string values, got {'PORT': 8000}",
    ),
    (
        "restart-as-inline-table",
        SVC + "restart = { x = 1 }\n",
        "tree.toml:3: api.restart: {'x': 1} is not one of permanent, transient, temporary",
    ),
    (
        "line-after-multiline-array",
        '[api]\ncmd = [\n  "a",\n  "b",\n]\nrestart = 1\n',
        "tree.toml:6: api.restart: 1 is not one of permanent, transient, temporary",
    ),
    # --- ready / backoff / log --------------------------------------------------
    (
        "ready-tcp-without-port",
        SVC + 'ready = { tcp = "localhost" }\n',
        "tree.toml:3: api.ready.tcp: expected 'host:port', got 'localhost'",
    ),
    (
        "ready-two-kinds",
        SVC + 'ready = { tcp = "a:1", delay = 2 }\n',
        "tree.toml:3: api.ready: expected exactly one of 'delay', 'tcp', 'notify', 'cmd', "
        "'http', 'exited', got 'delay' and 'tcp'",
    ),
    (
        "ready-no-kind",
        SVC + "ready = { timeout = 3 }\n",
        "tree.toml:3: api.ready: expected one of 'delay', 'tcp', 'notify', 'cmd', 'http', "
        "'exited' (the kind of check)",
    ),
    (
        "ready-kind-misspelt",
        SVC + 'ready = { tpc = "a:1" }\n',
        "tree.toml:3: api.ready.tpc: unknown key; did you mean 'tcp'?",
    ),
    (
        "ready-interval-without-cmd",
        SVC + 'ready = { tcp = "a:1", interval = 1 }\n',
        "tree.toml:3: api.ready.interval: goes only with 'cmd' readiness",
    ),
    (
        "ready-as-string",
        SVC + 'ready = "tcp"\n',
        'tree.toml:3: api.ready: expected a table: { delay = SECONDS }, { tcp = "HOST:PORT" }, '
        '{ notify = true }, { cmd = [...] }, { http = "http://127.0.0.1:PORT/PATH" } or '
        "{ exited = true }, got 'tcp'",
    ),
    (
        "ready-http-not-local",
        SVC + 'ready = { http = "http://example.com/" }\n',
        "tree.toml:3: api.ready.http: 'example.com' is not a loopback address or local name, "
        "in 'http://example.com/'",
    ),
    (
        "ready-http-https",
        SVC + 'ready = { http = "https://127.0.0.1/" }\n',
        "tree.toml:3: api.ready.http: expected an http:// URL (http://127.0.0.1:PORT/PATH), "
        "got 'https://127.0.0.1/'",
    ),
    (
        "ready-exited-permanent",
        SVC + "ready = { exited = true }\n",
        "tree.toml:3: api.ready.exited: a one-shot step cannot be permanent "
        "(use transient or temporary)",
    ),
    (
        "health-timeout-not-below-interval",
        SVC + 'health = { tcp = "127.0.0.1:1", interval = 5, timeout = 5 }\n',
        "tree.toml:3: api.health.timeout: must be less than interval (5), got 5",
    ),
    (
        "health-bad-numbers",
        SVC + 'health = { cmd = "true", interval = 0, failures = 0, grace = -1 }\n',
        "tree.toml:3: api.health.interval: must be greater than 0, got 0\n"
        "tree.toml:3: api.health.failures: expected an integer >= 1, got 0\n"
        "tree.toml:3: api.health.grace: must be at least 0, got -1",
    ),
    (
        "health-bad-address",
        SVC + 'health = { tcp = "127.0.0.1:99999" }\n',
        "tree.toml:3: api.health.tcp: port must be 1-65535, got 99999",
    ),
    (
        "health-two-kinds",
        SVC + 'health = { tcp = "a:1", cmd = "true" }\n',
        "tree.toml:3: api.health: expected exactly one of 'tcp', 'http', 'cmd', "
        "got 'tcp' and 'cmd'",
    ),
    (
        "health-key-of-readiness",
        SVC + 'health = { tcp = "a:1", delay = 1 }\n',
        "tree.toml:3: api.health.delay: unknown key (expected one of: tcp, interval, timeout, "
        "failures, grace)",
    ),
    (
        "watchdog-zero",
        SVC + "watchdog = 0\n",
        "tree.toml:3: api.watchdog: must be greater than 0, got 0",
    ),
    (
        "ready-notify-false",
        SVC + "ready = { notify = false }\n",
        "tree.toml:3: api.ready.notify: must be true (remove 'ready' to turn it off)",
    ),
    (
        "ready-as-table-bad-timeout",
        SVC + '\n[api.ready]\ncmd = "true"\ntimeout = 0\n',
        "tree.toml:6: api.ready.timeout: must be greater than 0, got 0",
    ),
    (
        "backoff-two-bad-fields",
        SVC + "backoff = { initial = 5, max = 1, jitter = 2 }\n",
        "tree.toml:3: api.backoff.max: must be at least initial (5), got 1\n"
        "tree.toml:3: api.backoff.jitter: must be at most 1, got 2",
    ),
    (
        "backoff-typo-and-bad-value",
        SVC + "backoff = { maxx = 3, factor = 0.5 }\n",
        "tree.toml:3: api.backoff.maxx: unknown key; did you mean 'max'?\n"
        "tree.toml:3: api.backoff.factor: must be at least 1, got 0.5",
    ),
    (
        "backoff-as-number",
        SVC + "backoff = 5\n",
        "tree.toml:3: api.backoff: expected a table: { initial = 0.5, max = 30 }, got 5",
    ),
    (
        "log-negative-size",
        SVC + '[api.log]\nfile = "a.log"\nmax_bytes = -1\n',
        "tree.toml:5: api.log.max_bytes: expected a number of bytes >= 0 (0: no rotation), got -1",
    ),
    # --- cross-field rules (check_tree) -----------------------------------------
    (
        "significant-permanent",
        'auto_shutdown = "any_significant"\n' + SVC + "significant = true\n",
        "tree.toml:4: api.significant: a permanent child cannot be significant "
        "(use transient or temporary)",
    ),
    (
        "significant-without-auto-shutdown",
        SVC + 'restart = "transient"\nsignificant = true\n',
        "tree.toml:4: api.significant: significant has no effect: auto_shutdown of the root "
        "is 'never'",
    ),
    (
        "cmd-and-target",
        SVC + 'target = "a:b"\n',
        "tree.toml:1: api: 'cmd' and 'target' exclude each other: give one",
    ),
    (
        "args-without-target",
        SVC + 'args = ["a"]\n',
        "tree.toml:3: api.args: 'args' goes with 'target' (put them in 'cmd')",
    ),
    (
        "bad-restart-does-not-also-trip-significant",
        'auto_shutdown = "any_significant"\n[api]\ncmd = "x"\nrestart = "sometimes"\n'
        "significant = true\n",
        "tree.toml:4: api.restart: 'sometimes' is not one of permanent, transient, temporary",
    ),
    # --- all at once --------------------------------------------------------------
    (
        "every-node-reported-in-line-order",
        'intensity = -1\n\n[db]\ncmd = []\n\n[web]\nstrategy = "x"\n\n[web.api]\n'
        'target = "a:b"\nshutdown = -1\nrestrat = "temporary"\n',
        "tree.toml:1: intensity: expected an integer >= 0, got -1\n"
        "tree.toml:4: db.cmd: must not be empty\n"
        "tree.toml:7: web.strategy: 'x' is not one of one_for_one, one_for_all, rest_for_one\n"
        "tree.toml:11: web.api.shutdown: expected seconds >= 0, 'brutal_kill' or 'infinity', "
        "got -1\n"
        "tree.toml:12: web.api.restrat: unknown key; did you mean 'restart'?",
    ),
    # --- TOML syntax ----------------------------------------------------------------
    (
        "syntax-unclosed-header",
        '[api\ncmd = "x"\n',
        "tree.toml:1: a table header is not closed with ']'",
    ),
    (
        "syntax-unclosed-string",
        '[api]\ncmd = "x\n',
        "tree.toml:2: api.cmd: a string is not closed before the end of the line",
    ),
    (
        "syntax-duplicate-key",
        SVC + 'cmd = "y"\n',
        "tree.toml:3: api.cmd: set twice (or written both as a value and as a table)",
    ),
    (
        "syntax-end-of-file",
        '[api]\ncmd = [\n"a",\n',
        "tree.toml:4: the file ends inside a value "
        "(an array, inline table or string is not closed)",
    ),
    (
        "syntax-table-twice",
        '[web]\ncmd = "a"\n[db]\ncmd = "b"\n[web]\n',
        "tree.toml:5: web: the table is declared twice (write it once, with all its keys)",
    ),
    (
        "syntax-value-then-table",
        '[web]\ncmd = "a"\n[web.cmd]\n',
        "tree.toml:3: web.cmd: set twice (or written both as a value and as a table)",
    ),
    (
        "syntax-bare-word",
        '[api]\ncmd = "x"\nsignificant = True\n',
        "tree.toml:3: api.significant: not a TOML value (a string needs quotes, true and false "
        "are lower case, an array is [a, b], a table { k = v })",
    ),
    (
        "syntax-key-with-space",
        '[api]\nstop signal = "INT"\n',
        "tree.toml:2: expected '=' after the key (a key with spaces or dots in it needs quotes)",
    ),
    (
        "syntax-two-values",
        '[api]\ncmd = "x" "y"\n',
        "tree.toml:2: api.cmd: expected the end of the line after the value "
        "(one key = value a line)",
    ),
    (
        "syntax-unclosed-inline-table",
        '[api]\ncmd = "x"\nready = { tcp = "127.0.0.1:80"\n',
        "tree.toml:3: api.ready: an inline table '{' is not closed with '}'",
    ),
]


@pytest.mark.parametrize(("text", "expected"), [pytest.param(t, e, id=i) for i, t, e in BAD_FILES])
def test_bad_tree_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, expected: str
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("tree.toml").write_text(text)
    with pytest.raises(ConfigError) as info:
        load("tree.toml")
    assert str(info.value) == expected
    # every issue names the file; each issue is one line of the message
    assert all(issue.file == "tree.toml" for issue in info.value.issues)
    assert [str(i) for i in info.value.issues] == expected.split("\n")


def test_the_table_is_large_enough() -> None:
    assert len(BAD_FILES) >= 25
    assert len({i for i, _, _ in BAD_FILES}) == len(BAD_FILES)


def test_issue_fields_are_kept_apart() -> None:
    with pytest.raises(ConfigError) as info:
        loads('[web]\n[web.api]\ncmd = "x"\nrestart = "permanet"\n', "t.toml")
    (issue,) = info.value.issues
    assert (issue.file, issue.line, issue.path) == ("t.toml", 4, "web.api.restart")
    assert issue.message == "'permanet' is not one of permanent, transient, temporary"


def test_loads_names_the_string() -> None:
    with pytest.raises(ConfigError, match=r"^<string>:2: api.cmd: "):
        loads("[api]\ncmd = 5\n")


# --- the file itself ------------------------------------------------------------------


def test_missing_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as info:
        load("nope.toml")
    assert str(info.value) == "nope.toml: cannot read the tree file: No such file or directory"


def test_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    os.mkdir("dir.toml")
    with pytest.raises(ConfigError) as info:
        load(Path("dir.toml"))
    assert str(info.value) == "dir.toml: cannot read the tree file: Is a directory"


def test_unreadable_file(monkeypatch: pytest.MonkeyPatch) -> None:
    # the tests may run as root, who reads any file: make open() refuse as it would
    def refuse(file: str, mode: str) -> None:
        raise PermissionError(13, "Permission denied", file)

    monkeypatch.setattr(otree.config.loader, "open", refuse, raising=False)
    with pytest.raises(ConfigError) as info:
        load("tree.toml")
    assert str(info.value) == "tree.toml: cannot read the tree file: Permission denied"


def test_not_utf8(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path("tree.toml").write_bytes(b'[api]\ncmd = "caf\xe9"\n')
    with pytest.raises(ConfigError) as info:
        load("tree.toml")
    assert str(info.value) == "tree.toml:2: not UTF-8 text: byte 0xe9 is not valid"


def test_utf8_bom_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "tree.toml"
    path.write_bytes(b"\xef\xbb\xbf" + SVC.encode())
    assert load(path).children[0].name == "api"


# --- load_tree: what the command line names ---------------------------------------------


@pytest.mark.parametrize(
    ("arg", "expected"),
    [
        ("tree.py", "a Python tree is named with the variable that holds it: 'tree.py:tree'"),
        ("tree", "expected a .toml file, FILE.py:ATTR or MODULE:ATTR, got 'tree'"),
        ("tree.yaml", "expected a .toml file, FILE.py:ATTR or MODULE:ATTR, got 'tree.yaml'"),
    ],
)
def test_load_tree_refuses_other_arguments(arg: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_tree(arg)
    assert str(info.value) == expected


def test_load_tree_reads_toml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path("tree.toml").write_text("[api]\ncmd = 5\n")
    with pytest.raises(ConfigError, match=r"^tree.toml:2: api.cmd: "):
        load_tree("tree.toml")
