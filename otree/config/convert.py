"""The one cattrs set-up: specs and records as otree's own JSON (the self-reload handoff).

``CONVERTER`` is the base: unknown keys are refused (``forbid_extra_keys``) and the
attrs converters do the checking (``prefer_attrib_converters``). A tree file is read
without it (:mod:`otree.config.loader` builds its few sub-tables itself), so ``otree
run`` never imports cattrs: only a reload does.

:func:`json_converter` is a copy of it for otree's own JSON documents (the
self-reload handoff): the same refusal of unknown keys and the same detailed
errors, with each field structured by its type first (then checked again by
the class), and these shapes:

- a spec node is one key naming its kind: ``{"service": {...}}`` or
  ``{"supervisor": {..., "children": [...]}}``; its fields are the attrs
  fields, enums by value (they are ``str`` enums), ``env`` as a table;
- a readiness check carries its class name: ``{"kind": "ReadyTcp", "tcp": ...}``;
- ``bytes`` are text, one character per byte (latin-1), so any byte survives.

A class made of such fields (frozen attrs classes, named tuples, tuples,
dicts, optionals) needs no hook: a field added to it is written and read with
no other edit.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

import cattrs
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn

from otree.core.spec import (
    HEALTH_KINDS,
    READY_KINDS,
    Health,
    Node,
    Ready,
    Service,
    Shutdown,
    Supervisor,
)

__all__ = ["CONVERTER", "json_converter", "register_tagged"]

#: the tree file's converter (see the module doc)
CONVERTER = cattrs.Converter(
    forbid_extra_keys=True, prefer_attrib_converters=True, detailed_validation=True
)

_NODE_KINDS: dict[str, type[Service] | type[Supervisor]] = {
    "service": Service,
    "supervisor": Supervisor,
}
_ENV = tuple[tuple[str, str], ...]


@functools.cache
def json_converter() -> cattrs.Converter:
    """The converter for otree's JSON documents (built once, on first use)."""
    conv = CONVERTER.copy(prefer_attrib_converters=False)
    conv.register_unstructure_hook(bytes, lambda b: b.decode("latin-1"))
    conv.register_structure_hook(bytes, _bytes)
    conv.register_unstructure_hook_func(lambda cls: bool(cls == _ENV), dict)
    conv.register_structure_hook_func(lambda cls: bool(cls == _ENV), _env)
    conv.register_structure_hook_func(lambda cls: bool(cls == Shutdown), _shutdown)
    register_tagged(conv, Ready, {cls.__name__: cls for cls in READY_KINDS})
    register_tagged(conv, Health, {cls.__name__: cls for cls in HEALTH_KINDS})
    for name, cls in _NODE_KINDS.items():
        conv.register_unstructure_hook(cls, _wrapped_unstructure(name, cls, conv))
        conv.register_structure_hook(cls, _wrapped_structure(name, cls, conv))
    conv.register_unstructure_hook(Node, conv.unstructure)
    conv.register_structure_hook(Node, _node(conv))
    return conv


def register_tagged(
    conv: cattrs.Converter, union: Any, classes: Mapping[str, type], tag: str = "kind"
) -> None:
    """Write each class of ``union`` as a table with ``tag`` naming it (``{"kind":
    "ReadyTcp", ...}``), and read it back by that name; ``union | None`` too."""

    def structure(value: Any, wanted: Any) -> Any:
        if value is None and wanted != union:  # asked for ``union | None``
            return None
        name = value.get(tag) if isinstance(value, Mapping) else None
        if not isinstance(name, str) or name not in classes:
            raise ValueError(f"expected {tag!r} to be one of {', '.join(classes)}: {_short(value)}")
        return conv.structure({k: v for k, v in value.items() if k != tag}, classes[name])

    for name, cls in classes.items():
        conv.register_unstructure_hook(cls, _tagged_unstructure(tag, name, cls, conv))
    conv.register_structure_hook_func(lambda t: bool(t in (union, union | None)), structure)


def _fields_writer(cls: type, conv: cattrs.Converter) -> Callable[[Any], dict[str, Any]]:
    """``cls``' fields as a table: cattrs' function for it, generated on first use (an
    image that only reads a handoff, the new one and the preflight, never needs it)."""
    made: list[Callable[[Any], dict[str, Any]]] = []

    def fields(value: Any) -> dict[str, Any]:
        if not made:
            made.append(make_dict_unstructure_fn(cls, conv))
        return made[0](value)

    return fields


def _tagged_unstructure(tag: str, name: str, cls: type, conv: cattrs.Converter) -> Any:
    fields = _fields_writer(cls, conv)
    return lambda value: {tag: name, **fields(value)}


def _bytes(value: Any, _: Any) -> bytes:
    if not isinstance(value, str):
        raise TypeError(f"expected text (one character per byte), got {value!r}")
    return value.encode("latin-1")


def _env(value: Any, _: Any) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, Mapping):
        raise TypeError(f"expected a table of strings, got {value!r}")
    return tuple(sorted((str(k), str(v)) for k, v in value.items()))


def _shutdown(value: Any, _: Any) -> Shutdown:
    if value == "brutal_kill":
        return "brutal_kill"
    if value == "infinity":
        return "infinity"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"expected seconds, 'brutal_kill' or 'infinity', got {value!r}")
    return float(value)


def _wrapped_unstructure(name: str, cls: type, conv: cattrs.Converter) -> Any:
    fields = _fields_writer(cls, conv)
    return lambda node: {name: fields(node)}


def _wrapped_structure(name: str, cls: type, conv: cattrs.Converter) -> Any:
    fields: Callable[[Any, Any], Any] = make_dict_structure_fn(cls, conv)

    def structure(value: Any, _: Any) -> Any:
        if not isinstance(value, Mapping) or list(value) != [name]:
            raise ValueError(f"expected {{{name!r}: {{...}}}}, got {_short(value)}")
        return fields(value[name], cls)

    return structure


def _node(conv: cattrs.Converter) -> Any:
    def structure(value: Any, _: Any) -> Any:
        kinds = list(value) if isinstance(value, Mapping) else []
        if len(kinds) != 1 or kinds[0] not in _NODE_KINDS:
            raise ValueError(
                f"expected {{'service': ...}} or {{'supervisor': ...}}, got {_short(value)}"
            )
        return conv.structure(value, _NODE_KINDS[kinds[0]])

    return structure


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
