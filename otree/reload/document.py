"""What crosses ``os.execv`` in a self-reload: the handoff file and its contents.

The old image writes one JSON document to a memfd (an anonymous file) left
open across the exec, and names it in ``OTREE_HANDOFF_FD``; the new image
reads it, closes it and drops the variable before anything else starts, so
no child ever sees either. The document is a :class:`Handoff`, written and
read by the config's cattrs set-up (:func:`otree.config.convert.json_converter`):
its JSON keys are the field names, and a field added to a class here (or to
the engine's :class:`~otree.core.snapshot.EngineSnapshot`) needs no other
edit. The file is one line of JSON, then ``otree logs``' ring buffers as raw
bytes (the JSON says whose and how long each is): escaped as text, a ring of
64 MiB could cost six times that. The document is versioned
(``otree_handoff``): a version this code does not know is a
:class:`~otree.errors.ReexecError`, never a guess.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
from typing import TYPE_CHECKING, Any

import attrs

from otree.control.server import HandedClient
from otree.core import events as ev
from otree.core.reprs import plain_repr
from otree.core.snapshot import (
    SNAPSHOT_VERSION,
    EngineSnapshot,
    NodeRecord,
    ServiceRecord,
    SupervisorRecord,
)
from otree.core.spec import Supervisor
from otree.errors import ReexecError
from otree.runtime.health import Carried

if TYPE_CHECKING:
    import cattrs  # imported when a reload happens, never at start-up

#: the environment variable naming the inherited handoff fd
ENV_FD = "OTREE_HANDOFF_FD"
#: the version of the handoff document this code writes; it reads these (1: the ring
#: as text in the JSON, the otree before; 2: the ring as raw bytes after it; 3: as 2,
#: with services in cgroups, written only then: an otree that knows no cgroups refuses
#: it rather than lose track of them, and still takes a tree without them)
FORMAT = 2
CGROUPS_FORMAT = 3
READS = (1, 2, 3)


@plain_repr
@attrs.frozen(repr=False)
class Inherited:
    """One output pipe (and the main process writing it, unless it is gone) of a service."""

    path: str
    pid: int | None
    pipe: int | None
    partial: bytes = b""  #: the start of a line it had not finished
    #: its notify socket (kept bound), STATUS= text, failing probes and watchdog deadline
    liveness: Carried | None = None
    #: the cgroup directory it runs in (below ``Handoff.cgroup``; None: none)
    cgroup: str | None = None


@plain_repr
@attrs.frozen(repr=False)
class ControlSocket:
    """The control server's listening socket, kept open across the exec."""

    fd: int
    started: float | None  #: when the tree started (``otree status`` uptime)


@plain_repr
@attrs.frozen(repr=False)
class Guard:
    """The death guard (``otree.runtime.guard``): its PID, its pipe's write end (kept open
    across the exec: a re-exec is not a death), its table file and what that holds."""

    pid: int
    end: int
    log: int
    table: tuple[tuple[int, int], ...] = ()  #: (PID, death signal)


@plain_repr
@attrs.frozen(repr=False)
class Handoff:
    """What the new image takes over (read by :func:`read_inherited`)."""

    reason: str
    engine: EngineSnapshot
    tree: Supervisor
    procs: tuple[Inherited, ...]
    #: exits the old image had seen but not yet handled (fatal error): fed again
    exits: tuple[ev.Exited, ...]
    #: other children of ours to reap (readiness-command processes killed at the exec)
    strays: tuple[int, ...]
    history: tuple[float, ...]  #: when the last re-execs were (the guard's window)
    control: ControlSocket | None = None
    #: (fd, request id) of the clients waiting for the answer to ``otree reload``
    waiting: tuple[tuple[int, int], ...] = ()
    notify_dir: str | None = None
    #: set when the new image could not use the re-read tree file (it keeps ``tree``)
    config_errors: tuple[str, ...] = ()
    #: ``otree logs``' ring buffers: (path, whole lines), oldest first across services
    ring: tuple[tuple[str, bytes], ...] = ()
    #: control clients with no command in flight (``otree logs -f``, idle ones): served on
    clients: tuple[HandedClient, ...] = ()
    #: ``otree metrics``' counters: (family, path, label, count) (``control.metrics.Counters``)
    counters: tuple[tuple[str, str, str, int], ...] = ()
    #: otree's cgroup directory (``otree-<pid>``), when its services run in cgroups
    cgroup: str | None = None
    #: ``otree events``' ring: (number, event-log line), oldest first (``control.events``)
    events: tuple[tuple[int, str], ...] = ()
    guard: Guard | None = None

    def fds(self) -> list[int]:
        out = [p.pipe for p in self.procs if p.pipe is not None]
        out += [p.liveness.notify_fd for p in self.procs if p.liveness and p.liveness.notify_fd]
        out += [fd for fd, _ in self.waiting]
        out += [c.fd for c in self.clients]
        if self.guard is not None:
            out += [self.guard.end, self.guard.log]
        if self.control is not None:
            out.append(self.control.fd)
        return out

    def known_pids(self) -> dict[int, str]:
        """Which process the old engine thought each service ran: ``{pid: path}``
        (the replaced processes a reconciliation was still stopping included)."""
        known = {
            rec.pid: path
            for path, rec in self.engine.nodes.items()
            if isinstance(rec, ServiceRecord) and rec.pid is not None
        }
        known.update({o.pid: o.path for o in self.engine.orphans})
        return known


