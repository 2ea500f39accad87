"""`http` middleware and conditions served by workers written with the official SDKs.

The official worker (see `workers/py_worker.py`) binds its own `<prefix>::http` handler
behind its `<prefix>::gate` middleware and `<prefix>::echo` as the route's condition (an
object, so never `false`), and behind `<prefix>::fail` (raises) as middleware on another
route. Real HTTP requests then show the engine calling them in the real engine's order and
mapping their answers, whatever the SDK.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import httpx
from interop_support import PROMPT, OfficialWorker, Peer

import anyiii.engine


async def bind_route(
    engine: anyiii.engine.EmbeddedEngine,
    official: OfficialWorker,
    function_id: str,
    path: str,
    **config: Any,
) -> None:
    """Have the official worker bind `function_id` on `GET /path` with `config`; return
    once the engine has the route."""
    await official.send(
        {
            "op": "bind",
            "tag": path,
            "trigger_type": "http",
            "function_id": function_id,
            "config": {"api_path": path, "http_method": "GET", **config},
        }
    )
    assert (await official.event("bound", tag=path))["event"] == "bound"
    # The binding travels on the worker's own connection, in another process: nothing to
    # wait on but the engine's route table.
    with anyio.fail_after(PROMPT):
        while engine.http_routes.match("GET", f"/{path}") is None:  # noqa: ASYNC110
            await anyio.sleep(0.01)


async def invoked(official: OfficialWorker, count: int) -> list[dict[str, Any]]:
    """The next `count` functions the official worker ran, in order."""
    return [await official.event("invoked") for _ in range(count)]


async def test_official_middleware_condition_and_handler(peer: Peer, tmp_path: Path) -> None:
    gate, echo, fail, handler = (peer.function_id(n) for n in ("gate", "echo", "fail", "http"))
    with anyio.fail_after(45):
        async with (
            anyiii.engine.run(host="127.0.0.1", port=0, http_port=0) as engine,
            peer.start(engine.url, tmp_path) as official,
            httpx.AsyncClient(base_url=engine.http_url or "", timeout=PROMPT) as client,
        ):
            guarded, broken = f"{peer.prefix}/guarded", f"{peer.prefix}/broken"
            await bind_route(
                engine,
                official,
                handler,
                guarded,
                middleware_function_ids=[gate],
                condition_function_id=echo,
            )
            await bind_route(engine, official, handler, broken, middleware_function_ids=[fail])

            response = await client.get(f"/{guarded}", params={"name": "ada"})
            assert response.status_code == 201, response.text
            assert response.json()["worker"] == peer.name
            condition, middleware, handled = await invoked(official, 3)
            assert [condition["function_id"], middleware["function_id"]] == [echo, gate]
            assert handled["function_id"] == handler
            request = condition["payload"]
            assert (request["path"], request["method"]) == (guarded, "GET")
            assert request["query_params"] == {"name": "ada"}
            assert "request_body" not in request
            given = middleware["payload"]
            assert given["phase"] == "preHandler"
            assert given["context"] == {}
            assert given["request"]["query_params"] == {"name": "ada"}
            assert given["request"]["method"] == "GET"

            response = await client.get(f"/{guarded}", headers={"x-deny": "1"})
            assert response.status_code == 403, response.text
            assert response.json() == {"denied_by": peer.name}
            assert response.headers["x-denied-by"] == gate
            response = await client.get(f"/{broken}")
            assert response.status_code == 500, response.text
            error = response.json()["error"]
            assert error["code"] == "invocation_failed"
            assert "boom" in error["message"]
            # The denied request stopped at the middleware, the broken one at `fail`: the
            # handler ran for neither.
            ran = [event["function_id"] for event in await invoked(official, 3)]
            assert ran == [echo, gate, fail]
            assert (await client.get(f"/{guarded}")).status_code == 201
            ran = [event["function_id"] for event in await invoked(official, 3)]
            assert ran == [echo, gate, handler]
