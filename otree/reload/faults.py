"""Test-only hooks of the self-reload: a fault on demand, and a pause after the exec.

``OTREE_TEST_FAULT=EVENT:PATH[:N][:always]`` makes the runtime raise
:class:`InjectedFault` once, when it is about to handle that event (a fatal
internal error, so a fatal re-exec follows; with ``always``, once in every
image: a fault that recurs, as the re-exec guard is for); ``OTREE_TEST_HOLD=FILE`` makes
the new image create FILE after reading the handoff and wait (at most 30 s)
until it is removed before it watches the children again. See
docs/self-reload.md.
"""

from __future__ import annotations

import os
import time

from otree.core import events as ev

#: ``EVENT:PATH[:N][:always]`` (``exited:web.api``): raise once when that event is handled
ENV_FAULT = "OTREE_TEST_FAULT"
#: a file path: the new image waits while it exists
ENV_HOLD = "OTREE_TEST_HOLD"


class FaultHook:
    """``OTREE_TEST_FAULT=EVENT:PATH[:N][:always]``: raise when the runtime is about to
    handle the ``N``-th (default: first) such event.

    ``EVENT`` is an engine input in lower case (``exited``, ``spawned``,
    ``ready``, ``timerfired``, ``command``). The variable is removed when it
    fires, so the new image does not fire it again, unless ``always`` is
    given (``always``: the variable stays). Only for tests.
    """

    def __init__(self, spec: str) -> None:
        kind, _, rest = spec.partition(":")
        path, _, rest = rest.partition(":")
        count, _, mode = rest.partition(":")
        self.kind = kind.lower()
        self.path = path
        self.left = int(count) if count.isdigit() else 1
        self.always = mode == "always"

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
