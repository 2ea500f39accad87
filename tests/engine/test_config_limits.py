"""anyiii's limits in `config.yaml` (the `anyiii:` key of the `iii-worker-manager` entry):
read by field name from the settings classes, refused with a message naming the key when
wrong, laid onto `EngineSettings` below the command-line flags, and effective in a running
engine for one limit of each group (`config_limits.py`)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, get_type_hints

import anyio
import httpx
import msgspec
import pytest
import yaml
from engine_peers import decode, encode, raw_client, read_to_eof, register_frame
from transport_peers import TEXT, raw_frame
from transport_peers import raw_client as raw_peer

from anyiii._engine.cli import EngineFlags, resolve
from anyiii._engine.config import ConfigError, EngineConfig, parse_config
from anyiii._engine.config_limits import ELSEWHERE, LIMIT_GROUPS, apply_limits
from anyiii._engine.settings import EngineSettings
from anyiii.engine import EmbeddedEngine, run

DOCS = Path(__file__).resolve().parents[2] / "docs"


def parse(text: str) -> EngineConfig:
    return parse_config(text, source="c.yaml", environ={})


def with_section(section: str, config: str = "{port: 0}") -> str:
    """A file whose worker manager entry carries `anyiii: <section>` (flow YAML)."""
    return (
        f"workers:\n  - name: iii-worker-manager\n    config: {config}\n"
        f"    anyiii: {section}\n  - name: iii-http\n    config: {{port: 0}}\n"
    )


def settings_of(section: str) -> EngineSettings:
    return resolve(EngineFlags(), parse(with_section(section))).settings


# --- read from the file ------------------------------------------------------------------------


def test_each_group_and_setting_is_read_durations_in_milliseconds() -> None:
    settings = settings_of(
        "{max_message_size: 2048, max_queue_bytes: 4096, shutdown_timeout_ms: 2500,"
        " ping_interval_ms: null, ping_timeout_ms: 1500,"
        " registrations: {max_registrations: 7, reattach_grace_ms: 250},"
        " connections: {max_connections: 30, max_per_peer: 3},"
        " memory: {unfinished_messages: 65536},"
        " http: {max_body: 100, idle_timeout_ms: 1200, max_head: 2000}}"
    )
    default = EngineSettings()
    assert (settings.max_message_size, settings.max_queue_bytes) == (2048, 4096)
    assert (settings.shutdown_timeout, settings.ping_interval, settings.ping_timeout) == (
        2.5,
        None,
        1.5,
    )
    assert settings.registrations == dataclasses.replace(
        default.registrations, max_registrations=7, reattach_grace=0.25
    )
    assert (settings.connections.max_connections, settings.connections.max_per_peer) == (30, 3)
    assert settings.memory == dataclasses.replace(default.memory, unfinished_messages=65536)
    assert settings.http == msgspec.structs.replace(
        default.http, max_body=100, idle_timeout=1.2, max_head=2000
    )
    # Not named: left as they were.
    assert (settings.handshake_timeout, settings.namespace_grace) == (10.0, 5.0)
    assert settings_of("{}") == EngineSettings()


def _fields(cls: type) -> list[str]:
    if dataclasses.is_dataclass(cls):
        return [each.name for each in dataclasses.fields(cls)]
    return list(cls.__struct_fields__)


def _sample(hint: Any, default: Any) -> tuple[str, Any, Any]:
    """(key suffix, the value written in the file, the value expected) for one field: a
    number other than its default; another kind of field, its default as YAML gives it."""
    if hint in (float, float | None):
        return "_ms", 1500, 1.5
    if hint in (int, int | None):
        return "", (default or 0) + 1, (default or 0) + 1
    return "", msgspec.to_builtins(default), default


def test_every_field_of_the_settings_and_its_groups_is_a_key_by_its_name() -> None:
    """Enumerated from the classes, not from a list: a field added to one of them later is
    settable from the file (or this fails), except the few the real engine's keys set."""
    default = EngineSettings()
    hints = get_type_hints(EngineSettings)
    section: dict[str, Any] = {}
    expected: dict[str, Any] = {}
    for name in _fields(EngineSettings):
        if name in ELSEWHERE or hints[name] not in (int, float, float | None, int | None):
            continue
        suffix, written, value = _sample(hints[name], getattr(default, name))
        section[name + suffix], expected[name] = written, value
    for group in LIMIT_GROUPS:
        cls, current = hints[group], getattr(default, group)
        group_hints = get_type_hints(cls)
        section[group], values = {}, {}
        for name in _fields(cls):
            if f"{group}.{name}" in ELSEWHERE:
                continue
            suffix, written, value = _sample(group_hints[name], getattr(current, name))
            section[group][name + suffix], values[name] = written, value
        assert values, group
        expected[group] = (
            dataclasses.replace(current, **values)
            if dataclasses.is_dataclass(current)
            else msgspec.structs.replace(current, **values)
        )
    settings = settings_of(json.dumps(section))  # JSON is flow YAML
    assert settings == dataclasses.replace(default, **expected)
    assert len(expected) >= 5 + len(LIMIT_GROUPS)  # the scalars are found too


