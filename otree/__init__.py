"""otree: Erlang/OTP supervision trees for OS processes."""

from __future__ import annotations

from otree.core.spec import (
    AutoShutdown,
    Backoff,
    Log,
    ReadyCmd,
    ReadyDelay,
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


def load(path: str) -> Supervisor:
    """The tree a command line names: ``tree.toml``, ``file.py:attr`` or ``module:attr``."""
    from otree.config.loader import load_tree

    return load_tree(path)


__all__ = [
    "AutoShutdown",
    "Backoff",
    "ConfigError",
    "Log",
    "OtreeError",
    "ReadyCmd",
    "ReadyDelay",
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
