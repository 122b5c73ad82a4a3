"""What crosses ``os.execv`` in a self-reload: the handoff file and its contents.

The old image writes one JSON document to a memfd (an anonymous file) left
open across the exec, and names it in ``OTREE_HANDOFF_FD``; the new image
reads it, closes it and drops the variable before anything else starts, so
no child ever sees either. The document is versioned (``otree_handoff``): a
version this code does not know is a :class:`~otree.errors.ReexecError`,
never a guess.

Also here: the tree spec as JSON (the new image falls back to the tree that
was running when the file has become invalid), stopping the children when a
handoff cannot be used (they are ours: stopped, never orphaned), and the
test-only hooks (``OTREE_TEST_FAULT``, ``OTREE_TEST_HOLD``).
"""

from __future__ import annotations

import contextlib
import enum
import json
import os
import signal
import time
from typing import Any

import attrs

from otree.control.server import HandedClient
from otree.core import events as ev
from otree.core.spec import (
    READY_KINDS,
    Backoff,
    Log,
    Node,
    Service,
    Supervisor,
)
from otree.errors import ReexecError

#: the environment variable naming the inherited handoff fd
ENV_FD = "OTREE_HANDOFF_FD"
#: the version of the handoff document this code writes and reads
FORMAT = 1
#: test-only: ``EVENT:PATH[:N]`` (``exited:web.api``) makes the runtime raise once
#: when it is about to handle that event; see docs/self-reload.md
ENV_FAULT = "OTREE_TEST_FAULT"
#: test-only: a file path; the new image creates it after reading the handoff and
#: waits (at most 30 s) until it is removed before it watches the children again
ENV_HOLD = "OTREE_TEST_HOLD"

# --- the tree as JSON ------------------------------------------------------------

_READY_BY_NAME = {kind.__name__: kind for kind in READY_KINDS}


