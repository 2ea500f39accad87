"""What the RBAC tests share: a gated engine with a trusted worker, and untrusted workers.

`gated()` runs an engine with an RBAC listener whose auth function, hooks, middleware and
functions are served by a `Trusted` anyiii worker on the main listener; `untrusted()`
connects an anyiii worker to the RBAC listener with one of the `TOKENS` (what the auth
function answers for it), and `raw_session()` a bare transport, for tests that need to
choose the order of the frames.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
from engine_peers import decode

import anyiii
from anyiii._engine.rbac import RbacSettings, parse_filter
from anyiii._transport import Transport, open_websocket
from anyiii.engine import EmbeddedEngine, EngineSettings, run

TOKENS: dict[str, dict[str, Any]] = {
    "reader": {"forbidden_functions": ["api::drop"], "context": {"user": "r"}},
    "tenant": {
        "function_registration_prefix": "tenant",
        "context": {"user": "t"},
        "allowed_functions": ["secret::granted"],
    },
    "scoped": {"namespaces": {"orders": ["svc::*"]}},
    "binder": {
        "allowed_functions": ["engine::register_trigger"],
        "allowed_trigger_types": ["http"],
    },
    "malformed": {"allow_function_registration": "yes"},
    "lister": {
        "allowed_functions": [
            "engine::functions::list",
            "engine::functions::info",
            "secret::granted",
        ],
        "forbidden_functions": ["api::drop"],
    },
    "scoped_lister": {"namespaces": {"orders": ["svc::*"], "default": ["engine::functions::list"]}},
    "tenant_lister": {
        "function_registration_prefix": "tenant",
        "allowed_functions": ["engine::functions::list", "tenant::api::mine"],
    },
    "empty_prefix": {"function_registration_prefix": ""},
}


ANNOUNCE = {"type": "invokefunction", "function_id": "engine::workers::register", "data": {}}
"""What a worker sends first: its registrations wait for it (spec §4.1)."""


class Ticks:
    """A trigger handler that binds nothing."""

    def register_trigger(self, config: Any) -> None:
        """Accept the binding."""

    def unregister_trigger(self, config: Any) -> None:
        """Forget the binding."""


def rbac_settings(**extra: Any) -> RbacSettings:
    return RbacSettings(
        auth_function_id="auth::check",
        expose_functions=(
            parse_filter('match("api::*")'),
            parse_filter({"metadata": {"public": True}}),
        ),
        **extra,
    )


class Trusted:
    """The operator's own worker: the auth function, hooks and functions; what they saw."""

    def __init__(self, worker: anyiii.Worker) -> None:
        self.worker = worker
        self.auth_inputs: list[Any] = []
        self.hook_inputs: list[tuple[str, Any]] = []
        self.middleware_inputs: list[Any] = []
        self.hooked_at: list[float] = []
        """When each function-registration hook call came (anyio's clock)."""
        self.hooked = anyio.Event()
        worker.register_function("auth::check", self.auth)
        worker.register_function("api::echo", lambda data: {"echo": data})
        worker.register_function("api::drop", lambda data: "dropped")
        worker.register_function("secret::fn", lambda data: "secret")
        worker.register_function("secret::granted", lambda data: "granted")
        worker.register_function("pub::fn", lambda data: "public", metadata={"public": True})
        worker.register_function("hooks::function", self.function_hook)
        worker.register_function("hooks::trigger_type", self.trigger_type_hook)
        worker.register_function("mw::audit", self.middleware)

    def auth(self, data: Any) -> Any:
        self.auth_inputs.append(data)
        token = data["headers"].get("authorization", "").removeprefix("Bearer ")
        if token not in TOKENS:
            raise ValueError("unknown token")
        return TOKENS[token]

    async def function_hook(self, data: Any) -> Any:
        self.hook_inputs.append(("function", data))
        self.hooked_at.append(anyio.current_time())
        self.hooked.set()
        if data["function_id"].startswith("internal::"):
            raise ValueError("no internal functions")
        return {}

    def trigger_type_hook(self, data: Any) -> Any:
        self.hook_inputs.append(("trigger_type", data))
        return {"trigger_type_id": f"hooked::{data['trigger_type_id']}"}

    async def middleware(self, data: Any) -> Any:
        self.middleware_inputs.append(data)
        payload = {**data["payload"], "via": data["context"]["user"]}
        return await self.worker.trigger_async(
            {"function_id": data["function_id"], "payload": payload}
        )


@asynccontextmanager
async def gated(
    *, namespace_grace: float = 5.0, **extra: Any
) -> AsyncIterator[tuple[EmbeddedEngine, Trusted]]:
    settings = EngineSettings(rbac=rbac_settings(**extra), namespace_grace=namespace_grace)
    async with run(settings=settings, http_port=None) as engine:
        async with anyiii.connect(engine.url, reconnect=False) as worker:
            trusted = Trusted(worker)
            await worker.trigger_async({"function_id": "engine::functions::list", "payload": {}})
            yield engine, trusted


def untrusted(engine: EmbeddedEngine, token: str, **options: Any) -> Any:
    return anyiii.connect(
        f"ws://127.0.0.1:{engine.rbac_port}",
        headers={"Authorization": f"Bearer {token}"},
        reconnect=False,
        **options,
    )


async def call(worker: anyiii.Worker, function_id: str, payload: Any = None) -> Any:
    return await worker.trigger_async({"function_id": function_id, "payload": payload or {}})


async def forbidden(worker: anyiii.Worker, function_id: str) -> str:
    with pytest.raises(anyiii.InvocationError) as caught:
        await call(worker, function_id)
    assert caught.value.code == "FORBIDDEN"
    return str(caught.value)


@asynccontextmanager
async def raw_session(engine: EmbeddedEngine, token: str) -> AsyncIterator[tuple[Transport, str]]:
    """A bare transport on the RBAC listener, past `workerregistered`; and its worker id."""
    url = f"ws://127.0.0.1:{engine.rbac_port}"
    headers = {"Authorization": f"Bearer {token}"}
    async with open_websocket(url, headers=headers, ping_interval=None) as transport:
        registered = decode(await transport.receive())
        assert registered["type"] == "workerregistered", registered
        yield transport, registered["worker_id"]
