"""Streamed bodies of the `http` trigger (spec §10.1 with §12): the request body goes to
the handler on the `request_body` channel, and a handler that returns null answers on the
`response` channel.

What arrives on the response channel: text items are control messages,
`{"type": "set_status", "status_code": N}` (100-599) and `{"type": "set_headers",
"headers": {...}}` (string values); binary items are body chunks; the writer closing ends
the response. The head (status and headers) goes out with the first body chunk, or at
the end if there is none; control messages after that are ignored, as the real engine
ignores them.

Who answers is decided as in the real engine (`rest_api/views.rs`): while the handler
runs, the engine reads the response channel; a non-null result that comes before any
body chunk is the answer (mapped as usual), an error before it is a 500, and otherwise
(a body chunk first, the channel ending, or a null result) the channel answers.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Final

import anyio
import msgspec
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from msgspec import Raw

from .._protocol.codes import SET_HEADERS, SET_STATUS
from .._protocol.frames import ErrorBody
from .._transport import BinaryMessage
from .channels import MAX_ITEM_BYTES

__all__ = ["ChannelAnswer", "ResponseHead", "apply_control", "await_answer", "send_body"]

_NULL: Final = b"null"


@dataclass
class ResponseHead:
    """The status and headers a streamed response will start with."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)


def apply_control(message: bytes, head: ResponseHead) -> None:
    """Apply one control message to `head`; anything else is ignored (and so is a status
    outside 100-599 or a header value that is not a string)."""
    try:
        control = msgspec.json.decode(message)
    except msgspec.DecodeError:
        return
    if not isinstance(control, dict):
        return
    kind = control.get("type")
    if kind == SET_STATUS:
        status = control.get("status_code")
        if type(status) is int and 100 <= status <= 599:
            head.status = status
    elif kind == SET_HEADERS:
        headers = control.get("headers")
        if isinstance(headers, dict):
            for name, value in headers.items():
                if isinstance(value, str):
                    head.headers[str(name).lower()] = value


@dataclass
class ChannelAnswer:
    """The response comes from the channel: `first_chunk` is the body's first chunk (None
    if the channel ended without one)."""

    first_chunk: bytes | None


Answer = tuple[Raw | None, ErrorBody | None] | ChannelAnswer
"""What `await_answer` decided: the handler's (result, error), or the channel."""


async def await_answer(
    invoke: Callable[[], Awaitable[tuple[Raw | None, ErrorBody | None]]],
    receiver: MemoryObjectReceiveStream[bytes],
    head: ResponseHead,
    writer_connected: Callable[[], bool],
) -> Answer:
    """Run the handler and read the response channel until one of them decides who
    answers (see the module docstring). Control messages read on the way go to `head`.

    A null result while nobody has connected to the channel's writing end is the
    handler's answer (`200 {}` once mapped): the contract's advice (§15.4), where the
    real engine would wait for the channel until its timeout."""
    decided: list[Answer] = []

    async with anyio.create_task_group() as tasks:

        async def run_handler() -> None:
            result, error = await invoke()
            null = result is None or bytes(result) == _NULL
            if error is not None or not null or not writer_connected():
                decided.append((result, error))
                tasks.cancel_scope.cancel()
            # A null result with the channel open: the channel answers.

        async def read_channel() -> None:
            async for item in receiver:
                if type(item) is BinaryMessage:
                    decided.append(ChannelAnswer(item))
                    tasks.cancel_scope.cancel()
                    return
                apply_control(item, head)
            decided.append(ChannelAnswer(None))
            tasks.cancel_scope.cancel()

        tasks.start_soon(run_handler)
        tasks.start_soon(read_channel)
    return decided[0]


async def send_body(
    receiver: MemoryObjectReceiveStream[bytes],
    first_chunk: bytes | None,
    send_chunk: Callable[[bytes], Awaitable[None]],
) -> None:
    """Send the body: `first_chunk`, then every binary item until the writer closes.
    Text items after the head are ignored."""
    if first_chunk is not None:
        if first_chunk:
            await send_chunk(first_chunk)
        async for item in receiver:
            if type(item) is BinaryMessage and item:
                await send_chunk(item)


async def feed_body(
    next_chunk: Callable[[], Awaitable[bytes | None]],
    sender: MemoryObjectSendStream[bytes],
) -> None:
    """Copy the request body into the `request_body` channel, in items of at most 64 KiB,
    then close it (the end of the body). `next_chunk` returns None at the end. A full
    channel stops the reading, so the client's upload slows to the handler's pace."""
    async with sender:
        while (chunk := await next_chunk()) is not None:
            for start in range(0, len(chunk), MAX_ITEM_BYTES):
                await sender.send(BinaryMessage(chunk[start : start + MAX_ITEM_BYTES]))
