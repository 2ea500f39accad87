"""WebSocket transports behind one small interface (private; used by the runtime and engine).

* `base`: the `Transport` protocol, `SendQueueFull`, and `TransportLimits` (the bounds
  every transport takes, with their defaults).
* `common`: the shared implementation: close bookkeeping, group-commit writes with
  shielded, bounded physical writes, `send_nowait`/`run_writer`; `pinging` adds the
  keepalive for transports whose wire has pings, `keepalive` runs it as a task.
* `budget`: `SharedBudget`, the bytes a server's connections may hold together (messages
  still arriving, messages queued) and which connection gives way when they would pass it.
* `websocket`: the default transport, websockets' Sans-I/O protocol over anyio streams:
  `open_websocket` / `connect_websocket` (client) and `serve_websockets` (server).
* `httpx_ws`: `open_httpx_websocket`, for connections that must go through an
  `httpx.AsyncClient`.
* `inbound`: what a transport holds for messages still arriving (fragments joined in one
  buffer, the small-fragment cap) and the UTF-8 check.
* `memory`: `memory_transport_pair`, two transports joined in memory, for tests.
* `wire`: what the socket transports share about the wire (read size, fragmenting, peer
  addresses), and `url_host`, which brackets an IPv6 host for a URL.
"""

from __future__ import annotations

from anyiii._transport.base import BinaryMessage as BinaryMessage
from anyiii._transport.base import SendQueueFull as SendQueueFull
from anyiii._transport.base import Transport as Transport
from anyiii._transport.base import TransportLimits as TransportLimits
from anyiii._transport.budget import SharedBudget as SharedBudget
from anyiii._transport.httpx_ws import open_httpx_websocket as open_httpx_websocket
from anyiii._transport.keepalive import keep_alive as keep_alive
from anyiii._transport.memory import memory_transport_pair as memory_transport_pair
from anyiii._transport.websocket_client import connect_websocket as connect_websocket
from anyiii._transport.websocket_client import open_websocket as open_websocket
from anyiii._transport.websocket_server import serve_websockets as serve_websockets
from anyiii._transport.wire import url_host as url_host

__all__ = [
    "BinaryMessage",
    "SendQueueFull",
    "Transport",
    "TransportLimits",
    "SharedBudget",
    "connect_websocket",
    "keep_alive",
    "memory_transport_pair",
    "open_httpx_websocket",
    "open_websocket",
    "serve_websockets",
    "url_host",
]