def _plain(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def tree_to_data(node: Node) -> dict[str, Any]:
    """A spec tree as plain JSON-able data (:func:`tree_from_data` reads it back)."""
    if isinstance(node, Supervisor):
        data = {
            a.name: _plain(getattr(node, a.name))
            for a in attrs.fields(Supervisor)
            if a.name != "children"
        }
        data["children"] = [tree_to_data(c) for c in node.children]
        return {"supervisor": data}
    data = {}
    for a in attrs.fields(Service):
        value = getattr(node, a.name)
        if a.name == "env":
            value = dict(value)
        elif a.name == "ready" and value is not None:
            fields = {k: _plain(v) for k, v in attrs.asdict(value).items()}
            value = {"kind": type(value).__name__, **fields}
        elif a.name in ("backoff", "log") and value is not None:
            value = attrs.asdict(value)
        data[a.name] = _plain(value)
    return {"service": data}


def tree_from_data(data: dict[str, Any]) -> Supervisor:
    """The tree written by :func:`tree_to_data` (ReexecError if it is not one)."""
    try:
        node = _node_from_data(data)
    except ReexecError:
        raise
    except Exception as exc:  # a ConfigError, a KeyError, a TypeError: not our document
        raise ReexecError(f"the tree in the handoff cannot be read: {exc}") from None
    if not isinstance(node, Supervisor):
        raise ReexecError("the tree in the handoff is not a supervisor")
    return node


def _node_from_data(data: dict[str, Any]) -> Node:
    if "supervisor" in data:
        fields = dict(data["supervisor"])
        children = [_node_from_data(c) for c in fields.pop("children")]
        name = fields.pop("name")
        return Supervisor(name, children=children, **fields)
    fields = dict(data["service"])
    ready = fields.get("ready")
    if ready is not None:
        ready = dict(ready)
        kind = _READY_BY_NAME.get(ready.pop("kind"))
        if kind is None:
            raise ReexecError(f"unknown readiness kind in the handoff: {data!r}")
        fields["ready"] = kind(**ready)
    if fields.get("backoff") is not None:
        fields["backoff"] = Backoff(**fields["backoff"])
    if fields.get("log") is not None:
        fields["log"] = Log(**fields["log"])
    name = fields.pop("name")
    return Service(name, **fields)


# --- the handoff document --------------------------------------------------------


@attrs.define
class Inherited:
    """One output pipe (and the main process writing it, unless it is gone) of a service."""

    path: str
    pid: int | None
    pipe: int | None
    partial: bytes = b""


@attrs.define
class Handoff:
    """What the new image takes over (read by :func:`read_inherited`)."""

    reason: str
    engine: dict[str, Any]
    tree: Supervisor
    procs: list[Inherited]
    #: exits the old image had seen but not yet handled (fatal error): fed again
    exits: list[ev.Exited]
    #: other children of ours to reap (readiness-command processes killed at the exec)
    strays: list[int]
    history: list[float]
    control_fd: int | None = None
    control_started: float | None = None
    #: (fd, request id) of the clients waiting for the answer to ``otree reload``
    waiting: list[tuple[int, int]] = attrs.field(factory=list)
    notify_dir: str | None = None
    #: set when the new image could not use the re-read tree file (it keeps ``tree``)
    config_errors: list[str] = attrs.field(factory=list)
    #: ``otree logs``' ring buffers: (path, whole lines), oldest first across services
    ring: list[tuple[str, bytes]] = attrs.field(factory=list)
    #: control clients with no command in flight (``otree logs -f``, idle ones): served on
    clients: list[HandedClient] = attrs.field(factory=list)

    def fds(self) -> list[int]:
        out = [p.pipe for p in self.procs if p.pipe is not None]
        out += [fd for fd, _ in self.waiting]
        out += [c.fd for c in self.clients]
        if self.control_fd is not None:
            out.append(self.control_fd)
        return out


def exited_to_data(event: ev.Exited) -> dict[str, Any]:
    return {"path": event.path, "pid": event.pid, "code": event.code, "signal": event.signal}


def to_data(h: Handoff) -> dict[str, Any]:
    return {
        "otree_handoff": FORMAT,
        "reason": h.reason,
        "engine": h.engine,
        "tree": tree_to_data(h.tree),
        "procs": [
            {"path": p.path, "pid": p.pid, "pipe": p.pipe, "partial": p.partial.decode("latin-1")}
            for p in h.procs
        ],
        "exits": [exited_to_data(e) for e in h.exits],
        "strays": h.strays,
        "history": h.history,
        "control": None
        if h.control_fd is None
        else {"fd": h.control_fd, "started": h.control_started},
        "waiting": [[fd, rid] for fd, rid in h.waiting],
        "notify_dir": h.notify_dir,
        "ring": [[path, chunk.decode("latin-1")] for path, chunk in h.ring],
        "clients": [
            {
                "fd": c.fd,
                "follows": [[rid, path] for rid, path in c.follows],
                "out": c.out.decode("latin-1"),
                "inbound": c.inbound.decode("latin-1"),
            }
            for c in h.clients
        ],
    }


def from_data(data: Any) -> Handoff:
    if not isinstance(data, dict):
        raise ReexecError("the handoff is not a JSON object")
    version = data.get("otree_handoff")
    if version != FORMAT:
        raise ReexecError(
            f"unknown handoff version {version!r} (this otree reads version {FORMAT})"
        )
    try:
        control = data["control"]
        return Handoff(
            reason=str(data["reason"]),
            engine=data["engine"],
            tree=tree_from_data(data["tree"]),
            procs=[
                Inherited(p["path"], p["pid"], p["pipe"], p["partial"].encode("latin-1"))
                for p in data["procs"]
            ],
            exits=[ev.Exited(e["path"], e["pid"], e["code"], e["signal"]) for e in data["exits"]],
            strays=[int(pid) for pid in data["strays"]],
            history=[float(t) for t in data["history"]],
            control_fd=None if control is None else int(control["fd"]),
            control_started=None if control is None else control["started"],
            waiting=[(int(fd), int(rid)) for fd, rid in data["waiting"]],
            notify_dir=data["notify_dir"],
            ring=[(str(path), chunk.encode("latin-1")) for path, chunk in data.get("ring", [])],
            clients=[
                HandedClient(
                    int(c["fd"]),
                    [(int(rid), None if path is None else str(path)) for rid, path in c["follows"]],
                    c["out"].encode("latin-1"),
                    c["inbound"].encode("latin-1"),
                )
                for c in data.get("clients", [])
            ],
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ReexecError(f"the handoff is incomplete or malformed ({exc!r})") from None


def write_fd(data: dict[str, Any]) -> int:
    """Write ``data`` to a new anonymous file; return its fd, inheritable, at offset 0."""
    blob = json.dumps(data, separators=(",", ":")).encode()
    try:
        fd = os.memfd_create("otree-handoff", 0)
    except (AttributeError, OSError):  # no memfd: an unlinked temporary file
        import tempfile  # a rare path: kept off otree's start-up (RSS)

        fd, name = tempfile.mkstemp(prefix="otree-handoff-")
        os.unlink(name)
    try:
        view = memoryview(blob)
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
    try:
        data = json.loads(b"".join(chunks))
    except ValueError as exc:
        raise ReexecError(f"the handoff is not valid JSON: {exc}") from None
    return from_data(data)


# --- when the handoff cannot be used -------------------------------------------------


def our_children() -> list[int]:
    """PIDs whose parent is this process (from /proc)."""
    me = os.getpid()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                fields = f.read().rpartition(b")")[2].split()
        except OSError:
            continue
        if len(fields) > 1 and int(fields[1]) == me:
            found.append(int(entry))
    return found


def stop_children(grace: float = 5.0) -> None:
    """Stop every child of this process: TERM to each one's group, then KILL; reap them.

    Used when a re-exec cannot be completed: the children are ours and must not
    be left running unsupervised.
    """
    children = our_children()
    for pid in children:
        _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    left = set(children)
    while left and time.monotonic() < deadline:
        left = {pid for pid in left if not _reaped(pid)}
        if left:
            time.sleep(0.02)
    for pid in left:
        _signal_group(pid, signal.SIGKILL)
    for pid in left:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
    while True:  # anything else: readiness probes, orphans adopted as a subreaper
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _signal_group(pid: int, signum: int) -> None:
    try:
        os.killpg(pid, signum)
    except OSError:
        with contextlib.suppress(OSError):
            os.kill(pid, signum)


def _reaped(pid: int) -> bool:
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return done != 0


# --- test-only hooks ---------------------------------------------------------------


class FaultHook:
    """``OTREE_TEST_FAULT=EVENT:PATH[:N]``: raise when the runtime is about to handle the
    ``N``-th (default: first) such event.

    ``EVENT`` is an engine input in lower case (``exited``, ``spawned``,
    ``ready``, ``timerfired``, ``command``). The variable is removed when it
    fires, so the new image does not fire it again. Only for tests.
    """

    def __init__(self, spec: str) -> None:
        kind, _, rest = spec.partition(":")
        path, _, count = rest.partition(":")
        self.kind = kind.lower()
        self.path = path
        self.left = int(count) if count.isdigit() else 1

    @classmethod
    def from_env(cls) -> FaultHook | None:
        spec = os.environ.get(ENV_FAULT)
        return cls(spec) if spec else None

    def hits(self, event: ev.Event) -> bool:
        if type(event).__name__.lower() != self.kind:
            return False
        if getattr(event, "path", self.path) != self.path:
            return False
        self.left -= 1
        return self.left <= 0


class InjectedFault(RuntimeError):
    """The fault ``OTREE_TEST_FAULT`` asked for."""


def hold_for_tests() -> None:
    """``OTREE_TEST_HOLD=FILE``: create FILE and wait until it is removed (30 s at most)."""
    path = os.environ.pop(ENV_HOLD, None)
    if not path:
        return
    with open(path, "w") as f:
        f.write(str(os.getpid()))
    deadline = time.monotonic() + 30.0
    while os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.01)
