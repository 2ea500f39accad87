"""The async worker runtime: the one module the public face imports the worker layer from.

Layout (see docs/architecture.md): `worker.py` the public `Worker` facade, `runtime.py`
what lasts across connections, `session.py` one connection, `invocations.py` running
inbound invocations, `calls.py` outgoing calls, `lifecycle.py` `connect()` with
supervision and bounded shutdown; the rest are the pieces users see (context, discovery,
streams, data channels, trigger types, connection state).
"""

from __future__ import annotations

from .._protocol.frames import StreamChannelRef as StreamChannelRef
from .calls import TriggerAction as TriggerAction
from .calls import TriggerRequest as TriggerRequest
from .channel_plane import ChannelError as ChannelError
from .channel_reader import ChannelMessagesFull as ChannelMessagesFull
from .channel_reader import ChannelReader as ChannelReader
from .channel_writer import ChannelWriter as ChannelWriter
from .channels import Channel as Channel
from .context import CallingWorker as CallingWorker
from .context import Context as Context
from .context import NoInvocationContext as NoInvocationContext
from .context import TraceContext as TraceContext
from .context import current_worker as current_worker
from .context import get_context as get_context
from .context import require_worker as require_worker
from .discovery import FunctionInfo as FunctionInfo
from .discovery import FunctionsSubscription as FunctionsSubscription
from .handlers import HandlerFunction as HandlerFunction
from .handlers import is_async_callable as is_async_callable
from .handles import FunctionHandle as FunctionHandle
from .handles import Trigger as Trigger
from .handles import TriggerTypeHandle as TriggerTypeHandle
from .handles import WorkerStatistics as WorkerStatistics
from .http_api import ApiRequest as ApiRequest
from .http_api import ApiResponse as ApiResponse
from .http_functions import HttpAuth as HttpAuth
from .http_functions import HttpAuthApiKey as HttpAuthApiKey
from .http_functions import HttpAuthBearer as HttpAuthBearer
from .http_functions import HttpAuthHmac as HttpAuthHmac
from .http_stream import EventStream as EventStream
from .http_stream import ResponseStream as ResponseStream
from .invocations import WorkerLimits as WorkerLimits
from .lifecycle import DEFAULT_URL as DEFAULT_URL
from .lifecycle import ReconnectConfig as ReconnectConfig
from .lifecycle import TransportOpener as TransportOpener
from .lifecycle import connect as connect
from .state import ConnectionState as ConnectionState
from .streams import IStream as IStream
from .streams import StreamDeleteInput as StreamDeleteInput
from .streams import StreamDeleteResult as StreamDeleteResult
from .streams import StreamGetInput as StreamGetInput
from .streams import StreamHandle as StreamHandle
from .streams import StreamListGroupsInput as StreamListGroupsInput
from .streams import StreamListInput as StreamListInput
from .streams import StreamSetInput as StreamSetInput
from .streams import StreamSetResult as StreamSetResult
from .trigger_types import TriggerConfig as TriggerConfig
from .trigger_types import TriggerHandler as TriggerHandler
from .worker import Servable as Servable
from .worker import Worker as Worker

__all__ = [
    "DEFAULT_URL",
    "CallingWorker",
    "Channel",
    "ChannelError",
    "ChannelMessagesFull",
    "ChannelReader",
    "ChannelWriter",
    "ConnectionState",
    "Context",
    "FunctionHandle",
    "FunctionInfo",
    "FunctionsSubscription",
    "HandlerFunction",
    "HttpAuthApiKey",
    "HttpAuthBearer",
    "HttpAuthHmac",
    "IStream",
    "NoInvocationContext",
    "ReconnectConfig",
    "Servable",
    "StreamDeleteInput",
    "StreamDeleteResult",
    "StreamGetInput",
    "StreamHandle",
    "StreamListGroupsInput",
    "StreamListInput",
    "StreamSetInput",
    "StreamSetResult",
    "StreamChannelRef",
    "TraceContext",
    "TransportOpener",
    "Trigger",
    "TriggerAction",
    "TriggerConfig",
    "TriggerHandler",
    "TriggerRequest",
    "TriggerTypeHandle",
    "Worker",
    "WorkerLimits",
    "WorkerStatistics",
    "connect",
    "current_worker",
    "get_context",
    "require_worker",
    "is_async_callable",
]
