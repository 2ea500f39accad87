"""An order service on iii, in one process: HTTP API → queue → worker → state → stream.

    python examples/orders/app.py [--data-dir DIR] [--port P] [--http-port P] [--stream-port P]

starts the embedded engine and a worker that serves:

* `POST /orders` `{"item": "tea", "quantity": 2}`: stores the order as `queued` (state),
  hands `orders::fulfil` to the durable queue `fulfilment` and answers 202 with its id;
* `orders::fulfil` (run by the engine from the queue, retried if it fails): prices the
  order, stores it as `fulfilled` and publishes it on the stream `orders` (group `all`),
  where browsers subscribed on the stream port see it at once;
* `GET /orders/:id`: the order as stored, or 404.

The services and the queue's retries are configured in `config.yaml` beside this file, in
the real engine's format. It prints one JSON line with the addresses, then serves until
interrupted. With `--data-dir` the orders and the queue survive a restart, even a
`kill -9`.
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from pathlib import Path
from typing import Any

import anyio
import msgspec

import anyiii
from anyiii import ApiRequest, ApiResponse, ops

PRICES = {"tea": 3.5, "coffee": 4.0, "cake": 5.25}
QUEUE = "fulfilment"
CONFIG = Path(__file__).with_name("config.yaml")


class NewOrder(msgspec.Struct):
    item: str
    quantity: int = 1


class Order(msgspec.Struct):
    id: str
    item: str
    quantity: int
    status: str = "queued"
    total: float | None = None


async def create_order(request: ApiRequest[NewOrder]) -> ApiResponse[Any]:
    """`POST /orders`: store the order, queue its fulfilment, answer 202."""
    new = request.body
    if new is None or new.item not in PRICES or new.quantity < 1:
        return ApiResponse(statusCode=400, body={"error": f"we sell {sorted(PRICES)}"})
    order = Order(id=uuid.uuid4().hex[:12], item=new.item, quantity=new.quantity)
    await anyiii.State().set("orders", order.id, order)
    receipt = await anyiii.Queues().enqueue(QUEUE, "orders::fulfil", {"id": order.id})
    return ApiResponse(statusCode=202, body={"id": order.id, "receipt": receipt})


async def fulfil_order(job: dict[str, Any]) -> dict[str, Any]:
    """Run from the queue: price the order, mark it fulfilled, publish it on the stream."""
    state = anyiii.State()
    order = await state.get("orders", job["id"], type=Order)
    if order is None:
        raise LookupError(f"order {job['id']} is not stored")
    total = round(PRICES[order.item] * order.quantity, 2)
    done = await state.update(
        "orders", order.id, [ops.set("status", "fulfilled"), ops.set("total", total)], type=Order
    )
    await anyiii.Streams().set("orders", "all", order.id, done.new_value)
    return {"id": order.id, "total": total}


async def get_order(request: ApiRequest[None]) -> ApiResponse[Any]:
    """`GET /orders/:id`: the stored order, or 404."""
    order = await anyiii.State().get("orders", request.path_params["id"])
    if order is None:
        return ApiResponse(statusCode=404, body={"error": "no such order"})
    return ApiResponse(statusCode=200, body=order)


async def serve(args: argparse.Namespace) -> None:
    async with (
        anyiii.engine.run(
            "127.0.0.1",
            args.port,
            args.http_port,
            stream_port=args.stream_port,
            data_dir=args.data_dir,
            config=CONFIG,
        ) as engine,
        anyiii.connect(engine.url, worker_name="orders") as worker,
    ):
        worker.register_function("orders::create", create_order)
        worker.register_function("orders::fulfil", fulfil_order)
        worker.register_function("orders::get", get_order)
        await worker.register_trigger(
            "http", "orders::create", {"api_path": "orders", "http_method": "POST"}
        )
        await worker.register_trigger(
            "http", "orders::get", {"api_path": "orders/:id", "http_method": "GET"}
        )
        addresses = {"engine": engine.url, "http": engine.http_url, "streams": engine.stream_url}
        print(json.dumps(addresses), flush=True)
        await worker.serve_forever()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=None, help="keep orders and queue here")
    parser.add_argument("--port", type=int, default=49134, help="worker port (0: any)")
    parser.add_argument("--http-port", type=int, default=3111, help="HTTP port (0: any)")
    parser.add_argument("--stream-port", type=int, default=3112, help="stream port (0: any)")
    args = parser.parse_args(argv)
    try:
        anyio.run(serve, args)
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
