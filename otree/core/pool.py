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

from otree.core.service import ServiceNode
from otree.core.spec import INFINITY, Restart, Service, Strategy, Supervisor, walk
from otree.core.supervisor import SupNode

if TYPE_CHECKING:
    from otree.core.engine import Engine

__all__ = ["REPLICA_VAR", "PoolNode", "instance_spec", "pool_supervisor", "services"]

#: the variable each instance finds its index in (and ``${OTREE_REPLICA}`` in its fields)
REPLICA_VAR = "OTREE_REPLICA"
_TOKEN = "${" + REPLICA_VAR + "}"


def _sub(text: str, index: int) -> str:
    return text.replace(_TOKEN, str(index))


def _log_file(file: str, index: int) -> str:
    """An instance's own log file: ``${OTREE_REPLICA}`` in it, else ``w.log`` -> ``w.2.log``
    (before the suffix, so rotation's ``w.2.log.1`` never meets another instance's file)."""
    if _TOKEN in file:
        return _sub(file, index)
    head, sep, name = file.rpartition("/")
    stem, dot, ext = name.rpartition(".")
    name = f"{stem}.{index}.{ext}" if dot and stem else f"{name}.{index}"
    return f"{head}{sep}{name}"


def instance_spec(svc: Service, index: int) -> Service:
    """Instance ``index`` of the pool ``svc``: named by its index, ``OTREE_REPLICA`` in its
    env, ``${OTREE_REPLICA}`` replaced in ``cmd``, ``args``, ``env`` values and ``cwd``."""
    env = tuple((k, _sub(v, index)) for k, v in svc.env if k != REPLICA_VAR)
    log = svc.log
    if log is not None and log.file is not None:
        log = attrs.evolve(log, file=_log_file(log.file, index))
    return attrs.evolve(
        svc,
        name=str(index),
        cmd=None if svc.cmd is None else tuple(_sub(a, index) for a in svc.cmd),
        args=tuple(_sub(a, index) for a in svc.args),
        env=(*env, (REPLICA_VAR, str(index))),
        cwd=None if svc.cwd is None else _sub(svc.cwd, index),
        log=log,
        replicas=None,
        intensity=None,
        period=None,
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
                yield f"{path}.{i}", instance_spec(node, i)


class PoolNode(SupNode):
    """A pool: a one_for_one supervisor whose children are instances of one service."""

    kind = "pool"

    def __init__(self, eng: Engine, path: str, parent: SupNode | None, svc: Service) -> None:
        super().__init__(eng, path, parent, pool_supervisor(svc))
        self.service = svc
        for i in range(svc.replicas or 0):
            self.add_child(ServiceNode(eng, f"{path}.{i}", self, instance_spec(svc, i)))

    @property
    def replicas(self) -> int:
        return len(self.children)
