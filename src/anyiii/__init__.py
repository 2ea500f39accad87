"""anyiii: an anyio-native, structured-concurrency SDK for the iii engine.

`async with anyiii.connect() as worker:` gives a worker for the length of the block, under
asyncio or trio; `anyiii.engine.run()` runs an embedded engine. Only the names re-exported
here (and in `anyiii.engine`) are public; every module with a leading underscore is an
implementation detail.
"""

from __future__ import annotations

from . import blocking as blocking
from . import engine as engine
from ._errors import AnyiiiError as AnyiiiError
from ._errors import ConnectError as ConnectError
from ._errors import ConnectionClosed as ConnectionClosed
from ._errors import InvocationError as InvocationError
from ._errors import LocalProtocolError as LocalProtocolError
from ._errors import ProtocolError as ProtocolError
from ._errors import RemoteProtocolError as RemoteProtocolError
from ._functions import AnyError as AnyError
from ._functions import AsyncFunction as AsyncFunction
from ._functions import AsyncFunction as Function
from ._functions import Batch as Batch
from ._functions import BlockingFunction as BlockingFunction
from ._functions import Call as Call
from ._functions import Client as Client
from ._functions import DispatchID as DispatchID
from ._functions import Input as Input
from ._functions import NoWorker as NoWorker
from ._functions import Output as Output
from ._functions import PrimitiveFunction as PrimitiveFunction
from ._functions import Registry as Registry
from ._functions import Reset as Reset
from ._functions import RetryPolicy as RetryPolicy
from ._functions import Status as Status
from ._functions import all as all
from ._functions import any as any
from ._functions import default_registry as default_registry
from ._functions import function as function
from ._functions import gather as gather
from ._functions import race as race
from ._functions import register_error_type as register_error_type
from ._functions import register_output_type as register_output_type
from ._functions import set_default_registry as set_default_registry
from ._run import run as run
from ._services import Change as Change
from ._services import Feed as Feed
from ._services import PubSub as PubSub
from ._services import Queues as Queues
from ._services import State as State
from ._services import StateEvent as StateEvent
from ._services import StreamEvent as StreamEvent
from ._services import Streams as Streams
from ._services import UpdateResult as UpdateResult
from ._services import ops as ops
from ._version import __version__ as __version__
from ._worker import ApiRequest as ApiRequest
from ._worker import ApiResponse as ApiResponse
from ._worker import Channel as Channel
from ._worker import ChannelError as ChannelError
from ._worker import ChannelMessagesFull as ChannelMessagesFull
from ._worker import ChannelReader as ChannelReader
from ._worker import ChannelWriter as ChannelWriter
from ._worker import ConnectionState as ConnectionState
from ._worker import Context as Context
from ._worker import EventStream as EventStream
from ._worker import FunctionHandle as FunctionHandle
from ._worker import FunctionInfo as FunctionInfo
from ._worker import FunctionsSubscription as FunctionsSubscription
from ._worker import HttpAuthApiKey as HttpAuthApiKey
from ._worker import HttpAuthBearer as HttpAuthBearer
from ._worker import HttpAuthHmac as HttpAuthHmac
from ._worker import IStream as IStream
from ._worker import NoInvocationContext as NoInvocationContext
from ._worker import ReconnectConfig as ReconnectConfig
from ._worker import ResponseStream as ResponseStream
from ._worker import StreamChannelRef as StreamChannelRef
from ._worker import StreamDeleteInput as StreamDeleteInput
from ._worker import StreamDeleteResult as StreamDeleteResult
from ._worker import StreamGetInput as StreamGetInput
from ._worker import StreamHandle as StreamHandle
from ._worker import StreamListGroupsInput as StreamListGroupsInput
from ._worker import StreamListInput as StreamListInput
from ._worker import StreamSetInput as StreamSetInput
from ._worker import StreamSetResult as StreamSetResult
from ._worker import TraceContext as TraceContext
from ._worker import Trigger as Trigger
from ._worker import TriggerAction as TriggerAction
from ._worker import TriggerConfig as TriggerConfig
from ._worker import TriggerHandler as TriggerHandler
from ._worker import TriggerRequest as TriggerRequest
from ._worker import TriggerTypeHandle as TriggerTypeHandle
from ._worker import Worker as Worker
from ._worker import WorkerLimits as WorkerLimits
from ._worker import WorkerStatistics as WorkerStatistics
from ._worker import connect as connect
from ._worker import get_context as get_context
from .blocking import BlockingWorker as BlockingWorker
from .blocking import InitOptions as InitOptions
from .blocking import ReconnectionConfig as ReconnectionConfig
from .blocking import WorkerShutDown as WorkerShutDown
from .blocking import create_stream as create_stream
from .blocking import register_worker as register_worker

__all__ = [
    "AnyError",
    "AnyiiiError",
    "ApiRequest",
    "ApiResponse",
    "AsyncFunction",
    "Batch",
    "BlockingFunction",
    "BlockingWorker",
    "Call",
    "Change",
    "Channel",
    "ChannelError",
    "ChannelMessagesFull",
    "ChannelReader",
    "ChannelWriter",
    "Client",
    "ConnectError",
    "ConnectionClosed",
    "ConnectionState",
    "Context",
    "DispatchID",
    "Feed",
    "Function",
    "EventStream",
    "FunctionHandle",
    "FunctionInfo",
    "FunctionsSubscription",
    "HttpAuthApiKey",
    "HttpAuthBearer",
    "HttpAuthHmac",
    "IStream",
    "InitOptions",
    "Input",
    "InvocationError",
    "LocalProtocolError",
    "NoInvocationContext",
    "NoWorker",
    "Output",
    "PrimitiveFunction",
    "ProtocolError",
    "PubSub",
    "Queues",
    "ReconnectConfig",
    "ReconnectionConfig",
    "ResponseStream",
    "Registry",
    "RemoteProtocolError",
    "Reset",
    "RetryPolicy",
    "State",
    "StateEvent",
    "Status",
    "StreamDeleteInput",
    "StreamChannelRef",
    "StreamDeleteResult",
    "StreamEvent",
    "StreamGetInput",
    "StreamHandle",
    "StreamListGroupsInput",
    "StreamListInput",
    "StreamSetInput",
    "StreamSetResult",
    "Streams",
    "TraceContext",
    "Trigger",
    "TriggerAction",
    "TriggerConfig",
    "TriggerHandler",
    "TriggerRequest",
    "TriggerTypeHandle",
    "UpdateResult",
    "Worker",
    "WorkerLimits",
    "WorkerShutDown",
    "WorkerStatistics",
    "all",
    "any",
    "blocking",
    "connect",
    "create_stream",
    "default_registry",
    "engine",
    "function",
    "gather",
    "get_context",
    "ops",
    "race",
    "register_error_type",
    "register_output_type",
    "register_worker",
    "run",
    "set_default_registry",
    "__version__",
]
