"""The real engine's `config.yaml` read by `anyiii engine --config`, without processes.

`${VAR:default}` expansion as the real engine does it, every worker kind mapped, what is
skipped (each thing once), the data directory the file implies, wrong types refused with a
message that says where, and the precedence flags > file > defaults (`cli.resolve`). The
real processes are in `test_config_cli.py`.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pytest

from anyiii._engine.cli import EngineFlags, resolve
from anyiii._engine.config import (
    DEFAULT_DATA_DIR,
    ConfigError,
    EngineConfig,
    Listener,
    interpolate,
    load_config,
    parse_config,
)
from anyiii._engine.configured import SERVICE_CLASSES
from anyiii._engine.http_targets import HttpFunctionSettings
from anyiii._engine.rbac import RbacSettings, parse_filter
from anyiii._engine.router import Router
from anyiii._engine.settings import EngineSettings
from anyiii._version import __version__

DATA = Path(__file__).resolve().parents[1] / "data"


def parse(text: str, **environ: str) -> EngineConfig:
    return parse_config(text, source="test.yaml", environ=environ)


# --- interpolation -----------------------------------------------------------------------------


def test_a_set_variable_wins_over_its_default_even_when_empty() -> None:
    env = {"HOST": "10.0.0.1", "EMPTY": ""}
    assert interpolate("a: ${HOST:127.0.0.1}", env) == "a: 10.0.0.1"
    assert interpolate("a: ${HOST}", env) == "a: 10.0.0.1"
    assert interpolate("a: '${EMPTY:x}'", env) == "a: ''"


def test_an_unset_variable_takes_its_default() -> None:
    assert interpolate("a: ${NOPE:fallback value}", {}) == "a: fallback value"
    assert interpolate("a: '${NOPE:}'", {}) == "a: ''"
    assert interpolate("v: ${NOPE:__III_ENGINE_VERSION__}", {}) == f"v: {__version__}"


def test_unset_variables_without_default_are_all_named_with_their_lines() -> None:
    with pytest.raises(ConfigError) as refused:
        parse("workers:\n  - name: ${FIRST}\n  - name: ${SECOND}\n")
    message = str(refused.value)
    assert message.startswith("test.yaml: environment variable not set")
    assert "FIRST (line 2)" in message
    assert "SECOND (line 3)" in message


def test_expansion_happens_before_parsing_so_yaml_types_the_result() -> None:
    text = """
workers:
  - name: iii-stream
    config:
      port: ${STREAM_PORT:3112}
  - name: iii-http
    config:
      port: ${HTTP_PORT:3111}
      default_timeout: ${TIMEOUT_MS:2500}
"""
    assert parse(text).stream == Listener(3112)
    config = parse(text, STREAM_PORT="4000", HTTP_PORT="4001")
    assert config.stream == Listener(4000)
    assert config.http == Listener(4001)
    assert config.http_timeout == 2.5
    with pytest.raises(ConfigError, match=r"`port` must be a port number .* not 'abc'"):
        parse(text, STREAM_PORT="abc")


def test_expansion_reaches_nested_blocks_and_lists_and_hands_services_typed_values() -> None:
    config = parse(
        """
workers:
  - name: iii-state
    config:
      adapter:
        name: kv
        config:
          store_method: ${METHOD:file_based}
          file_path: ${STATE_DIR:./data}/state_store.db
      triggers_enabled: ${TRIGGERS:true}
      max_value_bytes: ${MAX:1024}
      tags: [${TAG:a}, b]
