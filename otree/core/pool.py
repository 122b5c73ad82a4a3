"""Pools: a service with ``replicas = N`` (OTP's ``simple_one_for_one``).

A pool is a ``one_for_one`` supervisor node at the service's path (kind
``pool``) whose children ``0`` ... ``N-1`` are the service, each built by
:func:`instance_spec`, the one place an instance's spec is a function of its
index. :func:`services` lists every process of a tree with pools expanded,
for the code that needs one entry per process (the runtime's outputs).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import attrs

from otree.core.expand import finish
from otree.core.records import Call, ScaleMail, StartChild, Step, StopChild
from otree.core.service import ServiceNode, State
from otree.core.spec import INFINITY, Restart, Service, Strategy, Supervisor, walk
from otree.core.supervisor import Child, SupNode

if TYPE_CHECKING:
    from otree.core.engine import Engine

__all__ = ["PATH_VAR", "REPLICA_VAR", "PoolNode", "instance_spec", "pool_supervisor", "services"]

#: the variable each instance finds its index in (and ``${OTREE_REPLICA}`` in its fields)
REPLICA_VAR = "OTREE_REPLICA"
#: ``${OTREE_PATH}`` in an instance's fields: its own path (``workers.w.2``)
PATH_VAR = "OTREE_PATH"
_TOKEN = "${" + REPLICA_VAR + "}"


def _log_file(file: str, lookup: dict[str, str]) -> str:
    """An instance's own log file: ``${OTREE_REPLICA}`` in it, else ``w.log`` -> ``w.2.log``
    (before the suffix, so rotation's ``w.2.log.1`` never meets another instance's file)."""
    if _TOKEN in file or "${" + REPLICA_VAR + ":-" in file:
        return finish(file, lookup)
    file = finish(file, lookup)
    head, sep, name = file.rpartition("/")
    stem, dot, ext = name.rpartition(".")
    index = lookup[REPLICA_VAR]
    name = f"{stem}.{index}.{ext}" if dot and stem else f"{name}.{index}"
    return f"{head}{sep}{name}"


def instance_spec(svc: Service, index: int, path: str | None = None) -> Service:
    """Instance ``index`` of the pool ``svc`` (at ``path``): named by its index,
    ``OTREE_REPLICA`` in its env, and its expansion finished (``otree.core.expand``):
    ``${OTREE_REPLICA}``, ``${OTREE_PATH}`` (with ``path``) and ``$$`` in ``cmd``,
    ``args``, ``env`` values, ``cwd``, ``log.file``, ``user`` and ``group``."""
    lookup = {REPLICA_VAR: str(index)}
    if path is not None:
        lookup[PATH_VAR] = f"{path}.{index}"

    def sub(text: str) -> str:
        return finish(text, lookup)

    env = tuple((k, sub(v)) for k, v in svc.env if k != REPLICA_VAR)
    log = svc.log
    if log is not None and log.file is not None:
        log = attrs.evolve(log, file=_log_file(log.file, lookup))
    return attrs.evolve(
        svc,
        name=str(index),
        cmd=None if svc.cmd is None else tuple(sub(a) for a in svc.cmd),
        args=tuple(sub(a) for a in svc.args),
        env=(*env, (REPLICA_VAR, str(index))),
        cwd=None if svc.cwd is None else sub(svc.cwd),
        log=log,
        user=None if svc.user is None else sub(svc.user),
        group=None if svc.group is None else sub(svc.group),
        replicas=None,
        intensity=None,
        period=None,
        autostart=True,  # the pool's own ``autostart`` holds the pool back, not its instances
    )


def pool_supervisor(svc: Service) -> Supervisor:
    """The supervisor a pool is: one_for_one, its window from the service's table."""
    return Supervisor(
        svc.name,
        strategy=Strategy.ONE_FOR_ONE,
        intensity=3 if svc.intensity is None else svc.intensity,
        period=5.0 if svc.period is None else svc.period,
        restart=Restart.PERMANENT,
        shutdown=INFINITY,
    )


def services(tree: Supervisor) -> Iterable[tuple[str, Service]]:
    """Every process of ``tree`` with its path, in start order; a pool's instances in
    place of the pool."""
    for path, node in walk(tree):
        if not isinstance(node, Service):
            continue
        if node.replicas is None:
            yield path, node
        else:
            for i in range(node.replicas):
                yield f"{path}.{i}", instance_spec(node, i, path)


class PoolNode(SupNode):
    """A pool: a one_for_one supervisor whose children are instances of one service."""

    kind = "pool"

    def __init__(self, eng: Engine, path: str, parent: SupNode | None, svc: Service) -> None:
        super().__init__(eng, path, parent, pool_supervisor(svc))
        self.service = svc
        for i in range(svc.replicas or 0):
            self.add_child(ServiceNode(eng, f"{path}.{i}", self, instance_spec(svc, i, path)))

    @property
    def autostart(self) -> bool:
        return self.service.autostart

    @property
    def replicas(self) -> int:
        return len(self.children)

    # --- scale: a command taken in turn with everything else (R38) -------------------

    def scale(self, count: int, request: int | None) -> None:
        """Run ``count`` instances: new ones start in index order (each once the one
        before is ready), surplus ones stop from the highest index down. Not a restart:
        no ``restart`` event, no intensity entry. The reply comes when it is done."""
        if not self.alive:  # a stopped pool: the new size applies at its next start
            self._report(count)
            self._resize(count)
            self.eng.reply(request, None)
            return
        if self.busy or self.state is not State.RUNNING:
            self.mailbox.append(ScaleMail(count, request))
            return
        self.scale_now(count, request)
        self._advance()

    def scale_now(self, count: int, request: int | None) -> None:
        old = len(self.children)
        self._report(count)
        if count == old:
            self.eng.reply(request, None)
            return

        def done() -> None:
            self.command_running = None
            self.eng.reply(request, None)

        self.command_running = ("scale", request)
        if count > old:
            new = self._resize(count)

            def failed(child: Child, reason: str) -> None:
                # OTP's start_child: an instance that cannot start is not added (nor
                # those after it, never started)
                self._resize(self.children.index(child))
                self.command_running = None
                self.eng.reply(request, f"{child.path}: cannot start: {reason}")

            steps: list[Step] = [StartChild(c) for c in new]
            self._run([*steps, Call(done)], on_fail=failed)
            return
        surplus = self.children[count:]
        for c in surplus:  # a pending restart of a surplus instance is dropped with it
            key = self.records[c.path].restart_key
            if key is not None:
                self._drop_pending(key)
                self.records[c.path].restart_key = None
            if c.status is State.RESTARTING:
                self.mark(c, State.STOPPED)

        def remove() -> None:
            self._resize(count)
            done()

        stops: list[Step] = [StopChild(c) for c in reversed(surplus)]
        self._run([*stops, Call(remove)], on_fail=None)

    def _report(self, count: int) -> None:
        self.eng.report("scale", self.path, **{"from": len(self.children), "to": count})

    def _resize(self, count: int) -> list[Child]:
        """Add instances up to ``count`` (returned) or drop those from ``count`` on."""
        added: list[Child] = []
        for i in range(len(self.children), count):
            node = ServiceNode(
                self.eng, f"{self.path}.{i}", self, instance_spec(self.service, i, self.path)
            )
            self.add_child(node)
            added.append(node)
        for c in self.children[count:]:
            del self.records[c.path]
        del self.children[count:]
        self.eng.renumber()
        return added
