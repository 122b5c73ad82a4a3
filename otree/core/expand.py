"""``${NAME}``, ``${NAME:-default}`` and ``$$`` in a service's fields (pure).

The rules, in one place (the loader and the pools use the same parser):

- ``${NAME}``: the value of ``NAME``; unset is an error (:class:`Unset`), unless
  the caller asked to keep unknown names as written (``strict=False``);
- ``${NAME:-default}``: the value of ``NAME`` if it is set and not empty, else
  ``default`` (taken as written, up to the first ``}``);
- ``$$``: one literal ``$``;
- a ``$`` followed by anything else (``$HOME``, a trailing ``$``) stays as it is;
- ``${`` that is not one of the forms above is an error (:class:`BadSyntax`).

Names in ``keep`` are left as written for a later pass. Then the result is in
*pending* form: every literal ``$`` of the result is written ``$$``, so that the
later pass (:func:`finish`) reads each once and nothing is expanded twice. The
loader leaves a pool's ``${OTREE_REPLICA}`` and ``${OTREE_PATH}`` for
:func:`otree.core.pool.instance_spec` to finish, per instance.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping

__all__ = ["BadSyntax", "ExpandError", "Unset", "escape", "expand", "finish"]

_BRACED = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class ExpandError(ValueError):
    """A field that cannot be expanded; the message says why."""


class Unset(ExpandError):
    """``${NAME}`` with ``NAME`` unset and no default."""

    def __init__(self, name: str) -> None:
        super().__init__(f"${{{name}}} is not set (give a default: ${{{name}:-VALUE}})")
        self.name = name


class BadSyntax(ExpandError):
    """``${`` that is neither ``${NAME}`` nor ``${NAME:-default}``."""


def escape(text: str) -> str:
    """``text`` as a literal in pending form (each ``$`` written ``$$``)."""
    return text.replace("$", "$$")


def expand(
    text: str,
    lookup: Mapping[str, str],
    *,
    keep: Collection[str] = (),
    strict: bool = True,
) -> str:
    """``text`` with its variables replaced from ``lookup`` (see the module's rules).

    ``keep``: names left as written, the result in pending form. ``strict=False``:
    an unset name without a default is left as written instead of raising.
    """
    if "$" not in text:
        return text
    pending = bool(keep)
    out: list[str] = []

    def literal(part: str) -> None:
        out.append(escape(part) if pending else part)

    pos = 0
    while True:
        at = text.find("$", pos)
        if at < 0:
            literal(text[pos:])
            return "".join(out)
        literal(text[pos:at])
        after = text[at + 1 : at + 2]
        if after == "$":
            literal("$")
            pos = at + 2
        elif after == "{":
            match = _BRACED.match(text, at)
            if match is None:
                end = text.find("}", at)
                shown = text[at:] if end < 0 else text[at : end + 1]
                raise BadSyntax(
                    f"{shown!r} is not ${{NAME}} or ${{NAME:-default}} (write $$ for a literal $)"
                )
            name, default = match.group(1), match.group(2)
            value = lookup.get(name)
            if name in keep:
                out.append(match.group(0))
            elif value is not None and (value or default is None):
                literal(value)
            elif default is not None:
                literal(default)
            elif strict:
                raise Unset(name)
            else:
                out.append(escape(match.group(0)) if pending else match.group(0))
            pos = match.end()
        else:
            literal("$")
            pos = at + 1


def finish(text: str, lookup: Mapping[str, str]) -> str:
    """A pending-form ``text`` (from ``expand(..., keep=...)``) made final: the kept names
    from ``lookup``, ``$$`` as ``$``. A name not in ``lookup`` stays as written."""
    return expand(text, lookup, strict=False)
