"""Who may register which function id (spec §3.1, §11): one live owner per (namespace,
id); `engine::*` ids are reserved to the engine's `default` namespace, and the engine's
own functions cannot be taken over. A refusal is answered with `registrationrejected`.
"""

from __future__ import annotations

from .._protocol.codes import DEFAULT_NAMESPACE, FUNCTION_NAMESPACE_CONFLICT
from .._protocol.frames import RegisterFunction, RegistrationRejected
from .._protocol.state import State
from .actions import Action, Send
from .builtins import BUILTINS
from .tables import Connection, Function, Tables

__all__ = ["register_function", "unregister_function"]


def register_function(
    tables: Tables, conn: Connection, frame: RegisterFunction, out: list[Action]
) -> bool:
    """Record `conn`'s function, or refuse it; True when the function table changed."""
    namespace = conn.effective_namespace
    key = (namespace, frame.id)
    existing = tables.functions.get(key)
    reserved = frame.id.startswith("engine::") and (
        namespace != DEFAULT_NAMESPACE or frame.id in BUILTINS
    )
    owner = tables.connection(existing.owner) if existing is not None else None
    live_owner = owner is not None and owner is not conn
    if reserved or live_owner:
        rejection = RegistrationRejected(
            code=FUNCTION_NAMESPACE_CONFLICT,
            namespace=namespace,
            owner_worker_id="" if reserved or owner is None else owner.worker_id,
            function_id=frame.id,
        )
        if conn.core.state is State.OPEN:
            out.append(Send(conn.id, conn.core.reject_registration(rejection)))
        return False
    tables.functions[key] = Function(namespace, frame, conn.id)
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
