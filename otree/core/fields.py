"""Per-field checks of the tree specs (OTP's ``check_childspec``, one small function each).

A check returns the normalised value, or an ``_Invalid`` holding the message;
a spec class's ``__attrs_post_init__`` then raises one ``ConfigError`` naming
every bad field at once (``_collect``). Used by ``spec`` and ``checks``.
"""

from __future__ import annotations

import enum
import re
import shlex
from collections.abc import Mapping, Sequence
from typing import Any, Literal, TypeAlias

import attrs

from otree.core.reprs import plain_repr
from otree.errors import ConfigError, Issue

BRUTAL_KILL: Literal["brutal_kill"] = "brutal_kill"
INFINITY: Literal["infinity"] = "infinity"
#: seconds to wait after the stop signal, or one of the two special values
Shutdown: TypeAlias = float | Literal["brutal_kill", "infinity"]

#: signals a service may be stopped with (names without ``SIG``)
STOP_SIGNALS = ("TERM", "INT", "QUIT", "HUP", "KILL", "USR1", "USR2", "WINCH", "ABRT")

DEFAULT_READY_TIMEOUT = 30.0


class _Invalid:
    """A field value that failed its check; kept until ``__attrs_post_init__``."""

    __slots__ = ("message",)

    def __init__(self, message: str) -> None:
        self.message = message


def _bad(message: str) -> Any:
    return _Invalid(message)


def _collect(obj: Any, prefix: str) -> None:
    """Raise one ConfigError naming every field of ``obj`` that failed its check."""
    issues = []
    for field in attrs.fields(type(obj)):
        value = getattr(obj, field.name)
        if isinstance(value, _Invalid):
            issues.append(Issue(field.name, value.message))
    if issues:
        raise ConfigError(issues).prefixed(prefix)


def _enum(kind: type[enum.Enum], value: Any) -> Any:
    if isinstance(value, kind):
        return value
    try:
        return kind(value)
    except ValueError:
        return _bad(f"{value!r} is not one of {', '.join(m.value for m in kind)}")


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _finite(num: float | None) -> bool:
    return num is not None and num == num and num not in (float("inf"), float("-inf"))


def _seconds(value: Any, minimum: float, *, strict: bool = False) -> Any:
    num = _number(value)
    if num is None or not _finite(num):
        return _bad(f"expected a number of seconds, got {value!r}")
    if strict and num <= minimum:
        return _bad(f"must be greater than {minimum:g}, got {value!r}")
    if num < minimum:
        return _bad(f"must be at least {minimum:g}, got {value!r}")
    return num


def _positive(value: Any) -> Any:
    """Seconds > 0."""
    return _seconds(value, 0.0, strict=True)


def _non_negative(value: Any) -> Any:
    """Seconds >= 0."""
    return _seconds(value, 0.0)


def _factor(value: Any) -> Any:
    return _seconds(value, 1.0)


def _shutdown(value: Any) -> Any:
    if value in (BRUTAL_KILL, INFINITY):
        return value
    num = _number(value)
    if num is None or not _finite(num) or num < 0:
        return _bad(f"expected seconds >= 0, 'brutal_kill' or 'infinity', got {value!r}")
    return num