@functools.cache
def converter() -> cattrs.Converter:
    """The config's JSON converter with the engine snapshot's two hooks (built once)."""
    from otree.config.convert import json_converter, register_tagged

    conv = json_converter().copy()
    kinds: dict[str, type] = {cls.kind: cls for cls in (ServiceRecord, SupervisorRecord)}
    register_tagged(conv, NodeRecord, kinds)
    conv.register_structure_hook(EngineSnapshot, _engine(conv))
    return conv


def _engine(conv: cattrs.Converter) -> Any:
    from cattrs.gen import make_dict_structure_fn

    fields = make_dict_structure_fn(EngineSnapshot, conv)

    def structure(value: Any, _: Any) -> EngineSnapshot:
        version = value.get("version") if isinstance(value, dict) else None
        if version != SNAPSHOT_VERSION:
            raise ReexecError(
                f"unknown snapshot version {version!r} (this otree reads {SNAPSHOT_VERSION})"
            )
        return fields(value, EngineSnapshot)

    return structure


def encode(h: Handoff) -> list[bytes]:
    """The handoff file's contents, in pieces: the JSON line, then each ring chunk."""
    data: dict[str, Any] = converter().unstructure(attrs.evolve(h, ring=()))
    data["ring"] = [[path, len(chunk)] for path, chunk in h.ring]
    version = CGROUPS_FORMAT if h.cgroup is not None else FORMAT
    head = json.dumps({"otree_handoff": version, **data}, separators=(",", ":"))
    return [head.encode(), b"\n", *(chunk for _, chunk in h.ring)]


def decode(blob: bytes) -> Handoff:
    """The :class:`Handoff` in a handoff file (ReexecError: an unknown version, or none)."""
    head, _, tail = blob.partition(b"\n")
    data = _json(head)
    if isinstance(data, dict) and data.get("otree_handoff") in (FORMAT, CGROUPS_FORMAT):
        data, sizes = dict(data), data.get("ring")
        data["ring"] = []
        h = from_data(data)
        return attrs.evolve(h, ring=_ring(sizes, tail))
    return from_data(data)  # version 1: the ring is in the JSON, as text


def _ring(sizes: Any, tail: bytes) -> tuple[tuple[str, bytes], ...]:
    view = memoryview(tail)
    out = []
    try:
        for path, size in sizes:
            if not isinstance(path, str) or not isinstance(size, int) or size > len(view):
                raise ValueError
            out.append((path, bytes(view[:size])))
            view = view[size:]
    except (TypeError, ValueError):
        raise ReexecError("the handoff's ring buffers are cut short or malformed") from None
    if len(view):
        raise ReexecError("the handoff has bytes after its ring buffers")
    return tuple(out)


def from_data(data: Any) -> Handoff:
    """The :class:`Handoff` in ``data`` (ReexecError: an unknown version, or not one)."""
    if not isinstance(data, dict):
        raise ReexecError("the handoff is not a JSON object")
    version = data.get("otree_handoff")
    if version not in READS:
        known = ", ".join(str(v) for v in READS[:-1]) + f" and {READS[-1]}"
        raise ReexecError(f"unknown handoff version {version!r} (this otree reads {known})")
    body = {k: v for k, v in data.items() if k != "otree_handoff"}
    try:
        handoff: Handoff = converter().structure(body, Handoff)
    except Exception as exc:  # cattrs wraps what the classes raise: say what and where
        found = _the_reexec_error(exc)
        if found is not None:
            raise found from None
        from cattrs import transform_error

        where = "; ".join(transform_error(exc, path="handoff")[:3]) or repr(exc)
        raise ReexecError(f"the handoff is incomplete or malformed ({where})") from None
    return handoff


def _the_reexec_error(exc: BaseException) -> ReexecError | None:
    if isinstance(exc, ReexecError):
        return exc
    for inner in getattr(exc, "exceptions", ()):
        found = _the_reexec_error(inner)
        if found is not None:
            return found
    return None


def write_fd(pieces: list[bytes]) -> int:
    """Write ``pieces`` (:func:`encode`) to a new anonymous file; return its fd,
    inheritable, at offset 0. Nothing is joined: a reload's peak memory is the ring's."""
    try:
        fd = os.memfd_create("otree-handoff", 0)
    except (AttributeError, OSError):  # no memfd: an unlinked temporary file
        import tempfile  # a rare path: kept off otree's start-up (RSS)

        fd, name = tempfile.mkstemp(prefix="otree-handoff-")
        os.unlink(name)
    try:
        for piece in pieces:
            view = memoryview(piece)
            while view:
                view = view[os.write(fd, view) :]
        os.lseek(fd, 0, os.SEEK_SET)
        os.set_inheritable(fd, True)
    except OSError:
        os.close(fd)
        raise
    return fd


def read_inherited() -> Handoff | None:
    """The handoff left by the image before ``os.execv``; None when this is no re-exec.

    The variable is removed and the fd closed whatever happens; a document
    that cannot be used is a ReexecError.
    """
    text = os.environ.pop(ENV_FD, None)
    if text is None:
        return None
    from otree.reload import bootstrap

    held = bootstrap.raw()  # ``import otree`` read it already, to stop the children with
    if held is not None:
        return decode(held)
    try:
        fd = int(text)
    except ValueError:
        raise ReexecError(f"{ENV_FD}={text!r} is not a file descriptor") from None
    chunks = []
    try:
        while True:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
    except OSError as exc:
        raise ReexecError(f"cannot read the handoff (fd {fd}): {exc.strerror}") from None
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)
    return decode(b"".join(chunks))


def _json(blob: bytes) -> Any:
    try:
        return json.loads(blob)
    except ValueError as exc:
        raise ReexecError(f"the handoff is not valid JSON: {exc}") from None
