"""supervisord's value types (its ``datatypes``), each read into what otree's field takes.

Every function takes the option (its text and line) and the key path used in
messages (``program:web.autorestart``), and raises ``ConfigError`` naming both
when the text is not a value of that type.
"""

from __future__ import annotations

import re
from typing import NoReturn

from otree.config.importers.ini import Option
from otree.errors import ConfigError, Issue

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}
_SIZE = re.compile(r"^(?P<n>\d+)\s*(?P<unit>kb|mb|gb)?$", re.I)
_UNITS = {None: 1, "kb": 1024, "mb": 1024**2, "gb": 1024**3}
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")

#: the stop signals otree takes, by supervisord's names and Linux's numbers
SIGNALS = {"TERM": 15, "INT": 2, "QUIT": 3, "HUP": 1, "KILL": 9, "USR1": 10, "USR2": 12}
SIGNALS.update({"WINCH": 28, "ABRT": 6})
_BY_NUMBER = {n: name for name, n in SIGNALS.items()}


def fail(opt: Option, path: str, message: str) -> NoReturn:
    raise ConfigError([Issue(path, message, opt.source.file, opt.source.line)])


def no_expansion(opt: Option, path: str) -> str:
    if "%(" in opt.value:
        fail(opt, path, f"cannot translate an expansion in a number or a flag, got {opt.value!r}")
    return opt.value


def boolean(opt: Option, path: str) -> bool:
    text = no_expansion(opt, path).lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    fail(opt, path, f"expected true or false, got {opt.value!r}")


def integer(opt: Option, path: str, minimum: int = 0) -> int:
    text = no_expansion(opt, path)
    try:
        n = int(text)
    except ValueError:
        fail(opt, path, f"expected an integer, got {opt.value!r}")
    if n < minimum:
        fail(opt, path, f"expected an integer >= {minimum}, got {n}")
    return n


def byte_size(opt: Option, path: str) -> int:
    m = _SIZE.match(no_expansion(opt, path))
    if m is None:
        fail(opt, path, f"expected a size such as 1024, 50KB, 10MB or 1GB, got {opt.value!r}")
    unit = m["unit"].lower() if m["unit"] else None
    return int(m["n"]) * _UNITS[unit]


def auto_restart(opt: Option, path: str) -> str:
    """``autorestart`` as otree's restart type."""
    text = no_expansion(opt, path).lower()
    if text == "unexpected":
        return "transient"
    if text in _TRUE:
        return "permanent"
    if text in _FALSE:
        return "temporary"
    fail(opt, path, f"expected true, false or unexpected, got {opt.value!r}")


def exit_codes(opt: Option, path: str) -> list[int]:
    codes = []
    for part in no_expansion(opt, path).split(","):
        try:
            code = int(part.strip())
        except ValueError:
            fail(opt, path, f"expected exit codes separated by commas, got {opt.value!r}")
        if not 0 <= code <= 255:
            fail(opt, path, f"an exit code is 0 to 255, got {code}")
        codes.append(code)
    return codes


def stop_signal(opt: Option, path: str) -> str:
    text = no_expansion(opt, path).upper().removeprefix("SIG")
    if text.isdigit() and int(text) in _BY_NUMBER:
        return _BY_NUMBER[int(text)]
    if text in SIGNALS:
        return text
    names = ", ".join(SIGNALS)
    fail(opt, path, f"otree's stop_signal is one of {names}, got {opt.value!r}")


def umask(opt: Option, path: str) -> str:
    try:
        mask = int(no_expansion(opt, path), 8)
    except ValueError:
        fail(opt, path, f"expected an octal umask such as 022, got {opt.value!r}")
    if not 0 <= mask <= 0o777:
        fail(opt, path, f"a umask is 000 to 777, got {opt.value!r}")
    return f"{mask:04o}"


def env_pairs(opt: Option, path: str) -> dict[str, str]:
    """``KEY="value",KEY2=value2`` (quotes let a value hold commas) as a dict, in order."""
    pieces: list[str] = []
    current: list[str] = []
    quote = ""
    for ch in opt.value:
        if quote:
            current.append(ch)
            if ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
            current.append(ch)
        elif ch == ",":
            pieces.append("".join(current))
            current = []
        else:
            current.append(ch)
    if quote:
        fail(opt, path, f"a quoted value is not closed, in {opt.value!r}")
    pieces.append("".join(current))
    env: dict[str, str] = {}
    for piece in pieces:
        piece = piece.strip()
        if not piece:
            continue
        name, eq, val = piece.partition("=")
        name, val = name.strip(), val.strip()
        if not eq or not _ENV_NAME.match(name):
            fail(opt, path, f"expected KEY=value pairs separated by commas, got {piece!r}")
        if len(val) >= 2 and val[0] == val[-1] and val[0] in "'\"":
            val = val[1:-1]
        env[name] = val
    return env
