"""The handoff document across ``os.execv``: the tree as JSON, versions, the fd, test hooks."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from otree.control.server import HandedClient
from otree.core import events as ev
from otree.core.engine import Engine
from otree.core.snapshot import snapshot
from otree.core.spec import Service, Supervisor
from otree.errors import ReexecError
from otree.reload import document
from otree.testing import supervisors


@settings(max_examples=150, deadline=None)
@given(supervisors(max_depth=3, max_children=3))
def test_any_tree_survives_the_trip_through_json(tree: Supervisor) -> None:
    data = json.loads(json.dumps(document.tree_to_data(tree)))
    assert document.tree_from_data(data) == tree


@settings(max_examples=50, deadline=None)
@given(supervisors(max_depth=2, max_children=3), st.text(max_size=20), st.binary(max_size=30))
def test_a_whole_handoff_survives_the_trip(tree: Supervisor, reason: str, partial: bytes) -> None:
    h = document.Handoff(
        reason=reason,
        engine=snapshot(Engine(tree)),
        tree=tree,
        procs=[document.Inherited("a.b", 123, 7, partial), document.Inherited("gone", None, 8)],
        exits=[ev.Exited("a.b", 99, None, "KILL"), ev.Exited("c", 98, 3, None)],
        strays=[55],
        history=[1.5, 2.5],
        control_fd=9,
        control_started=1700000000.5,
        waiting=[(10, 4)],
        notify_dir="/tmp/x",
        ring=[("a.b", b"one\n" + partial + b"\n"), ("c", b"two\nthree\n")],
        clients=[HandedClient(11, [(3, None), (4, "a.b")], partial, b'{"id": 5')],
    )
    back = document.from_data(json.loads(json.dumps(document.to_data(h))))
    assert back == h
    assert back.fds() == [7, 8, 10, 11, 9]


def _doc(**changes: Any) -> dict[str, Any]:
    tree = Supervisor("root", children=[Service("a", cmd="sleep 1")])
    h = document.Handoff("reload", snapshot(Engine(tree)), tree, [], [], [], [])
    return {**document.to_data(h), **changes}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "the handoff is not a JSON object"),
        ({}, "unknown handoff version None (this otree reads version 1)"),
        (_doc(otree_handoff=2), "unknown handoff version 2 (this otree reads version 1)"),
        (_doc(otree_handoff="1"), "unknown handoff version '1' (this otree reads version 1)"),
        (_doc(procs=[{"path": "a"}]), "the handoff is incomplete or malformed (KeyError('pid'))"),
        (
            _doc(tree=document.tree_to_data(Service("a", cmd="x"))),
            "the tree in the handoff is not a supervisor",
        ),
        (_doc(tree={"service": {}}), "the tree in the handoff cannot be read: 'name'"),
    ],
)
def test_an_unusable_document_is_an_error_never_a_guess(data: Any, message: str) -> None:
    with pytest.raises(ReexecError) as info:
        document.from_data(data)
    assert str(info.value) == message


def test_the_fd_is_read_once_and_the_variable_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    fd = document.write_fd(_doc(reason="SIGHUP"))
    assert os.get_inheritable(fd)
    monkeypatch.setenv(document.ENV_FD, str(fd))
    h = document.read_inherited()
    assert h is not None and h.reason == "SIGHUP"
    assert document.ENV_FD not in os.environ  # never passed on to a child
    with pytest.raises(OSError):
        os.fstat(fd)  # closed
    assert document.read_inherited() is None  # no variable: no re-exec


def test_a_bad_variable_or_fd_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(document.ENV_FD, "x")
    with pytest.raises(ReexecError, match="is not a file descriptor"):
        document.read_inherited()
    r, w = os.pipe()
    os.write(w, b"{not json")
    os.close(w)
    monkeypatch.setenv(document.ENV_FD, str(r))
    with pytest.raises(ReexecError, match="the handoff is not valid JSON"):
        document.read_inherited()


def test_the_test_fault_hook_matches_the_nth_event() -> None:
    fault = document.FaultHook("exited:web.api:2")
    assert not fault.hits(ev.Exited("web", 1, 0))
    assert not fault.hits(ev.Spawned("web.api", 1))
    assert not fault.hits(ev.Exited("web.api", 1, 0))
    assert fault.hits(ev.Exited("web.api", 2, 0))
    assert document.FaultHook("Spawned:a").hits(ev.Spawned("a", 5))
