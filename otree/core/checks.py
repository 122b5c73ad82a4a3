"""Readiness and health checks of a service: frozen attrs specs, one class per kind.

``ready`` says when a started service counts as started (``Ready*``); ``health``
says how a running one is probed (``Health*``: its failures make it
``unhealthy``, a crash). Each kind is chosen by its key in the tree file
(``{ tcp = ... }``, ``{ http = ... }``, ...).
"""

from __future__ import annotations

from typing import Any, TypeAlias

import attrs

from otree.core.fields import (
    DEFAULT_READY_TIMEOUT,
    _argv,
    _bad,
    _bool,
    _collect,
    _Invalid,
    _non_negative,
    _positive,
)
from otree.core.reprs import plain_repr

#: a one-shot step (``ready = { exited = true }``) may run this long by default
DEFAULT_EXITED_TIMEOUT = 300.0
#: host names that are local without a look-up
LOCAL_NAMES = ("localhost",)


def _split_host_port(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


def _host_port(value: Any) -> Any:
    if not isinstance(value, str):
        return _bad(f"expected 'host:port', got {value!r}")
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit():
        return _bad(f"expected 'host:port', got {value!r}")
    if not 0 < int(port) < 65536:
        return _bad(f"port must be 1-65535, got {port}")
    return value


def is_local_host(host: str) -> bool:
    """Whether ``host`` is a loopback address or a local name (``localhost``, ``*.localhost``)."""
    name = host.lower().rstrip(".")
    if name in LOCAL_NAMES or name.endswith(".localhost"):
        return True
    import ipaddress  # only for an address to check: kept off otree's start-up

    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _url(value: Any) -> Any:
    """An ``http://`` URL to a loopback address (a probe must not leave the machine)."""
    if not isinstance(value, str):
        return _bad(f"expected an http:// URL, got {value!r}")
    import urllib.parse  # only for an http check: kept off otree's start-up

    try:
        parts = urllib.parse.urlsplit(value)
        port = parts.port
    except ValueError as exc:
        return _bad(f"cannot parse {value!r}: {exc}")
    if parts.scheme != "http" or not parts.hostname:
        return _bad(f"expected an http:// URL (http://127.0.0.1:PORT/PATH), got {value!r}")
    if not is_local_host(parts.hostname):
        return _bad(f"{parts.hostname!r} is not a loopback address or local name, in {value!r}")
    if port == 0:
        return _bad(f"port must be 1-65535, in {value!r}")
    return value


@plain_repr
@attrs.frozen(repr=False)
class ReadyDelay:
    """Ready ``delay`` seconds after a successful exec."""

    delay: float = attrs.field(converter=_non_negative)
    timeout: float = attrs.field(default=DEFAULT_READY_TIMEOUT, converter=_positive)

    def __attrs_post_init__(self) -> None:
        _collect(self, "ready")


@plain_repr
@attrs.frozen(repr=False)
class ReadyTcp:
    """Ready once a TCP connection to ``tcp`` (``host:port``) succeeds."""

    tcp: str = attrs.field(converter=_host_port)
    timeout: float = attrs.field(default=DEFAULT_READY_TIMEOUT, converter=_positive)

    @property
    def address(self) -> tuple[str, int]:
        return _split_host_port(self.tcp)

    def __attrs_post_init__(self) -> None:
        _collect(self, "ready")


def _must_be_true(check: Any, field: str) -> None:
    """A readiness kind named by a flag (``notify``, ``exited``) takes only ``true``."""
    value = getattr(check, field)
    if value is not True and not isinstance(value, _Invalid):
        object.__setattr__(check, field, _bad("must be true (remove 'ready' to turn it off)"))


@plain_repr
@attrs.frozen(repr=False)
class ReadyNotify:
    """Ready when the service sends ``READY=1`` to ``$NOTIFY_SOCKET`` (sd_notify)."""

    notify: bool = attrs.field(default=True, converter=_bool)
    timeout: float = attrs.field(default=DEFAULT_READY_TIMEOUT, converter=_positive)

    def __attrs_post_init__(self) -> None:
        _must_be_true(self, "notify")
        _collect(self, "ready")


@plain_repr
@attrs.frozen(repr=False)
class ReadyCmd:
    """Ready once ``cmd`` exits 0 (run repeatedly until it does or the timeout)."""

    cmd: tuple[str, ...] = attrs.field(converter=_argv)
    timeout: float = attrs.field(default=DEFAULT_READY_TIMEOUT, converter=_positive)
    interval: float = attrs.field(default=0.1, converter=_positive)

    def __attrs_post_init__(self) -> None:
        _collect(self, "ready")


@plain_repr
@attrs.frozen(repr=False)
class ReadyHttp:
    """Ready once a GET of ``http`` (``http://`` to a loopback address) answers 2xx or 3xx."""

    http: str = attrs.field(converter=_url)
    timeout: float = attrs.field(default=DEFAULT_READY_TIMEOUT, converter=_positive)

    def __attrs_post_init__(self) -> None:
        _collect(self, "ready")


@plain_repr
@attrs.frozen(repr=False)
class ReadyExited:
    """A one-shot step: started once its process has exited normally."""

    exited: bool = attrs.field(default=True, converter=_bool)
    timeout: float = attrs.field(default=DEFAULT_EXITED_TIMEOUT, converter=_positive)

    def __attrs_post_init__(self) -> None:
        _must_be_true(self, "exited")
        _collect(self, "ready")


Ready: TypeAlias = ReadyDelay | ReadyTcp | ReadyNotify | ReadyCmd | ReadyHttp | ReadyExited
READY_KINDS: tuple[type, ...] = (
    ReadyDelay,
    ReadyTcp,
    ReadyNotify,
    ReadyCmd,
    ReadyHttp,
    ReadyExited,
)


# --- health: probes of a running service -------------------------------------


def _failures(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        return _bad(f"expected an integer >= 1, got {value!r}")
    return value


def _health_post_init(obj: Any) -> None:
    """The rule across a health check's fields: ``timeout`` < ``interval``."""
    interval, timeout = obj.interval, obj.timeout
    if not isinstance(interval, _Invalid) and not isinstance(timeout, _Invalid):
        if timeout >= interval:
            message = f"must be less than interval ({interval:g}), got {timeout:g}"
            object.__setattr__(obj, "timeout", _bad(message))
    _collect(obj, "health")


@plain_repr
@attrs.frozen(repr=False)
class HealthTcp:
    """Healthy while a TCP connection to ``tcp`` (``host:port``) succeeds.

    The first probe runs ``interval`` + ``grace`` seconds after the service
    became ready, then one every ``interval``; a probe slower than ``timeout``
    fails; ``failures`` failures in a row make the service unhealthy.
    """

    tcp: str = attrs.field(converter=_host_port)
    interval: float = attrs.field(default=10.0, converter=_positive)
    timeout: float = attrs.field(default=5.0, converter=_positive)
    failures: int = attrs.field(default=3, converter=_failures)
    grace: float = attrs.field(default=0.0, converter=_non_negative)

    @property
    def address(self) -> tuple[str, int]:
        return _split_host_port(self.tcp)

    def __attrs_post_init__(self) -> None:
        _health_post_init(self)


@plain_repr
@attrs.frozen(repr=False)
class HealthHttp:
    """Healthy while a GET of ``http`` answers 2xx or 3xx (no redirect followed)."""

    http: str = attrs.field(converter=_url)
    interval: float = attrs.field(default=10.0, converter=_positive)
    timeout: float = attrs.field(default=5.0, converter=_positive)
    failures: int = attrs.field(default=3, converter=_failures)
    grace: float = attrs.field(default=0.0, converter=_non_negative)

    def __attrs_post_init__(self) -> None:
        _health_post_init(self)


@plain_repr
@attrs.frozen(repr=False)
class HealthCmd:
    """Healthy while ``cmd`` exits 0 (its process group is killed at ``timeout``)."""

    cmd: tuple[str, ...] = attrs.field(converter=_argv)
    interval: float = attrs.field(default=10.0, converter=_positive)
    timeout: float = attrs.field(default=5.0, converter=_positive)
    failures: int = attrs.field(default=3, converter=_failures)
    grace: float = attrs.field(default=0.0, converter=_non_negative)

    def __attrs_post_init__(self) -> None:
        _health_post_init(self)


Health: TypeAlias = HealthTcp | HealthHttp | HealthCmd
HEALTH_KINDS: tuple[type, ...] = (HealthTcp, HealthHttp, HealthCmd)
