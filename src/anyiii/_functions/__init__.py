"""The Dispatch-style function model on top of the worker runtime (see docs/functions.md).

`registry.py` declares and serves functions; `functions.py` the handles (call, dispatch,
build a call, serve with `Reset` as a loop); `calls.py` argument binding and `Call`;
`primitive.py` raw-payload functions; `batch.py` and `client.py` sending calls. It imports
the worker layer only through `anyiii._worker`, never the reverse.
"""

from __future__ import annotations

from .batch import Batch as Batch
from .calls import Call as Call
from .calls import DispatchID as DispatchID
from .calls import NoWorker as NoWorker
from .client import Client as Client
from .combinators import AnyError as AnyError
from .combinators import any as any
from .combinators import gather as gather
from .combinators import race as race
from .functions import AsyncFunction as AsyncFunction
from .functions import BlockingFunction as BlockingFunction
from .functions import Reset as Reset
from .primitive import Input as Input
from .primitive import Output as Output
from .primitive import PrimitiveFunction as PrimitiveFunction
from .registry import Registry as Registry
from .registry import default_registry as default_registry
from .registry import function as function
from .registry import set_default_registry as set_default_registry
from .status import RetryPolicy as RetryPolicy
from .status import Status as Status
from .status import register_error_type as register_error_type
from .status import register_output_type as register_output_type

all = gather
"""`anyiii.all`: the name Dispatch uses for `gather`."""

__all__ = [
    "AnyError",
    "AsyncFunction",
    "Batch",
    "BlockingFunction",
    "Call",
    "Client",
    "DispatchID",
    "Input",
    "NoWorker",
    "Output",
    "PrimitiveFunction",
    "Registry",
    "Reset",
    "RetryPolicy",
    "Status",
    "all",
    "any",
    "default_registry",
    "function",
    "gather",
    "race",
    "register_error_type",
    "register_output_type",
    "set_default_registry",
]
