"""`TransportLimits`: its defaults, its validation, and that the limits reach a transport."""

from __future__ import annotations

import dataclasses
from typing import Any

import anyio
import pytest

from anyiii._errors import ConnectionClosed
from anyiii._transport import TransportLimits, memory_transport_pair, url_host
from anyiii._transport.wire import format_address

MiB = 2**20


def test_defaults() -> None:
    limits = TransportLimits()
    assert limits.max_message_size == 64 * MiB
    assert limits.close_timeout == 5.0
    assert limits.write_timeout == 30.0
    assert limits.queue_high_water == 4 * MiB
    assert limits.max_queue_bytes == 64 * MiB
    assert limits.receive_burst == 64
    with pytest.raises(dataclasses.FrozenInstanceError):
        limits.close_timeout = 1.0  # type: ignore[misc]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_message_size", 0),
        ("max_message_size", -1),
        ("max_message_size", 1.5),
        ("queue_high_water", True),
        ("max_queue_bytes", "1000"),
        ("receive_burst", 0),
        ("close_timeout", -0.5),
        ("write_timeout", 0),
        ("write_timeout", float("nan")),
        ("write_timeout", None),
    ],
)
def test_a_bad_value_raises_value_error_naming_the_field(field: str, value: Any) -> None:
    with pytest.raises(ValueError, match=field):
        TransportLimits(**{field: value})


def test_good_values_are_kept() -> None:
    limits = TransportLimits(max_message_size=1, close_timeout=0, write_timeout=0.01)
    assert (limits.max_message_size, limits.close_timeout, limits.write_timeout) == (1, 0, 0.01)


async def test_a_memory_pair_enforces_its_max_message_size() -> None:
    with anyio.fail_after(10):
        client, server = memory_transport_pair(limits=TransportLimits(max_message_size=1024))
        async with client, server:
            await client.send(b"x" * 1024)
            assert await server.receive() == b"x" * 1024
            await client.send(b"x" * 1025)
            with pytest.raises(ConnectionClosed) as caught:
                await server.receive()
            assert caught.value.code == 1009
            assert server.close_code == 1009


def test_addresses_bracket_ipv6_hosts() -> None:
    assert url_host("127.0.0.1") == "127.0.0.1"
    assert url_host("::1") == "[::1]"
    assert format_address(("10.0.0.1", 80)) == "10.0.0.1:80"
    assert format_address(("::1", 8080, 0, 0)) == "[::1]:8080"
    assert format_address("/tmp/sock") == "/tmp/sock"
    assert format_address("") is None
    assert format_address(None) is None
