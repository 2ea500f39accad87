"""Custom stream storage (`IStream`, `worker.create_stream`) invoked through the embedded
engine, by an anyiii worker and by the official Python SDK, on asyncio and trio."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from interop_support import official_worker, python_worker_argv

import anyiii


class MemoryStream(anyiii.IStream[dict[str, Any]]):
    """A dict of groups of items; `fail_on` makes `get` of that item raise."""

    def __init__(self, fail_on: str | None = None) -> None:
        self.groups: dict[str, dict[str, Any]] = {}
        self.fail_on = fail_on

    async def get(self, input: anyiii.StreamGetInput) -> dict[str, Any] | None:
        if input.item_id == self.fail_on:
            raise LookupError(f"the store lost {input.item_id}")
        return self.groups.get(input.group_id, {}).get(input.item_id)

    async def set(self, input: anyiii.StreamSetInput) -> anyiii.StreamSetResult[dict[str, Any]]:
        group = self.groups.setdefault(input.group_id, {})
        old = group.get(input.item_id)
        group[input.item_id] = input.data
        return anyiii.StreamSetResult(old_value=old, new_value=input.data)

    async def delete(self, input: anyiii.StreamDeleteInput) -> anyiii.StreamDeleteResult:
        return anyiii.StreamDeleteResult(
            old_value=self.groups.get(input.group_id, {}).pop(input.item_id, None)
        )

    async def list(self, input: anyiii.StreamListInput) -> list[dict[str, Any]]:
        return list(self.groups.get(input.group_id, {}).values())

    async def list_groups(self, input: anyiii.StreamListGroupsInput) -> list[str]:
        return sorted(self.groups)


@asynccontextmanager
async def two_workers() -> AsyncIterator[tuple[str, anyiii.Worker, anyiii.Worker]]:
    async with (
        anyiii.engine.run(http_port=None) as engine,
        anyiii.connect(engine.url, worker_name="store") as store,
        anyiii.connect(engine.url, worker_name="client") as client,
    ):
        yield engine.url, store, client


async def call(worker: anyiii.Worker, function_id: str, payload: Any) -> Any:
    return await worker.trigger_async({"function_id": function_id, "payload": payload})


async def test_every_operation_through_the_engine() -> None:
    impl = MemoryStream()
    with anyio.fail_after(20):
        async with two_workers() as (_, store, client):
            handle = store.create_stream("carts", impl)
            assert handle.function_ids == [
                "stream::get(carts)",
                "stream::set(carts)",
                "stream::delete(carts)",
                "stream::list(carts)",
                "stream::list_groups(carts)",
            ]
            await call(store, "engine::functions::list", {})  # registrations applied
            item = {"stream_name": "carts", "group_id": "u1", "item_id": "c1"}

            assert await call(client, "stream::get(carts)", item) is None
            first = await call(client, "stream::set(carts)", {**item, "data": {"n": 1}})
            assert first == {"old_value": None, "new_value": {"n": 1}}
            second = await call(client, "stream::set(carts)", {**item, "data": {"n": 2}})
            assert second == {"old_value": {"n": 1}, "new_value": {"n": 2}}
            await call(client, "stream::set(carts)", {**item, "group_id": "u2", "data": {"n": 9}})
            assert await call(client, "stream::get(carts)", item) == {"n": 2}
            listed = await call(
                client, "stream::list(carts)", {"stream_name": "carts", "group_id": "u1"}
            )
            assert listed == [{"n": 2}]
            groups = await call(client, "stream::list_groups(carts)", {"stream_name": "carts"})
            assert groups == ["u1", "u2"]
            assert await call(client, "stream::delete(carts)", item) == {"old_value": {"n": 2}}
            assert await call(client, "stream::delete(carts)", item) == {"old_value": None}

            info = await call(
                store, "engine::functions::info", {"function_id": "stream::set(carts)"}
            )
            assert "item_id" in str(info["request_schema"])


async def test_errors_bad_input_and_unregistering() -> None:
    with anyio.fail_after(20):
        async with two_workers() as (_, store, client):
            handle = store.create_stream("orders", MemoryStream(fail_on="broken"))
            other = store.create_stream("users", MemoryStream())
            await call(store, "engine::functions::list", {})

            with pytest.raises(anyiii.InvocationError) as caught:
                await call(
                    client,
                    "stream::get(orders)",
                    {"stream_name": "orders", "group_id": "g", "item_id": "broken"},
                )
            assert caught.value.code == "invocation_failed"
            assert "the store lost broken" in caught.value.message

            with pytest.raises(anyiii.InvocationError, match="stream_name"):
                await call(client, "stream::get(orders)", {"group_id": "g", "item_id": "x"})
            with pytest.raises(anyiii.InvocationError, match="Expected `str`"):
                await call(
                    client,
                    "stream::list(orders)",
                    {"stream_name": "orders", "group_id": 42},
                )
            with pytest.raises(anyiii.InvocationError, match="called for stream 'users'"):
                await call(client, "stream::list_groups(orders)", {"stream_name": "users"})

            await handle.unregister()
            await call(store, "engine::functions::list", {})
            with pytest.raises(anyiii.InvocationError) as gone:
                await call(client, "stream::list_groups(orders)", {"stream_name": "orders"})
            assert gone.value.code == "function_not_found"
            assert await call(client, "stream::list_groups(users)", {"stream_name": "users"}) == []
            assert other.function_ids[0] == "stream::get(users)"

            with pytest.raises(ValueError, match="parentheses"):
                store.create_stream("a(b)", MemoryStream())
            with pytest.raises(TypeError, match=r"needs a get\(input\) method"):
                store.create_stream("partial", object())


async def test_plain_method_implementations_work_too() -> None:
    """Plain methods run in a worker thread (like plain function handlers), never on the
    event loop's thread, where they would stall every invocation."""
    loop_thread = threading.get_ident()
    threads: list[int] = []

    class Plain:
        def get(self, input: anyiii.StreamGetInput) -> str:
            threads.append(threading.get_ident())
            return f"{input.group_id}/{input.item_id}"

        def set(self, input: anyiii.StreamSetInput) -> None:
            threads.append(threading.get_ident())
            return

        def delete(self, input: anyiii.StreamDeleteInput) -> anyiii.StreamDeleteResult:
            return anyiii.StreamDeleteResult()

        def list(self, input: anyiii.StreamListInput) -> list[str]:
            return []

        def list_groups(self, input: anyiii.StreamListGroupsInput) -> list[str]:
            return ["only"]

    with anyio.fail_after(20):
        async with two_workers() as (_, store, client):
            anyiii.create_stream(store, "plain", Plain())
            await call(store, "engine::functions::list", {})
            got = await call(
                client,
                "stream::get(plain)",
                {"stream_name": "plain", "group_id": "g", "item_id": "i"},
            )
            assert got == "g/i"
            await call(
                client,
                "stream::set(plain)",
                {"stream_name": "plain", "group_id": "g", "item_id": "i", "data": 1},
            )
            assert len(threads) == 2
            assert loop_thread not in threads


async def test_the_official_sdk_calls_the_stream_functions(tmp_path: Path) -> None:
    impl = MemoryStream()
    with anyio.fail_after(40):
        async with two_workers() as (url, store, _):
            store.create_stream("shared", impl)
            await call(store, "engine::functions::list", {})
            async with official_worker(
                python_worker_argv(url), tmp_path / "py.stderr", label="python"
            ) as official:
                item = {"stream_name": "shared", "group_id": "g", "item_id": "i"}
                set_event = await official.request("stream::set(shared)", {**item, "data": [1]})
                assert set_event["value"] == {"old_value": None, "new_value": [1]}
                get_event = await official.request("stream::get(shared)", item)
                assert get_event["value"] == [1]
                groups = await official.request(
                    "stream::list_groups(shared)", {"stream_name": "shared"}
                )
                assert groups["value"] == ["g"]
