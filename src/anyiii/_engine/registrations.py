"""Who may register which function id (spec §3.1, §11): one live owner per (namespace,
id). A refusal is answered with `registrationrejected` `FUNCTION_NAMESPACE_CONFLICT`, the
one non-fatal code: naming the owner when another worker holds the id, or with no owner
when the id is reserved (`ownership.py`), over a limit (`registration_limits.py`), or an
HTTP-invoked function whose `invocation` cannot be used (`http_routing.py`). The real
engine only logs the last, leaving the worker to believe the function is served; here it
is logged too, and the worker hears the refusal (the form the real engine uses to refuse
a reserved id).
"""

from __future__ import annotations

import logging
from enum import Enum

from .._protocol.codes import FUNCTION_NAMESPACE_CONFLICT
from .._protocol.frames import ErrorBody, RegisterFunction, RegistrationRejected
from .._protocol.state import State
from .actions import Action, Send
from .http_targets import HttpTarget
from .registration_limits import function_bytes
from .tables import Connection, Function, Tables

logger = logging.getLogger("anyiii.engine")

__all__ = ["Registered", "refuse_function", "register_function", "unregister_function"]


class Registered(Enum):
    """What became of a `registerfunction`."""

    CHANGED = "changed"
    """Recorded, and the function table changed (a new owner)."""
    UNCHANGED = "unchanged"
    """Recorded again by its owner: nothing changed."""
    HELD = "held"
    """Refused: another worker holds the id (live, or by a reservation)."""
    REFUSED = "refused"
    """Refused for good: a reserved id, or an unusable HTTP invocation."""


def refuse_function(
    conn: Connection, frame: RegisterFunction, owner_worker_id: str, out: list[Action]
) -> None:
    """Tell `conn` its function was refused (`owner_worker_id` "" when nobody holds it)."""
    rejection = RegistrationRejected(
        code=FUNCTION_NAMESPACE_CONFLICT,
        namespace=conn.effective_namespace,
        owner_worker_id=owner_worker_id,
        function_id=frame.id,
    )
    if conn.core.state is State.OPEN:
        out.append(Send(conn.id, conn.core.reject_registration(rejection)))


def register_function(
    tables: Tables,
    conn: Connection,
    frame: RegisterFunction,
    out: list[Action],
    http: HttpTarget | ErrorBody | None = None,
    *,
    reserved: bool = False,
    holder: str | None = None,
) -> Registered:
    """Record `conn`'s function, or refuse it.

    `http` is what its `invocation` asks for (`HttpFunctions.target`): an `ErrorBody`
    refuses it (after the ownership rules, which the real engine checks first). `reserved`:
    the id is the engine's; `holder`: the worker id the id is reserved for, if not `conn`.
    """
    key = (conn.effective_namespace, frame.id)
    existing = tables.functions.get(key)
    owner = tables.connection(existing.owner) if existing is not None else None
    if owner is conn:
        owner = None
    if reserved:
        refuse_function(conn, frame, "", out)
        return Registered.REFUSED
    if owner is not None or holder is not None:
        refuse_function(conn, frame, owner.worker_id if owner is not None else str(holder), out)
        return Registered.HELD
    if isinstance(http, ErrorBody):
        logger.warning(
            "worker %s: HTTP-invoked function %r refused: %s: %s",
            conn.worker_id,
            frame.id,
            http.code,
            http.message,
        )
        refuse_function(conn, frame, "", out)
        return Registered.REFUSED
    tables.functions[key] = Function(
        key[0], frame, conn.id, http if isinstance(http, HttpTarget) else None
    )
    conn.functions.add(key, function_bytes(frame))  # in place of a previous frame's
    changed = existing is None or existing.owner != conn.id
    return Registered.CHANGED if changed else Registered.UNCHANGED


def unregister_function(tables: Tables, conn: Connection, function_id: str) -> bool:
    """Forget `conn`'s function; True when the function table changed."""
    key = (conn.effective_namespace, function_id)
    function = tables.functions.get(key)
    if function is None or function.owner != conn.id:
        return False
    del tables.functions[key]
    conn.functions.discard(key)
    return True
