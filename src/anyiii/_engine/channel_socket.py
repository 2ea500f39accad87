"""The channels' data plane on the worker port (spec §12): one WebSocket per channel end.

`dir=write`: every binary frame the client sends is data and every text frame a message,
put in order into the channel's bounded buffer (binary data cut into items of at most
`MAX_ITEM_BYTES`); while the buffer is full the socket is not read, so TCP slows the
writer. The client closing the socket normally (1000) ends the stream; any other end
(abnormal closure, an error code) marks the channel failed.

`dir=read`: the channel's items go out in order, binary as binary and messages as text;
after the last one the engine closes with 1000 if the writer finished, or 1011 with the
reason if the stream failed. A reader that goes away closes the buffer, and the writer's
socket is closed with 1011 ("the channel's reader is gone").

An unknown channel or key never gets here: the upgrade is refused with 404 first
(`ChannelHub.find` in the server's `accept`). An end already taken is closed with 1008.
"""

from __future__ import annotations

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from .._errors import ConnectionClosed
from .._transport import BinaryMessage, Transport
from .channels import MAX_ITEM_BYTES, Channel, ChannelHub, ChannelTarget

__all__ = ["serve_channel_end"]

_NORMAL_CLOSE = 1000
_POLICY = 1008
_FAILED = 1011


async def serve_channel_end(transport: Transport, hub: ChannelHub, target: ChannelTarget) -> None:
    """Serve one data-plane socket until its end of the channel is done; closes it."""
    channel = hub.find(target.channel_id, target.access_key)
    if target.direction == "write":
        sender = hub.take_sender(target.channel_id, target.access_key)
        if channel is None or sender is None:
            await transport.aclose(_POLICY, "this channel's writer is already connected")
            return
        async with sender:
            code, reason = await _pump_in(transport, sender, channel)
    else:
        receiver = hub.take_receiver(target.channel_id, target.access_key)
        if channel is None or receiver is None:
            await transport.aclose(_POLICY, "this channel's reader is already connected")
            return
        async with receiver:
            code, reason = await _pump_out(transport, receiver, channel)
    await transport.aclose(code, reason)


async def _pump_in(
    transport: Transport,
    sender: MemoryObjectSendStream[bytes],
    channel: Channel,
) -> tuple[int, str]:
    """Socket → buffer, until the client closes; the close to answer with."""
    try:
        while True:
            for message in await transport.receive_some():
                if type(message) is BinaryMessage and len(message) > MAX_ITEM_BYTES:
                    view = memoryview(message)
                    for start in range(0, len(view), MAX_ITEM_BYTES):
                        await sender.send(BinaryMessage(view[start : start + MAX_ITEM_BYTES]))
                else:
                    await sender.send(message)
    except ConnectionClosed as closed:
        if closed.code != _NORMAL_CLOSE:
            channel.failure = f"the writer's connection ended with {closed.code}: {closed.reason}"
        return _NORMAL_CLOSE, ""
    except (anyio.BrokenResourceError, anyio.ClosedResourceError):
        return _FAILED, "the channel's reader is gone"


async def _pump_out(
    transport: Transport,
    receiver: MemoryObjectReceiveStream[bytes],
    channel: Channel,
) -> tuple[int, str]:
    """Buffer → socket, until the stream ends or the client leaves; the close to send."""
    async with anyio.create_task_group() as tasks:
        # The transport answers pings and notices the client's close only while someone
        # receives: this task does, and stops the pump if the client goes away.
        async def watch_client() -> None:
            try:
                while True:
                    await transport.receive()
            except ConnectionClosed:
                tasks.cancel_scope.cancel()

        tasks.start_soon(watch_client)
        try:
            async for item in receiver:
                await transport.send(item)
        except ConnectionClosed:
            tasks.cancel_scope.cancel()
            return _NORMAL_CLOSE, ""
        tasks.cancel_scope.cancel()
    if channel.failure is not None:
        return _FAILED, channel.failure[:120]
    return _NORMAL_CLOSE, ""
