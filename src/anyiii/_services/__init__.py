"""Typed clients of the engine's services (state, streams, pub/sub, queues) for workers.

`requests.py` says how each service call looks on the wire and how its answer is read,
with no I/O; `clients.py` runs those requests through an async worker, `blocking.py`
through a blocking one; `feeds.py` turns a trigger type into an async iterator of events
(change feeds, topic subscriptions); `update_ops.py` (exported as `ops`) builds the
operations of `state::update` and `stream::update`. It enters the worker layer only
through `anyiii._worker`, never the reverse.
"""

from __future__ import annotations

from . import update_ops as ops
from .blocking import BlockingPubSub as BlockingPubSub
from .blocking import BlockingQueues as BlockingQueues
from .blocking import BlockingState as BlockingState
from .blocking import BlockingStreams as BlockingStreams
from .clients import PubSub as PubSub
from .clients import Queues as Queues
from .clients import State as State
from .clients import Streams as Streams
from .events import StateEvent as StateEvent
from .events import StreamEvent as StreamEvent
from .feeds import Feed as Feed
from .requests import Change as Change
from .requests import UpdateResult as UpdateResult

__all__ = [
    "BlockingPubSub",
    "BlockingQueues",
    "BlockingState",
    "BlockingStreams",
    "Change",
    "Feed",
    "PubSub",
    "Queues",
    "State",
    "StateEvent",
    "StreamEvent",
    "Streams",
    "UpdateResult",
    "ops",
]