""",
        STATE_DIR="/srv/iii",
    )
    assert config.data_dir == Path("/srv/iii")
    block = config.services["iii-state"]
    assert block["triggers_enabled"] is True
    assert block["max_value_bytes"] == 1024
    assert block["tags"] == ["a", "b"]


def test_nested_and_recursive_forms_expand_once_as_in_the_real_engine() -> None:
    """The real engine's pattern is `\\$\\{([^}:]+)(?::([^}]*))?\\}`, applied once: a
    default ends at the first `}`, and a value is never expanded again."""
    assert interpolate("x: '${A:${B:b}}'", {}) == "x: '${B:b}'"
    assert interpolate("x: '${A:${B:b}}'", {"A": "a"}) == "x: 'a}'"
    assert interpolate("x: '${A}'", {"A": "${B:not again}"}) == "x: '${B:not again}'"


# --- mapping -----------------------------------------------------------------------------------

EVERY_KIND = """
registration_namespace_grace_ms: 2000
workers:
  - name: iii-worker-manager
    config: {port: 5000, host: 127.0.0.2, handshake_timeout_ms: 1500}
  - name: iii-http
    config: {port: 5001, host: 127.0.0.2, default_timeout: 12000}
  - name: iii-stream
    config:
      port: 5002
      host: 127.0.0.2
      adapter: {name: kv, config: {store_method: file_based, file_path: ./streams/s}}
  - name: iii-state
    config:
      adapter: {name: kv, config: {store_method: file_based, file_path: ./data/state_store.db}}
  - name: iii-pubsub
    config: {adapter: {name: local}}
  - name: iii-cron
    config: {adapter: {name: kv}}
modules:
  - name: iii-queue
    config:
      adapter: {name: builtin, config: {store_method: file_based, file_path: ./data/queue}}
      queue_configs: {default: {max_retries: 5}}
  - name: iii-engine-functions
"""


def test_every_worker_kind_is_mapped() -> None:
    config = parse(EVERY_KIND)
    assert config.workers == Listener(5000, "127.0.0.2")
    assert config.http == Listener(5001, "127.0.0.2")
    assert config.stream == Listener(5002, "127.0.0.2")
    assert (config.handshake_timeout, config.http_timeout, config.namespace_grace) == (
        1.5,
        12.0,
        2.0,
    )
    assert list(config.services) == [
        "iii-stream",
        "iii-state",
        "iii-pubsub",
        "iii-cron",
        "iii-queue",
    ]
    assert config.services["iii-queue"]["queue_configs"] == {"default": {"max_retries": 5}}
    assert config.services["iii-stream"]["port"] == 5002  # each service gets its whole block
    # One database for all: the state store's directory wins over the stream's, and the
    # one that differs is reported.
    assert config.data_dir == Path("data")
    assert config.skipped == (
        "iii-stream: `file_path` './streams/s' is not used separately; all data is kept in "
        "one database in 'data'",
    )


def test_listeners_take_the_real_engines_default_ports_and_no_host() -> None:
    config = parse("workers:\n- name: iii-worker-manager\n- name: iii-http\n- name: iii-stream\n")
    assert (config.workers, config.http, config.stream) == (
        Listener(49134),
        Listener(3111),
        Listener(3112),
    )


def test_an_empty_file_asks_for_nothing() -> None:
    assert parse("") == EngineConfig(source="test.yaml")
    assert parse("workers: []\n# only a comment\n") == EngineConfig(source="test.yaml")


def test_the_short_names_and_instance_suffixes_name_the_same_workers() -> None:
    config = parse("workers:\n- name: state\n- name: http#1\n  config: {port: 7000}\n")
    assert list(config.services) == ["iii-state"]
    assert config.http == Listener(7000)


def test_both_names_of_one_worker_are_refused_as_by_the_real_engine() -> None:
    with pytest.raises(ConfigError, match="'iii-cron' is the deprecated name for 'cron'"):
        parse("workers:\n- name: iii-cron\nmodules:\n- name: cron\n")


# --- what is skipped ---------------------------------------------------------------------------


def test_what_the_embedded_engine_lacks_is_skipped_once_each_and_never_fails() -> None:
    config = parse(
        """
telemetry: off
workers:
  - name: iii-worker-manager
    config: {port: 6000, rbac: {auth_function_id: a::b}, middleware_function_id: m::w, odd: 2}
  - name: iii-worker-manager
    config: {port: 6001, middleware_function_id: m::x}
  - name: iii-worker-manager
    config: {port: 6002}
  - name: iii-worker-manager
    config: {port: 6003, rbac: {}}
  - name: iii-http
    config: {cors: {allowed_origins: ['*']}, mystery: 1}
  - name: iii-observability
    config: {enabled: true}
  - name: my-custom-worker
  - name: my-custom-worker
  - name: from-image
    image: ghcr.io/acme/worker:1
  - name: iii-state
    config: {adapter: {name: redis, config: {redis_url: 'redis://x'}}}
    labels: [a]
  - name: iii-state
  - name: iii-queue
    config: {adapter: {name: rabbitmq}}
