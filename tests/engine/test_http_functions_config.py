"""The policy of HTTP-invoked functions from the real engine's `config.yaml`: the
`security:` block of `iii-http-functions` (`engine/src/config/mod.rs`), read by
`anyiii engine --config` into `EngineSettings.http_functions`."""

from __future__ import annotations

import pytest

from anyiii._engine.cli import EngineFlags, resolve
from anyiii._engine.config import ConfigError, parse_config
from anyiii._engine.http_targets import HttpFunctionSettings


def policy(block: str) -> HttpFunctionSettings | None:
    text = "workers:\n  - name: iii-http-functions\n" + block
    return parse_config(text, source="c.yaml", environ={}).http_functions


def test_the_security_block_sets_the_policy_and_the_cli_uses_it() -> None:
    text = (
        "workers:\n  - name: iii-http-functions\n    config:\n      security:\n"
        "        url_allowlist: [localhost, '*.example.com']\n"
        "        block_private_ips: false\n        require_https: false\n"
    )
    config = parse_config(text, source="c.yaml", environ={})
    expected = HttpFunctionSettings(
        require_https=False, block_private_ips=False, url_allowlist=("localhost", "*.example.com")
    )
    assert config.http_functions == expected
    assert config.skipped == ()
    assert resolve(EngineFlags(config="c.yaml"), config).settings.http_functions == expected


def test_omitted_keys_keep_the_real_engines_defaults() -> None:
    assert policy("") == HttpFunctionSettings()
    assert policy("    config:\n      security:\n        url_allowlist: []\n") == (
        HttpFunctionSettings()
    )
    assert parse_config("workers: []\n", environ={}).http_functions is None


def test_an_unlisted_worker_leaves_the_default_policy() -> None:
    config = parse_config("workers:\n  - name: iii-state\n", environ={})
    assert resolve(EngineFlags(), config).settings.http_functions == HttpFunctionSettings()


def test_keys_it_does_not_use_are_noted_and_skipped() -> None:
    text = (
        "workers:\n  - name: iii-http-functions\n    config:\n      retries: 3\n"
        "      security:\n        allow: [x]\n        require_https: false\n"
    )
    config = parse_config(text, source="c.yaml", environ={})
    assert config.http_functions == HttpFunctionSettings(require_https=False)
    assert config.skipped == (
        "iii-http-functions: `retries` is not used by the embedded engine",
        "iii-http-functions: `security.allow` is not used by the embedded engine",
    )


@pytest.mark.parametrize(
    ("block", "says"),
    [
        ("    config:\n      security: [x]\n", "`security` must be a mapping"),
        ("    config:\n      security:\n        url_allowlist: x\n", "`url_allowlist`"),
        ("    config:\n      security:\n        require_https: 'no'\n", "`require_https`"),
    ],
)
def test_a_wrong_type_is_a_config_error_naming_the_key(block: str, says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        policy(block)
