"""The handoff document across ``os.execv``: the tree as JSON, versions, the fd, test hooks."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from otree.config.convert import json_converter
from otree.control.server import HandedClient
from otree.core import events as ev
from otree.core.engine import Engine
from otree.core.snapshot import fingerprint, snapshot
from otree.core.spec import Service, Supervisor
from otree.errors import ReexecError
from otree.reload import document, faults
from otree.testing import supervisors

#: a version-1 document as the otree before the typed handoff wrote it (every kind of
#: field filled: a restart timer pending, ready/backoff/log/env, bytes that are not UTF-8)
V1 = Path(__file__).parent / "data" / "handoff-v1.json"


@settings(max_examples=150, deadline=None)
@given(supervisors(max_depth=3, max_children=3))
def test_any_tree_survives_the_trip_through_json(tree: Supervisor) -> None:
    conv = json_converter()
    data = json.loads(json.dumps(conv.unstructure(tree)))
    assert conv.structure(data, Supervisor) == tree


def test_a_document_the_previous_otree_wrote_is_read_and_written_the_same() -> None:
    """Same version, same shape: an in-place upgrade reads the old image's handoff."""
    old = json.loads(V1.read_text())
    h = document.from_data(old)
    assert h.tree.child("web").child("api").backoff.max == 8.0  # type: ignore[union-attr]
    assert h.procs[0].partial == b"half\xff" and h.ring == (("db", b"one\n\x00\x80\n"),)
    assert h.engine.timers[0][0] == ("restart", "web", "1")
    assert h.control is not None and h.control.fd == 9
    again = json.loads(json.dumps(document.to_data(h)))
    # the keys added since: config_errors, each service's health and watchdog (unset),
    # and each process's liveness (none)
    procs = [{**p, "liveness": None} for p in old["procs"]]
    assert again == {
        **old,
        "config_errors": [],
        "tree": _with_liveness(old["tree"]),
        "procs": procs,
    }
    # the same tree has the same fingerprints: an upgrade adopts, never restarts
    for path, rec in h.engine.nodes.items():
        node: Any = h.tree
        for name in filter(None, path.split(".")):
            node = node.child(name)
        assert fingerprint(node) == rec.fp, path


def _with_liveness(node: dict[str, Any]) -> dict[str, Any]:
    """``node`` (a tree as JSON) with ``health`` and ``watchdog`` unset in every service."""
    if "service" in node:
        return {"service": {**node["service"], "health": None, "watchdog": None}}
    sup = node["supervisor"]
    return {"supervisor": {**sup, "children": [_with_liveness(c) for c in sup["children"]]}}


@settings(max_examples=50, deadline=None)
@given(supervisors(max_depth=2, max_children=3), st.text(max_size=20), st.binary(max_size=30))
def test_a_whole_handoff_survives_the_trip(tree: Supervisor, reason: str, partial: bytes) -> None:
    h = document.Handoff(
        reason=reason,
        engine=snapshot(Engine(tree)),
        tree=tree,
        procs=(document.Inherited("a.b", 123, 7, partial), document.Inherited("gone", None, 8)),
        exits=(ev.Exited("a.b", 99, None, "KILL"), ev.Exited("c", 98, 3, None)),
        strays=(55,),
        history=(1.5, 2.5),
        control=document.ControlSocket(9, 1700000000.5),
        waiting=((10, 4),),
        notify_dir="/tmp/x",
        ring=(("a.b", b"one\n" + partial + b"\n"), ("c", b"two\nthree\n")),
        clients=(HandedClient(11, ((3, None), (4, "a.b")), partial, b'{"id": 5'),),
    )
    back = document.from_data(json.loads(json.dumps(document.to_data(h))))
    assert back == h
    assert back.fds() == [7, 8, 10, 11, 9]


def _doc(**changes: Any) -> dict[str, Any]:
    tree = Supervisor("root", children=[Service("a", cmd="sleep 1")])
    h = document.Handoff("reload", snapshot(Engine(tree)), tree, (), (), (), ())
    return {**document.to_data(h), **changes}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "the handoff is not a JSON object"),
        ({}, "unknown handoff version None (this otree reads version 1)"),
        (_doc(otree_handoff=2), "unknown handoff version 2 (this otree reads version 1)"),
        (_doc(otree_handoff="1"), "unknown handoff version '1' (this otree reads version 1)"),
        (
            _doc(procs=[{"path": "a"}]),
            "the handoff is incomplete or malformed (required field missing @ handoff.procs[0].pid;"
            " required field missing @ handoff.procs[0].pipe)",
        ),
        (
            _doc(tree=json_converter().unstructure(Service("a", cmd="x"))),
            "the handoff is incomplete or malformed"
            " (invalid value for type, expected Supervisor @ handoff.tree)",
        ),
        (
            _doc(tree={"supervisor": {"name": "r", "intensity": -1}}),
            "the handoff is incomplete or malformed (unknown error"
            " (r.intensity: expected an integer >= 0, got -1) @ handoff.tree)",
        ),
        (
            _doc(engine={"version": 2, "nodes": {}}),
            "unknown snapshot version 2 (this otree reads 1)",
        ),
        (
            _doc(surprise=1),
            "the handoff is incomplete or malformed (extra fields found (surprise) @ handoff)",
        ),
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
    fault = faults.FaultHook("exited:web.api:2")
    assert not fault.hits(ev.Exited("web", 1, 0))
    assert not fault.hits(ev.Spawned("web.api", 1))
    assert not fault.hits(ev.Exited("web.api", 1, 0))
    assert fault.hits(ev.Exited("web.api", 2, 0))
    assert faults.FaultHook("Spawned:a").hits(ev.Spawned("a", 5))
