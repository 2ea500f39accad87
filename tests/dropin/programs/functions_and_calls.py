"""A worker written for the official Python SDK (iii-sdk 0.25): functions and calls.

    python functions_and_calls.py ENGINE_URL

Prints one JSON line per observation. anyiii's drop-in test runs it as is and with its
`from iii ...` imports switched to `from anyiii ...`, and compares the lines.
"""

from __future__ import annotations

import json
import sys
import threading

from iii import InitOptions, InvocationError, TriggerAction, register_worker


def show(what, value):
    print(json.dumps({what: value}, sort_keys=True), flush=True)


def main(url):
    worker = register_worker(url, InitOptions(worker_name="dropin-functions"))
    states = []
    worker.add_connection_state_listener(states.append)
    show("state", states[0])

    async def add(data):
        return {"sum": data["a"] + data["b"]}

    def shout(data):  # a plain function: the SDK runs it in a thread
        return {
            "text": data["text"].upper(),
            "in_thread": threading.current_thread() is not threading.main_thread(),
        }

    async def fail(data):
        raise ValueError("the order is invalid")

    voided = threading.Event()

    async def record(data):
        voided.set()
        return

    worker.register_function("dropin::add", add, description="adds")
    worker.register_function("dropin::shout", shout)
    worker.register_function("dropin::fail", fail)
    worker.register_function("dropin::record", record)
    worker.trigger({"function_id": "engine::functions::list", "payload": {}})

    show("add", worker.trigger({"function_id": "dropin::add", "payload": {"a": 2, "b": 40}}))
    show("shout", worker.trigger({"function_id": "dropin::shout", "payload": {"text": "hi"}}))
    try:
        worker.trigger({"function_id": "dropin::fail", "payload": {}})
    except InvocationError as error:
        show(
            "fail",
            {"code": error.code, "message_ends": error.message.endswith("the order is invalid")},
        )
    try:
        worker.trigger({"function_id": "dropin::nobody", "payload": {}})
    except InvocationError as error:
        show("missing", error.code)
    worker.trigger({"function_id": "dropin::record", "payload": {}, "action": TriggerAction.Void()})
    show("void_delivered", voided.wait(10))
    listed = worker.trigger({"function_id": "engine::functions::list", "payload": {}})
    show(
        "listed",
        sorted(
            f["function_id"] for f in listed["functions"] if f["function_id"].startswith("dropin::")
        ),
    )
    worker.shutdown()
    show("done", True)


if __name__ == "__main__":
    main(sys.argv[1])
