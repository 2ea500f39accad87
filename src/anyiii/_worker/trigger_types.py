"""Trigger types a worker provides (spec §6.2): the handler interface and its bookkeeping.

A provider registers a trigger type; whenever any worker binds a trigger of that type, the
engine forwards the binding to the provider, whose `TriggerHandler.register_trigger(config)`
decides whether to accept it (returning) or refuse it (raising, which the binder sees as
`trigger_registration_failed` with the exception's message). The provider then fires the
binding when its event happens, by calling `config.function_id` like any caller.

Bindings belong to a connection: when it ends, the handler is told to unregister each one
(it can no longer fire them), and the engine delivers them again on the next connection,
where `register_trigger` is called again. So a handler always sees balanced
register/unregister pairs per binding id.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from typing import Any, Generic, TypeVar

import anyio
import msgspec

from .._protocol.codes import TRIGGER_REGISTRATION_FAILED
from .._protocol.frames import ErrorBody, RegisterTrigger, decode_value, present
from .handlers import call_user

__all__ = [
    "ActiveBinding",
    "TriggerConfig",
    "TriggerHandler",
    "binding_config",
    "check_trigger_handler",
]

logger = logging.getLogger("anyiii.worker")


ConfigT = TypeVar("ConfigT")


class TriggerConfig(msgspec.Struct, Generic[ConfigT], frozen=True, kw_only=True):
    """One binding of a trigger type this worker provides, as its handler sees it.

    `config` and `metadata` are the binder's JSON values. To fire the binding, call
    `function_id` with the binding's `metadata` in the binding's `namespace`, e.g.
    `await worker.trigger_async({"function_id": c.function_id, "payload": event,
    "metadata": c.metadata, "namespace": c.namespace, "action": TriggerAction.Void()})`.
    """

    id: str
    trigger_type: str
    function_id: str
    config: ConfigT | None = None
    metadata: Any = None
    namespace: str | None = None


class TriggerHandler(ABC, Generic[ConfigT]):
    """What a trigger type's provider implements. Both methods may be async or plain (plain
    ones run in a worker thread, like plain function handlers).

    Subclassing is optional: any object with these two methods works. Generic over the
    binding config's type, as in the official SDK (`TriggerHandler[MyConfig]`).
    """

    @abstractmethod
    async def register_trigger(self, config: TriggerConfig[ConfigT]) -> None:
        """Start firing this binding; raise to refuse it (the message reaches the binder)."""

    @abstractmethod
    async def unregister_trigger(self, config: TriggerConfig[ConfigT]) -> None:
        """Stop firing this binding."""


def binding_config(frame: RegisterTrigger) -> TriggerConfig[Any]:
    """The handler's view of a binding the engine forwarded."""
    return TriggerConfig(
        id=frame.id,
        trigger_type=frame.trigger_type,
        function_id=frame.function_id,
        config=_value(frame.config),
        metadata=_value(frame.metadata),
        namespace=frame.namespace,
    )


def _value(field: msgspec.Raw | msgspec.UnsetType) -> Any:
    raw = present(field)
    return None if raw is None else decode_value(raw)


def check_trigger_handler(handler: object) -> None:
    """Raise TypeError unless `handler` has both methods a trigger handler needs."""
    for method in ("register_trigger", "unregister_trigger"):
        if not callable(getattr(handler, method, None)):
            raise TypeError(f"a trigger handler needs a {method}(config) method")


class ActiveBinding:
    """A binding delivered to this worker: settled once its `register_trigger` call ended.

    `accepted` says whether the handler took it, and so whether it must be unregistered.
    """

    __slots__ = ("accepted", "config", "handler", "limiter", "settled")

    def __init__(
        self, config: TriggerConfig[Any], handler: Any, limiter: anyio.CapacityLimiter
    ) -> None:
        self.config = config
        self.handler = handler
        self.limiter = limiter
        self.accepted = False
        self.settled = anyio.Event()

    async def register(self) -> ErrorBody | None:
        """Run the handler's `register_trigger`; the answer for the engine (None = accepted)."""
        try:
            await call_user(self.handler.register_trigger, self.config, limiter=self.limiter)
        except Exception as exc:
            return ErrorBody(TRIGGER_REGISTRATION_FAILED, str(exc) or type(exc).__name__)
        else:
            self.accepted = True
            return None
        finally:
            self.settled.set()

    async def unregister(self) -> None:
        """Once registration settled, tell the handler to stop (if it had accepted)."""
        await self.settled.wait()
        if not self.accepted:
            return
        self.accepted = False
        try:
            await call_user(self.handler.unregister_trigger, self.config, limiter=self.limiter)
        except Exception:
            logger.exception(
                "unregister_trigger of %s binding %s failed",
                self.config.trigger_type,
                self.config.id,
            )
