"""Tree files: TOML -> specs, with every problem named by file, line and key path.

The document is the root supervisor. A table is a *service* if it has ``cmd``
or ``target``, a *supervisor* if it has child tables (tables other than the
service field tables ``env``, ``ready``, ``backoff`` and ``log``); children
come in document order, which is start order.

Loading goes in three steps, and every step reports *all* its problems:

1. shape: which table is what, unknown keys ("did you mean"), children of a
   service, tables that are neither service nor supervisor;
2. fields: the sub-tables become ``Ready*``, ``Health*``, ``Backoff`` and ``Log``
   (their keys checked against the class's fields, the class built from them:
   its attrs converters check each value, as the node constructors in
   :mod:`otree.core.spec` check every field; a bad field is then replaced by a
   neutral stand-in so the rest of the tree can still be checked). No cattrs:
   it is imported only by a reload, for otree's own JSON;
3. cross-field rules: :func:`otree.core.spec.check_tree`.

Each problem becomes an :class:`~otree.errors.Issue` with the file, the line
found by :mod:`otree.config.keylines` and the key path; one :class:`ConfigError`
carries them all, in line order.

Python trees (``file.py:attr``, ``module:attr``) are loaded by
:mod:`otree.config.pytree`; :func:`load_tree` picks the right loader.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import attrs

from otree.config.environ import RAW_FIELDS, expand_raw, prepare
from otree.config.pytree import load_target
from otree.config.scan import MAX_DEPTH, TABLE_FIELDS, hostile, shell_warnings
from otree.config.system import machine_issues
from otree.core.spec import (
    RESERVED_NAMES,
    ROOT_FIELDS,
    SERVICE_FIELDS,
    SUPERVISOR_FIELDS,
    Backoff,
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
    Service,
    Supervisor,
    check_tree,
    walk,
)
from otree.errors import ConfigError, Issue
from otree.paths import log_path_problem

if TYPE_CHECKING:
    from otree.config.keylines import Keys

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib  # type: ignore[import-not-found, no-redef, unused-ignore]

__all__ = ["ROOT_NAME", "load", "load_target", "load_tree", "loads"]

#: the name of the root supervisor of a tree file (its path in events is "")
ROOT_NAME = "root"


#: the kind of readiness check, chosen by which of these keys is present
READY_BY_KEY: dict[str, type] = {
    "delay": ReadyDelay,
    "tcp": ReadyTcp,
    "notify": ReadyNotify,
    "cmd": ReadyCmd,
    "http": ReadyHttp,
    "exited": ReadyExited,
}
#: the kind of health check, chosen the same way
HEALTH_BY_KEY: dict[str, type] = {"tcp": HealthTcp, "http": HealthHttp, "cmd": HealthCmd}
#: the kinds of check of each field that has them
_KINDS = {"ready": READY_BY_KEY, "health": HEALTH_BY_KEY}

_TABLE_SHAPES = {
    "ready": '{ delay = SECONDS }, { tcp = "HOST:PORT" }, { notify = true }, { cmd = [...] },'
    ' { http = "http://127.0.0.1:PORT/PATH" } or { exited = true }',
    "health": '{ tcp = "HOST:PORT" }, { http = URL } or { cmd = [...] }, with interval, timeout',
    "backoff": "{ initial = 0.5, max = 30 }",
    "log": '{ file = "NAME.log" }',
}

#: a bad field is replaced by this while the rest of the tree is checked, so that
#: no cross-field rule fires on a value the user did not write
_STAND_INS: dict[str, Any] = {
    "cmd": ("-",),
    "target": "stand_in:value",
    "args": ("-",),
    "restart": "transient",
    "significant": False,
    "auto_shutdown": "any_significant",
}

_ALL_FIELDS = tuple(dict.fromkeys(SERVICE_FIELDS + SUPERVISOR_FIELDS))


# --- the sub-tables -----------------------------------------------------------


def _kind_of(field: str, value: Mapping[str, Any]) -> type:
    """The class of a ``ready``/``health`` table: the one key of ``_KINDS[field]`` it has
    (ConfigError: none or several, with the unknown keys if there are any)."""
    by_key = _KINDS[field]
    kinds = [key for key in by_key if key in value]
    if len(kinds) == 1:
        return by_key[kinds[0]]
    names = ", ".join(repr(k) for k in by_key)
    if kinds:
        got = " and ".join(repr(k) for k in kinds)
        raise ConfigError([Issue(field, f"expected exactly one of {names}, got {got}")])
    all_keys = {f.name for cls in by_key.values() for f in attrs.fields(cls)}
    unknown = [
        Issue(f"{field}.{key}", _unknown_key_message(key, (), tuple(all_keys)))
        for key in value
        if key not in all_keys
    ]
    message = f"expected one of {names} (the kind of check)"
    raise ConfigError(unknown or [Issue(field, message)])


_SUB_SPECS: dict[str, type] = {"backoff": Backoff, "log": Log}
#: the fields that are tables of their own, built by :func:`_structure_sub`
_SUB_FIELDS = ("ready", "health", *_SUB_SPECS)


def _structure_sub(field: str, value: Any) -> tuple[Any, list[Issue]]:
    """A ``ready``/``health``/``backoff``/``log`` table as its spec, or None and the issues.

    Issue paths start with ``field``. Unknown keys are reported and left out, and the
    class is built from the rest, so bad values next to a typo are reported too.
    """
    if not isinstance(value, dict):
        return None, [Issue(field, f"expected a table: {_TABLE_SHAPES[field]}, got {value!r}")]
    try:
        cls = _SUB_SPECS[field] if field in _SUB_SPECS else _kind_of(field, value)
    except ConfigError as exc:
        return None, list(exc.issues)
    fields = attrs.fields(cls)
    known = tuple(f.name for f in fields)
    issues = [
        Issue(f"{field}.{key}", _extra_key(field, cls, key, known))
        for key in value
        if key not in known
    ]
    missing = [f.name for f in fields if f.default is attrs.NOTHING and f.name not in value]
    if missing:
        return None, issues + [Issue(f"{field}.{name}", "missing") for name in missing]
    try:
        return cls(**{k: v for k, v in value.items() if k in known}), issues
    except ConfigError as exc:  # the class names every bad field
        return None, issues + list(exc.issues)
    except (TypeError, ValueError) as exc:
        return None, [*issues, Issue(field, str(exc) or type(exc).__name__)]


def _extra_key(field: str, cls: type, key: str, known: tuple[str, ...]) -> str:
    """Why ``key`` has no place in a ``field`` table of kind ``cls``."""
    by_key = _KINDS.get(field, {})
    kind = next((k for k, c in by_key.items() if c is cls), None)
    other_kinds = [k for k, c in by_key.items() if key in {f.name for f in attrs.fields(c)}]
    if kind is not None and other_kinds:
        what = "readiness" if field == "ready" else "health checks"
        return f"goes only with {' or '.join(repr(k) for k in other_kinds)} {what}"
    return _unknown_key_message(key, known, ())


def _unknown_key_message(key: str, allowed: Iterable[str], others: Iterable[str]) -> str:
    allowed = tuple(allowed)
    import difflib  # only for a misspelt key: kept off otree's start-up (RSS)

    match = difflib.get_close_matches(key, allowed, n=1) or difflib.get_close_matches(
        key, tuple(others), n=1
    )
    if match:
        return f"unknown key; did you mean {match[0]!r}?"
    if allowed:
        return f"unknown key (expected one of: {', '.join(allowed)})"
    return "unknown key"


# --- the tree -----------------------------------------------------------------


def _looks_like_node(table: Mapping[str, Any]) -> bool:
    return "cmd" in table or "target" in table or any(isinstance(v, dict) for v in table.values())


def _is_table_array(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


class _Builder:
    """Turns a parsed document into specs, collecting problems as (key path, message)."""

    def __init__(self) -> None:
        self.problems: list[tuple[Keys, str]] = []
        #: dotted node path (as check_tree names it) -> key path in the document
        self.node_keys: dict[str, Keys] = {"": ()}

    def problem(self, keys: Keys, message: str) -> None:
        self.problems.append((keys, message))

    def root(self, doc: Mapping[str, Any]) -> Supervisor | None:
        root = self.table((), doc)
        assert root is None or isinstance(root, Supervisor)
        if root is not None:
            try:
                check_tree(root)
            except ConfigError as exc:
                for issue in exc.issues:
                    self.problem(self.keys_of(issue.path), issue.message)
        return root

    def finish(self, root: Supervisor, base: str) -> Supervisor:
        """``root`` against its environment and this machine (``otree.config.environ``,
        ``otree.config.system``); the problems are the builder's."""
        root, issues = prepare(root, base, os.environ, done=RAW_FIELDS)
        for issue in issues + machine_issues(root):
            self.problem(self.keys_of(issue.path), issue.message)
        self.log_paths(root)
        return root

    def log_paths(self, root: Supervisor) -> None:
        """Every ``log.file`` must be safe to write (``otree.paths``): checked now, at load."""
        for path, node in walk(root):
            log = node.log if isinstance(node, Service) else None
            if log is not None and log.file is not None and path in self.node_keys:
                problem = log_path_problem(log.file)
                if problem is not None:
                    self.problem(self.node_keys[path] + ("log", "file"), problem)

    def table(self, keys: Keys, table: Mapping[str, Any]) -> Service | Supervisor | None:
        is_root = not keys
        is_service = not is_root and ("cmd" in table or "target" in table)
        kind = "root" if is_root else "service" if is_service else "supervisor"
        allowed = ROOT_FIELDS if is_root else SERVICE_FIELDS if is_service else SUPERVISOR_FIELDS
        fields: dict[str, Any] = {}
        children: list[tuple[str, Mapping[str, Any]]] = []
        unknown: list[str] = []
        for key, value in table.items():
            if isinstance(value, dict) and not (is_service and key in TABLE_FIELDS):
                if key not in RESERVED_NAMES:
                    children.append((key, value))
                elif _looks_like_node(value):
                    self.problem((*keys, key), f"{key!r} is a field name and cannot name a child")
                elif key in allowed:
                    fields[key] = value  # the spec says what it should be
                else:
                    unknown.append(key)
            elif key in allowed:
                fields[key] = value
            elif _is_table_array(value) and key not in RESERVED_NAMES:
                self.problem(
                    (*keys, key),
                    "an array of tables cannot declare children: give each child its own [table]",
                )
            else:
                unknown.append(key)

        neither = not is_root and not is_service and not children
        for key in unknown:
            if neither and key in _ALL_FIELDS:
                continue  # the table's one problem is that it is neither
            self.problem((*keys, key), self.unknown(key, kind, allowed))

        if is_service:
            has = "cmd" if "cmd" in table else "target"
            for child, _ in children:
                self.problem(
                    (*keys, child),
                    f"a service cannot have child tables ({'.'.join(keys)!r} has {has!r})",
                )
            return self.service(keys, fields)
        if neither:
            self.problem(
                keys,
                "this table is neither a service (no 'cmd' or 'target') "
                "nor a supervisor (no child tables)",
            )
            return None
        tables = any(isinstance(v, (dict, list)) for v in table.values())
        if is_root and not tables:  # else the tables' own issues explain it
            self.problem(keys, 'the tree is empty: add a service, e.g. [app] with cmd = "..."')
        nodes = []
        for child, value in children:
            node = self.table((*keys, child), value)
            if node is not None:
                nodes.append(node)
        sup = self.construct(Supervisor, keys, {**fields, "children": nodes})
        assert sup is None or isinstance(sup, Supervisor)
        return sup

    @staticmethod
    def unknown(key: str, kind: str, allowed: tuple[str, ...]) -> str:
        if kind == "root" and key in SUPERVISOR_FIELDS:
            return f"not allowed at the top level: the root takes only {', '.join(ROOT_FIELDS)}"
        if kind == "root" and key in SERVICE_FIELDS:
            return (
                "a service field at the top level, which is the root supervisor: "
                "put the service in its own table, e.g. [app]"
            )
        if kind == "service" and key in SUPERVISOR_FIELDS:
            return "a supervisor field, but this table is a service (it has 'cmd' or 'target')"
        if kind == "supervisor" and key in SERVICE_FIELDS:
            return "a service field, but this table is a supervisor (no 'cmd' or 'target')"
        return _unknown_key_message(key, allowed, _ALL_FIELDS)

    def service(self, keys: Keys, fields: dict[str, Any]) -> Service | Supervisor | None:
        for field in _SUB_FIELDS:
            if field in fields:
                spec, issues = _structure_sub(field, fields[field])
                for issue in issues:
                    self.problem(keys + tuple(issue.path.split(".")), issue.message)
                if spec is None:
                    del fields[field]
                else:
                    fields[field] = spec
        return self.construct(Service, keys, fields)

    def construct(
        self, cls: type[Service] | type[Supervisor], keys: Keys, fields: dict[str, Any]
    ) -> Service | Supervisor | None:
        name = keys[-1] if keys else ROOT_NAME
        self.node_keys[".".join(keys)] = keys
        try:
            return cls(name, **fields)
        except ConfigError as exc:
            bad = set()
            for issue in exc.issues:
                rest = _strip(issue.path, name)
                self.problem(keys + rest, issue.message)
                bad.add(rest[0] if rest else "")
        stand_in = {k: v for k, v in fields.items() if k not in bad}
        stand_in.update((k, _STAND_INS[k]) for k in bad if k in _STAND_INS)
        try:
            return cls(name, **stand_in)
        except ConfigError:  # pragma: no cover - the stand-ins are valid values
            return None

    def keys_of(self, path: str) -> Keys:
        """The key path of a dotted path from check_tree (node names may hold dots)."""
        if path in self.node_keys:
            return self.node_keys[path]
        node = max(
            (p for p in self.node_keys if p and path.startswith(p + ".")), key=len, default=""
        )
        rest = path[len(node) + 1 :] if node else path
        return self.node_keys[node] + tuple(rest.split("."))


