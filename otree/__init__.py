"""otree: Erlang/OTP supervision trees for OS processes.

The public surface only, loaded lazily (PEP 562): ``import otree`` imports
none of otree's modules until a name is used, so the client commands
(``otree status`` ...) and ``python -m otree._target`` start fast and small.
In a re-exec'd otree it first arms :mod:`otree.reload.bootstrap` (standard
library only), so that a new image that cannot start stops the children it
was handed.
"""

from __future__ import annotations

import os as _os

if "OTREE_HANDOFF_FD" in _os.environ:  # a re-exec: before any other otree code can fail
    from otree.reload.bootstrap import arm as _arm

    _arm()

TYPE_CHECKING = False  # not typing's: importing typing costs the client commands
if TYPE_CHECKING:
    from otree.core.spec import (
        AutoShutdown,
        Backoff,
        HealthCmd,
        HealthHttp,
        HealthTcp,
        Log,
        ReadyCmd,
        ReadyDelay,
        ReadyExited,
        ReadyHttp,
        ReadyNotify,
        ReadyTcp,
        Restart,
        Service,
        Strategy,
        Supervisor,
        check_tree,
    )
    from otree.errors import ConfigError, OtreeError
    from otree.launch import run
else:  # at run time only: mypy reads the imports above (and flags any other name)
    #: where each public name lives, imported on first use
    _HOMES = {
        "AutoShutdown": "otree.core.spec",
        "Backoff": "otree.core.spec",
        "Log": "otree.core.spec",
        "HealthCmd": "otree.core.spec",
        "HealthHttp": "otree.core.spec",
        "HealthTcp": "otree.core.spec",
        "ReadyCmd": "otree.core.spec",
        "ReadyDelay": "otree.core.spec",
        "ReadyExited": "otree.core.spec",
        "ReadyHttp": "otree.core.spec",
        "ReadyNotify": "otree.core.spec",
        "ReadyTcp": "otree.core.spec",
        "Restart": "otree.core.spec",
        "Service": "otree.core.spec",
        "Strategy": "otree.core.spec",
        "Supervisor": "otree.core.spec",
        "check_tree": "otree.core.spec",
        "ConfigError": "otree.errors",
        "OtreeError": "otree.errors",
        "run": "otree.launch",
    }

    def __getattr__(name: str) -> object:
        home = _HOMES.get(name)
        if home is None:
            raise AttributeError(f"module 'otree' has no attribute {name!r}")
        import importlib

        value = getattr(importlib.import_module(home), name)
        globals()[name] = value  # the next use is a plain lookup
        return value

    def __dir__() -> list[str]:
        return sorted({*globals(), *__all__})


del TYPE_CHECKING


def load(path: str) -> Supervisor:
    """The tree a command line names: ``tree.toml``, ``file.py:attr`` or ``module:attr``."""
    from otree.config.loader import load_tree

    return load_tree(path)


__all__ = [
    "AutoShutdown",
    "Backoff",
    "ConfigError",
    "HealthCmd",
    "HealthHttp",
    "HealthTcp",
    "Log",
    "OtreeError",
    "ReadyCmd",
    "ReadyDelay",
    "ReadyExited",
    "ReadyHttp",
    "ReadyNotify",
    "ReadyTcp",
    "Restart",
    "Service",
    "Strategy",
    "Supervisor",
    "check_tree",
    "load",
    "run",
]
