"""Connection states and every legal transition, for both roles, as data.

All state logic lives in this file (h11's rule): the cores classify what happens into an
`Input`, look the pair up in `TRANSITIONS`, and either move to the new state or refuse. A
pair missing from a role's table is illegal. `docs/protocol.md` draws its diagram from these
tables, and a test keeps the two in step.

One state enum serves both roles:

* `CONNECTING`: the socket is open but the handshake frame (`workerregistered`) has not been
  received (worker) or sent (engine). A worker may already send: the official SDKs do not
  wait for `workerregistered` either.
* `OPEN`: normal operation.
* `CLOSING`: our side is shutting down (or the engine refused us fatally): no new calls or
  registrations, but answers for invocations already in flight may still go out.
* `CLOSED`: the transport is gone; everything in flight was abandoned and reported.
* `ERROR`: sticky. A write failed part-way, so nobody knows what the peer received; the
  connection can only be torn down.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Final

__all__ = ["ROLE_INPUTS", "STEADY_WHILE_OPEN", "TRANSITIONS", "Input", "Role", "State"]


class State(enum.Enum):
    """Where one connection is in its life."""

    CONNECTING = "connecting"
    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"
    ERROR = "error"

    # Members are singletons compared by identity; the C-level identity hash keeps the
    # per-frame table lookup off Enum's Python-level __hash__.
    __hash__ = object.__hash__


class Role(enum.Enum):
    """Which end of the connection a core plays."""

    WORKER = "worker"
    ENGINE = "engine"


class Input(enum.Enum):
    """Everything that can happen to a connection, as the transition table sees it."""

    SEND_HANDSHAKE = "send handshake"  # engine: send workerregistered
    SEND_REGISTRATION = "send registration"  # register/unregister, binding forwards, rejections
    SEND_CALL = "send call"  # worker: invoke; engine: dispatch to the worker
    SEND_RESULT = "send result"  # the answer to an invocation or a binding request
    SEND_CONTROL = "send control"  # ping, pong
    CLOSE = "close"  # our side starts shutting down
    SEND_FAILED = "send failed"  # a write was cancelled or failed part-way
    RECV_HANDSHAKE = "recv handshake"  # worker: workerregistered arrived
    RECV_FRAME = "recv frame"  # any other frame (or garbage) arrived
    RECV_FATAL = "recv fatal"  # worker: the engine refused us for good
    CONNECTION_LOST = "connection lost"  # the transport is gone

    __hash__ = object.__hash__


_S = State
_I = Input

_WORKER_LIVE: Final[Mapping[Input, State]] = {
    _I.SEND_REGISTRATION: _S.OPEN,
    _I.SEND_CALL: _S.OPEN,
    _I.SEND_RESULT: _S.OPEN,
    _I.SEND_CONTROL: _S.OPEN,
    _I.CLOSE: _S.CLOSING,
    _I.SEND_FAILED: _S.ERROR,
    _I.RECV_HANDSHAKE: _S.OPEN,
    _I.RECV_FRAME: _S.OPEN,
    _I.RECV_FATAL: _S.CLOSING,
    _I.CONNECTION_LOST: _S.CLOSED,
}

_DRAINING: Final[Mapping[Input, State]] = {
    _I.SEND_RESULT: _S.CLOSING,
    _I.SEND_CONTROL: _S.CLOSING,
    _I.CLOSE: _S.CLOSING,
    _I.SEND_FAILED: _S.ERROR,
    _I.RECV_FRAME: _S.CLOSING,
    _I.CONNECTION_LOST: _S.CLOSED,
}

# A write that fails after the transport is already gone changes nothing: it is gone.
_ENDED: Final[Mapping[Input, State]] = {
    _I.CLOSE: _S.CLOSED,
    _I.SEND_FAILED: _S.CLOSED,
    _I.CONNECTION_LOST: _S.CLOSED,
}

# In ERROR nothing can be sent; frames still being read are discarded; closing and losing
# the transport are how the runtime tears down, so they are accepted and change nothing.
_BROKEN: Final[Mapping[Input, State]] = {
    _I.CLOSE: _S.ERROR,
    _I.SEND_FAILED: _S.ERROR,
    _I.RECV_FRAME: _S.ERROR,
    _I.CONNECTION_LOST: _S.ERROR,
}

TRANSITIONS: Final[Mapping[Role, Mapping[State, Mapping[Input, State]]]] = {
    Role.WORKER: {
        # Before workerregistered everything but the handshake keeps us in CONNECTING.
        _S.CONNECTING: {
            **{i: (_S.CONNECTING if s is _S.OPEN else s) for i, s in _WORKER_LIVE.items()},
            _I.RECV_HANDSHAKE: _S.OPEN,
        },
        _S.OPEN: _WORKER_LIVE,
        _S.CLOSING: {**_DRAINING, _I.RECV_HANDSHAKE: _S.CLOSING, _I.RECV_FATAL: _S.CLOSING},
        _S.CLOSED: _ENDED,
        _S.ERROR: {**_BROKEN, _I.RECV_HANDSHAKE: _S.ERROR, _I.RECV_FATAL: _S.ERROR},
    },
    Role.ENGINE: {
        # The engine speaks first: nothing may happen before workerregistered is sent.
        _S.CONNECTING: {
            _I.SEND_HANDSHAKE: _S.OPEN,
            _I.CLOSE: _S.CLOSED,
            _I.SEND_FAILED: _S.ERROR,
            _I.CONNECTION_LOST: _S.CLOSED,
        },
        _S.OPEN: {
            _I.SEND_REGISTRATION: _S.OPEN,
            _I.SEND_CALL: _S.OPEN,
            _I.SEND_RESULT: _S.OPEN,
            _I.SEND_CONTROL: _S.OPEN,
            _I.CLOSE: _S.CLOSING,
            _I.SEND_FAILED: _S.ERROR,
            _I.RECV_FRAME: _S.OPEN,
            _I.CONNECTION_LOST: _S.CLOSED,
        },
        _S.CLOSING: _DRAINING,
        _S.CLOSED: _ENDED,
        _S.ERROR: _BROKEN,
    },
}
"""role → state → input → next state. A missing entry is an illegal transition."""

ROLE_INPUTS: Final[Mapping[Role, frozenset[Input]]] = {
    Role.WORKER: frozenset(Input) - {Input.SEND_HANDSHAKE},
    Role.ENGINE: frozenset(Input) - {Input.RECV_HANDSHAKE, Input.RECV_FATAL},
}
"""The inputs that can happen to each role at all (the exhaustive test walks these)."""


STEADY_WHILE_OPEN: Final = frozenset(
    what
    for what in Input
    if all(TRANSITIONS[role][State.OPEN].get(what) is State.OPEN for role in Role)
)
"""Inputs that leave an OPEN connection OPEN in both roles: receiving a frame, sending a
call, a result, a registration or a control frame. The per-message paths of the protocol
cores skip the state walk for these while OPEN (`tests/protocol` checks the ones they
rely on)."""
