"""Worker-listener access control carried out on sockets: the shared token and RBAC.

* The shared token (`EngineSettings.token`, `anyiii engine --token`): the main worker
  listener answers HTTP 401 before the upgrade to a handshake without
  `Authorization: Bearer <token>`. Channel data-plane sockets are exempt: their
  unguessable access key already authorizes them, and the Node SDK sends no headers there.
* RBAC (`EngineSettings.rbac`, a `iii-worker-manager` entry with `rbac:`): a second worker
  listener. Each connection is authorized by the auth function during its handshake (a
  refusal is an `error` frame with `AUTH_ERROR`, then a close, as the real engine does:
  after the upgrade, not before), and every frame it sends passes the `Gate` before the
  router sees it: in order, its registrations held until the connection's namespace is
  fixed. The rules themselves are in `rbac.py`, their checks per frame in
  `rbac_admission.py`.
"""

from __future__ import annotations

import hmac
import logging
from collections import deque
from collections.abc import Callable, Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Final, Protocol, cast
from urllib.parse import parse_qsl, urlsplit

import anyio
import anyio.abc
import msgspec

from .._errors import ConnectionClosed, RemoteProtocolError
from .._protocol.codes import AUTH_ERROR
from .._protocol.frames import (
    AnyFrame,
    Error,
    ErrorBody,
    InvokeFunction,
    RegisterFunction,
    RegisterService,
    RegisterTrigger,
    RegisterTriggerType,
    UnknownFrame,
    UnregisterFunction,
    UnregisterTrigger,
    UnregisterTriggerType,
    decode_frame,
    decode_value,
    encode_frame,
    to_raw,
)
from .._transport import Transport, TransportLimits, serve_websockets
from .actions import Action
from .channels import parse_channel_target
from .rbac import RbacSettings, Session, auth_input, parse_auth_result
from .rbac_admission import Admission, AdmittingEngine
from .settings import EngineSettings


class GatedEngine(AdmittingEngine, Protocol):
    """What the RBAC listener uses of the engine's shell (`server.EmbeddedEngine`), named
    here so that this module does not import the server that imports it."""

    _settings: EngineSettings

    def _perform(self, actions: list[Action]) -> None: ...

    async def _serve_transport(self, transport: Transport, gate: Gate | None = None) -> None: ...

    def _accepts(self, target: str) -> bool: ...


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
            connections=settings.connections,
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
    gate = Gate(engine, settings, session)
    try:
        await engine._serve_transport(transport, gate)
    finally:
        gate.close()


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


_HELD: Final = (
    RegisterFunction,
    UnregisterFunction,
    RegisterService,
    RegisterTrigger,
    UnregisterTrigger,
    RegisterTriggerType,
    UnregisterTriggerType,
)
"""The frames the router holds until the connection's namespace is fixed (the events of its
`_BUFFERED`): the gate holds them before it, so that their checks run then."""


@dataclass(slots=True)
class Gate:
    """What an RBAC connection's frames go through before the router sees them.

    Frames are taken one at a time, in order, as the real engine does: a registration
    waits for its hook's answer before the next frame is looked at. Registrations that
    arrive before the connection's namespace is fixed (by `engine::workers::register`, or
    at the end of the namespace grace) are held here, then checked and routed in arrival
    order once it is, as the real engine runs its hooks on its namespace buffer's drain:
    so a hook is told the namespace the registration lands in, and a binding to a function
    registered just before it sees that function (its metadata, for `expose_functions`).
    The call that fixed the namespace is answered after they are applied, as there.
    """

    engine: GatedEngine
    settings: RbacSettings
    session: Session
    _admission: Admission = field(init=False)
    _held: deque[tuple[AnyFrame, bytes]] = field(init=False, default_factory=deque)
    _turn: anyio.Lock = field(init=False, default_factory=anyio.Lock)
    """Taken by whoever routes this connection's frames: its reader, or the grace timer."""
    _grace: anyio.CancelScope | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self._admission = Admission(self.engine, self.settings, self.session)

    async def receive(self, conn: int, messages: list[bytes]) -> None:
        """Route what `conn` sent that the session allows; answer, hold or drop the rest."""
        async with self._turn:
            for data in messages:
                try:
                    frame = decode_frame(data)
                except RemoteProtocolError:  # the router's core answers or logs it
                    self.engine._perform(self.engine._router.receive(conn, data))
                    continue
                if isinstance(frame, _HELD) and self._waiting(conn):
                    self._hold(conn, frame, data)
                    continue
                actions = await self._route(conn, frame, data)
                if self._held and self._settled(conn):
                    await self._release(conn)
                self.engine._perform(actions)

    def close(self) -> None:
        """The connection is over: stop its grace timer (a task of the engine's, which would
        otherwise sleep out the grace) and forget what it held."""
        self._stop_grace_timer()
        self._held.clear()

    def _stop_grace_timer(self) -> None:
        if self._grace is not None:
            self._grace.cancel()
            self._grace = None

    async def _route(self, conn: int, frame: AnyFrame | UnknownFrame, data: bytes) -> list[Action]:
        """What the router makes of `frame` once admitted, not yet carried out."""
        admitted = await self._admission.admit(conn, frame, data)
        return [] if admitted is None else self.engine._router.receive(conn, admitted)

    def _waiting(self, conn: int) -> bool:
        """Whether a registration must wait: the namespace is not fixed, or others wait."""
        if self._held:
            return True
        connection = self.engine._router.tables.connection(conn)
        return connection is not None and connection.namespace is None

    def _settled(self, conn: int) -> bool:
        """Whether the held registrations may go: the namespace is fixed, or nobody is left."""
        connection = self.engine._router.tables.connection(conn)
        return connection is None or connection.namespace is not None

    def _hold(self, conn: int, frame: AnyFrame, data: bytes) -> None:
        self._held.append((frame, data))
        if self._grace is None:
            self._grace = anyio.CancelScope()
            assert self.engine._tasks is not None
            self.engine._tasks.start_soon(self._end_of_grace, conn, self._grace)

    async def _release(self, conn: int) -> None:
        """Route the held registrations, in order; forget them if the connection ended."""
        self._stop_grace_timer()
        tables = self.engine._router.tables
        while self._held:
            if tables.connection(conn) is None:
                self._held.clear()
                return
            frame, data = self._held.popleft()
            self.engine._perform(await self._route(conn, frame, data))

    async def _end_of_grace(self, conn: int, scope: anyio.CancelScope) -> None:
        """When no `engine::workers::register` comes: at the end of the namespace grace,
        the router fixes the namespace to `default`, and the held registrations go there."""
        router = self.engine._router
        with scope:
            while (connection := router.tables.connection(conn)) is not None:
                if connection.namespace is not None:
                    break
                await anyio.sleep_until(connection.grace_deadline)
                # The router's clock is anyio's (`running.py`); its timer task may not have
                # ticked yet, and the held frames must follow the namespace, not guess it.
                if anyio.current_time() >= connection.grace_deadline:
                    self.engine._perform(router.tick())
            async with self._turn:
                if self._grace is scope:
                    self._grace = None
                await self._release(conn)


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
