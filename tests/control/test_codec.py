"""The control protocol codec, without sockets: bytes <-> messages."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from otree.control.protocol import (
    COMMANDS,
    MAX_REQUEST,
    Decoder,
    ProtocolError,
    Request,
    decode_line,
    encode,
    encode_request,
    error_reply,
    loads,
    ok_reply,
    parse_request,
)

# --- framing ---------------------------------------------------------------------


def test_one_message_per_line() -> None:
    d = Decoder()
    assert d.feed(b'{"id": 1, "cmd": "status"}\n{"id": 2, "cmd": "info"}\n') == [
        {"id": 1, "cmd": "status"},
        {"id": 2, "cmd": "info"},
    ]
    assert d.pending == 0


def test_a_message_split_anywhere_is_reassembled() -> None:
    data = encode({"id": 7, "cmd": "stop", "path": "web.api"})
    for cut in range(len(data) + 1):
        d = Decoder()
        out = d.feed(data[:cut]) + d.feed(data[cut:])
        assert out == [{"id": 7, "cmd": "stop", "path": "web.api"}], cut


def test_byte_by_byte() -> None:
    d = Decoder()
    out: list[Any] = []
    for b in b'{"id":1,"cmd":"status"}\n\n{"id":2,"cmd":"shutdown"}\n':
        out += d.feed(bytes([b]))
    assert out == [{"id": 1, "cmd": "status"}, {"id": 2, "cmd": "shutdown"}]


def test_blank_lines_are_ignored() -> None:
    assert Decoder().feed(b"\n  \n\t\n") == []


def test_unterminated_last_line_is_kept_until_close() -> None:
    d = Decoder()
    assert d.feed(b'{"id": 1, "cmd": "status"}') == []
    assert d.pending > 0
    assert d.close() == [{"id": 1, "cmd": "status"}]
    assert d.close() == []


def test_invalid_json_is_an_error_and_the_next_line_still_works() -> None:
    d = Decoder()
    out = d.feed(b'{"id": 1, "cmd": \n{"id": 2, "cmd": "status"}\n')
    assert isinstance(out[0], ProtocolError)
    assert out[0].reason.startswith("message is not valid JSON")
    assert out[1] == {"id": 2, "cmd": "status"}


def test_not_utf8() -> None:
    [err] = Decoder().feed(b'{"id": 1, "cmd": "\xff"}\n')
    assert err == ProtocolError("message is not valid UTF-8")


@pytest.mark.parametrize(
    ("line", "what"),
    [(b"[1, 2]", "an array"), (b'"status"', "a string"), (b"3", "an integer"), (b"null", "null")],
)
def test_a_message_must_be_an_object(line: bytes, what: str) -> None:
    assert decode_line(line) == ProtocolError(f"message must be a JSON object, not {what}")


def test_oversized_line_is_an_error_and_skipped_to_its_end() -> None:
    d = Decoder(max_size=100)
    out = d.feed(b'{"id": 1, "pad": "' + b"x" * 300)
    assert out == [ProtocolError("message too long (more than 100 bytes)")]
    assert d.pending == 0  # nothing of it is kept
    assert d.feed(b"x" * 10_000) == []  # still inside the long line
    assert d.feed(b'xx"}\n{"id": 2, "cmd": "status"}\n') == [{"id": 2, "cmd": "status"}]


def test_oversized_line_arriving_whole() -> None:
    d = Decoder(max_size=100)
    big = encode({"id": 1, "cmd": "status", "pad": "x" * 200})
    assert d.feed(big + b'{"id": 2, "cmd": "info"}\n') == [
        ProtocolError("message too long (more than 100 bytes)"),
        {"id": 2, "cmd": "info"},
    ]


def test_a_line_of_exactly_max_size_is_accepted() -> None:
    msg = {"id": 1, "cmd": "status", "p": ""}
    size = len(encode(msg)) - 1
    msg["p"] = "x" * (MAX_REQUEST - size)
    data = encode(msg)
    assert len(data) - 1 == MAX_REQUEST
    assert Decoder().feed(data) == [msg]
    assert isinstance(Decoder().feed(data[:-2] + b'x"}\n')[0], ProtocolError)


def test_deeply_nested_json_is_an_error_not_a_crash() -> None:
    line = b"[" * 50_000 + b"]" * 50_000
    [err] = Decoder(max_size=1 << 20).feed(line + b"\n")
    assert isinstance(err, ProtocolError)


# --- encoding --------------------------------------------------------------------


def test_encode_is_one_line_even_with_newlines_inside() -> None:
    data = encode({"id": 1, "path": "a", "line": "two\nlines\r\u2028 \u00e9"})
    assert data.endswith(b"\n")
    assert data.count(b"\n") == 1
    assert Decoder().feed(data) == [{"id": 1, "path": "a", "line": "two\nlines\r\u2028 \u00e9"}]


def test_a_lone_surrogate_is_kept_escaped() -> None:
    [msg] = Decoder().feed(b'{"id": 1, "cmd": "stop", "path": "\\ud800x"}\n')
    assert isinstance(msg, dict)
    data = encode({"id": 1, "ok": False, "error": msg["path"]})
    assert data == b'{"id":1,"ok":false,"error":"\\ud800x"}\n'
    assert Decoder().feed(data) == [{"id": 1, "ok": False, "error": "\ud800x"}]


@given(st.text(st.characters(exclude_categories=())))
def test_any_text_encodes_to_one_valid_line(text: str) -> None:
    data = encode({"id": 1, "line": text})
    assert data.count(b"\n") == 1 and data.endswith(b"\n")
    data.decode("utf-8")
    assert Decoder(max_size=1 << 30).feed(data) == [{"id": 1, "line": text}]


def test_replies() -> None:
    assert ok_reply(3) == {"id": 3, "ok": True}
    assert ok_reply(3, nodes=[]) == {"id": 3, "ok": True, "nodes": []}
    assert error_reply(4, "no") == {"id": 4, "ok": False, "error": "no"}
    assert ProtocolError("bad", 5).reply() == {"id": 5, "ok": False, "error": "bad"}
    assert ProtocolError("bad").reply() == {"id": None, "ok": False, "error": "bad"}


# --- requests --------------------------------------------------------------------


def test_valid_requests() -> None:
    assert parse_request({"id": 1, "cmd": "status"}) == Request(1, "status")
    assert parse_request({"id": 2, "cmd": "stop", "path": "web.api"}) == Request(
        2, "stop", "web.api"
    )
    assert parse_request({"id": 3, "cmd": "logs", "n": 5, "follow": True}) == Request(
        3, "logs", None, 5, True
    )
    assert parse_request({"id": 4, "cmd": "logs", "path": None, "n": None}) == Request(4, "logs")


def test_request_roundtrip() -> None:
    for req in [Request(1, "status"), Request(9, "logs", "db", 10, True), Request(2, "start", "x")]:
        [msg] = Decoder().feed(encode(req.to_message()))
        assert isinstance(msg, dict)
        assert parse_request(msg) == req


@pytest.mark.parametrize(
    ("message", "error"),
    [
        ({"cmd": "status"}, ProtocolError("request has no 'id'")),
        ({"id": "1", "cmd": "status"}, ProtocolError("'id' must be an integer, not a string")),
        ({"id": True, "cmd": "status"}, ProtocolError("'id' must be an integer, not a boolean")),
        ({"id": 1.5, "cmd": "status"}, ProtocolError("'id' must be an integer, not a number")),
        ({"id": 1}, ProtocolError("request has no 'cmd'", 1)),
        ({"id": 1, "cmd": 3}, ProtocolError("'cmd' must be a string, not an integer", 1)),
        (
            {"id": 1, "cmd": "reboot"},
            ProtocolError(
                "unknown command 'reboot' (known: status, info, start, stop, restart, logs,"
                " shutdown, reload, scale, reload_plan, metrics, signal, events)",
                1,
            ),
        ),
        ({"id": 2, "cmd": "stop"}, ProtocolError("stop: 'path' is required", 2)),
        ({"id": 2, "cmd": "signal"}, ProtocolError("signal: 'path' is required", 2)),
        (
            {"id": 2, "cmd": "signal", "path": "web"},
            ProtocolError("signal: 'signal' is required", 2),
        ),
        (
            {"id": 2, "cmd": "start", "path": 1},
            ProtocolError("start: 'path' must be a string, not an integer", 2),
        ),
        (
            {"id": 3, "cmd": "status", "path": "x", "zz": 1},
            ProtocolError("status: unexpected field(s) 'zz'", 3),
        ),
        ({"id": 4, "cmd": "logs", "n": -1}, ProtocolError("logs: 'n' must not be negative", 4)),
        (
            {"id": 4, "cmd": "logs", "n": "5"},
            ProtocolError("logs: 'n' must be an integer, not a string", 4),
        ),
        (
            {"id": 4, "cmd": "logs", "n": True},
            ProtocolError("logs: 'n' must be an integer, not a boolean", 4),
        ),
        (
            {"id": 4, "cmd": "logs", "follow": 1},
            ProtocolError("logs: 'follow' must be a boolean, not an integer", 4),
        ),
    ],
)
def test_invalid_requests(message: dict[str, Any], error: ProtocolError) -> None:
    assert parse_request(message) == error


def test_reload_is_a_control_command_without_fields() -> None:
    assert COMMANDS["reload"] == {}


# --- garbage never raises --------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
request_like = st.fixed_dictionaries(
    {},
    optional={
        "id": json_values | st.integers(),
        "cmd": st.sampled_from([*COMMANDS, "reload", ""]) | json_values,
        "path": st.text(max_size=10) | json_values,
        "n": st.integers(-5, 5) | json_values,
        "follow": st.booleans() | json_values,
    },
)


@given(st.lists(st.binary(max_size=300), max_size=20))
def test_any_bytes_in_any_chunks_never_raise(chunks: list[bytes]) -> None:
    d = Decoder(max_size=256)
    for chunk in chunks:
        for item in d.feed(chunk):
            assert isinstance(item, (dict, ProtocolError))
            if isinstance(item, dict):
                assert isinstance(parse_request(item), (Request, ProtocolError))
        assert d.pending <= 256
    d.close()


@given(st.lists(json_values | request_like, max_size=10), st.data())
def test_json_garbage_never_raises_and_framing_survives(
    values: list[Any], data: st.DataObject
) -> None:
    stream = b"".join(json.dumps(v).encode() + b"\n" for v in values)
    stream += b'{"id": 99, "cmd": "status"}\n'
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=6)))
    d = Decoder()
    out: list[Any] = []
    prev = 0
    for cut in [*cuts, len(stream)]:
        out += d.feed(stream[prev:cut])
        prev = cut
    assert len(out) == len(values) + 1  # one result per line, whatever was in it
    for item in out:
        result = parse_request(item) if isinstance(item, dict) else item
        assert isinstance(result, (Request, ProtocolError))
        if isinstance(result, ProtocolError):
            assert isinstance(result.reply()["error"], str)
    assert parse_request(out[-1]) == Request(99, "status")


@given(request_like)
def test_parse_request_accepts_exactly_the_schema(message: dict[str, Any]) -> None:
    result = parse_request(message)
    if isinstance(result, Request):
        assert result.cmd in COMMANDS
        assert isinstance(result.id, int)
        assert set(message) <= {"id", "cmd", *COMMANDS[result.cmd]}
        # and it survives the wire unchanged
        [again] = Decoder().feed(encode(result.to_message()))
        assert isinstance(again, dict)
        assert parse_request(again) == result


# --- json's C parts, without the json module (the client's) -----------------------------

_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.text(), st.floats(allow_nan=False))
_JSON = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
_SPACE = st.text(" \t\n\r", max_size=3)


@given(_JSON, _SPACE, _SPACE)
def test_loads_reads_any_document_as_json_loads_does(value: Any, before: str, after: str) -> None:
    text = before + json.dumps(value, ensure_ascii=False) + after
    assert repr(loads(text)) == repr(json.loads(text))


@given(st.text(max_size=30) | st.sampled_from(["NaN", "-Infinity", " 1 2", '{"a":1}x', "\ufeff1"]))
def test_loads_of_any_text_answers_or_fails_as_json_loads_does(text: str) -> None:
    try:
        expected: Any = repr(json.loads(text))
    except ValueError as exc:
        expected = ("error", str(exc))
    try:
        got: Any = repr(loads(text))
    except ValueError as exc:
        got = ("error", str(exc))
    assert got == expected


@given(
    st.dictionaries(
        st.text(),
        st.one_of(st.none(), st.booleans(), st.integers(), st.text()),
        max_size=6,
    )
)
def test_a_request_is_written_byte_for_byte_as_encode_writes_it(message: dict[str, Any]) -> None:
    assert encode_request(message) == encode(message)


def test_a_request_with_other_values_is_written_by_encode() -> None:
    message = {"id": 1, "cmd": "x", "list": [1, "a"], "f": 1.5}
    assert encode_request(message) == encode(message)