def _strip(path: str, name: str) -> Keys:
    """The field part of an issue path from a node constructor (``api.ready.tcp``)."""
    if path == name:
        return ()
    if path.startswith(name + "."):
        path = path[len(name) + 1 :]
    return tuple(path.split("."))


# --- entry points ---------------------------------------------------------------


def loads(text: str, file: str = "<string>", *, warnings: list[Issue] | None = None) -> Supervisor:
    """The tree in TOML ``text``; ``file`` names it in messages, and its directory is the
    tree's (``<string>``: the working directory). Raises ConfigError. ``warnings``, if
    given, gets what ``otree check`` warns of (a string ``cmd`` with shell syntax)."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        from otree.config.syntax import syntax_issue  # its patterns: for a bad file only

        raise ConfigError([syntax_issue(str(exc), text, file)]) from None
    except RecursionError:  # arrays or inline tables nested thousands deep
        message = f"invalid TOML: arrays or inline tables nested too deep (at most {MAX_DEPTH})"
        raise ConfigError([Issue("", message, file)]) from None
    base = os.getcwd() if file == "<string>" else os.path.dirname(os.path.abspath(file))
    builder = _Builder()
    builder.problems = hostile(doc)
    root = None
    if not builder.problems:
        builder.problems = expand_raw(doc, base, os.environ)
        root = builder.root(doc)
    if root is not None:
        root = builder.finish(root, base)
    found = shell_warnings(doc) if warnings is not None else []
    lines = None
    if found or builder.problems or root is None:
        from otree.config.keylines import KeyLines  # its patterns: for a file with issues only

        lines = KeyLines(text)
    if warnings is not None and lines is not None:
        warnings.extend(Issue(".".join(k), m, file, lines.find(k)) for k, m in found)
    if builder.problems or root is None:
        assert lines is not None
        issues = [
            Issue(".".join(keys), message, file, lines.find(keys))
            for keys, message in builder.problems
        ]
        issues.sort(key=lambda i: i.line or 0)
        raise ConfigError(issues)
    return root


def load(path: str | os.PathLike[str], *, warnings: list[Issue] | None = None) -> Supervisor:
    """The tree in the TOML file at ``path``. Raises ConfigError (never OSError)."""
    file = os.fspath(path)
    try:
        with open(file, "rb") as f:
            data = f.read()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ConfigError([Issue("", f"cannot read the tree file: {reason}", file)]) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError(
            [Issue("", f"not UTF-8 text: byte 0x{data[exc.start]:02x} is not valid", file, line)]
        ) from None
    return loads(text.removeprefix("\ufeff"), file, warnings=warnings)


def load_tree(arg: str, *, warnings: list[Issue] | None = None) -> Supervisor:
    """The tree named on a command line: ``tree.toml``, ``file.py:attr`` or ``module:attr``
    (``warnings``: as for :func:`loads`)."""
    if arg.endswith(".toml"):
        return load(arg, warnings=warnings)
    if ":" in arg:
        return load_target(arg)
    if arg.endswith(".py"):
        message = f"a Python tree is named with the variable that holds it: '{arg}:tree'"
    else:
        message = f"expected a .toml file, FILE.py:ATTR or MODULE:ATTR, got {arg!r}"
    raise ConfigError([Issue("", message)])
