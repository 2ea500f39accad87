"""A worker written with the official Python SDK (`iii-sdk`), driven by anyiii's interop tests.

    python py_worker.py ENGINE_URL [--prefix py] [--http-path py/hello] [--name NAME]
                        [--token TOKEN]

It registers `<prefix>::echo` (returns its payload), `<prefix>::fail` (raises
`ValueError("boom")`), `<prefix>::slow` (sleeps for an hour), `<prefix>::http` (answers
201 with a JSON body) and `<prefix>::gate` (an http middleware: answers 403 itself when the
request has an `x-deny` header, else lets it continue), `<prefix>::stream` (the SDK's
streaming http helper: reads the body from `request_body`, answers 201 on the `response`
channel with "got <body>, done"), `<prefix>::sse` (the same helper answering with
server-sent events: two `tick` events, then a third once the `release` command came),
`<prefix>::drain` (reads the channel reader it gets as
`body` with the SDK's `ChannelReader` and answers what it carried, see `Tally`) and
`<prefix>::fill` (writes the `script` it gets on the `ChannelWriter` it gets as `out`, then
closes it), binds `<prefix>::http` to an `http` trigger on `--http-path`, waits until the
engine lists all of it, then prints the ready event. `--token` sets `III_TOKEN`, which
the SDK sends as `Authorization: Bearer` on its sockets.

A channel *script* is a list of steps, `{"data": HEX, "times": N}` (the bytes of HEX
repeated N times, written in one write), `{"message": TEXT}` (one text message) or
`{"hang": true}` (print `{"event": "stalled"}` and wait forever, the stream
left open, for a test that kills the worker mid-stream).

Protocol with the test, one JSON object per line:

* stdout events: `{"event": "ready", ...}`; `{"event": "invoked", "function_id", "payload"}`
  when a handler starts; `{"event": "result", "tag", "value"}` /
  `{"event": "error", "tag", "code", "message"}` / `{"event": "sent", "tag"}` for commands.
* stdin commands: `{"op": "call" | "void", "tag", "function_id", "payload"}`: call a
  function through the engine (blocking, or fire-and-forget) and report the outcome;
  `{"op": "enqueue", ..., "queue"}` does it with `TriggerAction.Enqueue(queue=...)`.
  `{"op": "bind", "tag", "trigger_type", "function_id", "config", "metadata"?}`: bind a
  trigger with the SDK's `register_trigger` and answer `{"event": "bound", "tag"}` once it
  is sent (the engine's verdict is not reported to the SDK's caller: ask the engine).
  `{"op": "create_stream", "tag", "name"}`: take over the storage of stream `name` with
  the SDK's `create_stream` and a dict; reports `result` with the stream's items by
  group once the engine lists its functions (items are also printed as `stored` events).
  `{"op": "release", "tag"}`: let `<prefix>::sse` send its third event; answers
  `{"event": "released", "tag"}`.
  `{"op": "register_http", "tag", "function_id", "invocation"}`: register an HTTP-invoked
  function with the SDK's `HttpInvocationConfig(**invocation)`; reports `result` with
  the function id once the engine lists it.
  `{"op": "send_channel", "tag", "function_id", "script", "buffer_size"?}`: make a channel
  with the SDK's `create_channel_async`, call the function with `{"body": <reader ref>}`
  while writing `script` on the SDK's writer; reports `result` with the function's answer.
  `{"op": "receive_channel", "tag", "function_id", "buffer_size"?}`: make a channel, call
  the function with `{"out": <writer ref>}` while reading the SDK's reader; reports
  `result` with `{"value": <the function's answer>, "received": <Tally.report()>}`.
  End of stdin shuts the worker down.

Anything else on stdout (none expected from this SDK) is not JSON and is ignored by the
tests; the SDK logs to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any

from iii import InitOptions, InvocationError, TriggerAction, register_worker
from iii_helpers.http import http as http_helper

_print_lock = threading.Lock()


RELEASE = threading.Event()
"""Set by the `release` command: what `<prefix>::sse` waits for before its third event."""


def emit(event: str, **fields: Any) -> None:
    """One event line on stdout, whole, even with several threads printing."""
    # Channel refs in a payload arrive as the SDK's reader/writer objects: named, not dumped.
    line = json.dumps({"event": event, **fields}, default=lambda value: type(value).__name__)
    with _print_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", help="the engine's worker WebSocket address, ws://host:port")
    parser.add_argument("--prefix", default="py", help="function id prefix (default: py)")
    parser.add_argument("--http-path", default=None, help="api_path (default: <prefix>/hello)")
    parser.add_argument("--name", default=None, help="worker name (default: <prefix>-official)")
    parser.add_argument("--token", default=None, help="III_TOKEN for the SDK to send")
    return parser.parse_args()


class Tally:
    """What a channel carried, in order: data (runs of bytes, counted and hashed, since each
    side cuts them into chunks its own way) and messages."""

    def __init__(self) -> None:
        self.items: list[list[Any]] = []
        self.size = 0
        self.digest = hashlib.sha256()

    def data(self, chunk: bytes) -> None:
        self.size += len(chunk)
        self.digest.update(chunk)
        if self.items and self.items[-1][0] == "data":
            self.items[-1][1] += len(chunk)
        else:
            self.items.append(["data", len(chunk)])

    def message(self, text: str) -> None:
        self.items.append(["message", text])

    def report(self) -> dict[str, Any]:
        messages = [value for kind, value in self.items if kind == "message"]
        return {
            "size": self.size,
            "sha256": self.digest.hexdigest(),
            "messages": messages,
            "items": self.items,
        }


def script_steps(script: list[dict[str, Any]]) -> Iterator[tuple[str, Any]]:
    """A channel script as ("data", bytes), ("message", str) and ("hang", None) steps."""
    for step in script:
        if "message" in step:
            yield "message", step["message"]
        elif step.get("hang"):
            yield "hang", None
        else:
            yield "data", bytes.fromhex(step["data"]) * step.get("times", 1)


async def read_channel(reader: Any) -> dict[str, Any]:
    """Everything on the SDK's `ChannelReader`: data by iterating it, messages through
    `on_message` (called from inside the iteration, so the order is kept)."""
    tally = Tally()
    reader.on_message(tally.message)
    async for chunk in reader:
        tally.data(chunk)
    return tally.report()


async def write_channel(writer: Any, script: list[dict[str, Any]]) -> None:
    """`script` on the SDK's `ChannelWriter`, then its close."""
    for kind, value in script_steps(script):
        if kind == "message":
            await writer.send_message_async(value)
        elif kind == "hang":
            emit("stalled")
            await asyncio.Event().wait()
        else:
            await writer.write(value)
    await writer.close_async()


