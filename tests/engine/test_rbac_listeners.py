"""Several RBAC listeners from one `config.yaml`, over real sockets on 127.0.0.1.

The real engine starts one listener per `iii-worker-manager` entry; each entry with `rbac:`
is gated by its own policy. Here two RBAC entries expose different functions; a trusted
worker serves them all, a worker on each RBAC port may call only what its listener
exposes, and the engine started as `anyiii engine --config` starts it reports both ports.
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest

import anyiii
from anyiii._engine.cli import EngineFlags, resolve
from anyiii._engine.config import parse_config
from anyiii.engine import run

pytestmark = pytest.mark.anyio

TWO_POLICIES = """
workers:
  - name: iii-worker-manager
    config: {port: 0}
  - name: iii-worker-manager          # partners: the `a::` functions
    config:
      port: 0
      rbac:
        expose_functions: [match("a::*")]
  - name: iii-worker-manager          # public: the `b::` functions, through a middleware
    config:
      port: 0
      middleware_function_id: audit::b
      rbac:
        expose_functions: [match("b::*")]
"""


async def outcome(worker: anyiii.Worker, function_id: str) -> str:
    """The call's result, or the code of its error."""
    try:
        result = await worker.trigger_async({"function_id": function_id, "payload": {}})
    except anyiii.InvocationError as error:
        return error.code
    assert isinstance(result, str), result
    return result


async def test_each_rbac_listener_of_the_file_enforces_its_own_policy() -> None:
    options = resolve(EngineFlags(), parse_config(TWO_POLICIES, source="c.yaml", environ={}))
    audited: list[str] = []

    def audit(data: dict[str, Any]) -> str:
        audited.append(data["function_id"])
        return f"audited {data['function_id']}"

    with anyio.fail_after(20):
        async with run(options.host, options.port, None, settings=options.settings) as engine:
            assert len(engine.rbac_ports) == 2
            assert len({engine.port, *engine.rbac_ports}) == 3  # each on a port of its own
            assert engine.rbac_port == engine.rbac_ports[0]
            async with anyiii.connect(engine.url, reconnect=False) as trusted:
                trusted.register_function("a::fn", lambda data: "a")
                trusted.register_function("b::fn", lambda data: "b")
                trusted.register_function("audit::b", audit)
                await outcome(trusted, "a::fn")  # a round trip: the registrations are in
                partners_url, public_url = (f"ws://127.0.0.1:{p}" for p in engine.rbac_ports)
                async with (
                    anyiii.connect(partners_url, reconnect=False) as partner,
                    anyiii.connect(public_url, reconnect=False) as public,
                ):
                    assert await outcome(partner, "a::fn") == "a"
                    assert await outcome(partner, "b::fn") == "FORBIDDEN"
                    assert await outcome(public, "b::fn") == "audited b::fn"
                    assert await outcome(public, "a::fn") == "FORBIDDEN"
                    assert await outcome(trusted, "b::fn") == "b"  # the trusted port: ungated
    assert audited == ["b::fn"]  # only the public listener has the middleware


async def test_rbac_listeners_given_in_code_are_all_served() -> None:
    one, two = (anyiii.engine.RbacSettings(port=0) for _ in range(2))
    settings = anyiii.engine.EngineSettings(rbac=one, rbac_listeners=(two,))
    with anyio.fail_after(20):
        async with run(http_port=None, settings=settings) as engine:
            assert len(set(engine.rbac_ports)) == 2
            for port in engine.rbac_ports:  # both accept workers
                async with anyiii.connect(f"ws://127.0.0.1:{port}", reconnect=False) as w:
                    assert await outcome(w, "nothing::here") == "FORBIDDEN"
        async with run(http_port=None) as plain:
            assert (plain.rbac_ports, plain.rbac_port) == ((), None)
