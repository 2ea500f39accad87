"""What the RBAC listener lets through, frame by frame: the real engine's per-session checks.

`Admission.admit` takes one decoded frame of an RBAC connection and returns what the router
is to see instead (the frame itself, a rewritten one, or nothing): calls are checked
against the session (`rbac.function_allowed`) and may go to the middleware; registrations
go through their hooks and take the registration prefix; a trigger binding's target must be
callable by the session. Refusals are answered here (`FORBIDDEN`) or dropped, as the real
engine's `engine/mod.rs` does. The two built-ins that describe functions
(`engine::functions::list`, `engine::functions::info`) are answered here too, with only the
functions the session may call, as the real engine's `workers/engine_fn/mod.rs` filters
them by the caller's session: the router, which runs them for everyone else, never learns
about sessions. When each frame is admitted (in order, registrations once the connection's
namespace is known) is `rbac_gate.Gate`'s business.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import anyio.abc
import msgspec
from msgspec import UNSET, Raw

from .._protocol.codes import DEFAULT_NAMESPACE, FORBIDDEN, REGISTER_TRIGGER, REGISTER_WORKER
from .._protocol.frames import (
    AnyFrame,
    EnqueueAction,
    ErrorBody,
    InvocationResult,
    InvokeFunction,
    RegisterFunction,
    RegisterTrigger,
    RegisterTriggerType,
    TriggerRegistrationResult,
    UnknownFrame,
    UnregisterFunction,
    VoidAction,
    decode_value,
    encode_frame,
    to_raw,
)
from .._protocol.ids import is_uuid, random_uuid
from .actions import Action
from .builtins import BUILTINS, AwaitAck
from .rbac import RbacSettings, Session, function_allowed
from .router import Router

__all__ = ["Admission", "AdmittingEngine"]

logger = logging.getLogger("anyiii.engine.rbac")


class AdmittingEngine(Protocol):
    """What the checks use of the engine's shell (`server.EmbeddedEngine`; all the RBAC
    listener uses is `rbac_gate.GatedEngine`)."""

    _tasks: anyio.abc.TaskGroup | None
    _router: Router

    def _send(self, conn: int, data: bytes) -> None: ...

    async def invoke(
        self,
        function_id: str,
        data: Raw,
        *,
        metadata: Raw | None = None,
        namespace: str = DEFAULT_NAMESPACE,
    ) -> tuple[Raw | None, ErrorBody | None]: ...


@dataclass(slots=True)
class Admission:
    """The checks of one RBAC connection's session (see the module docstring)."""

    engine: AdmittingEngine
    settings: RbacSettings
    session: Session

    async def admit(self, conn: int, frame: AnyFrame | UnknownFrame, data: bytes) -> bytes | None:
        """What the router is to see of `frame` (`data` encoded), or None: it was answered
        here, or dropped (logged)."""
        session, settings = self.session, self.settings
        if isinstance(frame, InvokeFunction):
            return self._invoke(conn, frame, data)
        if isinstance(frame, RegisterFunction):
            if not session.allow_function_registration:
                logger.warning("function registration not allowed: %s", frame.id)
                return None
            hook = settings.on_function_registration_function_id
            metadata = None if frame.metadata is UNSET else frame.metadata
            answer = await self._hook(
                hook,
                {
                    "function_id": frame.id,
                    "description": frame.description,
                    "metadata": metadata,
                    "namespace": self._namespace(conn),
                    "context": session.context,
                },
            )
            if answer is None:
                return None
            changes: dict[str, Any] = {
                "id": session.prefixed(_text(answer, "function_id", frame.id))
            }
            if isinstance(answer.get("description"), str):
                changes["description"] = answer["description"]
            if "metadata" in answer:
                changes["metadata"] = to_raw(answer["metadata"])
            return encode_frame(msgspec.structs.replace(frame, **changes))
        prefix = session.function_registration_prefix
        if isinstance(frame, UnregisterFunction) and prefix is not None:
            return encode_frame(msgspec.structs.replace(frame, id=session.prefixed(frame.id)))
        if isinstance(frame, RegisterTriggerType):
            if not session.allow_trigger_type_registration:
                logger.warning("trigger type registration not allowed: %s", frame.id)
                return None
            hook = settings.on_trigger_type_registration_function_id
            answer = await self._hook(
                hook,
                {
                    "trigger_type_id": frame.id,
                    "description": frame.description,
                    "context": session.context,
                },
            )
            if answer is None:
                return None
            return encode_frame(
                msgspec.structs.replace(
                    frame,
                    id=_text(answer, "trigger_type_id", frame.id),
                    description=_text(answer, "description", frame.description),
                )
            )
        if isinstance(frame, RegisterTrigger):
            return await self._bind(conn, frame)
        return data

    # --- what it looks up --------------------------------------------------------------------

    def _metadata(self, namespace: str, function_id: str) -> object:
        function = self.engine._router.tables.function(namespace, function_id)
        if function is None or function.frame.metadata is UNSET:
            return None
        assert isinstance(function.frame.metadata, Raw)
        return decode_value(function.frame.metadata)

    def _namespace(self, conn: int) -> str:
        connection = self.engine._router.tables.connection(conn)
        return DEFAULT_NAMESPACE if connection is None else connection.effective_namespace

    def _visible(self, function_id: str, namespace: str, metadata: Raw | None) -> bool:
        """Whether the session may see a function: whether it may call it (`Visible`)."""
        value = None if metadata is None else decode_value(metadata)
        return function_allowed(self.settings, self.session, function_id, namespace, value)

    async def _hook(self, function_id: str | None, data: dict[str, Any]) -> dict[str, Any] | None:
        """A registration hook's answer (None: it refused), or `{}` when there is none."""
        if function_id is None:
            return {}
        result, error = await self.engine.invoke(function_id, to_raw(data))
        answer = None if error is not None or result is None else decode_value(result)
        if not isinstance(answer, dict):
            logger.warning("registration refused by hook %s: %s", function_id, error or answer)
            return None
        return answer

    # --- registrations -----------------------------------------------------------------------

    async def _bind(self, conn: int, frame: RegisterTrigger) -> bytes | None:
        session = self.session
        if any(name is not None and not name.strip() for name in _namespaces(frame)):
            return encode_frame(frame)  # the router answers INVALID_NAMESPACE, first
        allowed_types = session.allowed_trigger_types
        if allowed_types is not None and frame.trigger_type not in allowed_types:
            logger.warning("trigger registration not allowed for type %s", frame.trigger_type)
            return None
        namespace = frame.namespace or DEFAULT_NAMESPACE
        answer = await self._hook(
            self.settings.on_trigger_registration_function_id,
            {
                "trigger_id": frame.id,
                "trigger_type": frame.trigger_type,
                "function_id": frame.function_id,
                "config": frame.config,
                "metadata": None if frame.metadata is UNSET else frame.metadata,
                "namespace": namespace,
                "context": session.context,
            },
        )
        if answer is None:
            return None
        trigger_id = _text(answer, "trigger_id", frame.id)
        trigger_type = _text(answer, "trigger_type", frame.trigger_type)
        function_id = session.prefixed(_text(answer, "function_id", frame.function_id))
        config = to_raw(answer["config"]) if "config" in answer else frame.config
        metadata = self._metadata(namespace, function_id)
        if not function_allowed(self.settings, session, function_id, namespace, metadata):
            message = f"function '{function_id}' not allowed in namespace '{namespace}'"
            self._send(
                conn,
                TriggerRegistrationResult(
                    id=trigger_id,
                    trigger_type=trigger_type,
                    function_id=function_id,
                    error=ErrorBody(code=FORBIDDEN, message=message),
                ),
            )
            return None
        return encode_frame(
            msgspec.structs.replace(
                frame,
                id=trigger_id,
                trigger_type=trigger_type,
                function_id=function_id,
                config=config,
            )
        )

    # --- calls -------------------------------------------------------------------------------

    def _invoke(self, conn: int, frame: InvokeFunction, data: bytes) -> bytes | None:
        session, settings = self.session, self.settings
        if frame.namespace is not None and not frame.namespace.strip():
            return data  # the router answers INVALID_NAMESPACE
        namespace = frame.namespace or DEFAULT_NAMESPACE
        function_id = frame.function_id
        metadata = self._metadata(namespace, function_id)
        if not function_allowed(settings, session, function_id, namespace, metadata):
            remedy = (
                "remove from rbac.forbidden_functions"
                if function_id in session.forbidden_functions
                else "add to rbac.expose_functions"
            )
            self._refuse(conn, frame, f"function '{function_id}' not allowed ({remedy})")
            return None
        if function_id == REGISTER_TRIGGER:
            checked = self._durable_binding(conn, frame, namespace)
            if checked is None:
                return None
            if checked is not frame:
                frame, data = checked, encode_frame(checked)
        if function_id == REGISTER_WORKER and session.namespaces:
            payload = decode_value(frame.data)
            declared = payload.get("namespace") if isinstance(payload, dict) else None
            declared = declared if isinstance(declared, str) else DEFAULT_NAMESPACE
            if declared not in session.namespaces:
                permitted = ", ".join(sorted(session.namespaces))
                message = (
                    f"namespace '{declared}' not allowed for this session (permitted: {permitted})"
                )
                self._refuse(conn, frame, message)
                return None
        if self._answer_narrowed(conn, frame, namespace):
            return None
        middleware = settings.middleware_function_id
        if middleware is not None and not self._engine_builtin(namespace, function_id):
            assert self.engine._tasks is not None
            self.engine._tasks.start_soon(self._through_middleware, conn, frame, middleware)
            return None
        return data

    def _answer_narrowed(self, conn: int, frame: InvokeFunction, namespace: str) -> bool:
        """Answer a call of a built-in that describes functions with only those the session
        may see; False if `frame` is no such call. An enqueued one is left to the router:
        the queue runs it later, without the session, as the real engine's does."""
        builtin = BUILTINS.get(frame.function_id)
        if builtin is None or builtin.narrowed is None or isinstance(frame.action, EnqueueAction):
            return False
        router = self.engine._router
        function = router.tables.function(namespace, frame.function_id)
        if function is None or function.owner is not None:
            return False  # not the engine's own: the router answers function_not_found
        if frame.invocation_id is None or isinstance(frame.action, VoidAction):
            return True  # nobody waits, and these built-ins change nothing
        if not is_uuid(frame.invocation_id):
            return False  # the router's core answers `invalid_invocation_id`
        out: list[Action] = []
        caller = router.tables.connection(conn)
        outcome = builtin.narrowed(router, caller, frame.data, out, self._visible)
        assert not out  # they only read the tables
        assert not isinstance(outcome, AwaitAck)
        invocation_id, function_id = frame.invocation_id, frame.function_id
        if isinstance(outcome, ErrorBody):
            reply = InvocationResult(
                invocation_id=invocation_id, function_id=function_id, error=outcome
            )
        else:
            reply = InvocationResult(
                invocation_id=invocation_id, function_id=function_id, result=outcome
            )
        self._send(conn, reply)
        return True

    def _durable_binding(
        self, conn: int, frame: InvokeFunction, namespace: str
    ) -> InvokeFunction | None:
        """A call of `engine::register_trigger` from this session, held to the rules of a
        `registertrigger` frame (allowed trigger types, a target function the session may
        call, the registration prefix), so the built-in is no way around them. None: it
        was refused here; else the call to pass on (its target prefixed if need be)."""
        session = self.session
        payload = decode_value(frame.data)
        if not isinstance(payload, dict):
            return frame  # the built-in refuses its malformed argument itself
        trigger_type, target = payload.get("trigger_type"), payload.get("function_id")
        if not isinstance(trigger_type, str) or not isinstance(target, str):
            return frame
        allowed_types = session.allowed_trigger_types
        if allowed_types is not None and trigger_type not in allowed_types:
            message = f"Trigger type '{trigger_type}' is not allowed for this session."
            self._refuse(conn, frame, message)
            return None
        function_id = session.prefixed(target)
        metadata = self._metadata(namespace, function_id)
        if not function_allowed(self.settings, session, function_id, namespace, metadata):
            message = f"function '{function_id}' not allowed in namespace '{namespace}'"
            self._refuse(conn, frame, message)
            return None
        if function_id == target:
            return frame
        return msgspec.structs.replace(frame, data=to_raw({**payload, "function_id": function_id}))

    def _engine_builtin(self, namespace: str, function_id: str) -> bool:
        """An `engine::*` id no worker registered: the middleware is not called for it."""
        function = self.engine._router.tables.function(namespace, function_id)
        return function_id.startswith("engine::") and (function is None or function.owner is None)

    def _send(self, conn: int, frame: InvocationResult | TriggerRegistrationResult) -> None:
        self.engine._send(conn, encode_frame(frame))

    def _refuse(self, conn: int, frame: InvokeFunction, message: str) -> None:
        self._send(
            conn,
            InvocationResult(
                invocation_id=frame.invocation_id or random_uuid(),
                function_id=frame.function_id,
                error=ErrorBody(code=FORBIDDEN, message=message),
                traceparent=frame.traceparent,
                baggage=frame.baggage,
            ),
        )

    async def _through_middleware(self, conn: int, frame: InvokeFunction, middleware: str) -> None:
        """Call the middleware instead of the function; its answer is the call's answer."""
        namespace = frame.namespace or DEFAULT_NAMESPACE
        data = {
            "function_id": frame.function_id,
            "payload": frame.data,
            "action": frame.action,
            "context": self.session.context,
            "namespace": namespace,
        }
        metadata = None if frame.metadata is UNSET else frame.metadata
        result, error = await self.engine.invoke(
            middleware, to_raw(data), metadata=metadata, namespace=namespace
        )
        self._send(
            conn,
            InvocationResult(
                invocation_id=frame.invocation_id or random_uuid(),
                function_id=frame.function_id,
                result=UNSET if result is None else result,
                error=error,
                traceparent=frame.traceparent,
                baggage=frame.baggage,
            ),
        )


def _namespaces(frame: RegisterTrigger) -> tuple[str | None, str | None]:
    """A binding's two namespaces: where its target is, and where its provider is."""
    return frame.namespace, frame.trigger_namespace


def _text(answer: Mapping[str, Any], key: str, default: str) -> str:
    value = answer.get(key)
    return value if isinstance(value, str) else default