def test_the_file_sits_below_the_flags_and_beside_the_real_engines_keys() -> None:
    text = with_section(
        "{connections: {max_per_peer: 2}, registrations: {max_registrations: 9}}",
        config="{port: 6000, host: 0.0.0.0, handshake_timeout_ms: 3000}",
    )
    text = "registration_namespace_grace_ms: 700\n" + text.replace(
        "config: {port: 0}", "config: {port: 0, default_timeout: 4000}"
    )
    from_file = resolve(EngineFlags(), parse(text))
    assert (from_file.host, from_file.port) == ("0.0.0.0", 6000)
    flagged = resolve(EngineFlags(host="127.0.0.1", port=7000, token="t"), parse(text))
    assert (flagged.host, flagged.port, flagged.settings.token) == ("127.0.0.1", 7000, "t")
    for options in (from_file, flagged):  # no flag sets a limit: the file's stand
        settings = options.settings
        assert settings.connections.max_per_peer == 2
        assert settings.registrations.max_registrations == 9
        assert settings.handshake_timeout == 3.0
        assert settings.namespace_grace == 0.7
        assert settings.http.request_timeout == 4.0
    # Laid onto given settings, the file changes only what it names.
    base = EngineSettings(token="x", max_queue_bytes=5)
    laid = apply_limits(base, parse(text).limits)
    assert (laid.token, laid.max_queue_bytes, laid.connections.max_per_peer) == ("x", 5, 2)


WHERE = "c.yaml: workers[0] (iii-worker-manager): "


@pytest.mark.parametrize(
    ("section", "message"),
    [
        (
            "{max_mesage_size: 1}",
            "`anyiii.max_mesage_size` is not a setting (did you mean `max_message_size`?); "
            "known: connections, http, max_message_size,",
        ),
        (
            "{registrations: {max_registration: 1}}",
            "`anyiii.registrations.max_registration` is not a setting (did you mean "
            "`max_registrations`?)",
        ),
        (
            "{shutdown_timeout: 3}",
            "`anyiii.shutdown_timeout` is not a setting (durations are in milliseconds: "
            "`shutdown_timeout_ms`)",
        ),
        (
            "{connections: {max_per_peer: many}}",
            "`anyiii.connections.max_per_peer`: Expected `int`",
        ),
        ("{memory: {unfinished_messages: true}}", "`anyiii.memory.unfinished_messages`: Expected"),
        ("{http: {idle_timeout_ms: soon}}", "`anyiii.http.idle_timeout_ms`: expected a duration"),
        ("{shutdown_timeout_ms: null}", "`anyiii.shutdown_timeout_ms`: expected a duration"),
        ("{http: {max_body: -1}}", "`anyiii.http.max_body`: must not be negative"),
        (
            "{connections: {max_per_peer: 0}}",
            "`anyiii.connections`: max_per_peer must be a positive",
        ),
        ("{registrations: 5}", "`anyiii.registrations` must be a mapping of settings"),
        ("[1]", "`anyiii` must be a mapping of settings"),
        ("{token: x}", "`anyiii.token` is not a setting"),
        (
            "{handshake_timeout_ms: 1}",
            "`anyiii.handshake_timeout_ms`: set it with `handshake_timeout_ms` in the "
            "`iii-worker-manager` `config:` block, the real engine's key",
        ),
        ("{namespace_grace_ms: 1}", "the top-level `registration_namespace_grace_ms`"),
        ("{http: {request_timeout_ms: 1}}", "`default_timeout` (ms) in the `iii-http`"),
    ],
)
def test_a_wrong_section_is_refused_naming_the_key(section: str, message: str) -> None:
    with pytest.raises(ConfigError) as refused:
        parse(with_section(section))
    text = str(refused.value)
    assert text.startswith(WHERE + "`anyiii"), text  # the file, the entry, the key's path
    assert message in text, text


def test_the_section_belongs_on_one_worker_manager_entry() -> None:
    elsewhere = "workers:\n- name: iii-http\n  anyiii: {http: {max_body: 1}}\n"
    with pytest.raises(ConfigError, match=r"workers\[0\] \(iii-http\): `anyiii:` belongs on"):
        parse(elsewhere)
    twice = (
        "workers:\n- name: iii-worker-manager\n  anyiii: {}\n"
        "- name: iii-worker-manager\n  config: {port: 1, rbac: {}}\n  anyiii: {}\n"
    )
    with pytest.raises(ConfigError, match=r"workers\[1\] .*: `anyiii:` is given on two entries"):
        parse(twice)
    on_rbac = (
        "workers:\n- name: iii-worker-manager\n  config: {port: 1, rbac: {}}\n"
        "  anyiii: {max_queue_bytes: 3}\n"
    )
    assert dict(parse(on_rbac).limits) == {"max_queue_bytes": 3}
    assert parse(on_rbac).skipped == ()  # read, so not "not used"


# --- the example in the docs -------------------------------------------------------------------


def docs_example() -> str:
    page = (DOCS / "engine.md").read_text()
    section = page.split("### Limits from the file", 1)[1]
    return section.split("```yaml\n", 1)[1].split("```", 1)[0]


