"""Liveness under random schedules: every request is answered and the tree always comes
down.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.rules import (
    engine_of,
)

from otree.core.node import SupNode
from otree.core.spec import ReadyDelay, ReadyExited, Restart, Service, Supervisor, walk
from otree.testing import HOWS, Simulation, trees


def idle_supervisors_are_settled(sim: Simulation) -> None:
    """A running supervisor with nothing to do has no exit or request left waiting, and
    each child is up, down, or waiting for a restart timer that is set."""
    engine = engine_of(sim)
    for node in engine.nodes.values():
        if not isinstance(node, SupNode) or node.state != "running" or node.busy:
            continue
        assert not node.mailbox, (node.path, node.mailbox)
        for c in node.children:
            # a child supervisor may be stopping on its own (it gave up or shuts down), and
            # a service otree is stopping because it is unhealthy (its end is a crash)
            ok = ("running", "stopped", "exited", "restarting")
            on_its_own = c.kind == "supervisor" or getattr(c, "unhealthy", False)
            assert c.state in ok or (on_its_own and c.state == "stopping"), c.path
            if c.state == "restarting":
                assert c.restart_key in node.timers, c.path


@settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
@given(tree=trees(), data=st.data())
def test_every_request_is_answered_and_the_tree_always_comes_down(
    tree: Supervisor, data: st.DataObject
) -> None:
    """Whatever happens (crashes, hangs, failed starts, commands at any moment), every
    request gets exactly one reply, an idle supervisor never has a child stuck, and
    shutdown followed by kill_all always brings the tree down with no process left."""
    sim = Simulation(tree, start=False)
    services = [p for p, n in walk(tree) if isinstance(n, Service)]
    paths = [p for p, _ in walk(tree)]
    for path in data.draw(st.lists(st.sampled_from(services), max_size=2)):
        sim.inject(path, data.draw(st.sampled_from(["fail_start", "hang_on_stop"])))
    sim.start()
    sent = 0

    def command(name: str, path: str = "") -> None:
        nonlocal sent
        if not sim.done:
            sent += 1
        sim.command(name, path)

    for _ in range(data.draw(st.integers(0, 20))):
        if sim.done:
            break
        kind = data.draw(st.integers(0, 9))
        if kind < 5:
            sim.inject(data.draw(st.sampled_from(services)), data.draw(st.sampled_from(HOWS)))
        elif kind < 8:
            name = data.draw(st.sampled_from(["start", "stop", "restart"]))
            command(name, data.draw(st.sampled_from(paths)))
        elif kind == 8:
            sim.advance(data.draw(st.sampled_from([0.01, 0.5, 3.0, 40.0])))
        else:
            command(data.draw(st.sampled_from(["shutdown", "kill_all"])))
        if not sim.done:
            idle_supervisors_are_settled(sim)
    command("shutdown")
    sim.run(until=sim.now + 10_000)
    command("kill_all")
    sim.run(until=sim.now + 10_000)
    assert sim.done
    assert sim.running() == {}
    assert sorted(sim.replies) == list(range(1, sent + 1))  # no request left unanswered
    live: set[int] = set()
    for e in sim.trace.events:
        if e["event"] == "spawn":
            live.add(e["pid"])
        elif e["event"] == "exit":
            assert e["pid"] in live
            live.remove(e["pid"])
    assert not live


def test_a_stop_taken_while_a_one_shot_step_finishes_its_start_is_answered() -> None:
    """A ``stop`` of a one-shot step sent before it ran waits its turn (R38); it is taken
    the moment the step's normal exit starts the tree, and must end as that stop, not
    be lost: the reply comes and a later shutdown still brings the tree down."""
    db = Service(name="db", cmd=("sleep", "1"), ready=ReadyDelay(delay=0.1, timeout=1.1))
    step = Service(name="step", cmd=("true",), restart=Restart.TRANSIENT, ready=ReadyExited())
    sim = Simulation(Supervisor(name="root", children=(db, step)), start=False)
    sim.start()
    stop = sim.command("stop", "step")
    sim.advance(0.5)
    assert stop is None or stop.ok
    assert [r.ok for r in sim.replies.values()] == [True]
    sim.command("shutdown")
    sim.run(until=sim.now + 100)
    assert sim.done
    assert len(sim.replies) == 2
