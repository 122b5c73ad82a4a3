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
from otree.core.snapshot import snapshot
from otree.core.spec import Backoff, Log, ReadyCmd, ReadyTcp, Service, Supervisor
from otree.errors import ReexecError
from otree.reload import document, faults
from otree.testing import supervisors

#: a version-1 handoff file, as the otree before the typed handoff wrote it (every kind of
#: field filled: a restart timer pending, ready/backoff/log/env, bytes that are not UTF-8)
V1 = Path(__file__).parent / "data" / "handoff-v1.json"
#: the tree in it, as the test that wrote it built it
FIXTURE_TREE = Supervisor(
    "root",
    strategy="rest_for_one",
    children=[
        Service(
            "db",
            cmd="sleep 100",
            env={"A": "1", "B": "x=y"},
            ready=ReadyTcp("127.0.0.1:5432"),
            shutdown="brutal_kill",
        ),
        Supervisor(
            "web",
            strategy="one_for_all",
            intensity=5,
            period=2.5,
            children=[
                Service(
                    "api",
                    target="app.main:serve",
                    args=["--port", "80"],
                    restart="transient",
                    ready=ReadyCmd(["true"], interval=0.5),
                    backoff=Backoff(initial=1.0, max=8.0),
                    log=Log(file="api.log", max_bytes=1000, backups=1),
                    normal_exit_codes=[0, 3],
                    stop_signal="INT",
                    cwd="/tmp",
                )
            ],
        ),
    ],
)


@settings(max_examples=150, deadline=None)
@given(supervisors(max_depth=3, max_children=3))
def test_any_tree_survives_the_trip_through_json(tree: Supervisor) -> None:
    conv = json_converter()
    data = json.loads(json.dumps(conv.unstructure(tree)))
    assert conv.structure(data, Supervisor) == tree


def v1(h: document.Handoff) -> dict[str, Any]:
    """``h`` as the otree before wrote it: version 1, the ring inside as text."""
    return {"otree_handoff": 1, **document.converter().unstructure(h)}


def encoded(h: document.Handoff) -> bytes:
    return b"".join(document.encode(h))


def test_a_document_the_previous_otree_wrote_is_read_the_same() -> None:
    """Version 1, the shape the otree before wrote: an in-place upgrade reads it."""
    old = json.loads(V1.read_text())
    h = document.decode(V1.read_bytes())
    assert h.tree.child("web").child("api").backoff.max == 8.0  # type: ignore[union-attr]
    assert h.procs[0].partial == b"half\xff" and h.ring == (("db", b"one\n\x00\x80\n"),)
    assert h.engine.timers[0][0] == ("restart", "web", "1")
    assert h.control is not None and h.control.fd == 9
    # the tree as this otree reads it equals the same tree built by this otree (a field
    # added since, log.ring_bytes, takes its default): a reload adopts, never restarts
    assert h.tree == FIXTURE_TREE
    # written again: the same JSON but for the fields added since (each with its
    # default), and the ring as bytes
    written = json.loads(json.dumps(v1(h)))
    log = written["tree"]["supervisor"]["children"][1]["supervisor"]["children"][0]
    assert log["service"]["log"].pop("ring_bytes") == 256 * 1024
    for path in ("", "web"):  # who each pending restart waits on (issue 10)
        written["engine"]["nodes"][path].pop("pending")
    for node in written["engine"]["nodes"].values():  # autostart = false, not started: issue 13
        assert node.pop("held") is False
    # each service's health and watchdog (unset), each process's liveness (none): issue 12
    written["tree"] = _without_liveness(written["tree"])
    for proc in written["procs"]:
        assert proc.pop("liveness") is None
        assert proc.pop("cgroup") is None  # no cgroups (issue 13)
    assert written.pop("cgroup") is None
    assert written.pop("counters") == []  # `otree metrics`' counters: none then (issue 16)
    assert written.pop("events") == []  # `otree events`' ring: none then (issue 16)
    assert written.pop("guard") is None  # no death guard then (issue 17)
    for client in written["clients"]:
        assert client.pop("events") is None  # no `otree events -f` follower then (issue 16)
    assert written == {**old, "config_errors": []}
    head, _, tail = encoded(h).partition(b"\n")
    assert json.loads(head)["ring"] == [["db", 7]] and tail == b"one\n\x00\x80\n"
    assert document.decode(encoded(h)) == h


def _without_liveness(node: dict[str, Any]) -> dict[str, Any]:
    """``node`` (a tree as JSON) without the fields added since the document was written:
    ``health``, ``watchdog``, the pool fields and issue 13's, which must be unset."""
    if "service" in node:
        svc = dict(node["service"])
        assert svc.pop("health") is None and svc.pop("watchdog") is None
        for name in ("replicas", "intensity", "period"):  # pools: issue 14
            assert svc.pop(name) is None
        # identity, limits and environment (issue 13): unset
        for name, unset in _ISSUE13_FIELDS.items():
            assert svc.pop(name) == unset
        return {"service": svc}
    sup = dict(node["supervisor"])
    assert sup.pop("cgroups") == "auto"  # the kill mode (issue 13): its default
    return {"supervisor": {**sup, "children": [_without_liveness(c) for c in sup["children"]]}}


_ISSUE13_FIELDS: dict[str, Any] = {
    **dict.fromkeys(("user", "group", "umask", "nice", "oom_score_adj")),
    "limits": [],
    "env_file": [],
    "autostart": True,
}


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
        clients=(HandedClient(11, ((3, None), (4, "a.b")), partial, b'{"id": 5', (6, 41)),),
        events=((40, '{"ts": 1.0, "event": "spawn"}'), (41, reason)),
    )
    back = document.decode(encoded(h))
    assert back == h
    assert back.fds() == [7, 8, 10, 11, 9]
    assert document.from_data(json.loads(json.dumps(v1(h)))) == h  # and as version 1


def test_the_ring_crosses_as_raw_bytes_not_escaped_text() -> None:
    """Finding 3 of issue 11: the handoff JSON escaped each byte of the ring (a reload
    peaked at 9.2 GB); the file now carries it as it is, after the JSON line."""
    tree = Supervisor("root", children=[Service("a", cmd="sleep 1")])
    ring = (("a", bytes(range(256)) * 4096 + b"\n"),)  # 1 MiB, every byte value
    h = document.Handoff("reload", snapshot(Engine(tree)), tree, (), (), (), (), ring=ring)
    blob = encoded(h)
    assert len(blob) < len(ring[0][1]) + 4096
    assert document.decode(blob).ring == ring
    with pytest.raises(ReexecError, match="cut short"):
        document.decode(blob[:-1])
    with pytest.raises(ReexecError, match="bytes after its ring"):
        document.decode(blob + b"x")


def _doc(**changes: Any) -> dict[str, Any]:
    tree = Supervisor("root", children=[Service("a", cmd="sleep 1")])
    h = document.Handoff("reload", snapshot(Engine(tree)), tree, (), (), (), ())
    return {**v1(h), **changes}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "the handoff is not a JSON object"),
        ({}, "unknown handoff version None (this otree reads 1, 2 and 3)"),
        (_doc(otree_handoff=4), "unknown handoff version 4 (this otree reads 1, 2 and 3)"),
        (_doc(otree_handoff="1"), "unknown handoff version '1' (this otree reads 1, 2 and 3)"),
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
    fd = document.write_fd([json.dumps(_doc(reason="SIGHUP")).encode()])
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