def register(client: Any, prefix: str, http_path: str) -> list[str]:
    """Register the functions and the http binding; return the function ids."""

    async def echo(data: Any) -> Any:
        emit("invoked", function_id=f"{prefix}::echo", payload=data)
        return data

    async def fail(data: Any) -> Any:
        emit("invoked", function_id=f"{prefix}::fail", payload=data)
        raise ValueError("boom")

    async def slow(data: Any) -> Any:
        emit("invoked", function_id=f"{prefix}::slow", payload=data)
        await asyncio.sleep(3600)
        return {"slept": True}

    async def http(request: Any) -> Any:
        emit("invoked", function_id=f"{prefix}::http", payload=request)
        return {
            "status_code": 201,
            "body": {
                "ok": True,
                "worker": "python",
                "method": request.get("method"),
                "name": (request.get("query_params") or {}).get("name"),
            },
        }

    async def gate(data: Any) -> Any:
        emit("invoked", function_id=f"{prefix}::gate", payload=data)
        headers = (data.get("request") or {}).get("headers") or {}
        if "x-deny" not in headers:
            return {"action": "continue"}
        response = {
            "status_code": 403,
            "body": {"denied_by": "python"},
            "headers": {"x-denied-by": f"{prefix}::gate"},
        }
        return {"action": "respond", "response": response}

    async def stream_callback(request: Any, response: Any) -> None:
        # The official streaming helper: the body from `request_body`, the answer on the
        # `response` channel (status, headers, then the body in two writes).
        body = await request.request_body.read_all()
        emit(
            "invoked",
            function_id=f"{prefix}::stream",
            payload={"body": body.decode(errors="replace")},
        )
        await response.status(201)
        await response.headers({"content-type": "text/plain", "x-worker": "python"})
        await response.writer.write(b"got " + body)
        await response.writer.write(b", done")
        await response.writer.close_async()

    async def sse_callback(request: Any, response: Any) -> None:
        # Server-sent events with the official helper: the third event only once the
        # test has sent `release` (so it can tell the first two arrived on their own).
        emit("invoked", function_id=f"{prefix}::sse", payload={})
        await response.status(200)
        await response.headers({"content-type": "text/event-stream", "x-worker": "python"})
        await response.writer.write(b"event: tick\ndata: 1\n\n")
        await response.writer.write(b"event: tick\ndata: 2\n\n")
        await asyncio.get_running_loop().run_in_executor(None, RELEASE.wait)
        await response.writer.write(b"event: tick\ndata: 3\n\n")
        await response.writer.close_async()

    async def drain(data: Any) -> Any:
        body = data["body"]
        emit("invoked", function_id=f"{prefix}::drain", payload={"body": type(body).__name__})
        return {"end": type(body).__name__, **await read_channel(body)}

    async def fill(data: Any) -> Any:
        out = data["out"]
        emit("invoked", function_id=f"{prefix}::fill", payload={"out": type(out).__name__})
        await write_channel(out, data["script"])
        return {"end": type(out).__name__}

    handlers = {
        "echo": echo,
        "fail": fail,
        "slow": slow,
        "http": http,
        "gate": gate,
        "stream": http_helper(stream_callback),
        "sse": http_helper(sse_callback),
        "drain": drain,
        "fill": fill,
    }
    for name, handler in handlers.items():
        client.register_function(f"{prefix}::{name}", handler)
    # Deprecated in 0.25 in favour of observe(), but the SDK's own docs say to keep using
    # it for the engine's http trigger type.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        client.register_trigger(
            {
                "type": "http",
                "function_id": f"{prefix}::http",
                "config": {"api_path": http_path, "http_method": "GET"},
            }
        )
    return [f"{prefix}::{name}" for name in handlers]