"""
    )
    expected = {
        "top-level key 'telemetry' is not used by the embedded engine",
        "iii-worker-manager: `odd` is not used by the embedded engine",
        "iii-worker-manager: `middleware_function_id` is not called without an `rbac:` block "
        "(the embedded engine calls it only on its RBAC listener)",
        "iii-worker-manager: another listener on port 6002 is not served (the embedded "
        "engine has one)",
        "iii-http: `cors` is not applied: the REST listener sends no CORS headers",
        "iii-http: `mystery` is not used by the embedded engine",
        "iii-observability: OpenTelemetry export is not implemented (SDK telemetry sent to "
        "/otel is accepted and discarded)",
        "my-custom-worker: not a worker the embedded engine has (the real engine would start "
        "it as an external worker); start it yourself",
        "from-image: runs from an image (`image:`); start that worker yourself",
        "iii-state: entry key 'labels' is not used by the embedded engine",
        "iii-state: adapter 'redis' is not available in the embedded engine; its built-in "
        "'kv' adapter is used instead",
        "iii-state: listed twice; only the first entry is used",
        "iii-queue: adapter 'rabbitmq' is not available in the embedded engine; its built-in "
        "'builtin' adapter is used instead",
    }
    assert set(config.skipped) == expected
    assert config.rbac == (  # every RBAC entry is a listener, as in the real engine
        RbacSettings(port=6000, auth_function_id="a::b", middleware_function_id="m::w"),
        RbacSettings(port=6003),
    )
    assert len(config.skipped) == len(expected)  # the custom worker, listed twice, once
    assert config.workers == Listener(6001)  # the first trusted listener is the one served
    assert list(config.services) == ["iii-state", "iii-queue"]
    assert (config.data_dir, config.in_memory) == (None, False)  # redis: no choice made


# --- the data directory ------------------------------------------------------------------------


def state_adapter(options: str) -> str:
    return f"workers:\n- name: iii-state\n  config: {{adapter: {{name: kv, config: {options}}}}}\n"


@pytest.mark.parametrize(
    ("options", "data_dir", "in_memory"),
    [
        ("{store_method: file_based, file_path: ./data/state_store.db}", Path("data"), False),
        ("{store_method: file_based, file_path: /var/lib/iii/state}", Path("/var/lib/iii"), False),
        ("{store_method: file_based}", Path("."), False),  # the real default: kv_store_data.db
        ("{store_method: in_memory}", None, True),
        ("{file_path: ./data/x}", None, False),  # no store method: the CLI's default applies
        ("{store_method: file-based, file_path: ./x/y}", None, False),  # unknown: noted
    ],
)
def test_the_data_directory_is_where_the_file_based_stores_are(
    options: str, data_dir: Path | None, in_memory: bool
) -> None:
    config = parse(state_adapter(options))
    assert (config.data_dir, config.in_memory) == (data_dir, in_memory)
    unknown = "iii-state: `store_method` 'file-based' is not in_memory or file_based"
    assert config.skipped == ((unknown,) if "file-based" in options else ())


# --- wrong types and broken files --------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("- just a list\n", "top level: must be a mapping"),
        ("workers: {name: iii-http}\n", "workers: must be a list"),
        ("workers:\n- config: {}\n", r"workers\[0\]: each entry must be a mapping with a string"),
        ("workers:\n- name: iii-http\n  config: [1]\n", r"\(iii-http\): `config:` must be a map"),
        ("workers:\n- name: iii-http\n  config: {port: '80'}\n", "not '80'"),
        ("workers:\n- name: iii-http\n  config: {port: 70000}\n", "not 70000"),
        ("workers:\n- name: iii-http\n  config: {port: true}\n", "not True"),
        ("workers:\n- name: iii-http\n  config: {host: 1}\n", "`host` must be an address"),
        ("workers:\n- name: iii-http\n  config: {default_timeout: soon}\n", "milliseconds"),
        ("registration_namespace_grace_ms: -1\n", "registration_namespace_grace_ms: expected"),
        ("workers:\n- name: iii-state\n  config: {adapter: kv}\n", "`adapter` must be a map"),
        (state_adapter("{store_method: file_based, file_path: 3}"), "`file_path` must be a str"),
        (state_adapter("[1]"), "`adapter.config` must be a mapping"),
        ("workers: [\n", r"(?s)test.yaml: not valid YAML: .*line 2, column 1"),
    ],
)
def test_wrong_types_and_broken_yaml_are_refused_saying_where(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as refused:
        parse(text)
    assert str(refused.value).startswith("test.yaml: ")


def test_a_missing_file_is_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nowhere\.yaml: config file not found"):
        load_config(tmp_path / "nowhere.yaml")


# --- precedence: flags, then the file, then the defaults ---------------------------------------


def test_without_a_file_the_defaults_are_the_real_engines_ports_and_data_in_dot_data() -> None:
    options = resolve(EngineFlags(), None)
    assert (options.host, options.port, options.http_port, options.stream_port) == (
        "127.0.0.1",
        49134,
        3111,
        3112,
    )
    assert options.data_dir == DEFAULT_DATA_DIR == Path("data")
    assert options.services is None  # every service the engine has
    assert options.settings == EngineSettings()


def test_the_file_sets_what_the_flags_do_not() -> None:
    options = resolve(EngineFlags(), parse(EVERY_KIND))
    assert (options.host, options.port, options.http_port, options.stream_port) == (
        "127.0.0.2",
        5000,
        5001,
        5002,
    )
    assert options.data_dir == Path("data")
    assert options.settings.namespace_grace == 2.0
    assert options.settings.handshake_timeout == 1.5
    assert options.settings.http.request_timeout == 12.0


def test_flags_override_the_file() -> None:
    config = parse(EVERY_KIND)
    flags = EngineFlags(host="0.0.0.0", port=0, http_port=0, stream_port=0, data_dir="/tmp/d")
    options = resolve(flags, config)
    assert (options.host, options.port, options.http_port, options.stream_port) == (
        "0.0.0.0",
        0,
        0,
        0,
    )
    assert options.data_dir == Path("/tmp/d")
    assert resolve(EngineFlags(in_memory=True), config).data_dir is None


def test_a_file_without_http_or_stream_has_neither_unless_a_flag_asks() -> None:
    config = parse("workers:\n- name: iii-state\n")
    options = resolve(EngineFlags(), config)
    assert (options.port, options.http_port, options.stream_port) == (49134, None, None)
    assert resolve(EngineFlags(http_port=8080), config).http_port == 8080
    assert parse(state_adapter("{store_method: in_memory}")).in_memory
    assert (
        resolve(EngineFlags(), parse(state_adapter("{store_method: in_memory}"))).data_dir is None
    )
    assert resolve(EngineFlags(), config).data_dir == DEFAULT_DATA_DIR


def test_listeners_on_several_hosts_are_bound_on_the_first_and_that_is_said() -> None:
    config = parse(
        "workers:\n- name: iii-worker-manager\n- name: iii-http\n  config: {host: 0.0.0.0}\n"
        "- name: iii-stream\n  config: {host: 127.0.0.1}\n"
    )
    options = resolve(EngineFlags(), config)
    assert options.host == "0.0.0.0"
    assert (
        "the file binds listeners on several hosts (0.0.0.0, 127.0.0.1); the embedded engine "
        "binds all of them on 0.0.0.0"
    ) in options.notes
    overridden = resolve(EngineFlags(host="127.0.0.1"), config)
    assert not [note for note in overridden.notes if "several hosts" in note]


def test_listed_services_are_built_with_their_blocks_and_missing_ones_are_noted() -> None:
    config = parse(
        "workers:\n- name: iii-state\n  config: {triggers_enabled: false}\n- name: iii-dream\n"
        "- name: iii-pubsub\n- name: iii-cron\n  config: {adapter: {name: kv}}\n"
        "- name: iii-queue\n  config: {queue_configs: {}}\n"
    )
    options = resolve(EngineFlags(), config)
    assert options.services is not None
    available = [name for name in config.services if name in SERVICE_CLASSES]
    assert available[:3] == ["iii-state", "iii-pubsub", "iii-cron"]
    for name, factory in zip(available, options.services, strict=True):
        assert isinstance(factory, partial)
        assert factory.func is SERVICE_CLASSES[name]
        assert factory.keywords == {"config": config.services[name]}
    assert options.services[0].keywords == {"config": {"triggers_enabled": False}}  # type: ignore[attr-defined]
    router = Router(services=options.services)  # the engine builds them from itself
    assert router.services.owns("state::get")
    assert router.services.owns("publish")
    assert options.notes[0].startswith("iii-dream: not a worker the embedded engine has")
    for name in config.services.keys() - SERVICE_CLASSES.keys():  # until each one lands
        assert f"{name}: this build of the embedded engine has no such service yet" in (
            options.notes
        )
    # Only what the file lists runs, as in the real engine.
    only_state = resolve(EngineFlags(), parse("workers:\n- name: iii-state\n"))
    assert only_state.services is not None
    assert not Router(services=only_state.services).services.owns("publish")


def test_the_sdk_fixture_maps_onto_the_embedded_engine() -> None:
    """The iii project's own SDK test config (tests/data/iii-config-test.yaml)."""
    config = load_config(DATA / "iii-config-test.yaml", environ={})
    assert config.workers == Listener(49199)
    assert config.http == Listener(3199, "0.0.0.0")
    assert config.stream == Listener(3112, "0.0.0.0")
    assert config.http_timeout == 30.0
    assert set(config.services) == {"iii-stream", "iii-state", "iii-pubsub", "iii-cron"}
    assert config.data_dir == Path("data")
    (rbac,) = config.rbac
    assert rbac == RbacSettings(
        port=49135,
        host="0.0.0.0",
        auth_function_id="test::rbac-worker::auth",
        expose_functions=(
            parse_filter('match("test::ew::public::*")'),
            parse_filter('match("engine::functions::list")'),
            parse_filter({"metadata": {"ew_public": True}}),
        ),
        middleware_function_id="test::rbac-worker::middleware",
        on_function_registration_function_id="test::rbac-worker::on-function-reg",
        on_trigger_registration_function_id="test::rbac-worker::on-trigger-reg",
        on_trigger_type_registration_function_id="test::rbac-worker::on-trigger-type-reg",
    )
    assert config.skipped == (
        "iii-observability: OpenTelemetry export is not implemented (SDK telemetry sent to "
        "/otel is accepted and discarded)",
    )
    assert config.http_functions == HttpFunctionSettings(
        require_https=False, block_private_ips=False, url_allowlist=("localhost", "127.0.0.1")
    )


