"""`Client`: a connection to the engine that serves nothing, for calling functions."""

from __future__ import annotations

import os
from collections.abc import Sequence
from contextlib import AsyncExitStack
from types import TracebackType
from typing import Any, Self

from .._worker import Worker, connect
from .batch import Batch
from .calls import Call, DispatchID

__all__ = ["Client"]


class Client:
    """`async with anyiii.Client() as client:`: function handles called inside the block go
    through it, and `client.dispatch(calls)` sends calls built earlier.

    `url` defaults to `$III_URL` (then the local engine), `token` to `$III_TOKEN` (sent as
    `Authorization: Bearer`); other keyword options go to `anyiii.connect()`.
    """

    def __init__(self, url: str | None = None, *, token: str | None = None, **options: Any):
        self._url = url or os.environ.get("III_URL") or None
        headers = dict(options.pop("headers", None) or {})
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        self._options = {"worker_name": "anyiii-client", **options, "headers": headers}
        self._stack: AsyncExitStack | None = None
        self._worker: Worker | None = None

    @property
    def worker(self) -> Worker:
        """The client's connection (inside the block)."""
        if self._worker is None:
            raise RuntimeError("the client is not connected: use `async with Client() as c:`")
        return self._worker

    async def __aenter__(self) -> Self:
        stack = AsyncExitStack()
        self._worker = await stack.enter_async_context(connect(self._url, **self._options))
        self._stack = stack
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool | None:
        stack, self._stack, self._worker = self._stack, None, None
        assert stack is not None
        return await stack.__aexit__(exc_type, exc, traceback)

    async def dispatch(self, calls: Sequence[Call]) -> list[DispatchID]:
        """Send `calls` fire-and-forget, in one write; their dispatch ids in input order."""
        batch = Batch(self.worker)
        for call in calls:
            batch.add_call(call)
        return await batch.dispatch()

    def batch(self) -> Batch:
        """A new batch sent through this client."""
        return Batch(self.worker)
