"""Who may register which function id (spec §3.1, §11): one live owner per (namespace,
id); `engine::*` ids are reserved to the engine's `default` namespace, and the engine's
own functions cannot be taken over. A refusal is answered with `registrationrejected`.

So is an HTTP-invoked function whose `invocation` cannot be used (`http_routing.py`): the
real engine only logs that, leaving the worker to believe the function is served; here it
is also logged, and the worker hears `FUNCTION_NAMESPACE_CONFLICT` with no owner, the one
non-fatal code (the form the real engine uses to refuse a reserved id).
"""

from __future__ import annotations

import logging

from .._protocol.codes import DEFAULT_NAMESPACE, FUNCTION_NAMESPACE_CONFLICT
from .._protocol.frames import ErrorBody, RegisterFunction, RegistrationRejected
from .._protocol.state import State
from .actions import Action, Send
from .builtins import BUILTINS
from .http_targets import HttpTarget
from .tables import Connection, Function, Tables

logger = logging.getLogger("anyiii.engine")

__all__ = ["register_function", "unregister_function"]


def register_function(
    tables: Tables,
    conn: Connection,
    frame: RegisterFunction,
    out: list[Action],
    http: HttpTarget | ErrorBody | None = None,
) -> bool:
    """Record `conn`'s function, or refuse it; True when the function table changed.

    `http` is what its `invocation` asks for (`HttpFunctions.target`): an `ErrorBody`
    refuses it (after the ownership rules, which the real engine checks first).
    """
    namespace = conn.effective_namespace
    key = (namespace, frame.id)
    existing = tables.functions.get(key)
    reserved = frame.id.startswith("engine::") and (
        namespace != DEFAULT_NAMESPACE or frame.id in BUILTINS
    )
    owner = tables.connection(existing.owner) if existing is not None else None
    live_owner = owner is not None and owner is not conn
    if reserved or live_owner or isinstance(http, ErrorBody):
        if isinstance(http, ErrorBody) and not (reserved or live_owner):
            logger.warning(
                "worker %s: HTTP-invoked function %r refused: %s: %s",
                conn.worker_id,
                frame.id,
                http.code,
                http.message,
            )
        named = owner if live_owner and not reserved else None
        rejection = RegistrationRejected(
            code=FUNCTION_NAMESPACE_CONFLICT,
            namespace=namespace,
            owner_worker_id=named.worker_id if named is not None else "",
            function_id=frame.id,
        )
        if conn.core.state is State.OPEN:
            out.append(Send(conn.id, conn.core.reject_registration(rejection)))
        return False
    tables.functions[key] = Function(
        namespace, frame, conn.id, http if isinstance(http, HttpTarget) else None
    )
    conn.functions.add(key)
    return existing is None or existing.owner != conn.id


def unregister_function(tables: Tables, conn: Connection, function_id: str) -> bool:
    """Forget `conn`'s function; True when the function table changed."""
    key = (conn.effective_namespace, function_id)
    function = tables.functions.get(key)
    if function is None or function.owner != conn.id:
        return False
    del tables.functions[key]
    conn.functions.discard(key)
    return True
