"""The floor programs' shared parts (`_floor.py`): framing, the handshake's bytes, and
what each role does with one message. Measuring sticks, not protocol code to reuse.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Callable
from typing import Any

import msgspec

from anyiii._engine.payloads import with_caller
from anyiii._protocol.frames import (
    ErrorBody,
    InvocationResult,
    InvokeFunction,
    RegisterFunction,
    decode_valid_frame,
    encode_frame,
)
from anyiii._transport.frame_reader import apply_mask
from anyiii._transport.websocket import MaskSource, _text_frame

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
FUNCTION = "bench::add"


# --- framing ---------------------------------------------------------------------------------


class Framing:
    """One side's framing: split received bytes into payloads, frame payloads to send."""

    def __init__(self, *, client: bool) -> None:
        self.client = client
        self.buffer = bytearray()
        self.masks = MaskSource() if client else None

    def frame(self, payload: bytes) -> bytes:
        # anyiii's own builder of whole text frames: already as little as framing can be.
        return _text_frame(payload, self.masks)

    def split(self, data: bytes) -> list[bytes]:
        buffer = self.buffer
        buffer += data
        out = []
        at, size = 0, len(buffer)
        while size - at >= 2:
            second = buffer[at + 1]
            length = second & 0x7F
            head = 2
            if length == 126:
                length = int.from_bytes(buffer[at + 2 : at + 4], "big")
                head = 4
            elif length == 127:
                length = int.from_bytes(buffer[at + 2 : at + 10], "big")
                head = 10
            masked = second & 0x80
            end = at + head + (4 if masked else 0) + length
            if end > size:
                break
            opcode = buffer[at] & 0x0F
            if opcode in (1, 2):  # data; pings, pongs and closes are not the floor's business
                if masked:
                    mask = buffer[at + head : at + head + 4]
                    out.append(apply_mask(buffer[at + head + 4 : end], mask))
                else:
                    out.append(bytes(buffer[at + head : end]))
            at = end
        del buffer[:at]
        return out


def accept_response(head: bytes) -> bytes:
    """The 101 answer to a client's upgrade request (its head, up to the blank line)."""
    lines = head.decode("latin-1").split("\r\n")
    key = next(
        value
        for name, _, value in (line.partition(": ") for line in lines)
        if name.lower() == "sec-websocket-key"
    )
    accept = base64.b64encode(hashlib.sha1(key.encode() + _GUID).digest())
    return (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n"
    )


def upgrade_request() -> bytes:
    key = base64.b64encode(os.urandom(16))
    return (
        b"GET / HTTP/1.1\r\nHost: floor\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: " + key + b"\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )


# --- what each role does with a message --------------------------------------------------------


class Router:
    """The relay's routing: function id → link for calls, invocation id → link for results."""

    def __init__(self) -> None:
        self.functions: dict[str, Any] = {}
        self.waiting: dict[str, Any] = {}

    def on_message(self, link: Any, data: bytes) -> None:
        try:
            frame = decode_valid_frame(data)
        except Exception:
            return
        if type(frame) is InvokeFunction:
            callee = self.functions.get(frame.function_id)
            if callee is None:
                if frame.invocation_id is not None:
                    answer = InvocationResult(
                        invocation_id=frame.invocation_id,
                        function_id=frame.function_id,
                        error=ErrorBody(code="function_not_found", message="not yet"),
                    )
                    link.send(encode_frame(answer))
                return
            if frame.invocation_id is not None:
                self.waiting[frame.invocation_id] = link
            forwarded = InvokeFunction(
                invocation_id=frame.invocation_id,
                function_id=frame.function_id,
                data=with_caller(frame.data, link.worker_id),
            )
            callee.send(encode_frame(forwarded))
        elif type(frame) is InvocationResult:
            caller = self.waiting.pop(frame.invocation_id, None)
            if caller is not None:
                caller.send(encode_frame(frame))
        elif type(frame) is RegisterFunction:
            self.functions[frame.id] = link


def answer_invocation(data: bytes) -> bytes | None:
    """The callee's work for one message: `bench::add`'s answer, or None."""
    try:
        frame = decode_valid_frame(data)
    except Exception:
        return None
    if type(frame) is not InvokeFunction or frame.invocation_id is None:
        return None
    payload = msgspec.json.decode(frame.data)
    result = msgspec.Raw(msgspec.json.encode({"c": payload["a"] + payload["b"]}))
    return encode_frame(
        InvocationResult(
            invocation_id=frame.invocation_id, function_id=frame.function_id, result=result
        )
    )


def call_frame(new_id: Callable[[], str], data: msgspec.Raw) -> tuple[str, bytes]:
    invocation_id = new_id()
    frame = InvokeFunction(function_id=FUNCTION, invocation_id=invocation_id, data=data)
    return invocation_id, encode_frame(frame)


def result_of(data: bytes) -> InvocationResult | None:
    try:
        frame = decode_valid_frame(data)
    except Exception:
        return None
    return frame if type(frame) is InvocationResult else None
