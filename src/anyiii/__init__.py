"""anyiii: an anyio-native, structured-concurrency SDK for the iii engine.

Only the names re-exported here are public; every module with a leading underscore is an
implementation detail.
"""

from __future__ import annotations

from ._errors import AnyiiiError as AnyiiiError
from ._errors import AnyiiiInternalError as AnyiiiInternalError
from ._errors import ConnectError as ConnectError
from ._errors import ConnectionClosed as ConnectionClosed
from ._errors import InvocationError as InvocationError
from ._errors import LocalProtocolError as LocalProtocolError
from ._errors import ProtocolError as ProtocolError
from ._errors import RemoteProtocolError as RemoteProtocolError
from ._version import __version__ as __version__

__all__ = [
    "AnyiiiError",
    "AnyiiiInternalError",
    "ConnectError",
    "ConnectionClosed",
    "InvocationError",
    "LocalProtocolError",
    "ProtocolError",
    "RemoteProtocolError",
    "__version__",
]
