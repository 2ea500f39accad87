"""HTTP-invoked functions, the sans-IO decisions (`http_targets.py`): what an `invocation`
object may say, the URL policy, the request of a call, and what an answer means.

Each expectation is the real engine's (`engine/src/invocation/*.rs` and its e2e tests),
checked here without sockets; `test_http_functions.py` runs the same rules end to end.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
from typing import Any

import pytest
from msgspec import Raw

from anyiii._engine.http_targets import (
    HttpFunctionSettings,
    HttpResponse,
    HttpTarget,
    build_request,
    is_private_address,
    parse_target,
    read_response,
    url_problem,
)
from anyiii._protocol.frames import ErrorBody

OPEN = HttpFunctionSettings(require_https=False, block_private_ips=False)
STRICT = HttpFunctionSettings()


def target(invocation: dict[str, Any], environ: dict[str, str] | None = None) -> HttpTarget:
    parsed = parse_target(Raw(json.dumps(invocation).encode()), OPEN, environ or {})
    assert isinstance(parsed, HttpTarget), parsed
    return parsed


def refusal(
    invocation: Any, settings: HttpFunctionSettings = OPEN, environ: dict[str, str] | None = None
) -> ErrorBody:
    parsed = parse_target(Raw(json.dumps(invocation).encode()), settings, environ or {})
    assert isinstance(parsed, ErrorBody), parsed
    return parsed


# --- the invocation object ---------------------------------------------------------------------


def test_defaults_are_post_the_engine_timeout_and_no_headers() -> None:
    parsed = target({"url": "http://127.0.0.1:9/fn"})
    assert (parsed.method, parsed.timeout_ms, parsed.headers) == ("POST", 30_000, ())
    assert parsed.signing_secret is None
    assert parsed.auth_header is None


def test_an_invocation_says_method_timeout_and_headers() -> None:
    parsed = target(
        {"url": "http://h/x", "method": "PATCH", "timeout_ms": 250, "headers": {"X-A": "1"}}
    )
    assert (parsed.method, parsed.timeout_ms, parsed.headers) == ("PATCH", 250, (("X-A", "1"),))


def test_null_fields_read_as_absent() -> None:
    parsed = target({"url": "http://h/", "method": None, "headers": None, "auth": None})
    assert (parsed.method, parsed.headers, parsed.auth_header) == ("POST", (), None)


@pytest.mark.parametrize(
    ("invocation", "says"),
    [
        ({}, "url"),
        ({"url": 7}, "url"),
        ({"url": "http://h/", "method": "FETCH"}, "method"),
        ({"url": "http://h/", "method": "post"}, "method"),  # the wire spells it in capitals
        ({"url": "http://h/", "timeout_ms": -1}, "timeout_ms"),
        ({"url": "http://h/", "headers": {"X": 1}}, "headers"),
        ({"url": "http://h/", "auth": {"type": "oauth", "token_key": "T"}}, "auth"),
        ({"url": "http://h/", "auth": {"type": "bearer"}}, "token_key"),
        ("http://h/", "object"),
    ],
)
def test_a_malformed_invocation_is_refused_saying_what_is_wrong(invocation: Any, says: str) -> None:
    error = refusal(invocation)
    assert error.code == "deserialization_error"
    assert says in error.message


@pytest.mark.parametrize(
    ("auth", "variable", "code"),
    [
        ({"type": "hmac", "secret_key": "S"}, "S", "secret_not_found"),
        ({"type": "bearer", "token_key": "T"}, "T", "token_not_found"),
        ({"type": "api_key", "header": "X-Key", "value_key": "K"}, "K", "api_key_not_found"),
    ],
)
def test_an_auth_whose_variable_is_unset_is_refused_with_its_code(
    auth: dict[str, str], variable: str, code: str
) -> None:
    error = refusal({"url": "http://h/", "auth": auth}, environ={"OTHER": "x"})
    assert (error.code, error.message.endswith(f": {variable}")) == (code, True)
    assert target({"url": "http://h/", "auth": auth}, {variable: "v"})  # set: accepted


def test_auth_values_are_read_from_the_environment_at_registration() -> None:
    env = {"TOKEN": "t0k", "KEY": "k3y", "SECRET": "s3cret"}
    bearer = target({"url": "http://h/", "auth": {"type": "bearer", "token_key": "TOKEN"}}, env)
    assert bearer.auth_header == ("Authorization", "Bearer t0k")
    api = {"type": "api_key", "header": "X-Api-Key", "value_key": "KEY"}
    assert target({"url": "http://h/", "auth": api}, env).auth_header == ("X-Api-Key", "k3y")
    signed = target({"url": "http://h/", "auth": {"type": "hmac", "secret_key": "SECRET"}}, env)
    assert (signed.signing_secret, signed.auth_header) == ("s3cret", None)


# --- the URL policy ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "settings", "problem"),
    [
        ("not a url at all", OPEN, "Invalid URL"),
        ("", OPEN, "Invalid URL"),
        ("mailto:someone@example.com", OPEN, "Invalid URL"),
        ("http://h:notaport/", OPEN, "Invalid URL"),
        ("http://example.com/path", STRICT, "HTTPS is required"),
        ("https://127.0.0.1:8080/internal", STRICT, "Private IP blocked"),
        ("https://10.0.0.1/api", STRICT, "Private IP blocked"),
        ("https://192.168.1.1/api", STRICT, "Private IP blocked"),
        ("https://172.16.0.1/api", STRICT, "Private IP blocked"),
        ("https://[::ffff:127.0.0.1]/", STRICT, "Private IP blocked"),
        ("https://[::1]/", STRICT, "Private IP blocked"),
        ("https://8.8.8.8/api", STRICT, None),
        ("https://example.com/x", STRICT, None),  # names are resolved at call time
        ("http://127.0.0.1:8080/internal", OPEN, None),
    ],
)
def test_the_url_policy_is_the_real_engines(
    url: str, settings: HttpFunctionSettings, problem: str | None
) -> None:
    assert url_problem(url, settings) == problem


def test_the_allowlist_matches_the_host_with_globs() -> None:
    only = HttpFunctionSettings(url_allowlist=("*.example.com", "hooks.slack.com"))
    assert url_problem("https://api.example.com/webhook", only) is None
    assert url_problem("https://hooks.slack.com/services/x", only) is None
    assert url_problem("https://example.com", only) == "URL not in allowlist"
    assert url_problem("https://evil.com/webhook", only) == "URL not in allowlist"


def test_a_refused_url_refuses_the_registration() -> None:
    error = refusal({"url": "http://example.com/hook"}, STRICT)
    assert (error.code, error.message) == ("url_validation_failed", "HTTPS is required")


def test_only_host_names_need_a_dns_check_at_call_time() -> None:
    def checks(url: str, settings: HttpFunctionSettings = STRICT) -> bool:
        parsed = parse_target(Raw(json.dumps({"url": url}).encode()), settings, {})
        assert isinstance(parsed, HttpTarget)
        return parsed.check_dns

    assert checks("https://example.com/") is True
    assert checks("https://8.8.8.8/") is False
    assert checks("https://example.com/", HttpFunctionSettings(block_private_ips=False)) is False


@pytest.mark.parametrize(
    ("address", "private"),
    [
        ("127.0.0.1", True),
        ("10.1.2.3", True),
        ("172.31.255.255", True),
        ("192.168.0.1", True),
        ("169.254.169.254", True),
        ("255.255.255.255", True),
        ("0.0.0.0", True),
        ("192.0.2.1", True),
        ("198.51.100.7", True),
        ("203.0.113.9", True),
        ("8.8.8.8", False),
        ("1.1.1.1", False),
        ("100.64.0.1", False),  # shared address space: not in Rust's list
        ("::1", True),
        ("::", True),
        ("fd00::1", True),
        ("fe80::1", True),
        ("ff02::1", True),
        ("::ffff:169.254.169.254", True),
        ("::ffff:10.0.0.1", True),
        ("2001:4860:4860::8888", False),
        ("2606:4700:4700::1111", False),
    ],
)
def test_private_addresses_are_rusts(address: str, private: bool) -> None:
    assert is_private_address(ipaddress.ip_address(address)) is private


# --- the request of a call -----------------------------------------------------------------------


def test_the_request_carries_the_payload_the_iii_headers_then_the_functions_own() -> None:
    parsed = target({"url": "http://h/fn", "method": "PUT", "headers": {"X-Service": "a"}})
    request = build_request(parsed, "ext::fn", b'{"a":1}', 1_700_000_000, "req-id")
    assert not isinstance(request, ErrorBody)
    assert (request.method, request.url, request.body, request.timeout) == (
        "PUT",
        "http://h/fn",
        b'{"a":1}',
        30.0,
    )
    assert request.headers == (
        ("Content-Type", "application/json"),
        ("x-iii-Function-Path", "ext::fn"),
        ("x-iii-Invocation-ID", "req-id"),
        ("x-iii-Timestamp", "1700000000"),
        ("X-Service", "a"),
    )


def test_hmac_signs_timestamp_and_base64_body_as_a_receiver_verifies() -> None:
    parsed = target({"url": "http://h/", "auth": {"type": "hmac", "secret_key": "S"}}, {"S": "k"})
    body = b'{"order":42}'
    request = build_request(parsed, "f", body, 1_700_000_123, "id")
    assert not isinstance(request, ErrorBody)
    headers = dict(request.headers)
    # What a receiver computes from what it got: the timestamp header and the raw body.
    signed = f"{headers['x-iii-Timestamp']}:{base64.b64encode(body).decode()}".encode()
    expected = "sha256=" + hmac.new(b"k", signed, hashlib.sha256).hexdigest()
    assert headers["x-iii-Signature"] == expected
    assert request.headers[-1][0] == "x-iii-Signature"  # after the function's own headers


def test_a_clock_before_the_epoch_is_a_timestamp_error() -> None:
    request = build_request(target({"url": "http://h/"}), "f", b"null", -1, "id")
    assert isinstance(request, ErrorBody)
    assert request.code == "timestamp_error"


# --- what an answer means ------------------------------------------------------------------------


def outcome(status: int, body: bytes) -> tuple[Any, ErrorBody | None]:
    result, error = read_response(HttpResponse(status, body))
    return (json.loads(bytes(result)) if result is not None else None), error


def test_a_2xx_json_body_is_the_result_and_an_empty_one_is_none() -> None:
    assert outcome(200, b'{"ok": true}') == ({"ok": True}, None)
    assert outcome(201, b"[1, 2]") == ([1, 2], None)
    assert outcome(204, b"") == (None, None)


def test_a_2xx_body_that_is_not_json_is_an_invalid_response() -> None:
    _, error = outcome(200, b"<html>hi</html>")
    assert error is not None
    assert error.code == "invalid_response"


def test_a_redirect_is_a_success_whose_body_counts_only_if_json() -> None:
    assert outcome(302, b"<a href=x>moved</a>") == (None, None)
    assert outcome(304, b'{"cached": 1}') == ({"cached": 1}, None)


@pytest.mark.parametrize(
    ("status", "body", "code", "message"),
    [
        (400, b"bad request", "http_error", "HTTP 400 Bad Request"),
        (503, b"", "http_error", "HTTP 503 Service Unavailable"),
        (599, b"", "http_error", "HTTP 599 <unknown status code>"),
        (502, b'{"error": {"code": "upstream", "message": "gone"}}', "upstream", "gone"),
        (404, b'{"error": {"message": "no such order"}}', "http_error", "no such order"),
        (500, b'{"error": "flat"}', "http_error", "HTTP request failed"),
        (500, b'{"detail": "x"}', "http_error", "HTTP 500 Internal Server Error"),
    ],
)
def test_4xx_and_5xx_are_errors_with_the_bodys_own_error_if_any(
    status: int, body: bytes, code: str, message: str
) -> None:
    assert outcome(status, body) == (None, ErrorBody(code, message))