def test_the_docs_example_sets_what_the_docs_say() -> None:
    example = docs_example()
    assert "anyiii" not in yaml.safe_load(example)  # the real engine's top level is strict
    config = parse_config(example, source="config.yaml", environ={})
    assert config.skipped == ()
    settings = resolve(EngineFlags(), config).settings
    assert settings.max_message_size == 16 * 2**20
    assert (settings.shutdown_timeout, settings.ping_interval) == (2.0, None)
    assert (settings.connections.max_connections, settings.connections.max_per_peer) == (2000, 50)
    assert settings.registrations.max_registrations == 500
    assert settings.registrations.reattach_grace == 10.0
    assert settings.memory.unfinished_messages == 128 * 2**20
    assert (settings.http.max_body, settings.http.idle_timeout) == (2**20, 2.0)
    assert (settings.handshake_timeout, settings.http.request_timeout) == (5.0, 10.0)
    limits_page = (DOCS / "limits.md").read_text()
    assert "engine.md#limits-from-the-file" in limits_page.split("## Setting limits from")[1]


# --- effective in a running engine -------------------------------------------------------------


@asynccontextmanager
async def engine_of(section: str) -> AsyncIterator[EmbeddedEngine]:
    """An engine started as `anyiii engine --config` starts it, on free ports."""
    options = resolve(EngineFlags(), parse(with_section(section)))
    async with run(options.host, options.port, options.http_port, settings=options.settings) as e:
        yield e


_UPGRADE = (
    b"GET / HTTP/1.1\r\nhost: test\r\nupgrade: websocket\r\nconnection: Upgrade\r\n"
    b"sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n\r\n"
)


async def test_connections_max_per_peer_from_the_file_refuses_the_second() -> None:
    with anyio.fail_after(15):
        async with engine_of("{connections: {max_per_peer: 1}}") as engine:
            async with raw_client(engine.url) as (held, _):
                async with await anyio.connect_tcp("127.0.0.1", engine.port) as second:
                    await second.send(_UPGRADE)
                    answer = await read_to_eof(second)
                assert answer.startswith(b"HTTP/1.1 503 "), answer
                await held.send(b'{"type":"ping"}')  # the first is served as before
                assert decode(await held.receive()) == {"type": "pong"}


async def test_registrations_limit_from_the_file_refuses_the_second_function() -> None:
    with anyio.fail_after(15):
        async with (
            engine_of("{registrations: {max_registrations: 1}}") as engine,
            raw_client(engine.url) as (worker, _),
        ):
            for name in ("mine::a", "mine::b"):
                await worker.send(encode({"type": "registerfunction", "id": name}))
            await worker.send(encode(register_frame("capped")))
            await worker.send(b'{"type":"ping"}')
            answers = [decode(await worker.receive())]
            while answers[-1]["type"] != "pong":  # in order: the pong comes last
                answers.append(decode(await worker.receive()))
            refused = [(a["type"], a.get("function_id")) for a in answers[:-1]]
            assert refused == [("registrationrejected", "mine::b")]


async def _close_of(engine: EmbeddedEngine, data: bytes) -> tuple[int, str]:
    """What the engine closes a raw connection with after it sends `data`."""
    peer = await raw_peer(engine.port)
    try:
        assert json.loads((await peer.next_frame()).data)["type"] == "workerregistered"
        await peer.stream.send(data)
        frame = await peer.next_frame()
        assert frame.opcode.name == "CLOSE", frame
        return int.from_bytes(frame.data[:2], "big"), frame.data[2:].decode()
    finally:
        await anyio.aclose_forcefully(peer.stream)


async def test_the_memory_budget_from_the_file_closes_the_connection_over_it() -> None:
    message = b'{"type":"ping","pad":"' + b"x" * 10_000 + b'"}'
    head = raw_frame(TEXT, message)[: -len(message)]
    with anyio.fail_after(15):
        async with engine_of("{memory: {unfinished_messages: 4096}}") as engine:
            code, reason = await _close_of(engine, head + message[:6000])  # not finished
    assert (code, reason) == (1009, "unfinished messages over the server's budget of 4096 bytes")


async def test_max_message_size_from_the_file_closes_the_connection_over_it() -> None:
    message = b'{"type":"ping","pad":"' + b"x" * 2000 + b'"}'
    with anyio.fail_after(15):
        async with engine_of("{max_message_size: 1024}") as engine:
            code, reason = await _close_of(engine, raw_frame(TEXT, message))
    assert code == 1009
    assert "budget" not in reason  # the message cap, not the memory budget


async def test_http_max_body_from_the_file_answers_413() -> None:
    with anyio.fail_after(15):
        async with engine_of("{http: {max_body: 16}}") as engine:
            assert engine.http_url is not None
            async with httpx.AsyncClient() as client:
                big = await client.post(engine.http_url + "/anything", content=b"x" * 100)
                small = await client.post(engine.http_url + "/anything", content=b"x" * 10)
    assert big.status_code == 413
    assert small.status_code == 404  # within the limit: on to routing (nothing bound)
