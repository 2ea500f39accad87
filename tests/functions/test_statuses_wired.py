"""Error statuses on the wire and retries, through the embedded engine on both backends."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import pytest

import anyiii
from anyiii._functions.status import preserved_registrations
from anyiii.testing import running_engine


class OutOfStock(Exception):
    """An application error the registry classifies."""


@asynccontextmanager
async def serving(registry: anyiii.Registry) -> AsyncIterator[None]:
    async with (
        running_engine(http_port=None) as engine,
        anyiii.connect(engine.url, registry=registry) as server,
        anyiii.Client(engine.url),
    ):
        await server.trigger_async({"function_id": "engine::functions::list", "payload": {}})
        yield


async def test_classified_errors_travel_as_status_names_and_others_as_invocation_failed() -> None:
    registry = anyiii.Registry("statuses")

    @registry.function(id="statuses::fail")
    async def fail(kind: str) -> None:
        if kind == "value":
            raise ValueError("bad value")
        if kind == "stock":
            raise OutOfStock("no tea")
        raise RuntimeError("unclassified")

    with preserved_registrations():
        anyiii.register_error_type(OutOfStock, anyiii.Status.THROTTLED)
        with anyio.fail_after(20):
            async with serving(registry):
                outcomes = {}
                for kind in ("value", "stock", "other"):
                    with pytest.raises(anyiii.InvocationError) as caught:
                        await fail(kind)
                    outcomes[kind] = (
                        caught.value.code,
                        caught.value.status,
                        caught.value.temporary,
                    )
    assert outcomes == {
        "value": ("INVALID_ARGUMENT", anyiii.Status.INVALID_ARGUMENT, False),
        "stock": ("THROTTLED", anyiii.Status.THROTTLED, True),
        "other": ("invocation_failed", None, False),
    }


@pytest.mark.autojump
async def test_temporary_failures_are_retried_with_backoff_and_permanent_ones_are_not() -> None:
    registry = anyiii.Registry("retries", retry=anyiii.RetryPolicy(attempts=4, initial_delay=1.0))
    tries = {"flaky": 0, "broken": 0}

    @registry.function(id="retries::flaky")
    async def flaky() -> str:
        tries["flaky"] += 1
        if tries["flaky"] < 3:
            raise TimeoutError("not yet")  # TIMEOUT: temporary
        return "done"

    @registry.function(id="retries::broken")
    async def broken() -> str:
        tries["broken"] += 1
        raise ValueError("never")  # INVALID_ARGUMENT: permanent

    with anyio.fail_after(60):
        async with serving(registry):
            assert await flaky() == "done"
            assert tries["flaky"] == 3
            with pytest.raises(anyiii.InvocationError) as caught:
                await broken()
            assert caught.value.code == "INVALID_ARGUMENT"
            assert tries["broken"] == 1
