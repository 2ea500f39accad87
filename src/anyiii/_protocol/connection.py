"""What both protocol cores share: the state machine walk and the receive skeleton.

`WorkerConnection` and `EngineConnection` differ only in which frames they accept and what
they track. The walk through `state.TRANSITIONS`, the reading of one message (telemetry and
blank messages skipped, undecodable ones reported, frames meant for the other role refused)
and the counters live here, once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import ClassVar

from .._errors import LocalProtocolError, RemoteProtocolError
from . import events as ev
from .frames import (
    FRAME_DECODE_ERRORS,
    AnyFrame,
    Ping,
    Pong,
    UnknownFrame,
    decode_frame,
    decode_valid_frame,
    is_telemetry,
)
from .state import TRANSITIONS, Input, Role, State

__all__ = ["BaseConnection", "frame_tag"]


def frame_tag(frame: object) -> str:
    """The wire `type` of a frame object."""
    return str(type(frame).__struct_config__.tag)  # type: ignore[attr-defined]


class BaseConnection:
    """State, counters and the receive loop body shared by both roles."""

    ROLE: ClassVar[Role]
    _HANDLERS: ClassVar[Mapping[type, Callable[..., list[ev.Event]]]]

    def __init__(self) -> None:
        self._state = State.CONNECTING
        self._table = TRANSITIONS[self.ROLE]
        self.late_results = 0
        """Results dropped because nobody waited for them any more."""
        self.violations = 0
        """Frames from the peer that were malformed or out of place, and were dropped."""

    @property
    def state(self) -> State:
        """Where the connection is in its life (see `state.State`)."""
        return self._state

    def _advance(self, what: Input) -> None:
        # Hot paths skip this call while OPEN for the inputs in `state.STEADY_WHILE_OPEN`
        # (written `if self._state is not State.OPEN: self._advance(...)`).
        new = self._table[self._state].get(what)
        if new is None:
            raise LocalProtocolError(
                f"can't {what.value} when the connection is {self._state.value}"
            )
        self._state = new

    def _check(self, what: Input) -> None:
        """Refuse `what` in the current state without changing anything."""
        if what not in self._table[self._state]:
            raise LocalProtocolError(
                f"can't {what.value} when the connection is {self._state.value}"
            )

    def start_closing(self) -> None:
        """Our side is shutting down: nothing new starts; answers may still go out."""
        self._advance(Input.CLOSE)

    def send_failed(self) -> None:
        """A write was cancelled or failed part-way: the connection is broken for good."""
        self._advance(Input.SEND_FAILED)

    def receive(self, data: bytes | str | None) -> list[ev.Event]:
        """Feed one WebSocket message from the peer, or None when the transport is gone."""
        if data is None:
            return [self._lose_connection()]
        if self._state is State.ERROR:
            # A broken connection no longer trusts its input.
            self._advance(Input.RECV_FRAME)
            return []
        try:
            frame: AnyFrame | UnknownFrame = decode_valid_frame(data)
        except FRAME_DECODE_ERRORS:
            try:
                frame = decode_frame(data)  # what it is: an unknown type, or what is wrong
            except RemoteProtocolError as exc:
                self._advance(Input.RECV_FRAME)
                if is_telemetry(data) or not data.strip():
                    return []  # skipped, as the engine skips them (spec §1.1)
                self.violations += 1
                return [ev.ProtocolViolation(exc), *self._on_malformed(exc)]
        handler = self._HANDLERS.get(type(frame))
        if handler is None:
            self._advance(Input.RECV_FRAME)
            tag = frame_tag(frame)
            return self._violation(
                f"a {self.ROLE.value} does not accept {tag!r} frames", frame_type=tag
            )
        return handler(self, frame)

    def _violation(self, message: str, **details: str | None) -> list[ev.Event]:
        self.violations += 1
        return [ev.ProtocolViolation(RemoteProtocolError(message, **details))]

    def _lose_connection(self) -> ev.ConnectionLost:
        raise NotImplementedError

    def _on_malformed(self, exc: RemoteProtocolError) -> list[ev.Event]:
        raise NotImplementedError

    def _on_ping(self, frame: Ping) -> list[ev.Event]:
        self._advance(Input.RECV_FRAME)
        return [ev.PingReceived()]

    def _on_pong(self, frame: Pong) -> list[ev.Event]:
        self._advance(Input.RECV_FRAME)
        return [ev.PongReceived()]

    def _on_unknown(self, frame: UnknownFrame) -> list[ev.Event]:
        self._advance(Input.RECV_FRAME)
        return [ev.UnknownFrameReceived(frame.type, frame.raw)]
