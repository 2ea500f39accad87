"""A worker written for the official Python SDK (iii-sdk 0.25): an HTTP API.

    python http_api.py ENGINE_URL HTTP_URL

Serves routes through the engine's `http` trigger and requests them over real HTTP.
Prints one JSON line per observation (see functions_and_calls.py).
"""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request

from iii import InitOptions, register_worker
from iii_helpers.http import HttpResponse


def show(what, value):
    print(json.dumps({what: value}, sort_keys=True), flush=True)


def request(base, method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + path, data=data, method=method)
    if data is not None:
        req.add_header("content-type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=10) as response:
            return (
                response.status,
                response.headers.get("x-api"),
                json.loads(response.read() or b"null"),
            )
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("x-api"), json.loads(error.read() or b"null")


def main(url, base):
    worker = register_worker(url, InitOptions(worker_name="dropin-http"))
    orders = {}

    async def create_order(req):
        body = req["body"] or {}
        if "item" not in body:
            return {"status_code": 400, "body": {"error": "item is required"}}
        order_id = str(len(orders) + 1)
        orders[order_id] = {
            "id": order_id,
            "item": body["item"],
            "shop": req["path_params"]["shop"],
        }
        return HttpResponse(statusCode=201, body=orders[order_id], headers={"x-api": "orders"})

    async def get_order(req):
        order = orders.get(req["path_params"]["id"])
        if order is None:
            return {"status_code": 404, "body": {"error": "no such order"}}
        return {
            "status_code": 200,
            "body": {**order, "verbose": req["query_params"].get("verbose")},
        }

    async def crash(req):
        raise RuntimeError("the database is down")

    worker.register_function("orders::create", create_order)
    worker.register_function("orders::get", get_order)
    worker.register_function("orders::crash", crash)
    worker.register_trigger(
        {
            "type": "http",
            "function_id": "orders::create",
            "config": {"api_path": "shops/:shop/orders", "http_method": "POST"},
        }
    )
    worker.register_trigger(
        {
            "type": "http",
            "function_id": "orders::get",
            "config": {"api_path": "orders/:id", "http_method": "GET"},
        }
    )
    worker.register_trigger(
        {
            "type": "http",
            "function_id": "orders::crash",
            "config": {"api_path": "crash", "http_method": "GET"},
        }
    )
    worker.trigger({"function_id": "engine::functions::list", "payload": {}})

    show("create", request(base, "POST", "/shops/north/orders", {"item": "tea"}))
    show("create_invalid", request(base, "POST", "/shops/north/orders", {"name": "x"}))
    show("get", request(base, "GET", "/orders/1?verbose=yes"))
    show("get_missing", request(base, "GET", "/orders/9"))
    status, _, body = request(base, "GET", "/crash")
    show("crash", [status, body["error"]["message"]])
    show("no_route", request(base, "GET", "/nowhere")[0])
    worker.shutdown()
    show("done", True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
