"""Golden frame vectors: every JSON example of the wire spec, decoded and re-encoded.

`tests/data/golden_frames.json` holds one vector per spec example (`iii-protocol.md` §3, §4.2,
§5, §9, §15), with the spec's "…" replaced by concrete values. Each vector says which frame
class the JSON must decode to (`type`) and which JSON object re-encoding that frame must
give (`canonical`): the input minus the keys we drop on purpose (unknown keys such as Node's
`message_type`, and `null` in optional typed fields), plus `data`/`config` sent as `null`
when they were missing. A `null` in an optional raw-JSON field (`result`, `metadata`, the
formats) is JSON like any other value and is carried verbatim; the vectors' `note` says so
where it matters. `canonical` is written by hand, never computed by the codec under test.

`direction` says who sends the frame, so each vector is also fed to the core that receives
it, which must accept it without reporting a violation.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from anyiii._protocol import events as ev
from anyiii._protocol import frames as fr
from anyiii._protocol.engine import EngineConnection
from anyiii._protocol.frames import FRAME_TYPES, UnknownFrame, decode_frame, encode_frame
from anyiii._protocol.ids import is_uuid
from anyiii._protocol.worker import WorkerConnection

GOLDEN_PATH = Path(__file__).resolve().parent.parent / "data" / "golden_frames.json"
VECTORS: list[dict[str, Any]] = json.loads(GOLDEN_PATH.read_text(encoding="utf-8"))

WORKER_ID = "3f2b8c1e-9d4a-4e7b-8c21-5a6f0d9e7b13"
TOKEN = "b7e4d2a9-1c3f-4a8e-9b60-2d7c5e8f1a04"

# Spec sections the brief requires a vector for; a vector's `spec` may name several.
REQUIRED_SECTIONS = (
    "§3.1",
    "§3.2",
    "§3.3",
    "§3.4",
    "§3.5",
    "§3.6",
    "§3.7",
    "§3.8",
    "§3.9",
    "§3.10",
    "§3.11",
    "§3.12",
    "§3.13",
    "§3.16",
    "§4.2",
    "§5.1",
    "§5.2",
    "§9",
    "§15.2",
)

UUID_KEYS = ("invocation_id", "worker_id", "previous_worker_id", "reattach_token")


def _params(vectors: list[dict[str, Any]]) -> list[Any]:
    """One pytest param per vector, named after it."""
    return [pytest.param(vector, id=vector["name"]) for vector in vectors]


KNOWN = [v for v in VECTORS if v["type"] != "UnknownFrame"]
UNKNOWN = [v for v in VECTORS if v["type"] == "UnknownFrame"]


def _wire(vector: dict[str, Any]) -> str:
    return json.dumps(vector["json"], ensure_ascii=False)


# --- the data file itself -------------------------------------------------------------------


def test_vectors_are_well_formed() -> None:
    names = [v["name"] for v in VECTORS]
    assert len(names) == len(set(names)), "vector names must be unique"
    for vector in VECTORS:
        assert {"name", "spec", "json", "type", "canonical", "direction"} <= set(vector)
        assert set(vector) <= {"name", "spec", "json", "type", "canonical", "direction", "note"}
        assert vector["direction"] in {"W→E", "E→W", "both"}
        assert vector["type"] == "UnknownFrame" or hasattr(fr, vector["type"])
        assert "…" not in json.dumps(vector, ensure_ascii=False), vector["name"]


def test_every_required_spec_section_has_a_vector() -> None:
    sections = {s for v in VECTORS for s in v["spec"].split()}
    missing = [s for s in REQUIRED_SECTIONS if s not in sections]
    assert not missing


def test_every_frame_type_has_a_vector() -> None:
    tags = {v["json"]["type"] for v in KNOWN}
    assert tags == FRAME_TYPES


def _uuid_values(value: Any) -> list[str]:
    found: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if key in UUID_KEYS and isinstance(item, str):
                found.append(item)
            found.extend(_uuid_values(item))
    elif isinstance(value, list):
        for item in value:
            found.extend(_uuid_values(item))
    return found


def test_ids_in_vectors_are_uuid_text() -> None:
    for vector in VECTORS:
        frame = vector["json"]
        ids = _uuid_values(frame)
        if frame["type"] in {"registertrigger", "triggerregistrationresult", "unregistertrigger"}:
            ids.append(frame["id"])
        if frame["type"] == "registrationrejected" and frame["owner_worker_id"]:
            ids.append(frame["owner_worker_id"])
        for text in ids:
            assert is_uuid(text), (vector["name"], text)


# --- decode, re-encode, round trip ----------------------------------------------------------


@pytest.mark.parametrize("vector", _params(KNOWN))
def test_decodes_to_the_expected_frame(vector: dict[str, Any]) -> None:
    wire = _wire(vector)
    frame = decode_frame(wire)
    assert type(frame).__name__ == vector["type"]
    # A text frame and the same JSON in a binary frame decode alike (spec §1.1).
    assert decode_frame(wire.encode()) == frame


@pytest.mark.parametrize("vector", _params(KNOWN))
def test_reencodes_to_the_canonical_json(vector: dict[str, Any]) -> None:
    frame = decode_frame(_wire(vector))
    assert not isinstance(frame, UnknownFrame)
    assert json.loads(encode_frame(frame)) == vector["canonical"]


@pytest.mark.parametrize("vector", _params(KNOWN))
def test_encoding_is_stable(vector: dict[str, Any]) -> None:
    frame = decode_frame(_wire(vector))
    assert not isinstance(frame, UnknownFrame)
    encoded = encode_frame(frame)
    again = decode_frame(encoded)
    assert again == frame
    assert encode_frame(again) == encoded
    # The canonical JSON is itself a fixed point of the codec.
    assert decode_frame(json.dumps(vector["canonical"])) == frame


@pytest.mark.parametrize("vector", _params(UNKNOWN))
def test_unknown_types_decode_to_unknown_frame(vector: dict[str, Any]) -> None:
    wire = _wire(vector)
    frame = decode_frame(wire)
    assert isinstance(frame, UnknownFrame)
    assert frame.type == vector["json"]["type"]
    assert frame.raw == wire.encode()
    assert vector["canonical"] is None


# --- each vector is accepted by the core that receives it -----------------------------------

_BAD = (ev.ProtocolViolation, ev.InvalidCall, ev.InvalidInvocation)


def _open_engine() -> EngineConnection:
    engine = EngineConnection(WORKER_ID, TOKEN)
    engine.start()
    return engine


def _prime_engine(engine: EngineConnection, vector: dict[str, Any]) -> None:
    """Put the engine in the state where the vector is a legal answer."""
    frame = vector["json"]
    if frame["type"] == "triggerregistrationresult":
        engine.forward_binding(
            fr.RegisterTrigger(
                id=frame["id"], trigger_type=frame["trigger_type"], function_id=frame["function_id"]
            )
        )


@pytest.mark.parametrize(
    "vector", [pytest.param(v, id=v["name"]) for v in VECTORS if v["direction"] != "E→W"]
)
def test_engine_core_accepts_worker_frames(vector: dict[str, Any]) -> None:
    engine = _open_engine()
    _prime_engine(engine, vector)
    events = engine.receive(_wire(vector))
    assert events
    assert not [e for e in events if isinstance(e, _BAD)], events
    assert engine.violations == 0


@pytest.mark.parametrize(
    "vector", [pytest.param(v, id=v["name"]) for v in VECTORS if v["direction"] != "W→E"]
)
def test_worker_core_accepts_engine_frames(vector: dict[str, Any]) -> None:
    worker = WorkerConnection()
    events = worker.receive(_wire(vector))
    assert not [e for e in events if isinstance(e, _BAD)], events
    assert worker.violations == 0
    if vector["json"]["type"] == "triggerregistrationresult" and "error" not in vector["json"]:
        assert events == []  # a success report needs no action (spec §3.5)
    else:
        assert events


def test_worker_sees_the_spec_meaning_of_key_vectors() -> None:
    """Spot checks that the decoded frames mean what the spec says, through the worker core."""
    by_name = {v["name"]: v for v in VECTORS}
    worker = WorkerConnection()
    [registered] = worker.receive(_wire(by_name["workerregistered/with-features"]))
    assert registered == ev.Registered(WORKER_ID, TOKEN, ("observe.v1", "local-dispatch.v1"))
    [old] = WorkerConnection().receive(_wire(by_name["workerregistered/old-engine"]))
    assert old == ev.Registered(WORKER_ID, None, ())

    [conflict] = worker.receive(_wire(by_name["registrationrejected/function-conflict"]))
    assert isinstance(conflict, ev.RegistrationRefused)
    assert not conflict.fatal
    assert conflict.namespace == "default"
    assert conflict.function_id == "greet"
    [fatal] = worker.receive(_wire(by_name["registrationrejected/worker-conflict"]))
    assert isinstance(fatal, ev.RegistrationRefused)
    assert fatal.fatal
    assert fatal.worker_name == "build-host:4242"

    [refused] = WorkerConnection().receive(_wire(by_name["error/auth"]))
    assert refused == ev.EngineRefused(fr.ErrorBody(code="AUTH_ERROR", message="invalid token"))


def test_engine_sees_the_spec_meaning_of_key_vectors() -> None:
    by_name = {v["name"]: v for v in VECTORS}
    engine = _open_engine()
    [call] = engine.receive(_wire(by_name["invokefunction/python-workers-register"]))
    assert isinstance(call, ev.CallRequested)
    assert call.call.action == fr.VoidAction()
    assert call.call.invocation_id is None
    assert (
        fr.decode_value(call.call.data)
        == by_name["invokefunction/python-workers-register"]["json"]["data"]
    )
    assert engine.awaiting_results == {}

    [missing] = engine.receive(_wire(by_name["lenient/invokefunction-missing-data"]))
    assert isinstance(missing, ev.CallRequested)
    assert missing.call.data == fr.NULL

    [sync] = engine.receive(_wire(by_name["invokefunction/sync-call"]))
    assert isinstance(sync, ev.CallRequested)
    assert dict(engine.awaiting_results) == {"9f3c6a2e-4b1d-4c8f-a7e2-1d5b9c3e6f80": "math::add"}

    [enqueue] = engine.receive(_wire(by_name["invokefunction/enqueue-call"]))
    assert isinstance(enqueue, ev.CallRequested)
    assert enqueue.call.action == fr.EnqueueAction(queue="jobs")
    assert len(engine.awaiting_results) == 2

    [unbind] = engine.receive(_wire(by_name["unregistertriggertype/node"]))
    assert unbind == ev.TriggerTypeUnregistered("webhook", None)

    [reattach] = engine.receive(_wire(by_name["reattach/with-token"]))
    assert reattach == ev.ReattachRequested(WORKER_ID, TOKEN)


# --- required keys of frames built in code --------------------------------------------------


def test_registertriggertype_keeps_its_required_description() -> None:
    wire = json.loads(encode_frame(fr.RegisterTriggerType(id="webhook")))
    assert wire == {"type": "registertriggertype", "id": "webhook", "description": ""}


def test_registrationrejected_keeps_its_required_keys() -> None:
    rejection = fr.RegistrationRejected(
        code="FUNCTION_NAMESPACE_CONFLICT",
        namespace="default",
        function_id="greet",
        owner_worker_id="",
    )
    assert json.loads(encode_frame(rejection)) == {
        "type": "registrationrejected",
        "code": "FUNCTION_NAMESPACE_CONFLICT",
        "namespace": "default",
        "function_id": "greet",
        "owner_worker_id": "",
    }


def test_equal_frames_encode_alike() -> None:
    literal = fr.RegistrationRejected(code="WORKER_NAMESPACE_CONFLICT", namespace="default")
    built = fr.RegistrationRejected(
        code="WORKER_NAMESPACE_CONFLICT", namespace="".join(["def", "ault"])
    )
    assert literal == built
    assert encode_frame(literal) == encode_frame(built)
