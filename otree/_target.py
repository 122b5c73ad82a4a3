"""Run a service's ``target = "module:function"``.

The runtime starts ``python -m otree._target module:function args...``.

The function is called with no arguments, as a console-script entry point is;
``sys.argv`` is ``["module:function", *args]``. Its return value is the exit
status (``None`` is 0), as with ``sys.exit(main())``.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any


def resolve(target: str) -> Any:
    """The object ``module:attr.attr`` names; ImportError or AttributeError if none."""
    module_name, _, attr_path = target.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in attr_path.split("."):
        obj = getattr(obj, part)
    return obj


def main() -> None:
    if len(sys.argv) < 2 or ":" not in sys.argv[1]:
        sys.stderr.write("usage: python -m otree._target module:function [args...]\n")
        raise SystemExit(2)
    target = sys.argv[1]
    try:
        func = resolve(target)
    except (ImportError, AttributeError) as exc:
        sys.stderr.write(f"otree: cannot load target {target!r}: {exc}\n")
        raise SystemExit(2) from None
    if not callable(func):
        sys.stderr.write(f"otree: target {target!r} is not callable\n")
        raise SystemExit(2)
    sys.argv = [target, *sys.argv[2:]]
    raise SystemExit(func())


if __name__ == "__main__":
    main()
