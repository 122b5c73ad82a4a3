"""The control protocol as a sans-IO codec: bytes in, messages out, and back.

Messages are JSON objects, one per line (UTF-8, ``\\n``-terminated). A client
sends requests and the server answers each with one final reply, carrying
the request's ``id``; ``logs`` first streams ``{"id", "path", "line"}``
messages::

    -> {"id": 1, "cmd": "stop", "path": "web.api"}
    <- {"id": 1, "ok": true}
    -> {"id": 2, "cmd": "start", "path": "nope"}
    <- {"id": 2, "ok": false, "error": "no node at path 'nope'"}
    -> {"id": 3, "cmd": "logs", "path": "web.api", "n": 2}
    <- {"id": 3, "path": "web.api", "line": "listening on :8000"}
    <- {"id": 3, "path": "web.api", "line": "GET / 200"}
    <- {"id": 3, "ok": true}

With ``"follow": true`` the final reply comes after the recent lines, with
``"following": true``, and new lines keep coming until the client goes away
or the tree stops. Nothing here touches a socket: the ``Decoder`` is fed
whatever bytes arrived and hands back whole messages, or ``ProtocolError``
values for lines that are not valid messages (never raising), so one bad
line costs its sender an error reply and nothing else.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing is not imported: the client commands start without it
if TYPE_CHECKING:
    from typing import Any

try:  # json's own C parts, used as json uses them: the json module's regexes import re
    # and enum (about 8 ms of a client command, whose lines are read and written here)
    from _json import encode_basestring as _quote
    from _json import make_scanner as _make_scanner
except ImportError:  # pragma: no cover - an interpreter without them: json does it all
    _make_scanner = _quote = None  # type: ignore[assignment,misc]

#: the longest request line the server accepts (replies may be longer)
MAX_REQUEST = 64 * 1024
#: the longest line a client accepts from the server
MAX_REPLY = 64 * 1024 * 1024

#: command name -> the optional fields it takes (with their types)
COMMANDS: dict[str, dict[str, type]] = {
    "status": {"path": str},  # with a path: that node in full (otree status PATH)
    "info": {},
    "start": {"path": str},
    "stop": {"path": str},
    "restart": {"path": str},
    "logs": {"path": str, "n": int, "follow": bool},
    "shutdown": {},
    "reload": {},
    "scale": {"path": str, "n": int},  # n: how many instances the pool runs
    "reload_plan": {},  # what a reload would do (otree reload --dry-run); changes nothing
    "metrics": {},  # the Prometheus text exposition, as "text"
    "signal": {"path": str, "signal": str, "group": bool},  # "HUP"; group: its process group
    "events": {"n": int, "follow": bool},  # the event log's lines: the last n, then live
}
#: commands whose ``path`` is required
NEEDS_PATH = frozenset({"start", "stop", "restart", "scale", "signal"})
_COMMON = frozenset({"id", "cmd"})


class _Value:
    """An immutable value compared field by field (``__slots__`` are its fields). Not a
    NamedTuple (``typing``) nor attrs: the client commands import this module, and both
    are slow to import."""

    __slots__ = ()
    _FIELDS: tuple[str, ...] = ()  # in order

    def _fields(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in self._FIELDS)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, _Value)
        return self._fields() == other._fields()

    def __hash__(self) -> int:
        return hash(self._fields())

    def __repr__(self) -> str:
        args = ", ".join(f"{n}={v!r}" for n, v in zip(self._FIELDS, self._fields(), strict=True))
        return f"{type(self).__name__}({args})"


class Request(_Value):
    """One valid request. ``path`` is ``None`` when not given (``logs`` of every service)."""

    _FIELDS = ("id", "cmd", "path", "n", "follow", "signal", "group")
    __slots__ = _FIELDS
    id: int
    cmd: str
    path: str | None
    n: int | None
    follow: bool
    signal: str | None
    group: bool

    def __init__(
        self,
        id: int,
        cmd: str,
        path: str | None = None,
        n: int | None = None,
        follow: bool = False,
        signal: str | None = None,
        group: bool = False,
    ) -> None:
        for name, value in zip(
            self._FIELDS, (id, cmd, path, n, follow, signal, group), strict=True
        ):
            object.__setattr__(self, name, value)

    def to_message(self) -> dict[str, Any]:
        msg: dict[str, Any] = {"id": self.id, "cmd": self.cmd}
        if self.path is not None:
            msg["path"] = self.path
        if self.n is not None:
            msg["n"] = self.n
        if self.follow:
            msg["follow"] = True
        if self.signal is not None:
            msg["signal"] = self.signal
        if self.group:
            msg["group"] = True
        return msg


class ProtocolError(_Value):
    """A line that is not a valid message. ``id`` is the request's, when it could be read."""

    _FIELDS = ("reason", "id")
    __slots__ = _FIELDS
    reason: str
    id: int | None

    def __init__(self, reason: str, id: int | None = None) -> None:
        object.__setattr__(self, "reason", reason)
        object.__setattr__(self, "id", id)

    def reply(self) -> dict[str, Any]:
        return error_reply(self.id, self.reason)


