"""A loaded tree finished against its environment: env files, ``${VAR}`` and relative paths.

Run at load (``run``, ``check``, ``reload``) on every service of a tree, after
its fields were checked one by one:

1. each ``env_file`` (relative to the tree's directory) is read with
   python-dotenv's parser, in order; their values go under ``env`` (environment,
   lowest first: otree's own, each env file in order, ``env``). Values from a
   file are taken as written. The service's ``env`` then holds the merged values,
   so a changed env file is a changed spec and a reload restarts that service;
   ``env_file`` keeps the resolved paths, for display;
2. ``${NAME}``, ``${NAME:-default}`` and ``$$`` (:mod:`otree.core.expand`) are
   expanded in ``cmd``, ``args``, ``env`` values, ``cwd``, ``log.file``, ``user``
   and ``group``, from otree's environment plus ``OTREE_TREE_DIR`` (the tree's
   directory), ``OTREE_PATH`` (the service's path) and ``OTREE_REPLICA`` (0). A
   pool's ``${OTREE_REPLICA}``, ``${OTREE_PATH}`` and ``$$`` are left in pending
   form for :func:`otree.core.pool.instance_spec`, which finishes them per
   instance. In a tree file, ``user``, ``group`` and the ``ready``/``health``
   addresses are expanded before their checks read them (:func:`expand_raw`);
3. a relative ``cwd``, ``log.file``, ``env_file``, and a relative ``cmd[0]``
   with a ``/`` in it are made absolute against the tree's directory (as docker
   compose does), never against the directory otree was started in.

Problems come back as issues with dotted key paths; the loader adds file and line.
"""

from __future__ import annotations

import io
import os
import weakref
from collections.abc import Collection, Mapping
from typing import Any

import attrs

from otree.core.expand import ExpandError, Unset, escape, expand
from otree.core.pool import PATH_VAR, REPLICA_VAR
from otree.core.spec import Service, Supervisor
from otree.errors import Issue
from otree.paths import STREAMS

__all__ = [
    "RAW_FIELDS",
    "TREE_DIR_VAR",
    "expand_raw",
    "is_prepared",
    "prepare",
    "read_env_file",
]

#: ``${OTREE_TREE_DIR}``: the directory of the tree file
TREE_DIR_VAR = "OTREE_TREE_DIR"
#: the fields of a ``ready``/``health`` table that name an address
_ADDRESS_KEYS = ("tcp", "http")
#: an address that could not be expanded is replaced by this while the rest is checked
_STAND_INS = {"tcp": "127.0.0.1:1", "http": "http://127.0.0.1/"}


def read_env_file(file: str) -> tuple[list[tuple[str, str]], str | None]:
    """The ``(name, value)`` pairs of the dotenv file ``file`` in order, or what is wrong."""
    from dotenv.parser import parse_stream  # only for a tree with env files

    try:
        with open(file, "rb") as f:
            data = f.read()
    except OSError as exc:
        return [], f"cannot read {file}: {exc.strerror or exc}"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        return [], f"{file}:{line}: not UTF-8 text"
    pairs: list[tuple[str, str]] = []
    for binding in parse_stream(io.StringIO(text.removeprefix("\ufeff"))):
        if binding.error:
            shown = binding.original.string.strip()
            return (
                [],
                f"{file}:{binding.original.line}: cannot parse {shown!r} (expected NAME=VALUE)",
            )
        if binding.key is not None and binding.value is not None:
            if "\0" in binding.value:
                return [], f"{file}:{binding.original.line}: {binding.key} contains a NUL byte"
            pairs.append((binding.key, binding.value))
    return pairs, None


def _lookup(environ: Mapping[str, str], base: str, path: str, pool: bool) -> dict[str, str]:
    lookup = {**environ, TREE_DIR_VAR: base}
    if pool:  # left for instance_spec (pending form)
        lookup.pop(REPLICA_VAR, None)
        lookup.pop(PATH_VAR, None)
    else:
        lookup[REPLICA_VAR] = "0"
        lookup[PATH_VAR] = path
    return lookup


