"""The engine side of one worker connection, with no I/O: the server role of the core.

It reads what one worker sends and writes what the engine sends that worker. Routing
between connections (function tables, who waits for which result) belongs to the engine's
router, which drives one of these per connection.

Rules it enforces:

* `workerregistered` is the first frame (`start()`); nothing else may be sent before it;
* every call the worker makes with an id (sync or enqueue) gets exactly one answer through
  `deliver_result()`; a second call reusing an id that still awaits its answer is dropped
  and reported;
* every dispatch sent to the worker is tracked until its result arrives; a result for an
  id we never dispatched (or already got) is dropped and counted;
* invocation ids must be UUID text, as the Rust engine requires; a call with any other id
  is still answered, with an error, so its caller never waits for nothing;
* after `receive(None)` nothing survives: `ConnectionLost` names the calls the worker was
  waiting on, the dispatches it was executing and the bindings it had not answered, so
  the router can stop each one (`invocation_stopped`).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from msgspec import Raw

from .._errors import LocalProtocolError, RemoteProtocolError
from . import events as ev
from .codes import INVALID_INVOCATION_ID, MALFORMED_FRAME
from .connection import BaseConnection
from .frames import (
    NULL,
    EnqueueAction,
    ErrorBody,
    InvocationResult,
    InvokeFunction,
    Ping,
    Pong,
    Reattach,
    RegisterFunction,
    RegisterService,
    RegisterTrigger,
    RegisterTriggerType,
    RegistrationRejected,
    TriggerRegistrationResult,
    UnknownFrame,
    UnregisterFunction,
    UnregisterTrigger,
    UnregisterTriggerType,
    WorkerRegistered,
    absent_if_none,
    encode_frame,
)
from .ids import is_uuid
from .state import Input, Role, State

__all__ = ["EngineConnection"]


class EngineConnection(BaseConnection):
    """Sans-IO protocol state of one worker connection, engine role.

    `worker_id` and `reattach_token` are what `start()` announces; `features` is left out of
    `workerregistered` when empty, which keeps SDK 0.25 on the plain protocol (spec §3.9).
    """

    ROLE = Role.ENGINE

    def __init__(
        self, worker_id: str, reattach_token: str, *, features: tuple[str, ...] = ()
    ) -> None:
        super().__init__()
        self.worker_id = worker_id
        self.reattach_token = reattach_token
        self._features = features
        self._awaiting: dict[str, str] = {}
        self._executing: dict[str, str] = {}
        self._forwarded: dict[str, tuple[str, str, int]] = {}

    # --- views -----------------------------------------------------------------------------

    @property
    def awaiting_results(self) -> Mapping[str, str]:
        """Calls this worker made that await our answer: invocation id → function id."""
        return MappingProxyType(self._awaiting)

    def awaits(self, invocation_id: str) -> bool:
        """Whether this worker awaits our answer to `invocation_id` (`awaiting_results`
        without building a read-only view: every routed result asks)."""
        return invocation_id in self._awaiting

    @property
    def executing(self) -> Mapping[str, str]:
        """Dispatches this worker is running for us: invocation id → function id."""
        return MappingProxyType(self._executing)

    @property
    def forwarded_bindings(self) -> Mapping[str, str]:
        """Bindings forwarded to this provider awaiting its answer: trigger id → type."""
        return MappingProxyType({k: v[0] for k, v in self._forwarded.items()})

    def _emit(self, what: Input, frame: object) -> bytes:
        self._advance(what)
        return encode_frame(frame)  # type: ignore[arg-type]

    # --- sending ---------------------------------------------------------------------------

    def start(self) -> bytes:
        """The first frame of every connection: `workerregistered` (spec §3.9, §4.1)."""
        return self._emit(
            Input.SEND_HANDSHAKE,
            WorkerRegistered(
                worker_id=self.worker_id,
                reattach_token=self.reattach_token,
                features=self._features or None,
            ),
        )

    def dispatch(
        self,
        invocation_id: str,
        function_id: str,
        data: Raw = NULL,
        *,
        metadata: Raw | None = None,
        traceparent: str | None = None,
        baggage: str | None = None,
    ) -> bytes:
        """Ask the worker to run one of its functions; its result comes back as an event."""
        steady = self._state is State.OPEN  # every routed call passes here: no state walk
        if not steady:
            self._check(Input.SEND_CALL)
        if invocation_id in self._executing:
            raise LocalProtocolError(f"invocation {invocation_id} is already dispatched here")
        frame = encode_frame(
            InvokeFunction(
                invocation_id=invocation_id,
                function_id=function_id,
                data=data,
                metadata=absent_if_none(metadata),
                traceparent=traceparent,
                baggage=baggage,
            )
        )
        if not steady:
            self._advance(Input.SEND_CALL)
        self._executing[invocation_id] = function_id
        return frame

    def deliver_result(
        self,
        invocation_id: str,
        result: Raw | None = None,
        *,
        error: ErrorBody | None = None,
        traceparent: str | None = None,
        baggage: str | None = None,
    ) -> bytes:
        """Answer a call this worker made: its result, or `error` (which wins)."""
        steady = self._state is State.OPEN  # every routed call passes here: no state walk
        if not steady:
            self._check(Input.SEND_RESULT)
        function_id = self._awaiting.get(invocation_id)
        if function_id is None:
            raise LocalProtocolError(
                f"the worker awaits no result for {invocation_id} (unknown or answered)"
            )
        frame = encode_frame(
            InvocationResult(
                invocation_id=invocation_id,
                function_id=function_id,
                result=absent_if_none(None if error is not None else result),
                error=error,
                traceparent=traceparent,
                baggage=baggage,
            )
        )
        if not steady:
            self._advance(Input.SEND_RESULT)
        del self._awaiting[invocation_id]
        return frame

    def forward_binding(self, binding: RegisterTrigger) -> bytes:
        """Deliver a binding to this worker, which provides its trigger type (spec §6.2)."""
        frame = self._emit(Input.SEND_REGISTRATION, binding)
        _, _, count = self._forwarded.get(binding.id, ("", "", 0))
        self._forwarded[binding.id] = (binding.trigger_type, binding.function_id, count + 1)
        return frame

    def forward_unbinding(self, trigger_id: str, trigger_type: str) -> bytes:
        """Tell this provider a binding is gone (always with `trigger_type`, spec §3.6)."""
        return self._emit(
            Input.SEND_REGISTRATION, UnregisterTrigger(id=trigger_id, trigger_type=trigger_type)
        )

    def report_trigger_failure(self, result: TriggerRegistrationResult) -> bytes:
        """Tell the worker one of its bindings failed (sent only on errors, spec §3.5)."""
        return self._emit(Input.SEND_REGISTRATION, result)

    def reject_registration(self, rejection: RegistrationRejected) -> bytes:
        """Refuse a registration (spec §3.11)."""
        return self._emit(Input.SEND_REGISTRATION, rejection)

    def ping(self) -> bytes:
        """An application-level ping (the real engine never sends one)."""
        return self._emit(Input.SEND_CONTROL, Ping())

    def pong(self) -> bytes:
        """The answer to the worker's application-level ping."""
        return self._emit(Input.SEND_CONTROL, Pong())

    # --- receiving -------------------------------------------------------------------------

    def _lose_connection(self) -> ev.ConnectionLost:
        self._advance(Input.CONNECTION_LOST)
        lost = ev.ConnectionLost(
            calls=tuple(self._awaiting.items()),
            invocations=tuple(self._executing.items()),
            bindings=tuple((k, v[0]) for k, v in self._forwarded.items()),
        )
        self._awaiting.clear()
        self._executing.clear()
        self._forwarded.clear()
        return lost

    def _on_malformed(self, exc: RemoteProtocolError) -> list[ev.Event]:
        """Drop the frame, but answer or fail whatever invocation or binding it names."""
        if exc.frame_type == "triggerregistrationresult" and exc.frame_id in self._forwarded:
            # A provider's answer we cannot read is a refusal: the binding must not wait
            # for an answer that already came.
            trigger_type, function_id, _ = self._forwarded[exc.frame_id]
            refusal = TriggerRegistrationResult(
                id=exc.frame_id,
                trigger_type=trigger_type,
                function_id=function_id,
                error=ErrorBody(code=MALFORMED_FRAME, message=str(exc)),
            )
            return self._on_binding_answer(refusal, advance=False)
        invocation_id = exc.invocation_id
        if invocation_id is None:
            return []
        if exc.frame_type == "invocationresult" and invocation_id in self._executing:
            function_id = self._executing.pop(invocation_id)
            error = ErrorBody(code=MALFORMED_FRAME, message=str(exc))
            result = InvocationResult(
                invocation_id=invocation_id, function_id=function_id, error=error
            )
            return [ev.ResultReceived(result)]
        if exc.frame_type == "invokefunction" and invocation_id not in self._awaiting:
            function_id = exc.function_id or ""
            self._awaiting[invocation_id] = function_id
            return [ev.InvalidCall(invocation_id, function_id, MALFORMED_FRAME, str(exc))]
        return []

    def _on_invoke(self, frame: InvokeFunction) -> list[ev.Event]:
        if self._state is not State.OPEN:
            self._advance(Input.RECV_FRAME)
        invocation_id = frame.invocation_id
        answered = invocation_id is not None and (
            frame.action is None or isinstance(frame.action, EnqueueAction)
        )
        if not answered or invocation_id is None:
            return [ev.CallRequested(frame)]
        if invocation_id in self._awaiting:
            return self._violation(
                f"invocation {invocation_id} already awaits a result",
                frame_type="invokefunction",
                invocation_id=invocation_id,
            )
        self._awaiting[invocation_id] = frame.function_id
        if not is_uuid(invocation_id):
            self.violations += 1
            return [
                ev.InvalidCall(
                    invocation_id,
                    frame.function_id,
                    INVALID_INVOCATION_ID,
                    f"invocation_id {invocation_id!r} is not a UUID",
                )
            ]
        return [ev.CallRequested(frame)]

    def _on_result(self, frame: InvocationResult) -> list[ev.Event]:
        if self._state is not State.OPEN:
            self._advance(Input.RECV_FRAME)
        if self._executing.pop(frame.invocation_id, None) is None:
            self.late_results += 1
            return [ev.LateResult(frame.invocation_id, frame.function_id)]
        return [ev.ResultReceived(frame)]

    def _on_binding_answer(
        self, frame: TriggerRegistrationResult, *, advance: bool = True
    ) -> list[ev.Event]:
        if advance:
            self._advance(Input.RECV_FRAME)
        entry = self._forwarded.get(frame.id)
        if entry is None:
            return self._violation(
                f"an answer for binding {frame.id}, which was never forwarded here",
                frame_type="triggerregistrationresult",
            )
        trigger_type, function_id, count = entry
        if count > 1:
            self._forwarded[frame.id] = (trigger_type, function_id, count - 1)
        else:
            del self._forwarded[frame.id]
        return [ev.BindingAnswered(frame)]

    def _on_register_function(self, frame: RegisterFunction) -> list[ev.Event]:
        self._advance(Input.RECV_FRAME)
        return [ev.FunctionRegistered(frame)]

    def _on_unregister_function(self, frame: UnregisterFunction) -> list[ev.Event]:
        self._advance(Input.RECV_FRAME)
        return [ev.FunctionUnregistered(frame.id)]

    def _on_register_trigger(self, frame: RegisterTrigger) -> list[ev.Event]:
        self._advance(Input.RECV_FRAME)
        return [ev.TriggerRegistered(frame)]

    def _on_unregister_trigger(self, frame: UnregisterTrigger) -> list[ev.Event]:
        self._advance(Input.RECV_FRAME)
        return [ev.TriggerUnregistered(frame.id, frame.trigger_type)]

    def _on_register_trigger_type(self, frame: RegisterTriggerType) -> list[ev.Event]:
        self._advance(Input.RECV_FRAME)
        return [ev.TriggerTypeRegistered(frame)]

    def _on_unregister_trigger_type(self, frame: UnregisterTriggerType) -> list[ev.Event]:
        self._advance(Input.RECV_FRAME)
        return [ev.TriggerTypeUnregistered(frame.id, frame.namespace)]

    def _on_register_service(self, frame: RegisterService) -> list[ev.Event]:
        self._advance(Input.RECV_FRAME)
        return [ev.ServiceRegistered(frame)]

    def _on_reattach(self, frame: Reattach) -> list[ev.Event]:
        self._advance(Input.RECV_FRAME)
        return [ev.ReattachRequested(frame.previous_worker_id, frame.reattach_token)]


EngineConnection._HANDLERS = {
    InvokeFunction: EngineConnection._on_invoke,
    InvocationResult: EngineConnection._on_result,
    TriggerRegistrationResult: EngineConnection._on_binding_answer,
    RegisterFunction: EngineConnection._on_register_function,
    UnregisterFunction: EngineConnection._on_unregister_function,
    RegisterTrigger: EngineConnection._on_register_trigger,
    UnregisterTrigger: EngineConnection._on_unregister_trigger,
    RegisterTriggerType: EngineConnection._on_register_trigger_type,
    UnregisterTriggerType: EngineConnection._on_unregister_trigger_type,
    RegisterService: EngineConnection._on_register_service,
    Reattach: EngineConnection._on_reattach,
    Ping: BaseConnection._on_ping,
    Pong: BaseConnection._on_pong,
    UnknownFrame: BaseConnection._on_unknown,
}
