"""Trees declared in Python: ``file.py:attr`` and ``module:attr``.

Importing the user's module runs the user's code; whatever goes wrong there
(a missing file, a syntax error, an exception, a spec rejected at
construction, ``sys.exit``) comes back as one :class:`ConfigError` naming the
file and, when it can be found, the line in that file. Never a traceback.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import sys
from types import ModuleType
from typing import Any

from otree.config.environ import prepare
from otree.config.system import machine_issues
from otree.core.spec import Service, Supervisor, check_tree
from otree.errors import ConfigError, Issue

_DOTTED = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*\Z")


def _error(message: str, file: str | None = None, line: int | None = None) -> ConfigError:
    return ConfigError([Issue("", message, file, line)])


def load_target(spec: str) -> Supervisor:
    """The Supervisor held by ``attr`` in ``file.py`` or in module ``module``.

    A file is imported under a private module name with its directory put
    first on ``sys.path`` (as ``python file.py`` does); a module is imported
    with the current directory on ``sys.path`` (as ``python -m`` does).
    Raises ConfigError, and runs :func:`check_tree` on the result, then finishes it
    against its environment (:mod:`otree.config.environ`, relative to the file's
    directory) and checks it against this machine (:mod:`otree.config.system`).
    """
    where, sep, attr = spec.rpartition(":")
    if not sep or not where or not attr:
        raise _error(f"expected FILE.py:ATTR or MODULE:ATTR, got {spec!r}")
    if not _DOTTED.match(attr):
        raise _error(f"{attr!r} is not a Python name (in {spec!r})")
    if where.endswith(".py") or "/" in where or os.sep in where:
        file = where
        module = _import_file(where)
    elif _DOTTED.match(where):
        module, file = _import_module(where)
    else:
        raise _error(f"{where!r} is neither a .py file nor a module name (in {spec!r})")

    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise _error(f"has no attribute {attr!r}", file) from None
        except Exception as exc:  # a property of the user's that raised
            raise _error(f"reading {attr!r} raised {type(exc).__name__}: {exc}", file) from None
    if isinstance(obj, Service):
        raise _error(
            f"{attr!r} is a Service; a tree's root is a Supervisor: "
            f"Supervisor('root', children=[{attr}])",
            file,
        )
    if not isinstance(obj, Supervisor):
        raise _error(f"{attr!r} is a {type(obj).__name__}, not an otree Supervisor", file)
    try:
        check_tree(obj)
    except ConfigError as exc:
        raise ConfigError(i.replace(file=i.file or file) for i in exc.issues) from None
    # env files, ${VAR} and relative paths against the .py file's directory
    base = os.path.dirname(os.path.abspath(file)) if os.path.isfile(file) else os.getcwd()
    tree, issues = prepare(obj, base, os.environ)
    issues += machine_issues(tree)
    if issues:
        raise ConfigError(i.replace(file=i.file or file) for i in issues)
    return tree


def _import_file(path: str) -> ModuleType:
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise _error(f"cannot read the tree file: {exc.strerror or exc}", path) from None
    stem = os.path.splitext(os.path.basename(path))[0]
    name = "_otree_tree_" + re.sub(r"\W", "_", stem)
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise _error("cannot be imported as a Python file", path)
    module = importlib.util.module_from_spec(spec)
    folder = os.path.dirname(os.path.abspath(path))
    if folder not in sys.path:
        sys.path.insert(0, folder)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except (Exception, SystemExit) as exc:
        sys.modules.pop(name, None)
        raise _import_error(exc, path) from None
    return module


def _import_module(name: str) -> tuple[ModuleType, str]:
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and (name == exc.name or name.startswith(exc.name + ".")):
            raise _error(f"cannot import module {name!r}: {exc}") from None
        raise _import_error(exc, _origin(name) or name) from None
    except (Exception, SystemExit) as exc:
        raise _import_error(exc, _origin(name) or name) from None
    return module, getattr(module, "__file__", None) or name


def _origin(name: str) -> str | None:
    try:
        spec = importlib.util.find_spec(name)
    except (Exception, SystemExit):
        return None
    return spec.origin if spec is not None and spec.has_location else None


def _line_in(exc: BaseException, file: str) -> int | None:
    """The line of ``file`` that was running when ``exc`` was raised (innermost)."""
    target = os.path.abspath(file)
    line = None
    import traceback

    for frame in traceback.extract_tb(exc.__traceback__):
        if os.path.abspath(frame.filename) == target:
            line = frame.lineno
    return line


def _import_error(exc: BaseException, file: str) -> ConfigError:
    if isinstance(exc, ConfigError):
        line = _line_in(exc, file)
        return ConfigError(i.replace(file=i.file or file, line=i.line or line) for i in exc.issues)
    if isinstance(exc, SyntaxError):
        where = exc.filename or file
        if os.path.abspath(where) == os.path.abspath(file):
            where = file  # as the user wrote it
        return _error(f"SyntaxError: {exc.msg}", where, exc.lineno)
    if isinstance(exc, SystemExit):
        return _error(
            f"exited while being imported (SystemExit: {exc.code!r}); "
            "call otree.run() under: if __name__ == '__main__'",
            file,
            _line_in(exc, file),
        )
    text = str(exc)
    return _error(
        f"error while importing: {type(exc).__name__}{': ' + text if text else ''}",
        file,
        _line_in(exc, file),
    )
