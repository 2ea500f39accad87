"""Property tests: nothing a peer sends can make the codec or a core raise.

`decode_frame` promises to return a frame (or `UnknownFrame`) or raise `RemoteProtocolError`,
and nothing else; both cores' `receive()` turn whatever arrives into events (a
`ProtocolViolation` for garbage) and keep the connection open (spec §1.1: bad frames are
dropped, never fatal). Inputs go from raw bytes, to arbitrary JSON, to objects that look
like real frames, where decoding reaches the typed paths.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from anyiii._errors import RemoteProtocolError
from anyiii._protocol import events as ev
from anyiii._protocol import frames as fr
from anyiii._protocol.connection import BaseConnection, frame_tag
from anyiii._protocol.engine import EngineConnection
from anyiii._protocol.frames import FRAME_TYPES, UnknownFrame, decode_frame
from anyiii._protocol.state import State
from anyiii._protocol.worker import WorkerConnection
from strategies import FUZZ_JSON, SMALL_FUZZ_JSON

FUZZ = settings(
    max_examples=600,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# Batches feed several messages per example, so fewer examples still mean more messages.
FUZZ_BATCH = settings(FUZZ, max_examples=500)

WORKER_ID = "3f2b8c1e-9d4a-4e7b-8c21-5a6f0d9e7b13"
TOKEN = "b7e4d2a9-1c3f-4a8e-9b60-2d7c5e8f1a04"

# --- strategies -----------------------------------------------------------------------------

uuid_text = st.uuids().map(str)
names = st.sampled_from(["greet", "math::add", "engine::workers::register", "", " "]) | st.text(
    max_size=8
)
error_bodies = st.fixed_dictionaries(
    {"code": names, "message": st.text(max_size=8)},
    optional={"stacktrace": st.none() | st.text(max_size=8)},
)
actions = st.fixed_dictionaries({"type": st.just("void")}) | st.fixed_dictionaries(
    {"type": st.just("enqueue"), "queue": names}
)

# A value of the right JSON type for each field name (what a real peer would send).
_RAW_FIELDS = {
    "data",
    "config",
    "metadata",
    "result",
    "request_format",
    "response_format",
    "invocation",
    "observe",
    "trigger_request_format",
    "call_request_format",
}
_ID_FIELDS = {"invocation_id", "worker_id", "previous_worker_id", "reattach_token", "id"}


def _typed(name: str) -> st.SearchStrategy[Any]:
    if name in _RAW_FIELDS:
        return SMALL_FUZZ_JSON
    if name in _ID_FIELDS:
        return uuid_text | names
    if name == "action":
        return st.none() | actions
    if name == "error":
        return st.none() | error_bodies
    if name == "features":
        return st.none() | st.lists(names, max_size=3)
    return st.one_of(names, names, names, st.none())


FRAME_CLASSES = {str(cls.__struct_config__.tag): cls for cls in fr.AnyFrame.__args__}
FIELD_NAMES = sorted(
    {name for cls in FRAME_CLASSES.values() for name in cls.__struct_fields__}
    | set(fr.ErrorBody.__struct_fields__)
    | {"message_type", "caller", "observe_depth"}
)
TYPED = {name: _typed(name) for name in FIELD_NAMES}
REQUIRED = {
    tag: {f.name for f in msgspec.structs.fields(cls) if f.required}
    for tag, cls in FRAME_CLASSES.items()
}
field_values = SMALL_FUZZ_JSON | uuid_text | names | actions | error_bodies
frame_types = st.sampled_from(sorted(FRAME_TYPES))
field_names = st.sampled_from(FIELD_NAMES)


@st.composite
def frame_like(draw: st.DrawFn, *, finite: bool = True) -> dict[str, Any]:
    """A JSON object whose `type` is a real frame type and whose other keys are real names.

    Most fields of the chosen type get a value of the right JSON type, so decoding often
    succeeds and reaches the typed paths; the rest are arbitrary, and so are a few extra keys.
    """
    tag = draw(frame_types)
    body: dict[str, Any] = {}
    for name in FRAME_CLASSES[tag].__struct_fields__:
        if name in REQUIRED[tag]:
            if draw(st.integers(0, 9)) == 0:
                continue  # a required field missing
        elif draw(st.booleans()):
            continue
        body[name] = draw(field_values if draw(st.integers(0, 7)) == 0 else TYPED[name])
    body.update(draw(st.dictionaries(field_names, field_values, max_size=2)))
    body["type"] = tag
    if finite:
        # Keep the document valid JSON, so the only failures left are the frame's own.
        text = json.dumps(body, allow_nan=True)
        if "NaN" in text or "Infinity" in text:
            body = json.loads(text, parse_constant=lambda _: 0)
    return body


def _is_json(text: str) -> bool:
    try:
        msgspec.json.decode(text)
    except msgspec.DecodeError:
        return False
    return True


def _check_decode(data: bytes | str) -> fr.AnyFrame | UnknownFrame | RemoteProtocolError:
    """Decode; return the frame or the RemoteProtocolError; let anything else escape."""
    try:
        frame = decode_frame(data)
    except RemoteProtocolError as exc:
        return exc
    assert isinstance(frame, (fr.Frame, UnknownFrame))
    return frame


# --- (a) arbitrary bytes and text -----------------------------------------------------------


@FUZZ
@given(st.binary(max_size=200))
def test_arbitrary_bytes_decode_or_raise_remote_protocol_error(data: bytes) -> None:
    _check_decode(data)


@FUZZ
@given(st.text(max_size=200))
def test_arbitrary_text_decodes_or_raises_remote_protocol_error(data: str) -> None:
    _check_decode(data)
    _check_decode(data.encode())


@FUZZ
@given(st.text(alphabet='{}[]":,.-+0123456789eEtrufalsn \\', max_size=60))
def test_json_looking_garbage_decodes_or_raises_remote_protocol_error(data: str) -> None:
    _check_decode(data)


# --- (b) arbitrary JSON values --------------------------------------------------------------


@FUZZ
@given(FUZZ_JSON)
def test_arbitrary_json_decodes_or_raises_remote_protocol_error(value: Any) -> None:
    result = _check_decode(json.dumps(value))
    if isinstance(result, UnknownFrame):
        # Only an object with a string `type` we do not know can be an unknown frame.
        assert isinstance(value, dict)
        assert result.type == value["type"]
        assert result.type not in FRAME_TYPES


@FUZZ
@given(st.dictionaries(st.text(max_size=8), SMALL_FUZZ_JSON, max_size=5), st.text(max_size=16))
def test_objects_with_any_type_string_decode_or_raise(body: dict[str, Any], tag: str) -> None:
    body["type"] = tag
    wire = json.dumps(body)
    result = _check_decode(wire)
    if tag not in FRAME_TYPES and _is_json(wire):
        assert isinstance(result, UnknownFrame)
        assert result.type == tag
        assert result.raw == json.dumps(body).encode()


# --- (c) frame-shaped objects ---------------------------------------------------------------


@FUZZ
@given(frame_like())
def test_frame_like_objects_decode_to_their_type_or_name_their_invocation(
    body: dict[str, Any],
) -> None:
    wire = json.dumps(body)
    result = _check_decode(wire)
    if isinstance(result, RemoteProtocolError):
        assert result.frame_type == body["type"]
        invocation_id = body.get("invocation_id")
        if isinstance(invocation_id, str):
            assert result.invocation_id == invocation_id
        else:
            assert result.invocation_id is None
        function_id = body.get("function_id")
        assert result.function_id == (function_id if isinstance(function_id, str) else None)
    else:
        assert not isinstance(result, UnknownFrame)
        assert frame_tag(result) == body["type"]
        # Whatever decoded re-encodes to something that decodes to the same frame.
        assert decode_frame(fr.encode_frame(result)) == result


@FUZZ
@given(frame_like(finite=False))
def test_frame_like_objects_with_non_json_numbers_never_escape(body: dict[str, Any]) -> None:
    _check_decode(json.dumps(body, allow_nan=True))


# --- (d) the cores' receive() ---------------------------------------------------------------


def _open_worker() -> WorkerConnection:
    worker = WorkerConnection()
    worker.receive(fr.encode_frame(fr.WorkerRegistered(worker_id=WORKER_ID, reattach_token=TOKEN)))
    assert worker.state is State.OPEN
    return worker


def _open_engine() -> EngineConnection:
    engine = EngineConnection(WORKER_ID, TOKEN)
    engine.start()
    assert engine.state is State.OPEN
    return engine


def _fatal(events: list[ev.Event]) -> bool:
    return any(
        isinstance(e, ev.EngineRefused) or (isinstance(e, ev.RegistrationRefused) and e.fatal)
        for e in events
    )


def _feed(conn: BaseConnection, data: bytes | str) -> list[ev.Event]:
    """Feed one message; check the events against what decoding it alone says."""
    before = conn.violations
    events = conn.receive(data)
    assert isinstance(events, list)
    assert all(isinstance(e, ev.Event) for e in events)
    try:
        decode_frame(data)
    except RemoteProtocolError:
        blank = not data.strip() or fr.is_telemetry(data)
        if blank:
            assert events == []
        else:
            assert isinstance(events[0], ev.ProtocolViolation)
            assert conn.violations == before + 1
    violations = sum(isinstance(e, ev.ProtocolViolation) for e in events)
    assert conn.violations >= before + violations
    return events


def _feed_all(conn: BaseConnection, messages: Sequence[bytes | str]) -> None:
    for data in messages:
        events = _feed(conn, data)
        if _fatal(events):
            # The engine refused the worker for good (spec §3.11, §3.16): draining is right.
            assert conn.state is State.CLOSING
            return
        assert conn.state is State.OPEN


messages = st.one_of(
    st.binary(max_size=120),
    st.text(max_size=120),
    FUZZ_JSON.map(json.dumps),
    frame_like().map(json.dumps),
    frame_like().map(lambda body: json.dumps(body).encode()),
    st.sampled_from([b"OTLP{}", b"MTRC\x00", b"LOGS", b"   ", "", "\n\t"]),
)


@FUZZ_BATCH
@given(st.lists(messages, min_size=1, max_size=5))
def test_worker_receive_never_raises_and_stays_open(batch: list[bytes | str]) -> None:
    _feed_all(_open_worker(), batch)


@FUZZ_BATCH
@given(st.lists(messages, min_size=1, max_size=5))
def test_engine_receive_never_raises_and_stays_open(batch: list[bytes | str]) -> None:
    _feed_all(_open_engine(), batch)


@FUZZ_BATCH
@given(st.lists(frame_like().map(json.dumps), min_size=1, max_size=5))
def test_cores_keep_their_tables_consistent_under_frame_like_input(batch: list[str]) -> None:
    """Whatever arrives, every id a core tracks is text and tracked once."""
    worker, engine = _open_worker(), _open_engine()
    _feed_all(worker, batch)
    _feed_all(engine, batch)
    for table in (worker.pending_calls, worker.in_flight, engine.awaiting_results):
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in table.items())
    assert worker.pending_calls == {}  # nobody called anything: results are all late
    assert engine.executing == {}  # nothing was dispatched: results are all late


# --- inputs that once escaped as other exceptions ----------------------------------------


def _deep(depth: int) -> bytes:
    return b'{"type":"ping","x":' + b"[" * depth + b"]" * depth + b"}"


def test_deeply_nested_json_is_a_remote_protocol_error() -> None:
    with pytest.raises(RemoteProtocolError):
        decode_frame(_deep(100_000))


def test_deeply_nested_json_is_a_violation_for_the_engine() -> None:
    engine = _open_engine()
    [violation] = engine.receive(_deep(100_000))
    assert isinstance(violation, ev.ProtocolViolation)
    assert engine.state is State.OPEN


_CALL_ID = "0b7a9c2e-4f6d-4e1a-9a53-2f8c1d7e6b40"


def _deep_call(depth: int, *, id_first: bool) -> bytes:
    """A call whose payload is nested `depth` deep; its strings hold brackets and escaped
    quotes, and a nested member is named like the top-level ones, to mislead a scan."""
    nested = b'{"invocation_id":"nested","s":"]}\\"[{","a":[' * depth + b"]}" * depth
    id_member = b'"invocation_id":"' + _CALL_ID.encode() + b'"'
    head = b'{"type":"invokefunction",' + (id_member + b"," if id_first else b"")
    tail = b"" if id_first else b"," + id_member
    return head + b'"function_id":"svc::fn","data":' + nested + tail + b"}"


@pytest.mark.parametrize("id_first", [True, False])
def test_a_call_nested_too_deeply_still_names_its_invocation(id_first: bool) -> None:
    with pytest.raises(RemoteProtocolError) as failed:
        decode_frame(_deep_call(1000, id_first=id_first))
    assert failed.value.frame_type == "invokefunction"
    assert failed.value.invocation_id == _CALL_ID
    assert failed.value.function_id == "svc::fn"


def test_a_call_nested_too_deeply_is_answered_malformed_frame_by_either_core() -> None:
    engine = _open_engine()
    events = engine.receive(_deep_call(1000, id_first=False))
    [invalid] = [e for e in events if isinstance(e, ev.InvalidCall)]
    assert (invalid.invocation_id, invalid.code) == (_CALL_ID, "malformed_frame")
    worker = _open_worker()
    events = worker.receive(_deep_call(1000, id_first=True))
    [refused] = [e for e in events if isinstance(e, ev.InvalidInvocation)]
    assert refused.invocation_id == _CALL_ID


def test_lone_surrogate_text_is_a_remote_protocol_error() -> None:
    with pytest.raises(RemoteProtocolError):
        decode_frame('{"type":"ping","x":"\ud800"}')


def test_moderately_nested_payloads_still_decode() -> None:
    """The nesting a real payload has (well below serde_json's limit of 128) is fine."""
    frame = decode_frame(_deep(120))
    assert frame == fr.Ping()
    nested: Any = 1
    for _ in range(120):
        nested = [nested]
    call = decode_frame(json.dumps({"type": "invokefunction", "function_id": "f", "data": nested}))
    assert isinstance(call, fr.InvokeFunction)
    assert msgspec.json.decode(call.data) == nested
