"""The sans-IO RBAC rules (`anyiii._engine.rbac`), against the real engine's behaviour
(`workers/worker/rbac_config.rs`, `rbac_session.rs`)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from anyiii._engine.rbac import (
    INFRASTRUCTURE_FUNCTIONS,
    RbacSettings,
    Session,
    auth_input,
    function_allowed,
    parse_auth_result,
    parse_filter,
    parse_match,
    parse_rbac,
    wildcard_match,
)

# --- wildcards ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "value", "expected"),
    [
        ("hello::world", "hello::world", True),
        ("hello::world", "hello::worldx", False),
        ("engine::*", "engine::bar::baz", True),
        ("engine::*", "other::foo", False),
        ("*::public", "x::y::public", True),
        ("*::public", "api::private", False),
        ("*public*", "mypublicfn", True),
        ("*", "", True),
        ("api::*::read", "api::users::read", True),
        ("api::*::read", "api::users::write", False),
        ("ab*ba", "aba", False),  # the two ends may not overlap
        ("a*aa", "aaa", True),
    ],
)
def test_wildcards_match_like_the_real_engine(pattern: str, value: str, expected: bool) -> None:
    assert wildcard_match(pattern, value) is expected


@given(
    st.lists(st.sampled_from(["a", "b", ":", "*"]), max_size=7).map("".join),
    st.lists(st.sampled_from(["a", "b", ":"]), max_size=9).map("".join),
)
def test_a_wildcard_is_a_glob_whose_only_metacharacter_is_the_star(
    pattern: str, value: str
) -> None:
    glob = ".*".join(re.escape(piece) for piece in pattern.split("*"))
    assert wildcard_match(pattern, value) is (re.fullmatch(glob, value, re.DOTALL) is not None)


def test_match_strings_are_unwrapped_in_either_quote() -> None:
    assert parse_match('match("engine::*")') == "engine::*"
    assert parse_match("  match('engine::*') ") == "engine::*"
    assert parse_match("engine::*") is None
    assert parse_match("match(engine::*)") is None


# --- expose_functions filters ------------------------------------------------------------------


def test_filters_parse_as_the_real_engine_reads_them() -> None:
    rule = parse_filter('match("api::*")')
    assert rule.matches("api::x", "default", None)
    assert not rule.matches("api::x", "orders", None)  # no namespace: `default` only
    scoped = parse_filter({"match": "svc::*", "namespace": "orders"})
    assert scoped.matches("svc::get", "orders", None)
    assert not scoped.matches("svc::get", "default", None)
    meta = parse_filter({"metadata": {"public": True, "scope": 'match("team-*")'}})
    assert meta.matches("x", "default", {"public": True, "scope": "team-a", "more": 1})
    assert not meta.matches("x", "default", {"public": True, "scope": "solo"})
    assert not meta.matches("x", "default", {"public": 1, "scope": "team-a"})  # JSON: 1 ≠ true
    assert not meta.matches("x", "default", {"public": True})
    assert not meta.matches("x", "default", None)
    assert parse_filter({"metadata": {"n": 1}}).matches("x", "default", {"n": 1})
    assert not parse_filter({"metadata": {"n": 1}}).matches("x", "default", {"n": 1.0})


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("api::*", "expected match"),
        ({"match": "a", "metadata": {"x": 1}}, "not both"),
        ({"namesapce": "orders", "match": "a"}, "unknown key 'namesapce'"),
        ({"namespace": "orders"}, "expected a 'match' or 'metadata' key"),
        (3, "a filter is"),
    ],
)
def test_malformed_filters_are_refused(entry: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_filter(entry)


def test_an_rbac_block_parses_with_its_listener_and_middleware() -> None:
    settings = parse_rbac(
        {
            "middleware_function_id": "mw",
            "rbac": {"auth_function_id": "auth", "expose_functions": ['match("a::*")']},
        },
        port=7,
    )
    assert settings == RbacSettings(
        port=7,
        auth_function_id="auth",
        middleware_function_id="mw",
        expose_functions=(parse_filter('match("a::*")'),),
    )
    with pytest.raises(ValueError, match=r"rbac.expose_functions\[0\]"):
        parse_rbac({"rbac": {"expose_functions": ["a::*"]}})
    with pytest.raises(ValueError, match=r"rbac\.auth_fn"):
        parse_rbac({"rbac": {"auth_fn": "x"}})


# --- AuthResult --------------------------------------------------------------------------------


def test_an_auth_result_gets_the_real_engines_defaults() -> None:
    session = parse_auth_result({})
    assert session == Session(allow_trigger_type_registration=False)
    assert session.allow_function_registration
    assert session.allowed_trigger_types is None
    assert session.context == {}
    full = parse_auth_result(
        {
            "namespaces": {"orders": ["svc::*"]},
            "allowed_functions": ["a"],
            "forbidden_functions": ["b"],
            "allowed_trigger_types": ["cron"],
            "allow_trigger_type_registration": True,
            "allow_function_registration": False,
            "context": {"user": 1},
            "function_registration_prefix": "t",
        }
    )
    assert full.namespaces == {"orders": ("svc::*",)}
    assert (full.allowed_functions, full.forbidden_functions) == (("a",), ("b",))
    assert full.allowed_trigger_types == ("cron",)
    assert full.allow_trigger_type_registration
    assert not full.allow_function_registration
    assert full.prefixed("fn") == "t::fn"
    assert full.unprefixed("t::fn") == "fn"
    assert full.unprefixed("other::fn") == "other::fn"


@pytest.mark.parametrize(
    "answer",
    [None, [], {"allowed_functions": "a"}, {"allow_function_registration": "yes"}],
)
def test_an_answer_that_is_not_an_auth_result_is_refused(answer: Any) -> None:
    with pytest.raises(ValueError, match=r"must|AuthResult"):
        parse_auth_result(answer)


def test_the_auth_input_has_headers_query_lists_and_the_ip() -> None:
    data = auth_input({"Authorization": "Bearer t"}, [("a", "1"), ("a", "2")], "10.0.0.1")
    assert data == {
        "headers": {"authorization": "Bearer t"},
        "query_params": {"a": ["1", "2"]},
        "ip_address": "10.0.0.1",
    }


# --- decisions ---------------------------------------------------------------------------------

SETTINGS = RbacSettings(expose_functions=(parse_filter('match("api::*")'),))


def test_a_denial_wins_over_everything_else() -> None:
    session = Session(
        forbidden_functions=("api::x", "engine::log::info"), allowed_functions=("api::x",)
    )
    assert not function_allowed(SETTINGS, session, "api::x", "default")
    assert not function_allowed(SETTINGS, session, "engine::log::info", "default")
    assert not function_allowed(None, session, "api::x", "default")


def test_grants_expose_rules_and_infrastructure_allow_in_that_order() -> None:
    session = Session(namespaces={"orders": ("svc::*",)}, allowed_functions=("secret::x",))
    assert function_allowed(SETTINGS, session, "svc::get", "orders")
    assert not function_allowed(SETTINGS, session, "svc::get", "default")
    assert function_allowed(SETTINGS, session, "secret::x", "default")
    assert not function_allowed(SETTINGS, session, "secret::x", "orders")  # `default` only
    assert function_allowed(SETTINGS, session, "api::anything", "default")
    assert not function_allowed(SETTINGS, session, "internal::x", "default")
    assert not function_allowed(SETTINGS, session, "engine::functions::list", "default")
    for function_id in INFRASTRUCTURE_FUNCTIONS:
        assert function_allowed(SETTINGS, session, function_id, "orders")
    assert function_allowed(None, Session(), "internal::x", "default")  # no RBAC at all


@given(st.text(max_size=12), st.sampled_from(["default", "orders"]))
def test_a_forbidden_id_is_never_allowed_whatever_else_allows_it(
    function_id: str, namespace: str
) -> None:
    session = Session(
        namespaces={namespace: ("*",)},
        allowed_functions=(function_id,),
        forbidden_functions=(function_id,),
    )
    everything = RbacSettings(expose_functions=(parse_filter('match("*")'),))
    assert not function_allowed(everything, session, function_id, namespace)


def test_a_namespace_grant_takes_either_spelling() -> None:
    for grant in ("svc::*", 'match("svc::*")', 'match("svc::get")', "svc::get"):
        session = Session(namespaces={"orders": (grant,)})
        assert function_allowed(SETTINGS, session, "svc::get", "orders"), grant
        assert not function_allowed(SETTINGS, session, "other::get", "orders"), grant
