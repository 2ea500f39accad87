"""The engine-wide `http` middleware from `config.yaml` (`iii-http`'s `middleware`).

Read like the real engine's `MiddlewareConfig` (`engine/src/workers/rest_api/config.rs`):
`{function_id, phase = "preHandler", priority = 0}`, run in ascending priority, unknown keys
refused. Then the settings `anyiii engine --config` derives from the file run the engine,
and a request shows the middleware in force.
"""

from __future__ import annotations

import gc
from typing import Any

import anyio
import httpx
import pytest
from engine_peers import new_id, raw_worker

from anyiii._engine.cli import EngineFlags, resolve
from anyiii._engine.config import ConfigError, EngineConfig, parse_config
from anyiii.engine import EngineSettings, run


def parse(text: str) -> EngineConfig:
    return parse_config(text, source="test.yaml", environ={})


def http_block(middleware: str) -> str:
    return f"workers:\n- name: iii-http\n  config:\n    port: 0\n    middleware: {middleware}\n"


def test_middleware_runs_in_ascending_priority_and_ties_keep_file_order() -> None:
    config = parse(
        http_block(
            "[{function_id: 'mw::late', priority: 10}, {function_id: 'mw::first', priority: -1},"
            " {function_id: 'mw::tie-a', phase: preHandler}, {function_id: 'mw::tie-b'}]"
        )
    )
    assert config.http_middleware == ("mw::first", "mw::tie-a", "mw::tie-b", "mw::late")
    assert not [note for note in config.skipped if "middleware" in note]
    options = resolve(EngineFlags(), config)
    assert options.settings.http_middleware == config.http_middleware


def test_no_middleware_key_means_none() -> None:
    assert parse("workers:\n- name: iii-http\n").http_middleware == ()
    assert resolve(EngineFlags(), None).settings.http_middleware == ()


def test_middleware_of_another_phase_is_skipped_and_said() -> None:
    config = parse(http_block("[{function_id: 'mw::after', phase: onResponse}, {function_id: a}]"))
    assert config.http_middleware == ("a",)
    assert config.skipped == (
        "iii-http: middleware 'mw::after' of phase 'onResponse' is never run "
        "(only preHandler exists)",
    )


@pytest.mark.parametrize(
    ("middleware", "message"),
    [
        ("mw::auth", "`middleware` must be a list"),
        ("['mw::auth']", r"middleware\[0\]: must be a mapping with a `function_id`"),
        ("[{priority: 1}]", r"middleware\[0\]: `function_id` must be a function id, not None"),
        ("[{function_id: ''}]", "`function_id` must be a function id"),
        ("[{function_id: 3}]", "`function_id` must be a function id, not 3"),
        ("[{function_id: a, priority: high}]", "`priority` must be an integer, not 'high'"),
        ("[{function_id: a, priority: true}]", "`priority` must be an integer, not True"),
        ("[{function_id: a}, {function_id: b, priorty: 5}]", r"middleware\[1\]: unknown keys"),
    ],
)
def test_a_malformed_middleware_entry_is_refused_saying_where(
    middleware: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as refused:
        parse(http_block(middleware))
    assert str(refused.value).startswith("test.yaml: workers[0] (iii-http)")


@pytest.mark.parametrize("ids", ["mw::auth", ("mw::a", ""), (3,), None])
def test_engine_settings_refuse_middleware_that_is_not_function_ids(ids: Any) -> None:
    with pytest.raises(ValueError, match="http_middleware must be function ids"):
        EngineSettings(http_middleware=ids)
    assert EngineSettings(http_middleware=["a", "b"]).http_middleware == ("a", "b")  # type: ignore[arg-type]


async def test_the_files_middleware_is_in_force_on_the_engine_it_configures() -> None:
    config = parse(
        http_block("[{function_id: 'mw::second', priority: 2}, {function_id: mw::first}]")
    )
    settings = resolve(EngineFlags(), config).settings
    order: list[str] = []

    def recording(value: Any) -> Any:
        async def serve(frame: dict[str, Any]) -> Any:
            order.append(frame["function_id"])
            return value

        return serve

    functions = {
        "mw::first": recording({"action": "continue"}),
        "mw::second": recording({"action": "respond", "response": {"status_code": 401}}),
        "h": recording({"body": "unreachable"}),
    }
    binding = {
        "type": "registertrigger",
        "id": new_id(),
        "trigger_type": "http",
        "function_id": "h",
        "config": {"api_path": "secret"},
    }
    try:
        with anyio.fail_after(20):
            async with (
                run(settings=settings) as engine,
                raw_worker(engine.url, "w", functions, [binding]),
                httpx.AsyncClient(base_url=engine.http_url or "") as client,
            ):
                response = await client.get("/secret")
                assert response.status_code == 401
                assert order == ["mw::first", "mw::second"]
    finally:
        gc.collect()
