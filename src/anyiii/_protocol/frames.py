"""Every frame of the iii worker protocol as a frozen msgspec Struct, and the one codec.

The frames form one tagged union: the JSON field `type` holds the class name in lower case
(`RegisterFunction` is `"registerfunction"`), which is exactly the engine's own naming. One
encoder and one decoder are built once and reused, because building them is the expensive
part of msgspec.

Leniency follows the contract (`iii-protocol.md` §1.1 and §15) and nothing more:

* unknown fields are ignored (Node adds `message_type` to some frames);
* a missing `data` (invokefunction) or `config` (registertrigger) reads as JSON null;
* `null` in an optional field means the same as the field being absent;
* a frame whose `type` we do not know decodes to `UnknownFrame`, never an exception, so a
  newer peer can never break an older one;
* anything undecodable raises `RemoteProtocolError`, and nothing else.

User JSON (payloads, results, configs, metadata, schemas) stays `msgspec.Raw`: the bytes are
validated as JSON but not turned into Python objects until a handler needs them, so routing a
frame costs the same whatever its payload holds.

Encoding omits absent optional fields, except `data` and `config`, which are always sent
(as `null` when empty) because the Rust engine requires those two keys.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final, TypeAlias

import msgspec
from msgspec import UNSET, Raw, UnsetType, field

from .._errors import RemoteProtocolError
from .codes import DEFAULT_NAMESPACE
from .shallow import too_deep

__all__ = [
    "FRAME_DECODE_ERRORS",
    "FRAME_TYPES",
    "NULL",
    "AnyFrame",
    "ChannelEndpoint",
    "EnqueueAction",
    "Error",
    "ErrorBody",
    "Frame",
    "InvocationResult",
    "InvokeFunction",
    "Ping",
    "Pong",
    "Reattach",
    "RegisterFunction",
    "RegisterService",
    "RegisterTrigger",
    "RegisterTriggerType",
    "RegistrationRejected",
    "StreamChannelRef",
    "TriggerAction",
    "TriggerRegistrationResult",
    "UnknownFrame",
    "UnregisterFunction",
    "UnregisterTrigger",
    "UnregisterTriggerType",
    "VoidAction",
    "WorkerRegistered",
    "absent_if_none",
    "as_channel_ref",
    "decode_frame",
    "decode_valid_frame",
    "decode_value",
    "encode_frame",
    "encode_value",
    "is_telemetry",
    "present",
    "to_raw",
]

NULL: Final = Raw(b"null")
"""The JSON `null`, as the value of a payload field that must be sent but carries nothing."""


def _null() -> Raw:
    # A default_factory (not a default) keeps a field on the wire even at its default:
    # msgspec omits plain defaults, but never the value of a custom factory. That is how
    # fields the Rust engine requires (`data`, `config`, `description`, `namespace`, ...)
    # stay lenient on decode yet always present on encode.
    return NULL


def _empty() -> str:
    return ""


def _default_namespace() -> str:
    return DEFAULT_NAMESPACE


class ErrorBody(msgspec.Struct, frozen=True, omit_defaults=True):
    """The error object carried by `invocationresult`, `triggerregistrationresult`, `error`."""

    code: str
    message: str
    stacktrace: str | None = None


class StreamChannelRef(msgspec.Struct, frozen=True):
    """A reference to one end of a data channel, found inside payloads (spec §3.15, §12).

    `direction` is `"read"` or `"write"`: the end its holder may open.
    """

    channel_id: str
    access_key: str
    direction: str


_CHANNEL_REF_KEYS: Final = frozenset(("channel_id", "access_key", "direction"))
_CHANNEL_DIRECTIONS: Final = ("read", "write")


def as_channel_ref(value: object) -> StreamChannelRef | None:
    """The ref `value` spells, if it is a decoded JSON object with exactly the three string
    fields of a `StreamChannelRef` and a valid direction (spec §3.15); None otherwise.

    Exactly three: an object that merely has these keys among others is user data."""
    if type(value) is not dict or len(value) != 3 or value.keys() != _CHANNEL_REF_KEYS:
        return None
    channel_id, access_key = value["channel_id"], value["access_key"]
    direction = value["direction"]
    if (
        type(channel_id) is not str
        or type(access_key) is not str
        or direction not in _CHANNEL_DIRECTIONS
    ):
        return None
    return StreamChannelRef(channel_id, access_key, direction)


class ChannelEndpoint:
    """Base of the objects that stand for one end of a data channel in user code (the
    worker's channel reader and writer). Put in a payload or a result, one is sent as its
    `StreamChannelRef`, so the receiving side can open that end (spec §3.15).

    It lives here, without any I/O, so that the one value encoder knows it.
    """

    __slots__ = ()

    def wire_ref(self) -> StreamChannelRef:
        """The ref this end is sent as; raises TypeError if it can no longer be handed on."""
        raise NotImplementedError


class VoidAction(msgspec.Struct, frozen=True, tag_field="type", tag="void"):
    """Fire and forget: the engine runs the target and sends no result back."""


class EnqueueAction(msgspec.Struct, frozen=True, tag_field="type", tag="enqueue"):
    """Hand the call to a queue; the caller gets a receipt instead of the result."""

    queue: str


TriggerAction: TypeAlias = VoidAction | EnqueueAction


class Frame(msgspec.Struct, frozen=True, omit_defaults=True, tag_field="type", tag=str.lower):
    """Base of every protocol frame. The tag is the lower-cased class name."""


class RegisterFunction(Frame, frozen=True, kw_only=True):
    """W→E: this connection serves `id` (spec §3.1)."""

    id: str
    description: str | None = None
    request_format: Raw | UnsetType = UNSET
    response_format: Raw | UnsetType = UNSET
    metadata: Raw | UnsetType = UNSET
    invocation: Raw | UnsetType = UNSET
    """An `HttpInvocationRef`, kept raw so that a bad one refuses this function alone."""
    observe: Raw | UnsetType = UNSET


class UnregisterFunction(Frame, frozen=True, kw_only=True):
    """W→E: this connection no longer serves `id` (spec §3.2)."""

    id: str


class RegisterTriggerType(Frame, frozen=True, kw_only=True):
    """W→E: this connection provides trigger type `id` (spec §3.3)."""

    id: str
    description: str = field(default_factory=_empty)
    trigger_request_format: Raw | UnsetType = UNSET
    call_request_format: Raw | UnsetType = UNSET
    namespace: str | None = None


class UnregisterTriggerType(Frame, frozen=True, kw_only=True):
    """W→E: stop providing trigger type `id` (spec §3.16; the Rust engine ignores it)."""

    id: str
    namespace: str | None = None
    description: str | None = None


class RegisterTrigger(Frame, frozen=True, kw_only=True):
    """W→E binding request, or E→W delivery of a binding to its provider (spec §3.4)."""

    id: str
    trigger_type: str
    function_id: str
    config: Raw = field(default_factory=_null)
    metadata: Raw | UnsetType = UNSET
    namespace: str | None = None
    trigger_namespace: str | None = None


class TriggerRegistrationResult(Frame, frozen=True, kw_only=True):
    """W→E provider answer to a binding, or E→W report of a failed binding (spec §3.5)."""

    id: str
    trigger_type: str
    function_id: str
    error: ErrorBody | None = None


class UnregisterTrigger(Frame, frozen=True, kw_only=True):
    """Remove binding `id` (W→E), or tell its provider it is gone (E→W) (spec §3.6)."""

    id: str
    trigger_type: str | None = None


class InvokeFunction(Frame, frozen=True, kw_only=True):
    """A call (W→E) or a dispatch to the worker that serves the function (E→W) (spec §3.7).

    `invocation_id` is None for void calls; `action` None means a synchronous call.
    """

    function_id: str
    invocation_id: str | None = None
    data: Raw = field(default_factory=_null)
    traceparent: str | None = None
    baggage: str | None = None
    action: TriggerAction | None = None
    metadata: Raw | UnsetType = UNSET
    namespace: str | None = None


class InvocationResult(Frame, frozen=True, kw_only=True):
    """The outcome of one invocation; `error` wins over `result` (spec §3.8)."""

    invocation_id: str
    function_id: str
    result: Raw | UnsetType = UNSET
    error: ErrorBody | None = None
    traceparent: str | None = None
    baggage: str | None = None


class RegisterService(Frame, frozen=True, kw_only=True):
    """W→E console grouping only; no SDK sends it (spec §3.12)."""

    id: str
    name: str = ""
    description: str | None = None
    parent_service_id: str | None = None


class Ping(Frame, frozen=True):
    """Application-level ping; answered with `Pong` (spec §3.13)."""


class Pong(Frame, frozen=True):
    """Application-level pong (spec §3.13)."""


class Reattach(Frame, frozen=True, kw_only=True):
    """W→E first frame of a reconnection: retire the previous connection (spec §3.10)."""

    previous_worker_id: str
    reattach_token: str | None = None


class WorkerRegistered(Frame, frozen=True, kw_only=True):
    """E→W first frame of every connection (spec §3.9)."""

    worker_id: str
    reattach_token: str | None = None
    features: tuple[str, ...] | None = None


class RegistrationRejected(Frame, frozen=True, kw_only=True):
    """E→W a registration was refused (spec §3.11)."""

    code: str
    namespace: str = field(default_factory=_default_namespace)
    owner_worker_id: str = field(default_factory=_empty)
    worker_name: str | None = None
    function_id: str | None = None


class Error(Frame, frozen=True, kw_only=True):
    """E→W handshake refusal (auth), followed by a close (spec §3.16)."""

    error: ErrorBody


AnyFrame: TypeAlias = (
    RegisterFunction
    | UnregisterFunction
    | RegisterTriggerType
    | UnregisterTriggerType
    | RegisterTrigger
    | TriggerRegistrationResult
    | UnregisterTrigger
    | InvokeFunction
    | InvocationResult
    | RegisterService
    | Ping
    | Pong
    | Reattach
    | WorkerRegistered
    | RegistrationRejected
    | Error
)

FRAME_TYPES: Final[frozenset[str]] = frozenset(
    str(cls.__struct_config__.tag) for cls in AnyFrame.__args__
)
"""The `type` tag of every frame this module knows."""


class UnknownFrame(msgspec.Struct, frozen=True):
    """A well-formed frame whose `type` this version does not know. Ignore it, don't fail."""

    type: str
    raw: bytes


class _Envelope(msgspec.Struct):
    """The least a frame must have to be diagnosed: what type it claims and whom it names."""

    type: str
    id: object = None
    invocation_id: object = None
    function_id: object = None


def _user_value(value: object) -> object:
    """How to encode user values msgspec does not know: a channel end as its ref, and
    pydantic models (which code written for the official SDK returns), dumped by alias as
    that SDK does. An http response model dumped that way says `statusCode`, which the real
    engine ignores (spec §15.3), so a top-level `statusCode` is sent as `status_code`
    instead."""
    if isinstance(value, ChannelEndpoint):
        return value.wire_ref()
    dump = getattr(value, "model_dump", None)
    if not callable(dump):
        raise TypeError(f"cannot encode a {type(value).__name__} as JSON")
    dumped = dump(mode="json", by_alias=True)
    if isinstance(dumped, dict) and "statusCode" in dumped and "status_code" not in dumped:
        dumped["status_code"] = dumped.pop("statusCode")
    return dumped


_encoder: Final = msgspec.json.Encoder()
_value_encoder: Final = msgspec.json.Encoder(enc_hook=_user_value)
_decoder: Final = msgspec.json.Decoder(AnyFrame)
_envelope_decoder: Final = msgspec.json.Decoder(_Envelope)
_value_decoder: Final = msgspec.json.Decoder()

_TELEMETRY_PREFIXES: Final = (b"OTLP", b"MTRC", b"LOGS")


encode_frame: Final[Callable[[Frame], bytes]] = _encoder.encode
"""Encode one frame as the UTF-8 JSON text of one WebSocket message.

The encoder's own method rather than a function around it: every message sent takes
this path, and a wrapper's call was a measurable share of a routed call."""

decode_valid_frame: Final[Callable[[bytes | str], AnyFrame]] = _decoder.decode
"""`decode_frame`'s first step alone, for the receive paths: returns a known, valid frame
or raises `FRAME_DECODE_ERRORS`; on an error, call `decode_frame` for what it means (an
unknown frame type or a `RemoteProtocolError` that says which invocation it named)."""

FRAME_DECODE_ERRORS: Final = (msgspec.DecodeError, RecursionError, UnicodeError)
"""What `decode_valid_frame` raises on input that is not a valid known frame."""


def decode_frame(data: bytes | str) -> AnyFrame | UnknownFrame:
    """Decode one WebSocket message.

    Returns the frame, or `UnknownFrame` for a well-formed frame of an unknown `type`.
    Raises `RemoteProtocolError` (and nothing else) for anything that is not a valid frame;
    when the bad frame still names an invocation, the error says which, so the party
    waiting on it can be failed instead of left hanging.
    """
    try:
        frame: AnyFrame = _decoder.decode(data)
    except msgspec.DecodeError as exc:
        return _diagnose(data, exc)
    except RecursionError as exc:  # nested too deeply: say which call, if it names one
        raise too_deep(data, exc, FRAME_TYPES) from None
    except UnicodeError as exc:  # text that is not valid Unicode: still just bad input
        raise RemoteProtocolError(f"not a protocol frame: {exc!r}") from None
    return frame


def _diagnose(data: bytes | str, exc: msgspec.DecodeError) -> UnknownFrame:
    """Slow path of `decode_frame`: tell an unknown type apart from a broken frame."""
    try:
        envelope = _envelope_decoder.decode(data)
    except RecursionError as deep:
        raise too_deep(data, deep, FRAME_TYPES) from None
    except (msgspec.DecodeError, UnicodeError):
        raise RemoteProtocolError(f"not a protocol frame: {exc}") from None
    if envelope.type not in FRAME_TYPES:
        raw = data.encode() if isinstance(data, str) else bytes(data)
        return UnknownFrame(type=envelope.type, raw=raw)
    raise RemoteProtocolError(
        f"malformed {envelope.type!r} frame: {exc}",
        frame_type=envelope.type,
        invocation_id=_text_or_none(envelope.invocation_id),
        function_id=_text_or_none(envelope.function_id),
        frame_id=_text_or_none(envelope.id),
    ) from None


def _text_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None


def is_telemetry(data: bytes | str) -> bool:
    """True for binary telemetry that legacy SDKs sent on the worker socket (spec §1.1)."""
    return not isinstance(data, str) and bytes(data[:4]) in _TELEMETRY_PREFIXES


def to_raw(value: object) -> Raw:
    """Encode any msgspec-encodable value as a `Raw` JSON fragment for a payload field."""
    if value is None:
        return NULL
    if isinstance(value, Raw):
        return value
    return Raw(_value_encoder.encode(value))


encode_value: Final[Callable[[object], bytes]] = _value_encoder.encode
"""Encode a user value (handler result, payload) to JSON bytes. (The encoder's own method,
as `encode_frame` is: payloads and results cross it on every call.)"""

decode_value: Final[Callable[[Raw | bytes | str], Any]] = _value_decoder.decode
"""Decode a `Raw` payload into plain Python objects (dict, list, str, ...). (The decoder's
own method: every call's payload and result cross it.)"""


def present(value: Raw | UnsetType) -> Raw | None:
    """An optional JSON field's value, with absent and `null` both read as None (spec §1.1)."""
    if value is UNSET or value == NULL:
        return None
    return value


def absent_if_none(value: Raw | None) -> Raw | UnsetType:
    """The inverse of `present`: None becomes an absent field (left out when encoding)."""
    return UNSET if value is None else value