def _intensity(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return _bad(f"expected an integer >= 0, got {value!r}")
    return value


#: the most instances a pool may have (``replicas``, ``otree scale``): a sanity bound
MAX_REPLICAS = 10_000


def _replicas(value: Any) -> Any:
    """``replicas``: None (not a pool) or an integer 0 .. MAX_REPLICAS."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return _bad(f"expected an integer >= 0, got {value!r}")
    if value > MAX_REPLICAS:
        return _bad(f"must be at most {MAX_REPLICAS}, got {value!r}")
    return value


def _optional_intensity(value: Any) -> Any:
    return None if value is None else _intensity(value)


def _optional_positive(value: Any) -> Any:
    return None if value is None else _positive(value)


def _bool(value: Any) -> Any:
    if not isinstance(value, bool):
        return _bad(f"expected true or false, got {value!r}")
    return value


def _optional_str(value: Any) -> Any:
    if value is None or isinstance(value, str):
        return value
    return _bad(f"expected a string, got {value!r}")


def _argv(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            argv = shlex.split(value)
        except ValueError as exc:
            return _bad(f"cannot split {value!r}: {exc}")
        if not argv:
            return _bad("must not be empty")
        return tuple(argv)
    if isinstance(value, Sequence) and all(isinstance(a, str) for a in value):
        if not value:
            return _bad("must not be empty")
        return tuple(value)
    return _bad(f"expected a list of strings or a string, got {value!r}")


def _args(value: Any) -> Any:
    if isinstance(value, Sequence) and not isinstance(value, str):
        if all(isinstance(a, str) for a in value):
            return tuple(value)
    return _bad(f"expected a list of strings, got {value!r}")


def _target(value: Any) -> Any:
    if value is None:
        return None
    if not isinstance(value, str) or not re.fullmatch(r"[\w.]+:[\w.]+", value):
        return _bad(f"expected 'module:function', got {value!r}")
    return value


def _env(value: Any) -> Any:
    if isinstance(value, Mapping):
        bad = [k for k, v in value.items() if not isinstance(k, str) or not isinstance(v, str)]
        if not bad:
            return tuple(sorted(value.items()))
    elif isinstance(value, tuple) and all(
        isinstance(p, tuple) and len(p) == 2 and all(isinstance(x, str) for x in p) for p in value
    ):
        return tuple(sorted(value))
    return _bad(f"expected a table of string values, got {value!r}")


def _exit_codes(value: Any) -> Any:
    if isinstance(value, Sequence) and not isinstance(value, str):
        if all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= 255 for c in value):
            return tuple(value)
    return _bad(f"expected a list of exit codes 0-255, got {value!r}")


def _signal(value: Any) -> Any:
    if isinstance(value, str):
        name = value.upper().removeprefix("SIG")
        if name in STOP_SIGNALS:
            return name
    return _bad(f"{value!r} is not one of {', '.join(STOP_SIGNALS)}")


def _instance(value: Any, kind: type | tuple[type, ...], what: str) -> Any:
    if value is None or isinstance(value, kind):
        return value
    return _bad(f"expected {what}, got {value!r}")


# --- identity, limits, environment -----------------------------------------------

#: the resource limits Linux has (``RLIMIT_<NAME>``, lower case in the tree file)
LIMIT_NAMES = (
    "as",
    "core",
    "cpu",
    "data",
    "fsize",
    "locks",
    "memlock",
    "msgqueue",
    "nice",
    "nofile",
    "nproc",
    "rss",
    "rtprio",
    "rttime",
    "sigpending",
    "stack",
)
#: a limit's value for "no limit"
UNLIMITED: Literal["unlimited"] = "unlimited"


@plain_repr
@attrs.frozen(repr=False)
class Limit:
    """One resource limit of a service: ``soft`` and ``hard``, None for unlimited."""

    name: str
    soft: int | None
    hard: int | None


def _identity(value: Any) -> Any:
    """``user`` / ``group``: a name or a numeric id (None: otree's own)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return _bad(f"expected a name or a numeric id, got {value!r}")
    if isinstance(value, int):
        if value < 0:
            return _bad(f"expected a name or an id >= 0, got {value!r}")
        return str(value)
    if isinstance(value, str) and value and not value.isspace() and ":" not in value:
        return value
    return _bad(f"expected a name or a numeric id, got {value!r}")


def _umask(value: Any) -> Any:
    """``umask``: an octal string (``"0077"``) or an integer 0 .. 0o777."""
    if value is None:
        return None
    if isinstance(value, str) and re.fullmatch(r"0?[0-7]{1,3}", value):
        return int(value, 8)
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 0o777:
        return value
    return _bad(f'expected an octal string such as "0077", got {value!r}')


def _ranged(value: Any, low: int, high: int) -> Any:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        return _bad(f"expected an integer {low} .. {high}, got {value!r}")
    return value


def _nice(value: Any) -> Any:
    return _ranged(value, -20, 19)


def _oom_score_adj(value: Any) -> Any:
    return _ranged(value, -1000, 1000)


def _limit_value(value: Any) -> int | _Invalid | None:
    if value == UNLIMITED:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return _Invalid(f"expected an integer >= 0 or 'unlimited', got {value!r}")
    return value


def _one_limit(name: Any, value: Any) -> Limit | str:
    """The Limit ``name = value``, or what is wrong with it."""
    if not isinstance(name, str) or name not in LIMIT_NAMES:
        import difflib  # only for a misspelt name

        close = difflib.get_close_matches(str(name), LIMIT_NAMES, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f" (one of: {', '.join(LIMIT_NAMES)})"
        return f"{name!r} is not a resource limit Linux has{hint}"
    if isinstance(value, Sequence) and not isinstance(value, str):
        if len(value) != 2:
            return f"{name}: expected [soft, hard], got {value!r}"
        soft, hard = _limit_value(value[0]), _limit_value(value[1])
    else:
        soft = hard = _limit_value(value)
    for part in (soft, hard):
        if isinstance(part, _Invalid):
            return f"{name}: {part.message}"
    assert not isinstance(soft, _Invalid) and not isinstance(hard, _Invalid)
    if hard is not None and (soft is None or soft > hard):
        shown = UNLIMITED if soft is None else soft
        return f"{name}: the soft limit {shown} is above the hard limit {hard}"
    return Limit(name, soft, hard)


def _limits(value: Any) -> Any:
    """``limits``: a table ``{nofile = 65536, nproc = [4096, 8192]}`` -> sorted Limits."""
    if isinstance(value, Mapping):
        pairs = list(value.items())
    elif isinstance(value, Sequence) and all(isinstance(v, Limit) for v in value):
        return tuple(sorted(value, key=lambda lim: lim.name))
    else:
        return _bad(f"expected a table of limits, e.g. {{ nofile = 65536 }}, got {value!r}")
    limits, problems = [], []
    for name, item in pairs:
        made = _one_limit(name, item)
        if isinstance(made, str):
            problems.append(made)
        else:
            limits.append(made)
    if problems:
        return _bad("; ".join(problems))
    return tuple(sorted(limits, key=lambda lim: lim.name))


def _env_files(value: Any) -> Any:
    """``env_file``: a path or a list of paths (read in order)."""
    if value is None:
        return ()
    if isinstance(value, str):
        value = (value,)
    if isinstance(value, Sequence) and all(isinstance(v, str) and v for v in value):
        return tuple(value)
    return _bad(f"expected a file name or a list of them, got {value!r}")
