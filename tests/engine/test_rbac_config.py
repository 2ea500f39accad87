"""The `rbac:` blocks of `config.yaml` and the `--token` flag, as `anyiii engine` resolves
them (no sockets: `resolve()` chooses the settings; `test_rbac_listeners.py` serves them)."""

from __future__ import annotations

import pytest

from anyiii._engine.cli import EngineFlags, resolve
from anyiii._engine.config import ConfigError, parse_config
from anyiii._engine.rbac import FunctionFilter, RbacSettings
from anyiii._engine.settings import EngineSettings

RBAC_FILE = """
workers:
  - name: iii-worker-manager
    config: {port: 49134}
  - name: iii-worker-manager
    config:
      host: 0.0.0.0
      port: 49135
      rbac:
        auth_function_id: my::auth
        expose_functions:
          - match("api::*")
          - {match: "svc::*", namespace: orders}
"""


def test_the_rbac_entry_becomes_the_rbac_listener_on_its_own_host() -> None:
    options = resolve(EngineFlags(), parse_config(RBAC_FILE, source="c.yaml", environ={}))
    assert options.port == 49134
    assert options.host == "127.0.0.1"  # the RBAC entry's host is its own
    assert options.settings.rbac == RbacSettings(
        port=49135,
        host="0.0.0.0",
        auth_function_id="my::auth",
        expose_functions=(
            FunctionFilter(pattern="api::*"),
            FunctionFilter(pattern="svc::*", namespace="orders"),
        ),
    )
    assert options.settings.token is None
    flagged = resolve(EngineFlags(host="::1"), parse_config(RBAC_FILE, source="c", environ={}))
    assert flagged.settings.rbac is not None
    assert flagged.settings.rbac.host is None  # `--host` binds every listener


def test_the_token_flag_reaches_the_settings() -> None:
    assert resolve(EngineFlags(token="t0k"), None).settings.token == "t0k"


def test_an_rbac_listener_on_the_worker_port_is_refused() -> None:
    alone = "workers:\n- name: iii-worker-manager\n  config: {rbac: {}}\n"
    with pytest.raises(ConfigError, match="give the `iii-worker-manager` entry with `rbac:`"):
        resolve(EngineFlags(), parse_config(alone, source="c.yaml", environ={}))
    moved = resolve(EngineFlags(port=5000), parse_config(alone, source="c.yaml", environ={}))
    assert moved.settings.rbac == RbacSettings(port=49134)


@pytest.mark.parametrize(
    ("block", "message"),
    [
        ("{expose_functions: ['api::*']}", r"rbac\.expose_functions\[0\]`: expected match"),
        ("{expose_functions: [{match: a, namesapce: b}]}", "unknown key 'namesapce'"),
        ("{auth_function: x}", r"`rbac\.auth_function` is not a key"),
        ("{auth_function_id: 3}", "`auth_function_id` must be a function id"),
    ],
)
def test_a_malformed_rbac_block_names_the_key(block: str, message: str) -> None:
    text = f"workers:\n- name: iii-worker-manager\n  config: {{port: 1, rbac: {block}}}\n"
    with pytest.raises(ConfigError, match=message) as caught:
        parse_config(text, source="c.yaml", environ={})
    assert "c.yaml: workers[0] (iii-worker-manager)" in str(caught.value)


TWO_RBAC_FILE = """
workers:
  - name: iii-worker-manager
    config: {port: 49134}
  - name: iii-worker-manager
    config: {port: 49135, host: 0.0.0.0, rbac: {expose_functions: [match("a::*")]}}
  - name: iii-worker-manager
    config: {port: 49136, host: "::", rbac: {expose_functions: [match("b::*")]}}
"""


def test_every_rbac_entry_becomes_a_listener_in_file_order() -> None:
    config = parse_config(TWO_RBAC_FILE, source="c.yaml", environ={})
    first = RbacSettings(
        port=49135, host="0.0.0.0", expose_functions=(FunctionFilter(pattern="a::*"),)
    )
    second = RbacSettings(port=49136, host="::", expose_functions=(FunctionFilter(pattern="b::*"),))
    assert config.rbac == (first, second)
    assert config.skipped == ()  # none is left out
    settings = resolve(EngineFlags(), config).settings
    assert (settings.rbac, settings.rbac_listeners) == (first, (second,))  # `rbac`: the first
    assert settings.all_rbac_listeners == (first, second)
    flagged = resolve(EngineFlags(host="::1"), config).settings
    assert [each.host for each in flagged.all_rbac_listeners] == [None, None]


def test_two_rbac_listeners_on_one_port_are_refused() -> None:
    shared = TWO_RBAC_FILE.replace("port: 49136", "port: 49135")
    with pytest.raises(ConfigError, match=r"c\.yaml: two RBAC listeners on port 49135"):
        resolve(EngineFlags(), parse_config(shared, source="c.yaml", environ={}))
    on_worker_port = TWO_RBAC_FILE.replace("port: 49136", "port: 49134")
    with pytest.raises(ConfigError, match="port 49134 is the worker port"):
        resolve(EngineFlags(), parse_config(on_worker_port, source="c.yaml", environ={}))
    free = TWO_RBAC_FILE.replace("port: 49135", "port: 0").replace("port: 49136", "port: 0")
    options = resolve(EngineFlags(), parse_config(free, source="c.yaml", environ={}))
    assert [each.port for each in options.settings.all_rbac_listeners] == [0, 0]  # each free


def test_engine_settings_take_one_rbac_listener_or_several() -> None:
    one, two = RbacSettings(port=1), RbacSettings(port=2)
    assert EngineSettings().all_rbac_listeners == ()
    assert EngineSettings(rbac=one).all_rbac_listeners == (one,)  # the older form
    several = EngineSettings(rbac_listeners=[one, two])  # type: ignore[arg-type]
    assert several.rbac_listeners == (one, two)
    assert several.all_rbac_listeners == (one, two)
    assert EngineSettings(rbac=one, rbac_listeners=(two,)).all_rbac_listeners == (one, two)
    with pytest.raises(ValueError, match="rbac_listeners must be RbacSettings"):
        EngineSettings(rbac_listeners=(one, "x"))  # type: ignore[arg-type]