class _Service:
    """One service being finished: its lookup, and the issues found."""

    def __init__(
        self,
        svc: Service,
        path: str,
        base: str,
        environ: Mapping[str, str],
        issues: list[Issue],
        done: Collection[str],
    ) -> None:
        self.svc = svc
        self.done = done
        self.path = path
        self.base = base
        self.pool = svc.replicas is not None
        self.keep = (REPLICA_VAR, PATH_VAR) if self.pool else ()
        self.lookup = _lookup(environ, base, path, self.pool)
        self.issues = issues

    def issue(self, key: str, message: str) -> None:
        self.issues.append(Issue(f"{self.path}.{key}", message))

    def sub(self, key: str, text: str) -> str:
        try:
            return expand(text, self.lookup, keep=self.keep)
        except ExpandError as exc:
            self.issue(key, str(exc))
            return text

    def absolute(self, text: str) -> str:
        """``text`` against the tree's directory (already in the field's form)."""
        if os.path.isabs(text):
            return text
        base = escape(self.base) if self.pool else self.base
        return os.path.normpath(os.path.join(base, text))

    def finished(self) -> Service:
        svc = self.svc
        files = tuple(os.path.normpath(os.path.join(self.base, f)) for f in svc.env_file)
        merged: dict[str, str] = {}
        for file in files:
            pairs, problem = read_env_file(file)
            if problem is not None:
                self.issue("env_file", problem)
            merged.update((k, escape(v) if self.pool else v) for k, v in pairs)
        merged.update((k, self.sub(f"env.{k}", v)) for k, v in svc.env)
        changes: dict[str, Any] = {"env": merged, "env_file": files}
        if svc.cmd is not None:
            cmd = [self.sub("cmd", a) for a in svc.cmd]
            if "/" in cmd[0]:
                cmd[0] = self.absolute(cmd[0])
            changes["cmd"] = cmd
        changes["args"] = [self.sub("args", a) for a in svc.args]
        if svc.cwd is not None:
            changes["cwd"] = self.absolute(self.sub("cwd", svc.cwd))
        if svc.log is not None and svc.log.file is not None:
            file = self.sub("log.file", svc.log.file)
            if file not in STREAMS:
                file = self.absolute(file)
            changes["log"] = attrs.evolve(svc.log, file=file)
        for key in RAW_FIELDS:
            value = getattr(svc, key)
            if value is not None and key not in self.done:
                changes[key] = self.sub(key, value)
        held = {  # each change as its field holds it, to drop those that change nothing
            "env": tuple(sorted(merged.items())),
            "cmd": tuple(changes.get("cmd") or ()),
            "args": tuple(changes["args"]),
        }
        changes = {k: v for k, v in changes.items() if getattr(svc, k) != held.get(k, v)}
        # most services have nothing to expand: kept as they are, not constructed again
        return attrs.evolve(svc, **changes) if changes else svc


def prepare(
    root: Supervisor, base: str, environ: Mapping[str, str], *, done: Collection[str] = ()
) -> tuple[Supervisor, list[Issue]]:
    """``root`` with every service finished (the module's steps), and the issues found.

    ``base``: the tree's directory (absolute); ``environ``: otree's environment;
    ``done``: the fields already expanded (a tree file's :data:`RAW_FIELDS`).
    """
    issues: list[Issue] = []
    environ = dict(environ)  # read once: each service's lookup copies a plain dict

    def visit(sup: Supervisor, prefix: str) -> Supervisor:
        children: list[Service | Supervisor] = []
        for child in sup.children:
            path = f"{prefix}.{child.name}" if prefix else child.name
            if isinstance(child, Service):
                children.append(_Service(child, path, base, environ, issues, done).finished())
            else:
                children.append(visit(child, path))
        return attrs.evolve(sup, children=children)

    tree = visit(root, "")
    _FINISHED[id(tree)] = tree
    return tree, issues


#: the trees :func:`prepare` made, by id (a tree passed through it twice, as
#: ``otree.run(otree.load(path))`` does, must not be expanded twice)
_FINISHED: weakref.WeakValueDictionary[int, Supervisor] = weakref.WeakValueDictionary()


def is_prepared(tree: Supervisor) -> bool:
    """Whether ``tree`` came out of :func:`prepare` (so it is final)."""
    return _FINISHED.get(id(tree)) is tree


#: what :func:`expand_raw` expands in a parsed tree file, before the fields' own checks
#: read them (they reject ``${...}``): a service's ``user`` and ``group``
RAW_FIELDS = ("user", "group")


def expand_raw(
    doc: dict[str, Any], base: str, environ: Mapping[str, str]
) -> list[tuple[tuple[str, ...], str]]:
    """Expand, in place in a parsed tree file, what the fields' own checks read as they
    are written: every service's ``user``, ``group`` (:data:`RAW_FIELDS`) and
    ``ready``/``health`` addresses (``tcp``, ``http``). The problems as (key path, message).
    """
    problems: list[tuple[tuple[str, ...], str]] = []
    environ = dict(environ)  # read once (``os.environ`` decodes every item it is asked for)
    stack: list[tuple[tuple[str, ...], dict[str, Any]]] = [((), doc)]
    while stack:
        keys, table = stack.pop()
        if not (keys and ("cmd" in table or "target" in table)):
            stack.extend(((*keys, k), v) for k, v in table.items() if isinstance(v, dict))
            continue
        pool = table.get("replicas") is not None
        lookup = _lookup(environ, base, ".".join(keys), pool)
        keep = (REPLICA_VAR, PATH_VAR) if pool else ()
        places: list[tuple[tuple[str, ...], dict[str, Any], str, bool]] = [
            ((*keys, field), table, field, True) for field in RAW_FIELDS
        ]
        for check in ("ready", "health"):
            inner = table.get(check)
            if isinstance(inner, dict):
                places += [((*keys, check, f), inner, f, False) for f in _ADDRESS_KEYS]
        for where, holder, field, pending in places:
            text = holder.get(field)
            if isinstance(text, str):
                try:
                    holder[field] = expand(text, lookup, keep=keep if pending else ())
                except ExpandError as exc:
                    message = str(exc)
                    if pool and isinstance(exc, Unset) and exc.name in (REPLICA_VAR, PATH_VAR):
                        message = (
                            f"a pool's {where[-2]} address cannot use ${{{exc.name}}}: "
                            "its instances share the one address written"
                        )
                    problems.append((where, message))
                    if field in _STAND_INS:  # so that the rest of the tree is checked too
                        holder[field] = _STAND_INS[field]
                    else:
                        del holder[field]
    return problems
