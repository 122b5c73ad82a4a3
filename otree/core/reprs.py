"""One ``__repr__`` for all of otree's attrs classes, in place of one generated per class.

attrs compiles a ``__repr__`` for each class it builds, fifteen lines of its own
around the fields; for the 35 classes ``otree run`` defines before its first
spawn that was about a third of their build, 3 to 5 ms of every start-up, a
reload's preflight and new image included. So every attrs class of otree is
declared ``@attrs.frozen(repr=False)`` (or ``define``) under ``@plain_repr``,
and shares :func:`attrs_repr`, which writes what attrs' own would:
``Exit(code=1, message='')``, the fields declared ``repr=False`` left out. It
has no guard against a value that holds itself: otree's records are frozen
trees of values, never cyclic.
"""

from __future__ import annotations

from typing import Any, TypeVar

__all__ = ["attrs_repr", "plain_repr"]

_C = TypeVar("_C", bound=type)


def attrs_repr(self: Any) -> str:
    """``Name(field=value!r, ...)``: attrs' format (a local class's name without its
    ``<locals>`` prefix), each field of ``__attrs_attrs__`` with ``repr`` true, in order."""
    parts = []
    for a in self.__attrs_attrs__:
        if a.repr is True:
            parts.append(f"{a.name}={getattr(self, a.name)!r}")
        elif a.repr:  # a callable, as attrs allows
            parts.append(f"{a.name}={a.repr(getattr(self, a.name))}")
    name = type(self).__qualname__.rsplit(">.", 1)[-1]
    return f"{name}({', '.join(parts)})"


def plain_repr(cls: _C) -> _C:
    """Give an attrs class (declared with ``repr=False``) the shared :func:`attrs_repr`."""
    setattr(cls, "__repr__", attrs_repr)  # noqa: B010 - a method of the class, not typed as one
    return cls
