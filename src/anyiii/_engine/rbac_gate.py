"""Worker-listener access control carried out on sockets: the shared token and RBAC.

* The shared token (`EngineSettings.token`, `anyiii engine --token`): the main worker
  listener answers HTTP 401 before the upgrade to a handshake without
  `Authorization: Bearer <token>`. Channel data-plane sockets are exempt: their
  unguessable access key already authorizes them, and the Node SDK sends no headers there.
* RBAC (`EngineSettings.rbac`, a `iii-worker-manager` entry with `rbac:`): a second worker
  listener. Each connection is authorized by the auth function during its handshake (a
  refusal is an `error` frame with `AUTH_ERROR`, then a close, as the real engine does:
  after the upgrade, not before), and every frame it sends passes the `Gate` before the
  router sees it. The rules themselves are in `rbac.py`.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable, Mapping
from contextlib import suppress
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol, cast
from urllib.parse import parse_qsl, urlsplit

import anyio
import anyio.abc
import msgspec
from msgspec import UNSET, Raw

from .._errors import ConnectionClosed
from .._protocol.codes import (
    AUTH_ERROR,
    DEFAULT_NAMESPACE,
    FORBIDDEN,
    REGISTER_TRIGGER,
    REGISTER_WORKER,
)
from .._protocol.frames import (
    Error,
    ErrorBody,
    InvocationResult,
    InvokeFunction,
    RegisterFunction,
    RegisterTrigger,
    RegisterTriggerType,
    TriggerRegistrationResult,
    UnregisterFunction,
    decode_frame,
    decode_value,
    encode_frame,
    to_raw,
)
from .._protocol.ids import random_uuid
from .._transport import Transport, TransportLimits, serve_websockets
from .actions import Action
from .channels import parse_channel_target
from .rbac import RbacSettings, Session, auth_input, function_allowed, parse_auth_result
from .router import Router
from .settings import EngineSettings


class GatedEngine(Protocol):
    """What the gate uses of the engine's shell (`server.EmbeddedEngine`), named here so
    that this module does not import the server that imports it."""

    _tasks: anyio.abc.TaskGroup | None
    _settings: EngineSettings
    _router: Router

    def _perform(self, actions: list[Action]) -> None: ...

    def _send(self, conn: int, data: bytes) -> None: ...

    async def _serve_transport(self, transport: Transport, gate: Gate | None = None) -> None: ...

    def _accepts(self, target: str) -> bool: ...

    async def invoke(
        self,
        function_id: str,
        data: Raw,
        *,
        metadata: Raw | None = None,
        namespace: str = DEFAULT_NAMESPACE,
    ) -> tuple[Raw | None, ErrorBody | None]: ...


__all__ = ["GatedEngine", "Gate", "start_rbac_listener", "token_authorizer"]

logger = logging.getLogger("anyiii.engine.rbac")


def token_authorizer(token: str | None) -> Callable[[str, Mapping[str, str]], bool] | None:
    """The handshake check of the shared-token mode (None: no token, accept everyone).

    A request passes if it targets a channel's data plane or carries
    `Authorization: Bearer <token>` (the scheme's case is not significant); the token is
    compared in constant time."""
    if token is None:
        return None
    expected = token.encode()

    def authorize(target: str, headers: Mapping[str, str]) -> bool:
        if parse_channel_target(target) is not None:
            return True
        scheme, _, given = headers.get("authorization", "").strip().partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), expected)

    return authorize


async def start_rbac_listener(
    engine: GatedEngine, settings: EngineSettings, host: str, limits: TransportLimits
) -> int | None:
    """Serve the RBAC listener of `settings.rbac` in the engine's task group; returns its
    port (None: no RBAC listener is configured)."""
    rbac = settings.rbac
    if rbac is None:
        return None
    listener = await anyio.create_tcp_listener(local_host=rbac.host or host, local_port=rbac.port)
    port: int = listener.extra(anyio.abc.SocketAttribute.local_port)
    assert engine._tasks is not None
    await engine._tasks.start(
        partial(
            serve_websockets,
            listener,
            partial(_serve_rbac_transport, engine, rbac),
            accept=engine._accepts,
            limits=limits,
            handshake_timeout=settings.handshake_timeout,
        )
    )
    logger.info("anyiii engine: RBAC worker listener on port %d", port)
    return port


async def _serve_rbac_transport(
    engine: GatedEngine, settings: RbacSettings, transport: Transport
) -> None:
    """One socket of the RBAC listener: channels as usual; `/` and `/otel` authenticated."""
    if parse_channel_target(transport.path) is not None:
        await engine._serve_transport(transport)
        return
    session = await _authenticate(engine, settings, transport)
    if session is None:
        return
    if urlsplit(transport.path).path != "/":  # `/otel`: drained and ignored after auth
        await engine._serve_transport(transport)
        return
    if session.function_registration_prefix is not None:
        transport = cast(Transport, _Unprefixing(transport, session))
    await engine._serve_transport(transport, Gate(engine, settings, session))


async def _authenticate(
    engine: GatedEngine, settings: RbacSettings, transport: Transport
) -> Session | None:
    """The connection's session, or None once it has been refused (`AUTH_ERROR`)."""
    function_id = settings.auth_function_id
    if function_id is None:
        return Session()
    address = transport.remote_address or ""
    ip = address.rsplit(":", 1)[0].strip("[]") if ":" in address else address
    query = parse_qsl(urlsplit(transport.path).query, keep_blank_values=True)
    data = auth_input(transport.request_headers, query, ip)
    result, error = await engine.invoke(function_id, to_raw(data))
    try:
        if error is not None:
            raise ValueError(error.message)
        value = None if result is None else decode_value(result)
        if value is None:
            raise ValueError("auth function returned no result")
        return parse_auth_result(value)
    except (ValueError, msgspec.DecodeError) as exc:
        logger.info("RBAC listener refused %s: %s", address or "a worker", exc)
        refusal = Error(error=ErrorBody(code=AUTH_ERROR, message=str(exc)))
        with anyio.move_on_after(engine._settings.shutdown_timeout), suppress(ConnectionClosed):
            await transport.send(encode_frame(refusal))
        await transport.aclose(1000, "")
        return None


@dataclass(slots=True)
class Gate:
    """What an RBAC connection's frames go through before the router sees them.

    Frames are taken one at a time, in order, as the real engine does: a registration
    waits for its hook's answer before the next frame is looked at.
    """

    engine: GatedEngine
    settings: RbacSettings
    session: Session

    async def receive(self, conn: int, messages: list[bytes]) -> None:
        """Route what `conn` sent that the session allows; answer or drop the rest."""
        engine = self.engine
        for data in messages:
            admitted = await self._admit(conn, data)
            if admitted is not None:
                engine._perform(engine._router.receive(conn, admitted))

    def _send(self, conn: int, frame: InvocationResult | TriggerRegistrationResult) -> None:
        self.engine._send(conn, encode_frame(frame))

    def _metadata(self, namespace: str, function_id: str) -> object:
        function = self.engine._router.tables.function(namespace, function_id)
        if function is None or function.frame.metadata is UNSET:
            return None
        assert isinstance(function.frame.metadata, Raw)
        return decode_value(function.frame.metadata)

    def _namespace(self, conn: int) -> str:
        connection = self.engine._router.tables.connection(conn)
        return DEFAULT_NAMESPACE if connection is None else connection.effective_namespace

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

    async def _admit(self, conn: int, data: bytes) -> bytes | None:
        frame = decode_frame(data)
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
        if isinstance(frame, UnregisterFunction) and session.function_registration_prefix:
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

    async def _bind(self, conn: int, frame: RegisterTrigger) -> bytes | None:
        session = self.session
        if frame.namespace is not None and not frame.namespace.strip():
            return encode_frame(frame)  # the router answers INVALID_NAMESPACE
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
        middleware = settings.middleware_function_id
        if middleware is not None and not self._engine_builtin(namespace, function_id):
            assert self.engine._tasks is not None
            self.engine._tasks.start_soon(self._through_middleware, conn, frame, middleware)
            return None
        return data

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
            self._refuse(conn, frame, f"trigger type '{trigger_type}' not allowed")
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


def _text(answer: Mapping[str, Any], key: str, default: str) -> str:
    value = answer.get(key)
    return value if isinstance(value, str) else default


class _Unprefixing:
    """A connection's transport that takes the session's registration prefix off the
    function id of each call the engine sends it, so the SDK finds its handler."""

    def __init__(self, transport: Transport, session: Session) -> None:
        self._transport = transport
        self._session = session

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)

    def _rewrite(self, message: bytes) -> bytes:
        if b"invokefunction" not in message:
            return message
        frame = decode_frame(message)
        if not isinstance(frame, InvokeFunction):
            return message
        plain = self._session.unprefixed(frame.function_id)
        return encode_frame(msgspec.structs.replace(frame, function_id=plain))

    def send_nowait(self, message: bytes) -> None:
        """Queue `message`, rewritten, without waiting (see `Transport.send_nowait`)."""
        self._transport.send_nowait(self._rewrite(message))
