"""The engine's outgoing HTTP requests: the I/O of HTTP-invoked functions.

The router decides what to send (`http_targets.py`) and emits an `HttpCall`; an
`HttpCaller` sends it with one shared `httpx.AsyncClient` (pooled connections, TLS, proxies
from the environment, redirects not followed) in a task of its own, and reports the outcome
exactly once. Each request is bounded as a whole by its timeout (the function's
`timeout_ms`, or the engine's default): the DNS check, connecting, sending and reading the
answer. A failure of any kind becomes an `ErrorBody`, never an exception in the engine;
only cancellation passes through, and the engine cancels these tasks only when it stops,
after it has answered every call still waiting (`invocation_stopped`).
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing
from typing import Final, cast
from urllib.parse import urlsplit

import anyio
import anyio.abc
import httpx

from .._protocol.codes import HTTP_REQUEST_FAILED, HTTP_RESPONSE_FAILED, URL_VALIDATION_FAILED
from .._protocol.frames import ErrorBody
from .actions import HttpCall
from .http_targets import (
    DNS_LOOKUP_FAILED,
    PRIVATE_IP_BLOCKED,
    HttpRequest,
    HttpResponse,
    is_private_address,
)

__all__ = ["HttpCaller", "Report", "fetch"]

logger = logging.getLogger("anyiii.engine")

Report = Callable[[str, "HttpResponse | ErrorBody"], None]
"""Told how each call's request ended: (invocation id, the answer or why there is none)."""

CLOSE_TIMEOUT: Final = 5.0
"""How long closing the client's pooled connections may take when the engine stops."""


class HttpCaller:
    """Sends the engine's `HttpCall`s while `run()` runs (a task of the engine's).

    `transport` replaces httpx's network transport (tests pass an `httpx.MockTransport`).
    """

    def __init__(
        self, report: Report, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self._report = report
        self._transport = transport
        self._client: httpx.AsyncClient | None = None
        self._tasks: anyio.abc.TaskGroup | None = None

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Serve requests until cancelled; then close every pooled connection (bounded)."""
        client = httpx.AsyncClient(timeout=None, follow_redirects=False, transport=self._transport)
        try:
            async with anyio.create_task_group() as tasks:
                self._client, self._tasks = client, tasks
                task_status.started()
                await anyio.sleep_forever()
        finally:
            self._client = self._tasks = None
            with anyio.move_on_after(CLOSE_TIMEOUT, shield=True):
                await client.aclose()

    def start(self, call: HttpCall) -> None:
        """Send one request in the background; its outcome goes to `report`."""
        if self._tasks is None or self._client is None:
            failure = ErrorBody(HTTP_REQUEST_FAILED, "the engine is not running")
            self._report(call.invocation_id, failure)
            return
        self._tasks.start_soon(self._send, self._client, call)

    async def _send(self, client: httpx.AsyncClient, call: HttpCall) -> None:
        outcome = await fetch(client, call.request)
        try:
            self._report(call.invocation_id, outcome)
        except Exception:  # a bug in routing the answer must not take the engine down
            logger.exception("answering HTTP call %s failed", call.invocation_id)


async def fetch(client: httpx.AsyncClient, request: HttpRequest) -> HttpResponse | ErrorBody:
    """Send `request` and read its answer, all within `request.timeout`.

    A failure before the answer's head arrives is `http_request_failed` (the timeout
    included, as in the real engine); while reading its body, `http_response_failed`.
    """
    reading = False
    with anyio.move_on_after(request.timeout):
        try:
            if request.check_dns:
                problem = await _resolved_problem(request.url)
                if problem is not None:
                    return ErrorBody(URL_VALIDATION_FAILED, problem)
            response = await client.send(
                client.build_request(
                    request.method, request.url, headers=list(request.headers), content=request.body
                ),
                stream=True,
            )
            reading = True
            try:
                body = await _read_body(response, request.max_response_bytes)
            finally:
                with anyio.CancelScope(shield=True), anyio.move_on_after(CLOSE_TIMEOUT):
                    await response.aclose()
            if isinstance(body, ErrorBody):
                return body
            return HttpResponse(response.status_code, body)
        except Exception as exc:
            return _failure(request, reading, f"{type(exc).__name__}: {exc}")
    return _failure(request, reading, f"operation timed out after {request.timeout * 1000:g} ms")


def _failure(request: HttpRequest, reading: bool, what: str) -> ErrorBody:
    if reading:
        return ErrorBody(HTTP_RESPONSE_FAILED, f"error reading the response body: {what}")
    return ErrorBody(HTTP_REQUEST_FAILED, f"error sending request for url ({request.url}): {what}")


async def _read_body(response: httpx.Response, limit: int) -> bytes | ErrorBody:
    chunks: list[bytes] = []
    size = 0
    # An async generator in fact: closed here even when the loop is left early.
    stream = cast(AsyncGenerator[bytes, None], response.aiter_bytes())
    async with aclosing(stream) as body:
        async for chunk in body:
            size += len(chunk)
            if size > limit:
                return ErrorBody(HTTP_RESPONSE_FAILED, f"the response body exceeds {limit} bytes")
            chunks.append(chunk)
    return b"".join(chunks)


async def _resolved_problem(url: str) -> str | None:
    """Resolve the URL's host; a private address among the answers blocks the call (what
    the real engine checks at registration and at every call)."""
    host = urlsplit(url).hostname or ""
    try:
        answers = await anyio.getaddrinfo(host, 443)
    except OSError:
        return DNS_LOOKUP_FAILED
    for *_, sockaddr in answers:
        address = str(sockaddr[0]).split("%", 1)[0]
        try:
            resolved = ipaddress.ip_address(address)
        except ValueError:
            continue
        if is_private_address(resolved):
            return PRIVATE_IP_BLOCKED
    return None