def test_the_example_in_the_engine_docs_does_what_the_docs_say() -> None:
    page = (Path(__file__).resolve().parents[2] / "docs" / "engine.md").read_text()
    section = page.split("## Configuration file", 1)[1]
    example = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    config = parse_config(example, source="config.yaml", environ={})
    options = resolve(EngineFlags(config="config.yaml"), config)
    assert (options.host, options.port, options.http_port, options.stream_port) == (
        "127.0.0.1",
        49134,
        3111,
        3112,
    )
    assert parse_config(example, environ={"III_PORT": "5000"}).workers == Listener(
        5000, "127.0.0.1"
    )
    assert options.settings.namespace_grace == 5.0
    assert options.settings.http.request_timeout == 30.0
    assert list(config.services) == ["iii-state", "iii-stream", "iii-pubsub"]
    assert options.data_dir == Path("data")
    assert config.skipped == (
        "iii-http: `cors` is not applied: the REST listener sends no CORS headers",
        "iii-pubsub: adapter 'redis' is not available in the embedded engine; its built-in "
        "'local' adapter is used instead",
        "iii-observability: OpenTelemetry export is not implemented (SDK telemetry sent to "
        "/otel is accepted and discarded)",
    )
    error = section.split("```text\n", 1)[1].split("```", 1)[0].strip()
    broken = "workers:\n  - name: iii-worker-manager\n  - name: iii-http\n    config: {port: web}\n"
    with pytest.raises(ConfigError) as refused:
        parse_config(broken, source="config.yaml", environ={})
    assert error == f"anyiii engine: error: {refused.value}"