def wait_until_listed(client: Any, function_ids: list[str], http_function: str) -> None:
    """Ask the engine until it lists every function and the http binding (at most 20 s).

    The SDK sends registrations in the background, so `register_function` returning does
    not mean the engine has them yet.
    """
    deadline = time.monotonic() + 20
    while True:
        functions = client.trigger({"function_id": "engine::functions::list", "payload": {}})
        listed = {f["function_id"] for f in functions.get("functions", [])}
        bindings = client.trigger(
            {"function_id": "engine::registered-triggers::list", "payload": {}}
        )
        bound = {
            b["function_id"]
            for b in bindings.get("registered_triggers", [])
            if b.get("trigger_type") == "http"
        }
        if set(function_ids) <= listed and http_function in bound:
            return
        if time.monotonic() > deadline:
            raise SystemExit(f"the engine never listed {function_ids}: it has {sorted(listed)}")
        time.sleep(0.05)


def bind(client: Any, command: dict[str, Any]) -> None:
    """The `bind` command: one `register_trigger` (deprecated in 0.25, but the SDK's way to
    bind the engine's own trigger types such as `cron` and `subscribe`)."""
    trigger: dict[str, Any] = {
        "type": command["trigger_type"],
        "function_id": command["function_id"],
        "config": command.get("config"),
    }
    if command.get("metadata") is not None:
        trigger["metadata"] = command["metadata"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        client.register_trigger(trigger)
    emit("bound", tag=command.get("tag"))


def create_dict_stream(client: Any, name: str) -> list[str]:
    """`create_stream(name)` over a dict of groups; returns its function ids once listed."""
    from iii.helpers import create_stream
    from iii.stream import IStream
    from iii_helpers.stream import StreamDeleteResult, StreamSetResult

    groups: dict[str, dict[str, Any]] = {}

    with warnings.catch_warnings():  # IStream and create_stream are deprecated upstream
        warnings.simplefilter("ignore", FutureWarning)

        class DictStream(IStream[Any]):
            async def get(self, input: Any) -> Any:
                return groups.get(input.group_id, {}).get(input.item_id)

            async def set(self, input: Any) -> Any:
                group = groups.setdefault(input.group_id, {})
                old = group.get(input.item_id)
                group[input.item_id] = input.data
                emit("stored", stream=name, groups=groups)
                return StreamSetResult(old_value=old, new_value=input.data)

            async def delete(self, input: Any) -> Any:
                old = groups.get(input.group_id, {}).pop(input.item_id, None)
                return StreamDeleteResult(old_value=old)

            async def list(self, input: Any) -> Any:
                return list(groups.get(input.group_id, {}).values())

            async def list_groups(self, input: Any) -> Any:
                return sorted(groups)

            async def update(self, input: Any) -> Any:
                return None

        create_stream(client, name, DictStream())
    ids = [f"stream::{op}({name})" for op in ("get", "set", "delete", "list", "list_groups")]
    deadline = time.monotonic() + 20
    while True:
        functions = client.trigger({"function_id": "engine::functions::list", "payload": {}})
        if set(ids) <= {f["function_id"] for f in functions.get("functions", [])}:
            return ids
        if time.monotonic() > deadline:
            raise SystemExit(f"the engine never listed {ids}")
        time.sleep(0.05)


def register_http(client: Any, function_id: str, invocation: dict[str, Any]) -> str:
    """`register_function` with an `HttpInvocationConfig`; returns once the engine lists it."""
    from iii_helpers.http import HttpInvocationConfig

    client.register_function(function_id, HttpInvocationConfig(**invocation))
    deadline = time.monotonic() + 20
    while True:
        functions = client.trigger({"function_id": "engine::functions::list", "payload": {}})
        if function_id in {f["function_id"] for f in functions.get("functions", [])}:
            return function_id
        if time.monotonic() > deadline:
            raise SystemExit(f"the engine never listed {function_id}")
        time.sleep(0.05)


def channel_command(client: Any, command: dict[str, Any]) -> Any:
    """`send_channel` / `receive_channel`: a channel made by this SDK, one end kept here and
    the other's ref (`Channel.reader_ref` / `.writer_ref`, as they are) in the call's
    payload, the two run side by side on a loop of this thread's own (the SDK's
    `trigger_async` works from any loop)."""
    from iii.helpers import create_channel_async

    async def run() -> Any:
        channel = await create_channel_async(client, command.get("buffer_size"))
        request = {"function_id": command["function_id"]}
        if command["op"] == "send_channel":
            request["payload"] = {"body": channel.reader_ref}
            value, _ = await asyncio.gather(
                client.trigger_async(request), write_channel(channel.writer, command["script"])
            )
            return value
        request["payload"] = {"out": channel.writer_ref}
        value, received = await asyncio.gather(
            client.trigger_async(request), read_channel(channel.reader)
        )
        return {"value": value, "received": received}

    return asyncio.run(run())


def report(tag: Any, outcome: Callable[[], Any], done: str = "result") -> None:
    """Run `outcome` and print its value as a `done` event, or its failure as `error`."""
    try:
        value = outcome()
    except InvocationError as exc:
        emit("error", tag=tag, code=exc.code, message=exc.message)
        return
    except Exception as exc:
        emit("error", tag=tag, code=type(exc).__name__, message=str(exc))
        return
    if done == "sent":
        emit("sent", tag=tag)
    else:
        emit("result", tag=tag, value=value)


def run_command(client: Any, command: dict[str, Any]) -> None:
    tag = command.get("tag")
    if command["op"] in ("send_channel", "receive_channel"):
        report(tag, lambda: channel_command(client, command))
        return
    if command["op"] == "release":
        RELEASE.set()
        emit("released", tag=tag)
        return
    if command["op"] == "register_http":
        value = register_http(client, command["function_id"], command["invocation"])
        emit("result", tag=tag, value=value)
        return
    if command["op"] == "bind":
        bind(client, command)
        return
    if command["op"] == "create_stream":
        emit("result", tag=tag, value=create_dict_stream(client, command["name"]))
        return
    request: dict[str, Any] = {
        "function_id": command["function_id"],
        "payload": command.get("payload"),
    }
    if command["op"] == "void":
        request["action"] = TriggerAction.Void()
    elif command["op"] == "enqueue":
        request["action"] = TriggerAction.Enqueue(queue=command["queue"])
    report(tag, lambda: client.trigger(request), "sent" if command["op"] == "void" else "result")


def main() -> None:
    args = parse_args()
    prefix = args.prefix
    http_path = args.http_path or f"{prefix}/hello"
    if args.token is not None:
        os.environ["III_TOKEN"] = args.token
    client = register_worker(args.url, InitOptions(worker_name=args.name or f"{prefix}-official"))
    try:  # the SDK's thread is not a daemon: without shutdown() the process never exits
        function_ids = register(client, prefix, http_path)
        wait_until_listed(client, function_ids, f"{prefix}::http")
        emit("ready", worker_id=client.worker_id, functions=function_ids, http_path=http_path)
        for line in sys.stdin:
            if line.strip():
                command = json.loads(line)
                threading.Thread(target=run_command, args=(client, command), daemon=True).start()
    finally:
        client.shutdown()


if __name__ == "__main__":
    main()
