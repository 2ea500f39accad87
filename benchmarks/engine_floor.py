"""How little CPU a Python engine can spend per routed call: a floor for `anyiii engine`.

    python benchmarks/engine_floor.py [--rounds 3] [--seconds 4] [--backend asyncio|trio]

The load of `profile.py` (an anyiii caller keeping 100 calls in flight to an anyiii callee)
runs once through `anyiii engine` and once through a *floor relay*, alternating, and the
table gives each process's CPU time per call for both.

The floor relay (`FLOOR_RELAY` below, run as its own process) does only what no Python
engine can skip: the WebSocket upgrade, splitting and unmasking frames, decoding each
message with the SDK's msgspec frame types, one dictionary lookup to route it (function id
to connection for a call, invocation id to caller for a result), splicing
`_caller_worker_id` into the payload, encoding the frame for the other side and writing
each read's answers in one `transport.write`. It is an asyncio `Protocol`: no tasks, no
anyio, no protocol state machine, no namespaces, no validation beyond the decoder's, no
backpressure, no timeouts and no bookkeeping for disconnects. It is not an engine and must
never be used as one; it exists to show how much of `anyiii engine`'s CPU per call is the
price of Python itself and how much is the engine's own structure.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager

from _processes import cpu_seconds, engine_process, first_line, process
from profile import LOAD, calls_so_far
from roundtrip import ANYIII_CALLEE

FLOOR_RELAY = textwrap.dedent(
    """
    import asyncio, base64, hashlib, os, sys
    from msgspec import Raw
    from anyiii._protocol.frames import (
        InvocationResult, InvokeFunction, RegisterFunction, WorkerRegistered,
        decode_valid_frame, encode_frame,
    )
    from anyiii._engine.payloads import with_caller

    GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
    functions = {}  # function id -> connection
    waiting = {}  # invocation id -> calling connection

    def text_frame(payload):
        n = len(payload)
        if n < 126:
            return bytes((0x81, n)) + payload
        if n < 65536:
            return bytes((0x81, 126)) + n.to_bytes(2, "big") + payload
        return bytes((0x81, 127)) + n.to_bytes(8, "big") + payload

    class Link(asyncio.Protocol):
        def connection_made(self, transport):
            self.transport = transport
            self.buffer = bytearray()
            self.open = False
            self.out = []
            self.worker_id = os.urandom(16).hex()

        def send(self, message):
            if not self.out:
                asyncio.get_running_loop().call_soon(self.flush)
            self.out.append(text_frame(message))

        def flush(self):
            out, self.out = self.out, []
            self.transport.write(b"".join(out))

        def data_received(self, data):
            buffer = self.buffer
            buffer += data
            if not self.open:
                end = buffer.find(b"\\r\\n\\r\\n")
                if end < 0:
                    return
                head = bytes(buffer[:end]).decode("latin-1").split("\\r\\n")
                key = next(v for k, _, v in (line.partition(": ") for line in head)
                           if k.lower() == "sec-websocket-key")
                accept = base64.b64encode(hashlib.sha1(key.encode() + GUID).digest())
                self.transport.write(
                    b"HTTP/1.1 101 Switching Protocols\\r\\nUpgrade: websocket\\r\\n"
                    b"Connection: Upgrade\\r\\nSec-WebSocket-Accept: " + accept + b"\\r\\n\\r\\n"
                )
                del buffer[: end + 4]
                self.open = True
                self.send(encode_frame(WorkerRegistered(worker_id=self.worker_id)))
            at, size = 0, len(buffer)
            while size - at >= 2:
                length = buffer[at + 1] & 0x7F
                head = 2
                if length == 126:
                    length = int.from_bytes(buffer[at + 2 : at + 4], "big")
                    head = 4
                elif length == 127:
                    length = int.from_bytes(buffer[at + 2 : at + 10], "big")
                    head = 10
                end = at + head + 4 + length
                if end > size:
                    break
                mask = buffer[at + head : at + head + 4]
                self.on_message(apply_mask(buffer[at + head + 4 : end], mask))
                at = end
            del buffer[:at]

        def on_message(self, data):
            try:
                frame = decode_valid_frame(data)
            except Exception:
                return  # frames the floor does not route (pings, telemetry, ...)
            if type(frame) is InvokeFunction:
                callee = functions.get(frame.function_id)
                if callee is None:
                    if frame.invocation_id is not None:
                        self.send(encode_frame(InvocationResult(
                            invocation_id=frame.invocation_id,
                            function_id=frame.function_id,
                            error={"code": "function_not_found", "message": "not yet"},
                        )))
                    return
                if frame.invocation_id is not None:
                    waiting[frame.invocation_id] = self
                callee.send(encode_frame(InvokeFunction(
                    invocation_id=frame.invocation_id,
                    function_id=frame.function_id,
                    data=with_caller(frame.data, self.worker_id),
                )))
            elif type(frame) is InvocationResult:
                caller = waiting.pop(frame.invocation_id, None)
                if caller is not None:
                    caller.send(encode_frame(frame))
            elif type(frame) is RegisterFunction:
                functions[frame.id] = self

    try:
        from websockets.speedups import apply_mask
    except ImportError:
        from websockets.utils import apply_mask

    async def main():
        server = await asyncio.get_running_loop().create_server(Link, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        print("floor relay: workers ws://127.0.0.1:%d" % port, flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())
    """
)

_FLOOR_CLIENT = textwrap.dedent(
    """
    import asyncio, base64, os, sys
    from urllib.parse import urlsplit
    from anyiii._protocol.frames import decode_valid_frame, encode_frame
    try:
        from websockets.speedups import apply_mask
    except ImportError:
        from websockets.utils import apply_mask

    class Client(asyncio.Protocol):
        # A WebSocket client link with nothing but framing: no tasks, no checks.

        def __init__(self, on_message):
            self.on_message = on_message
            self.buffer = bytearray()
            self.open = asyncio.get_running_loop().create_future()
            self.out = []
            self.masks, self.at = b"", 0

        def connection_made(self, transport):
            self.transport = transport
            key = base64.b64encode(os.urandom(16))
            transport.write(
                b"GET / HTTP/1.1\\r\\nHost: x\\r\\nUpgrade: websocket\\r\\n"
                b"Connection: Upgrade\\r\\nSec-WebSocket-Key: " + key +
                b"\\r\\nSec-WebSocket-Version: 13\\r\\n\\r\\n"
            )

        def send(self, message):
            if not self.out:
                asyncio.get_running_loop().call_soon(self.flush)
            at = self.at
            if at + 4 > len(self.masks):
                self.masks, at = os.urandom(1024), 0
            mask = self.masks[at : at + 4]
            self.at = at + 4
            n = len(message)
            if n < 126:
                head = bytes((0x81, 0x80 | n))
            else:
                head = bytes((0x81, 0x80 | 126)) + n.to_bytes(2, "big")
            self.out.append(head + mask + apply_mask(message, mask))

        def flush(self):
            out, self.out = self.out, []
            self.transport.write(b"".join(out))

        def data_received(self, data):
            buffer = self.buffer
            buffer += data
            if not self.open.done():
                end = buffer.find(b"\\r\\n\\r\\n")
                if end < 0:
                    return
                del buffer[: end + 4]
                self.open.set_result(None)
            at, size = 0, len(buffer)
            while size - at >= 2:
                length = buffer[at + 1] & 0x7F
                head = 2
                if length == 126:
                    length = int.from_bytes(buffer[at + 2 : at + 4], "big")
                    head = 4
                end = at + head + length
                if end > size:
                    break
                self.on_message(decode_valid_frame(bytes(buffer[at + head : end])))
                at = end
            del buffer[:at]

    async def connect(on_message):
        url = urlsplit(sys.argv[1])
        _, client = await asyncio.get_running_loop().create_connection(
            lambda: Client(on_message), url.hostname, url.port
        )
        await client.open
        return client
    """
)

FLOOR_CALLER = _FLOOR_CLIENT + textwrap.dedent(
    """
    from anyiii._protocol.frames import InvocationResult, InvokeFunction, to_raw
    from anyiii._protocol.ids import InvocationIds

    done = 0

    async def main():
        waiting = {}
        loop = asyncio.get_running_loop()

        def on_message(frame):
            if type(frame) is InvocationResult:
                future = waiting.pop(frame.invocation_id, None)
                if future is not None:
                    future.set_result(frame)

        client = await connect(on_message)
        new_id = InvocationIds()
        data = to_raw({"a": 2, "b": 3})

        async def call():
            invocation_id = new_id()
            future = waiting[invocation_id] = loop.create_future()
            client.send(encode_frame(InvokeFunction(
                function_id="bench::add", invocation_id=invocation_id, data=data
            )))
            return await future

        while (await call()).error is not None:
            await asyncio.sleep(0.05)

        async def keep_calling():
            global done
            while True:
                await call()
                done += 1

        tasks = [asyncio.create_task(keep_calling()) for _ in range(100)]
        print("GO", flush=True)
        while True:
            await asyncio.to_thread(sys.stdin.readline)
            print(done, flush=True)

    asyncio.run(main())
    """
)

FLOOR_CALLEE = _FLOOR_CLIENT + textwrap.dedent(
    """
    import msgspec
    from anyiii._protocol.frames import InvocationResult, InvokeFunction, RegisterFunction

    async def main():
        def on_message(frame):
            if type(frame) is InvokeFunction:
                data = msgspec.json.decode(frame.data)
                result = msgspec.json.encode({"c": data["a"] + data["b"]})
                client.send(encode_frame(InvocationResult(
                    invocation_id=frame.invocation_id,
                    function_id=frame.function_id,
                    result=msgspec.Raw(result),
                )))

        client = await connect(on_message)
        client.send(encode_frame(RegisterFunction(id="bench::add")))
        print("READY", flush=True)
        await asyncio.to_thread(sys.stdin.readline)

    asyncio.run(main())
    """
)


SETUPS = {
    "anyiii": ("engine", "anyiii"),
    "anyiii workers, floor relay": ("floor", "anyiii"),
    "floor workers, floor relay": ("floor", "floor"),
}
"""What each measured chain runs: (engine or relay, workers)."""


@contextmanager
def engine_or_relay(kind: str, backend: str) -> Iterator[tuple[str, int]]:
    """`anyiii engine` or the floor relay, in a subprocess: its worker URL and pid."""
    if kind == "engine":
        with engine_process(backend) as started:
            yield started
        return
    with process(sys.executable, "-c", FLOOR_RELAY) as relay:
        yield first_line(relay, "the relay").split()[3], relay.pid


def measure(setup: str, backend: str, seconds: float, warmup: float) -> dict[str, float]:
    """CPU µs per call of caller, callee and engine (or relay) over one window."""
    engine, workers = SETUPS[setup]
    callee_script = ANYIII_CALLEE if workers == "anyiii" else FLOOR_CALLEE
    caller_script = LOAD if workers == "anyiii" else FLOOR_CALLER
    with (
        engine_or_relay(engine, backend) as (url, engine_pid),
        process(sys.executable, "-c", callee_script, url, backend) as callee,
    ):
        if first_line(callee, "the callee") != "READY":
            sys.exit("the callee did not start")
        with process(sys.executable, "-c", caller_script, url, backend) as caller:
            if first_line(caller, "the caller") != "GO":
                sys.exit("the caller did not start")
            time.sleep(warmup)  # a benchmark's warm-up, not synchronisation
            pids = {"caller": caller.pid, "callee": callee.pid, "engine": engine_pid}
            before = {role: cpu_seconds(pid) for role, pid in pids.items()}
            calls_before = calls_so_far(caller)
            time.sleep(seconds)  # the measurement window, not synchronisation
            calls = calls_so_far(caller) - calls_before
            after = {role: cpu_seconds(pid) for role, pid in pids.items()}
    if calls <= 0:
        sys.exit(f"no call completed through {setup}")
    result = {role: (after[role] - before[role]) / calls * 1e6 for role in pids}
    result["calls/s"] = calls / seconds
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--warmup", type=float, default=1.5)
    parser.add_argument("--backend", choices=("asyncio", "trio"), default="asyncio")
    args = parser.parse_args()
    runs: dict[str, list[dict[str, float]]] = {setup: [] for setup in SETUPS}
    for round_ in range(args.rounds):
        order = list(SETUPS) if round_ % 2 == 0 else list(reversed(SETUPS))
        for setup in order:
            result = measure(setup, args.backend, args.seconds, args.warmup)
            runs[setup].append(result)
            print(
                f"round {round_ + 1} {setup}: {result['calls/s']:,.0f} calls/s, CPU µs per "
                f"call: caller {result['caller']:.1f}, callee {result['callee']:.1f}, "
                f"engine {result['engine']:.1f}",
                flush=True,
            )
    print()
    print(f"medians over {args.rounds} rounds (anyiii workers on {args.backend}):")
    print()
    print("| caller, callee / engine | calls/s | caller µs/call | callee µs/call | engine µs/call |")
    print("|---|---:|---:|---:|---:|")
    for setup, results in runs.items():
        cells = [
            statistics.median(r[key] for r in results)
            for key in ("calls/s", "caller", "callee", "engine")
        ]
        print(
            f"| {setup} | {cells[0]:,.0f} | {cells[1]:.1f} | {cells[2]:.1f} | {cells[3]:.1f} |"
        )


if __name__ == "__main__":
    main()