def encode(message: dict[str, Any]) -> bytes:
    """One message as one line of UTF-8 JSON."""
    import json  # the server's, loaded with it

    text = json.dumps(message, separators=(",", ":"), ensure_ascii=False)
    try:
        return text.encode() + b"\n"
    except UnicodeEncodeError:  # a lone surrogate (from a request's own escapes): keep it escaped
        return json.dumps(message, separators=(",", ":")).encode() + b"\n"


def encode_request(message: dict[str, Any]) -> bytes:
    """``encode(message)`` for a client's request, whose fields are strings, integers,
    booleans and nulls, written without the json module (anything else: ``encode``)."""
    if _quote is None:  # pragma: no cover
        return encode(message)
    fields = []
    for key, value in message.items():
        if value is None or value is True or value is False:
            text = "null" if value is None else "true" if value else "false"
        elif isinstance(value, int):
            text = int.__repr__(value)
        elif isinstance(value, str):
            text = _quote(value)
        else:
            return encode(message)
        fields.append(f"{_quote(key)}:{text}")
    try:
        return ("{" + ",".join(fields) + "}\n").encode()
    except UnicodeEncodeError:  # a lone surrogate: json's escapes, as encode() writes it
        return encode(message)


class _Defaults:
    """What json's C scanner reads from its decoder: ``json.loads``' own defaults."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = {
        "-Infinity": float("-inf"),
        "Infinity": float("inf"),
        "NaN": float("nan"),
    }.__getitem__


_scan = _make_scanner(_Defaults()) if _make_scanner is not None else None  # type: ignore[arg-type]
_SPACE = " \t\n\r"  # JSON's whitespace


def loads(text: str) -> Any:
    """``json.loads(text)``: a valid document is read by json's C scanner straight away;
    json itself (with its regexes) is imported only to say what is wrong with one that
    is not, in its own words."""
    if _scan is not None:
        start = len(text) - len(text.lstrip(_SPACE))
        try:
            value, end = _scan(text, start)
        except (StopIteration, ValueError):
            pass
        else:
            if end >= len(text.rstrip(_SPACE)):
                return value
    import json

    return json.loads(text)


def ok_reply(request_id: int | None, **fields: Any) -> dict[str, Any]:
    return {"id": request_id, "ok": True, **fields}


def error_reply(request_id: int | None, error: str) -> dict[str, Any]:
    return {"id": request_id, "ok": False, "error": error}


class Decoder:
    """Split a byte stream into JSON objects, one per line.

    ``feed(data)`` returns the messages completed by ``data``: a ``dict`` per
    good line, a ``ProtocolError`` per bad one. A line longer than
    ``max_size`` is an error; the rest of it is skipped without being kept.
    Blank lines are ignored. ``close()`` reports an unterminated last line.
    """

    def __init__(self, max_size: int = MAX_REQUEST) -> None:
        self.max_size = max_size
        self._buf = bytearray()
        self._skipping = False  # inside an oversized line, until its newline

    def feed(self, data: bytes) -> list[dict[str, Any] | ProtocolError]:
        out: list[dict[str, Any] | ProtocolError] = []
        start = 0
        while True:
            nl = data.find(b"\n", start)
            if nl < 0:
                break
            piece = data[start:nl]
            start = nl + 1
            if self._skipping:
                self._skipping = False
                continue
            if len(self._buf) + len(piece) > self.max_size:
                self._buf.clear()
                out.append(self._too_long())
                continue
            if self._buf:
                self._buf += piece
                line = bytes(self._buf)
                self._buf.clear()
            else:
                line = piece
            message = decode_line(line)
            if message is not None:
                out.append(message)
        rest = data[start:]
        if rest and not self._skipping:
            if len(self._buf) + len(rest) > self.max_size:
                self._buf.clear()
                self._skipping = True
                out.append(self._too_long())
            else:
                self._buf += rest
        return out

    @property
    def buffered(self) -> bytes:
        """The start of a line not yet complete (handed over with a connection)."""
        return b"" if self._skipping else bytes(self._buf)

    def _too_long(self) -> ProtocolError:
        return ProtocolError(f"message too long (more than {self.max_size} bytes)")

    def close(self) -> list[dict[str, Any] | ProtocolError]:
        """The stream ended: whatever unterminated line is left, as a last message."""
        if self._skipping or not self._buf:
            self._buf.clear()
            return []
        line = bytes(self._buf)
        self._buf.clear()
        message = decode_line(line)
        return [message] if message is not None else []

    @property
    def pending(self) -> int:
        """Bytes held waiting for the end of a line."""
        return len(self._buf)


def decode_line(line: bytes) -> dict[str, Any] | ProtocolError | None:
    """One line (without its newline) -> a JSON object, an error, or None if blank."""
    if not line.strip():
        return None
    try:
        value = loads(line.decode("utf-8"))
    except UnicodeDecodeError:
        return ProtocolError("message is not valid UTF-8")
    except (ValueError, RecursionError) as exc:
        return ProtocolError(f"message is not valid JSON: {_short(exc)}")
    if not isinstance(value, dict):
        return ProtocolError(f"message must be a JSON object, not {_json_type(value)}")
    return value


def parse_request(message: dict[str, Any]) -> Request | ProtocolError:
    """Check a decoded message against the request schema."""
    if "id" not in message:
        return ProtocolError("request has no 'id'")
    rid = message["id"]
    if not isinstance(rid, int) or isinstance(rid, bool):
        return ProtocolError(f"'id' must be an integer, not {_json_type(rid)}")
    cmd = message.get("cmd")
    if cmd is None:
        return ProtocolError("request has no 'cmd'", rid)
    if not isinstance(cmd, str):
        return ProtocolError(f"'cmd' must be a string, not {_json_type(cmd)}", rid)
    fields = COMMANDS.get(cmd)
    if fields is None:
        known = ", ".join(COMMANDS)
        return ProtocolError(f"unknown command {_clip(cmd)!r} (known: {known})", rid)
    extra = sorted(set(message) - _COMMON - set(fields))
    if extra:
        names = ", ".join(repr(_clip(k)) for k in extra)
        return ProtocolError(f"{cmd}: unexpected field(s) {names}", rid)
    values: dict[str, Any] = {}
    for name, kind in fields.items():
        if message.get(name) is None:  # null is the same as absent
            continue
        value = message[name]
        ok = _is_int(value) if kind is int else isinstance(value, kind)
        if not ok:
            expected = {str: "a string", int: "an integer", bool: "a boolean"}[kind]
            return ProtocolError(
                f"{cmd}: '{name}' must be {expected}, not {_json_type(value)}", rid
            )
        values[name] = value
    if cmd in NEEDS_PATH and "path" not in values:
        return ProtocolError(f"{cmd}: 'path' is required", rid)
    if cmd == "signal" and "signal" not in values:
        return ProtocolError(f"{cmd}: 'signal' is required", rid)
    if cmd == "scale" and "n" not in values:
        return ProtocolError(f"{cmd}: 'n' is required", rid)
    if values.get("n") is not None and values["n"] < 0:
        return ProtocolError(f"{cmd}: 'n' must not be negative", rid)
    return Request(id=rid, cmd=cmd, **values)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _clip(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _short(exc: BaseException) -> str:
    return _clip(str(exc).split("\n", 1)[0], 120)
