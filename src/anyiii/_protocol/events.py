"""What the protocol cores tell the I/O layer after reading a frame.

Events are frozen msgspec Structs: cheap to build, comparable, printable. Worker-role events
come first, engine-role events after, and a few are shared. User JSON stays `msgspec.Raw`;
an optional JSON value that was absent or `null` is None here.
"""

from __future__ import annotations

import msgspec
from msgspec import Raw

from .._errors import RemoteProtocolError
from .frames import (
    ErrorBody,
    InvocationResult,
    InvokeFunction,
    RegisterFunction,
    RegisterService,
    RegisterTrigger,
    RegisterTriggerType,
    TriggerRegistrationResult,
)

__all__ = [
    "BindingAnswered",
    "CallCompleted",
    "CallFailed",
    "CallRequested",
    "ConnectionLost",
    "EngineRefused",
    "Event",
    "FunctionRegistered",
    "FunctionUnregistered",
    "InvalidCall",
    "InvalidInvocation",
    "InvocationRequested",
    "LateResult",
    "PingReceived",
    "PongReceived",
    "ProtocolViolation",
    "ReattachRequested",
    "Registered",
    "RegistrationRefused",
    "ResultReceived",
    "ServiceRegistered",
    "TriggerBindingRemoved",
    "TriggerBindingRequested",
    "TriggerRegistered",
    "TriggerRegistrationFailed",
    "TriggerTypeRegistered",
    "TriggerTypeUnregistered",
    "TriggerUnregistered",
    "UnknownFrameReceived",
]


class Event(msgspec.Struct, frozen=True):
    """Base class of every event a core returns from `receive()`."""


# --- shared -------------------------------------------------------------------------------


class PingReceived(Event, frozen=True):
    """The peer sent an application-level `ping`; answer it with `pong()`."""


class PongReceived(Event, frozen=True):
    """The peer answered our application-level `ping`."""


class UnknownFrameReceived(Event, frozen=True):
    """A well-formed frame of a type this version does not know; ignore it (spec §1.1)."""

    type: str
    raw: bytes


class ProtocolViolation(Event, frozen=True):
    """The peer sent something malformed or out of place. It was dropped; log it.

    The connection stays usable: the protocol says bad frames are dropped, not fatal.
    """

    error: RemoteProtocolError


class LateResult(Event, frozen=True):
    """A result arrived for an id nobody waits for any more (cancelled, timed out, unknown).

    It was dropped and counted in the core's `late_results`.
    """

    invocation_id: str
    function_id: str


# --- worker role --------------------------------------------------------------------------


class Registered(Event, frozen=True):
    """`workerregistered`: the engine named this connection."""

    worker_id: str
    reattach_token: str | None
    features: tuple[str, ...]


class InvocationRequested(Event, frozen=True, kw_only=True):
    """The engine asks us to run a function. Answer with `complete()` or `fail()`.

    `invocation_id` is None only for a fire-and-forget dispatch, which takes no answer.
    """

    invocation_id: str | None
    function_id: str
    data: Raw
    metadata: Raw | None = None
    traceparent: str | None = None
    baggage: str | None = None


class InvalidInvocation(Event, frozen=True):
    """The engine sent a malformed `invokefunction` that still names an invocation.

    It is in flight like any other: answer it with `fail()` so its caller is not left waiting.
    """

    invocation_id: str
    function_id: str
    message: str


class CallCompleted(Event, frozen=True):
    """A call we made returned; `result` is None when the function returned nothing."""

    invocation_id: str
    function_id: str
    result: Raw | None


class CallFailed(Event, frozen=True):
    """A call we made failed; `error` is the wire error body, passed through unchanged."""

    invocation_id: str
    function_id: str
    error: ErrorBody


class TriggerRegistrationFailed(Event, frozen=True):
    """A trigger we bound was refused by its provider or by the engine."""

    trigger_id: str
    trigger_type: str
    function_id: str
    error: ErrorBody


class TriggerBindingRequested(Event, frozen=True):
    """Someone bound a trigger of a type we provide. Answer with `answer_binding()`."""

    binding: RegisterTrigger


class TriggerBindingRemoved(Event, frozen=True):
    """A binding of a type we provide was removed; stop firing it."""

    trigger_id: str
    trigger_type: str | None


class RegistrationRefused(Event, frozen=True, kw_only=True):
    """`registrationrejected`. `fatal` ones (any code but a function conflict) end the worker."""

    code: str
    namespace: str
    owner_worker_id: str
    fatal: bool
    function_id: str | None = None
    worker_name: str | None = None


class EngineRefused(Event, frozen=True):
    """The handshake `error` frame (e.g. `AUTH_ERROR`); the engine closes next. Fatal."""

    error: ErrorBody


class ConnectionLost(Event, frozen=True):
    """The transport is gone. Everything in flight was dropped; these are its ids.

    Worker role: `calls` are our outgoing calls still waiting (fail them with
    `invocation_stopped`); `invocations` are inbound ones we had not answered; `bindings` are
    binding requests we had not answered. Engine role: `calls` are the calls this connection
    made and was waiting on; `invocations` are the dispatches it was executing.
    Each tuple entry is `(id, function_id)` (for bindings: `(trigger_id, trigger_type)`).
    """

    calls: tuple[tuple[str, str], ...] = ()
    invocations: tuple[tuple[str, str], ...] = ()
    bindings: tuple[tuple[str, str], ...] = ()


# --- engine role --------------------------------------------------------------------------


class FunctionRegistered(Event, frozen=True):
    """The worker serves a function."""

    frame: RegisterFunction


class FunctionUnregistered(Event, frozen=True):
    """The worker stopped serving a function."""

    function_id: str


class TriggerRegistered(Event, frozen=True):
    """The worker bound a trigger."""

    frame: RegisterTrigger


class TriggerUnregistered(Event, frozen=True):
    """The worker removed a trigger binding."""

    trigger_id: str
    trigger_type: str | None


class TriggerTypeRegistered(Event, frozen=True):
    """The worker provides a trigger type."""

    frame: RegisterTriggerType


class TriggerTypeUnregistered(Event, frozen=True):
    """The worker stopped providing a trigger type."""

    trigger_type: str
    namespace: str | None


class BindingAnswered(Event, frozen=True):
    """A provider answered a binding we forwarded to it (`error` None means accepted)."""

    frame: TriggerRegistrationResult


class ServiceRegistered(Event, frozen=True):
    """`registerservice` (console grouping only)."""

    frame: RegisterService


class CallRequested(Event, frozen=True):
    """The worker calls a function. Sync and enqueue calls await `deliver_result()`."""

    call: InvokeFunction


class InvalidCall(Event, frozen=True):
    """A malformed `invokefunction` that still names an invocation id: answer it with an error
    whose `code` (`malformed_frame` or `invalid_invocation_id`) and `message` are given."""

    invocation_id: str
    function_id: str
    code: str
    message: str


class ResultReceived(Event, frozen=True):
    """The worker answered a dispatch we sent it."""

    result: InvocationResult


class ReattachRequested(Event, frozen=True):
    """The worker asks to retire its previous connection (spec §3.10)."""

    previous_worker_id: str
    reattach_token: str | None
