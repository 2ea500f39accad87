"""`anyiii.engine.run(config=...)`: a config in the real engine's format, as a path or a
mapping, chooses the services an in-process engine runs and configures them."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

import anyiii

CONFIG = {
    "workers": [
        {"name": "iii-state"},
        {"name": "iii-queue", "config": {"queue_configs": {"jobs": {"max_retries": 2}}}},
    ]
}


async def test_a_config_mapping_chooses_and_configures_the_services() -> None:
    with anyio.fail_after(20):
        async with (
            anyiii.engine.run(http_port=None, config=CONFIG) as engine,
            anyiii.connect(engine.url) as w,
        ):
            receipt = await anyiii.Queues(w).enqueue("jobs", "app::job", {"n": 1})
            assert receipt
            with pytest.raises(anyiii.InvocationError) as unknown:
                await anyiii.Queues(w).enqueue("nope", "app::job", {})
            assert "queue_not_found" in unknown.value.message
            await anyiii.State(w).set("s", "k", 1)  # listed: runs
            with pytest.raises(anyiii.InvocationError) as absent:
                await anyiii.PubSub(w).publish("t", 1)  # not listed: not running
            assert absent.value.code == "function_not_found"


async def test_a_config_file_path_works_too(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("workers:\n  - name: iii-pubsub\n")
    with anyio.fail_after(20):
        async with (
            anyiii.engine.run(http_port=None, config=path) as engine,
            anyiii.connect(engine.url) as w,
        ):
            await anyiii.PubSub(w).publish("t", 1)
            with pytest.raises(anyiii.InvocationError):
                await anyiii.State(w).get("s", "k")


async def test_a_bad_config_is_a_value_error_naming_the_key() -> None:
    with pytest.raises(ValueError, match="max_retries"):
        async with anyiii.engine.run(
            http_port=None,
            config={
                "workers": [
                    {"name": "iii-queue", "config": {"queue_configs": {"q": {"max_retries": "x"}}}}
                ]
            },
        ):
            pass
    with pytest.raises(ValueError, match="not both"):
        async with anyiii.engine.run(http_port=None, config=CONFIG, services=()):
            pass


async def test_the_files_settings_apply_unless_settings_are_given() -> None:
    """`run(config=...)` takes the file's `anyiii:` limits and worker-manager settings too;
    an explicit `settings=` wins over all of them."""
    config = {
        "registration_namespace_grace_ms": 1500,
        "workers": [
            {
                "name": "iii-worker-manager",
                "config": {"port": 0},
                "anyiii": {"registrations": {"max_description_bytes": 64}},
            },
            {"name": "iii-state"},
        ],
    }
    long = "x" * 200
    with anyio.fail_after(20):
        async with (
            anyiii.engine.run(http_port=None, config=config) as engine,
            anyiii.connect(engine.url, reconnect=False) as w,
        ):
            assert engine._settings.namespace_grace == 1.5
            assert engine._settings.registrations.max_description_bytes == 64
            w.register_function("app::long", _noop, description=long)
            with pytest.raises(anyiii.InvocationError) as refused:  # the file's limit
                await w.trigger_async({"function_id": "app::long", "payload": {}})
            assert refused.value.code == "function_not_found"
        given = anyiii.engine.EngineSettings()
        async with anyiii.engine.run(http_port=None, config=config, settings=given) as engine:
            assert engine._settings is given


async def _noop(data: object) -> None:
    return None
