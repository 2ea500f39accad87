"""The worker side of one engine connection, with no I/O (h11 / wsproto style).

Intents go in as method calls and come back as the bytes of one WebSocket text message
each; messages from the engine go in through `receive()` and come back as events. The
object never touches a socket, a clock or an event loop, so every rule below is tested
synchronously and exhaustively.

Rules it enforces:

* every inbound invocation that has an id gets exactly one answer (`complete` or `fail`);
  answering an unknown or already-answered id raises `LocalProtocolError`;
* a second inbound invocation with an id that is still in flight is dropped and reported;
* an outgoing call's id is registered as pending before its frame exists, and removed when
  its result arrives or `forget_call()` is used; a result for an id that is not pending is
  dropped and counted (`late_results`);
* after `receive(None)` (transport gone) nothing in flight survives: `ConnectionLost` names
  every abandoned call, invocation and binding request;
* a write that failed part-way (`send_failed()`) makes the connection sticky `ERROR`;
* misuse (`LocalProtocolError`) never changes the state: no frame was produced, so the wire
  is still consistent. Only the transitions in `state.TRANSITIONS` change it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Final

from msgspec import Raw

from .._errors import LocalProtocolError, RemoteProtocolError
from . import events as ev
from .codes import (
    DEFAULT_NAMESPACE,
    FUNCTION_NAMESPACE_CONFLICT,
    MALFORMED_FRAME,
    REGISTER_WORKER,
)
from .connection import BaseConnection
from .frames import (
    NULL,
    EnqueueAction,
    Error,
    ErrorBody,
    InvocationResult,
    InvokeFunction,
    Ping,
    Pong,
    Reattach,
    RegisterFunction,
    RegisterTrigger,
    RegisterTriggerType,
    RegistrationRejected,
    TriggerRegistrationResult,
    UnknownFrame,
    UnregisterFunction,
    UnregisterTrigger,
    UnregisterTriggerType,
    VoidAction,
    WorkerRegistered,
    absent_if_none,
    encode_frame,
    present,
    to_raw,
)
from .ids import InvocationIds
from .registry import Registry, WorkerInfo
from .state import Input, Role, State

__all__ = ["WorkerConnection"]

_VOID: Final = VoidAction()

Registration = RegisterFunction | RegisterTriggerType | RegisterTrigger
Unregistration = UnregisterFunction | UnregisterTriggerType | UnregisterTrigger


class WorkerConnection(BaseConnection):
    """Sans-IO protocol state of one worker⇄engine connection (worker role).

    `namespace` is the worker's namespace, used to fill the `namespace` of outgoing calls
    the way the official SDKs do (spec §5.1, §11). `ids` generates invocation ids.
    """

    ROLE = Role.WORKER

    def __init__(
        self, *, namespace: str | None = None, ids: Callable[[], str] | None = None
    ) -> None:
        super().__init__()
        self._namespace = namespace
        self._new_id = ids if ids is not None else InvocationIds()
        self._pending: dict[str, str] = {}
        self._in_flight: dict[str, str] = {}
        self._bindings: dict[str, tuple[str, str, int]] = {}
        self._frames_sent = 0
        self.worker_id: str | None = None
        """The engine's id for this connection, once `workerregistered` arrived."""
        self.reattach_token: str | None = None
        """The secret that lets the next connection retire this one (spec §3.10)."""
        self.features: tuple[str, ...] = ()
        """Features the engine advertised in `workerregistered`."""

    # --- views -----------------------------------------------------------------------------

    @property
    def pending_calls(self) -> Mapping[str, str]:
        """Outgoing calls awaiting a result: invocation id → function id."""
        return MappingProxyType(self._pending)

    @property
    def in_flight(self) -> Mapping[str, str]:
        """Inbound invocations awaiting our answer: invocation id → function id."""
        return MappingProxyType(self._in_flight)

    def answers_due(self, invocation_id: str) -> bool:
        """Whether `invocation_id` is an inbound invocation awaiting our answer
        (`in_flight` without building a read-only view: every answer asks)."""
        return invocation_id in self._in_flight

    @property
    def awaiting_binding_answers(self) -> Mapping[str, str]:
        """Binding requests (we provide the type) awaiting our answer: trigger id → type."""
        return MappingProxyType({k: v[0] for k, v in self._bindings.items()})

    def _emit(self, what: Input, payload: bytes) -> bytes:
        self._advance(what)
        self._frames_sent += 1
        return payload

    # --- opening ---------------------------------------------------------------------------

    def open_sequence(
        self,
        registry: Registry,
        info: WorkerInfo,
        *,
        previous_worker_id: str | None = None,
        previous_reattach_token: str | None = None,
    ) -> list[bytes]:
        """The frames a fresh connection sends first, in the official Python SDK's order.

        `reattach` (only when a previous connection is named), then every trigger type,
        function and binding of `registry`, then the void `engine::workers::register` call
        carrying `info`. Must come before any other frame on this connection.
        """
        if self._frames_sent:
            raise LocalProtocolError("the open sequence must be the first thing sent")
        self._check(Input.SEND_REGISTRATION)
        frames: list[bytes] = []
        if previous_worker_id is not None:
            frames.append(
                encode_frame(
                    Reattach(
                        previous_worker_id=previous_worker_id,
                        reattach_token=previous_reattach_token,
                    )
                )
            )
        frames.extend(encode_frame(frame) for frame in registry.replay_order())
        frames.append(
            encode_frame(
                InvokeFunction(
                    function_id=REGISTER_WORKER, data=to_raw(info.to_builtins()), action=_VOID
                )
            )
        )
        for _ in frames:
            self._advance(Input.SEND_REGISTRATION)
        self._frames_sent += len(frames)
        return frames

    # --- registrations ---------------------------------------------------------------------

    def register(self, frame: Registration) -> bytes:
        """Send one registration (function, trigger type or trigger binding)."""
        return self._emit(Input.SEND_REGISTRATION, encode_frame(frame))

    def unregister(self, frame: Unregistration) -> bytes:
        """Send one unregistration."""
        return self._emit(Input.SEND_REGISTRATION, encode_frame(frame))

    # --- outgoing calls --------------------------------------------------------------------

    def _target_namespace(self, function_id: str, namespace: str | None) -> str | None:
        if namespace is not None:
            return namespace
        if function_id.startswith("engine::"):
            return DEFAULT_NAMESPACE if self._namespace is not None else None
        return self._namespace

    def call(
        self,
        function_id: str,
        data: Raw = NULL,
        *,
        metadata: Raw | None = None,
        traceparent: str | None = None,
        baggage: str | None = None,
        namespace: str | None = None,
        enqueue: str | None = None,
    ) -> tuple[str, bytes]:
        """Start a call that awaits a result: synchronous, or `enqueue` onto a named queue.

        Returns the new invocation id (already pending) and the frame to send.
        """
        if self._state is not State.OPEN:
            self._check(Input.SEND_CALL)
        invocation_id = self._new_id()
        if invocation_id in self._pending:
            raise LocalProtocolError(f"invocation id {invocation_id} is already pending")
        frame = InvokeFunction(
            function_id=function_id,
            invocation_id=invocation_id,
            data=data,
            traceparent=traceparent,
            baggage=baggage,
            action=None if enqueue is None else EnqueueAction(queue=enqueue),
            metadata=absent_if_none(metadata),
            namespace=self._target_namespace(function_id, namespace),
        )
        # `_emit`, inlined: this is every call's path.
        payload = encode_frame(frame)
        if self._state is not State.OPEN:
            self._advance(Input.SEND_CALL)
        self._frames_sent += 1
        self._pending[invocation_id] = function_id
        return invocation_id, payload

    def call_void(
        self,
        function_id: str,
        data: Raw = NULL,
        *,
        metadata: Raw | None = None,
        traceparent: str | None = None,
        baggage: str | None = None,
        namespace: str | None = None,
    ) -> bytes:
        """A fire-and-forget call: no invocation id, no result (spec §5.1)."""
        frame = InvokeFunction(
            function_id=function_id,
            data=data,
            traceparent=traceparent,
            baggage=baggage,
            action=_VOID,
            metadata=absent_if_none(metadata),
            namespace=self._target_namespace(function_id, namespace),
        )
        return self._emit(Input.SEND_CALL, encode_frame(frame))

    def forget_call(self, invocation_id: str) -> bool:
        """The caller stopped waiting (cancelled, timed out). A late result will be dropped.

        Returns whether the call was still pending. The protocol has no cancel frame, so the
        engine is not told.
        """
        return self._pending.pop(invocation_id, None) is not None

    # --- answering inbound invocations -----------------------------------------------------

    def complete(
        self, invocation_id: str, result: Raw | None = None, *, traceparent: str | None = None
    ) -> bytes:
        """Answer an inbound invocation with its result (None: the function returned nothing)."""
        function_id = self._take_in_flight(invocation_id)
        payload = encode_frame(
            InvocationResult(
                invocation_id=invocation_id,
                function_id=function_id,
                result=absent_if_none(result),
                traceparent=traceparent,
            )
        )
        # `_emit`, inlined: this is every invocation's path.
        if self._state is not State.OPEN:
            self._advance(Input.SEND_RESULT)
        self._frames_sent += 1
        return payload

    def fail(self, invocation_id: str, error: ErrorBody) -> bytes:
        """Answer an inbound invocation with an error."""
        function_id = self._take_in_flight(invocation_id)
        frame = InvocationResult(invocation_id=invocation_id, function_id=function_id, error=error)
        return self._emit(Input.SEND_RESULT, encode_frame(frame))

    def _take_in_flight(self, invocation_id: str) -> str:
        if self._state is not State.OPEN:
            self._check(Input.SEND_RESULT)
        try:
            return self._in_flight.pop(invocation_id)
        except KeyError:
            raise LocalProtocolError(
                f"invocation {invocation_id} is not in flight (unknown or already answered)"
            ) from None

    def answer_binding(self, trigger_id: str, error: ErrorBody | None = None) -> bytes:
        """Answer a binding request for a trigger type we provide (spec §6.2)."""
        self._check(Input.SEND_RESULT)
        entry = self._bindings.get(trigger_id)
        if entry is None:
            raise LocalProtocolError(f"no binding request {trigger_id} awaits an answer")
        trigger_type, function_id, count = entry
        frame = TriggerRegistrationResult(
            id=trigger_id, trigger_type=trigger_type, function_id=function_id, error=error
        )
        payload = self._emit(Input.SEND_RESULT, encode_frame(frame))
        if count > 1:
            self._bindings[trigger_id] = (trigger_type, function_id, count - 1)
        else:
            del self._bindings[trigger_id]
        return payload

    # --- control ---------------------------------------------------------------------------

    def ping(self) -> bytes:
        """An application-level ping (liveness normally uses WebSocket pings instead)."""
        return self._emit(Input.SEND_CONTROL, encode_frame(Ping()))

    def pong(self) -> bytes:
        """The answer to the engine's application-level ping."""
        return self._emit(Input.SEND_CONTROL, encode_frame(Pong()))

    # --- receiving -------------------------------------------------------------------------

    def _lose_connection(self) -> ev.ConnectionLost:
        self._advance(Input.CONNECTION_LOST)
        lost = ev.ConnectionLost(
            calls=tuple(self._pending.items()),
            invocations=tuple(self._in_flight.items()),
            bindings=tuple((k, v[0]) for k, v in self._bindings.items()),
        )
        self._pending.clear()
        self._in_flight.clear()
        self._bindings.clear()
        return lost

    def _on_malformed(self, exc: RemoteProtocolError) -> list[ev.Event]:
        """A frame we could not decode: drop it, but never leave an invocation hanging."""
        out: list[ev.Event] = []
        invocation_id = exc.invocation_id
        if invocation_id is None:
            return out
        if exc.frame_type == "invocationresult" and invocation_id in self._pending:
            function_id = self._pending.pop(invocation_id)
            error = ErrorBody(code=MALFORMED_FRAME, message=str(exc))
            out.append(ev.CallFailed(invocation_id, function_id, error))
        elif exc.frame_type == "invokefunction" and invocation_id not in self._in_flight:
            function_id = exc.function_id or ""
            self._in_flight[invocation_id] = function_id
            out.append(ev.InvalidInvocation(invocation_id, function_id, str(exc)))
        return out

    def _on_registered(self, frame: WorkerRegistered) -> list[ev.Event]:
        self._advance(Input.RECV_HANDSHAKE)
        if self.worker_id is not None:
            return self._violation("a second workerregistered on one connection")
        # Recorded even when we are already closing: the id and token are what let the next
        # connection reattach.
        self.worker_id = frame.worker_id
        self.reattach_token = frame.reattach_token
        self.features = frame.features or ()
        return [ev.Registered(frame.worker_id, frame.reattach_token, self.features)]

    def _on_invoke(self, frame: InvokeFunction) -> list[ev.Event]:
        if self._state is not State.OPEN:
            self._advance(Input.RECV_FRAME)
        invocation_id = frame.invocation_id
        if invocation_id is not None:
            if invocation_id in self._in_flight:
                return self._violation(
                    f"invocation {invocation_id} is already in flight",
                    frame_type="invokefunction",
                    invocation_id=invocation_id,
                )
            self._in_flight[invocation_id] = frame.function_id
        return [
            ev.InvocationRequested(
                invocation_id=invocation_id,
                function_id=frame.function_id,
                data=frame.data,
                metadata=present(frame.metadata),
                traceparent=frame.traceparent,
                baggage=frame.baggage,
            )
        ]

    def _on_result(self, frame: InvocationResult) -> list[ev.Event]:
        if self._state is not State.OPEN:
            self._advance(Input.RECV_FRAME)
        function_id = self._pending.pop(frame.invocation_id, None)
        if function_id is None:
            self.late_results += 1
            return [ev.LateResult(frame.invocation_id, frame.function_id)]
        if frame.error is not None:
            return [ev.CallFailed(frame.invocation_id, function_id, frame.error)]
        return [ev.CallCompleted(frame.invocation_id, function_id, present(frame.result))]

    def _on_binding(self, frame: RegisterTrigger) -> list[ev.Event]:
        self._advance(Input.RECV_FRAME)
        _, _, count = self._bindings.get(frame.id, ("", "", 0))
        self._bindings[frame.id] = (frame.trigger_type, frame.function_id, count + 1)
        return [ev.TriggerBindingRequested(frame)]

    def _on_unbinding(self, frame: UnregisterTrigger) -> list[ev.Event]:
        self._advance(Input.RECV_FRAME)
        return [ev.TriggerBindingRemoved(frame.id, frame.trigger_type)]

    def _on_trigger_result(self, frame: TriggerRegistrationResult) -> list[ev.Event]:
        self._advance(Input.RECV_FRAME)
        if frame.error is None:
            return []  # the engine only reports failures; a success needs no action
        return [
            ev.TriggerRegistrationFailed(
                frame.id, frame.trigger_type, frame.function_id, frame.error
            )
        ]

    def _on_rejected(self, frame: RegistrationRejected) -> list[ev.Event]:
        fatal = frame.code != FUNCTION_NAMESPACE_CONFLICT
        self._advance(Input.RECV_FATAL if fatal else Input.RECV_FRAME)
        return [
            ev.RegistrationRefused(
                code=frame.code,
                namespace=frame.namespace,
                owner_worker_id=frame.owner_worker_id,
                fatal=fatal,
                function_id=frame.function_id,
                worker_name=frame.worker_name,
            )
        ]

    def _on_error(self, frame: Error) -> list[ev.Event]:
        self._advance(Input.RECV_FATAL)
        return [ev.EngineRefused(frame.error)]


WorkerConnection._HANDLERS = {
    WorkerRegistered: WorkerConnection._on_registered,
    InvokeFunction: WorkerConnection._on_invoke,
    InvocationResult: WorkerConnection._on_result,
    RegisterTrigger: WorkerConnection._on_binding,
    UnregisterTrigger: WorkerConnection._on_unbinding,
    TriggerRegistrationResult: WorkerConnection._on_trigger_result,
    RegistrationRejected: WorkerConnection._on_rejected,
    Error: WorkerConnection._on_error,
    Ping: BaseConnection._on_ping,
    Pong: BaseConnection._on_pong,
    UnknownFrame: BaseConnection._on_unknown,
}
