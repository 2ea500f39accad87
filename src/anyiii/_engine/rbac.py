"""RBAC of a worker listener, as decisions only (no I/O): the real engine's rules.

The real engine's `iii-worker-manager` may run an RBAC-gated listener: each connection is
authorized once, during its handshake, by an *auth function* that answers an `AuthResult`;
every call the connection makes is then checked against that result and the listener's
`expose_functions` allow-list, and its registrations may go through hook functions. This
module holds those rules as pure functions over plain values; `rbac_gate.py` carries
them out on a socket.

The facts come from the real engine's `workers/worker/rbac_config.rs` (wildcards, filters,
`is_function_allowed`, the infrastructure carve-out) and `rbac_session.rs` (`AuthResult`
and its defaults, the auth input); see docs/security.md.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final

from .._protocol.codes import DEFAULT_NAMESPACE

__all__ = [
    "INFRASTRUCTURE_FUNCTIONS",
    "FunctionFilter",
    "RbacSettings",
    "Session",
    "auth_input",
    "function_allowed",
    "parse_auth_result",
    "parse_filter",
    "parse_match",
    "parse_rbac",
    "wildcard_match",
]

INFRASTRUCTURE_FUNCTIONS: Final = frozenset(
    {
        "engine::channels::create",
        "engine::workers::register",
        "engine::log::info",
        "engine::log::warn",
        "engine::log::error",
        "engine::log::debug",
        "engine::log::trace",
        "engine::baggage::get",
        "engine::baggage::set",
        "engine::baggage::get_all",
    }
)
"""Built-ins every session may call whatever the allow-list says (the real engine's
carve-out: a worker cannot even announce itself without them). `forbidden_functions`
still wins over it."""


def wildcard_match(pattern: str, value: str) -> bool:
    """Whether `value` matches `pattern`, where each `*` stands for any run of characters.

    Without a `*` the pattern must equal the value; there is no other wildcard and no
    escape, as in the real engine.
    """
    if "*" not in pattern:
        return pattern == value
    first, *middle, last = pattern.split("*")
    if len(value) < len(first) + len(last) or not value.startswith(first):
        return False
    if not value.endswith(last):
        return False
    position, end = len(first), len(value) - len(last)
    for piece in middle:
        found = value.find(piece, position, end)
        if found < 0:
            return False
        position = found + len(piece)
    return True


def parse_match(text: str) -> str | None:
    """The pattern of a `match("…")` (or `match('…')`) string, or None if it is not one."""
    trimmed = text.strip()
    for quote in ('"', "'"):
        opening, closing = f"match({quote}", f"{quote})"
        if (
            trimmed.startswith(opening)
            and trimmed.endswith(closing)
            and len(trimmed) >= len(opening) + len(closing)
        ):
            return trimmed[len(opening) : -len(closing)]
    return None


@dataclass(frozen=True, slots=True)
class FunctionFilter:
    """One `expose_functions` rule: an id pattern or a metadata selector, in a namespace.

    Exactly one of `pattern` (a wildcard over the function id) and `metadata` (key → value
    the function's metadata must have; a value is matched exactly, or as a wildcard when
    it was written `match("…")`, kept here as `("match", pattern)`) is set. A rule without
    `namespace` applies to the `default` namespace only.
    """

    pattern: str | None = None
    metadata: Mapping[str, object] | None = None
    namespace: str | None = None

    @classmethod
    def parse(cls, entry: object) -> FunctionFilter:
        """A rule written as in `config.yaml`: `'match("api::*")'`, `{"match": "svc::*",
        "namespace": "orders"}` or `{"metadata": {"public": True}}` (see `parse_filter`)."""
        return parse_filter(entry)

    def matches(self, function_id: str, namespace: str, metadata: object) -> bool:
        """Whether this rule exposes `function_id`, reached in `namespace`, whose
        registered metadata is `metadata` (None when it has none or does not exist)."""
        if (self.namespace or DEFAULT_NAMESPACE) != namespace:
            return False
        if self.pattern is not None:
            return wildcard_match(self.pattern, function_id)
        if not isinstance(metadata, dict) or self.metadata is None:
            return False
        return all(
            key in metadata and _value_matches(expected, metadata[key])
            for key, expected in self.metadata.items()
        )


def _value_matches(expected: object, actual: object) -> bool:
    if isinstance(expected, tuple):  # ("match", pattern): a wildcard over a string
        return isinstance(actual, str) and wildcard_match(expected[1], actual)
    return _json_equal(expected, actual)


def _json_equal(a: object, b: object) -> bool:
    """JSON values' equality as the real engine's: `true` is not `1`, `1` is not `1.0`."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(map(_json_equal, a, b))
    return a == b


def parse_filter(entry: object) -> FunctionFilter:
    """One entry of `expose_functions` as the real engine reads it.

    A string must be `match("pattern")`; a mapping has `match` (a bare pattern) or
    `metadata` (a mapping whose string values written `match("…")` are wildcards), not
    both, and an optional `namespace`. Any other key is refused (a typo must not silently
    widen a rule). Raises `ValueError` saying what is wrong.
    """
    if isinstance(entry, str):
        pattern = parse_match(entry)
        if pattern is None:
            raise ValueError(f'expected match("pattern"), got: {entry}')
        return FunctionFilter(pattern=pattern)
    if not isinstance(entry, dict):
        raise ValueError('a filter is a match("pattern") string or a mapping')
    unknown = [key for key in entry if key not in ("match", "metadata", "namespace")]
    if unknown:
        raise ValueError(
            f"unknown key {unknown[0]!r} in expose_functions filter; "
            "expected 'match', 'metadata', or 'namespace'"
        )
    namespace = entry.get("namespace")
    if namespace is not None and not isinstance(namespace, str):
        raise ValueError("a filter's namespace must be a string")
    pattern, selector = entry.get("match"), entry.get("metadata")
    if pattern is not None and selector:
        raise ValueError("a filter has either a 'match' or a 'metadata' key, not both")
    if pattern is not None:
        if not isinstance(pattern, str):
            raise ValueError("a filter's match must be a string")
        return FunctionFilter(pattern=pattern, namespace=namespace)
    if not selector:
        raise ValueError("expected a 'match' or 'metadata' key with filter conditions")
    if not isinstance(selector, dict):
        raise ValueError("a filter's metadata must be a mapping")
    values: dict[str, object] = {}
    for key, value in selector.items():
        wildcard = parse_match(value) if isinstance(value, str) else None
        values[str(key)] = ("match", wildcard) if wildcard is not None else value
    return FunctionFilter(metadata=MappingProxyType(values), namespace=namespace)


@dataclass(frozen=True, slots=True)
class RbacSettings:
    """An RBAC-gated worker listener (a `iii-worker-manager` entry with `rbac:`).

    The embedded engine serves it as a second worker listener on `host:port` (0: a free
    port; None host: the engine's), next to its trusted one. `auth_function_id` is called
    with each connection's handshake (None: every connection gets a session with no grants
    of its own); `expose_functions` is the allow-list; `middleware_function_id` is called
    instead of every call that is not an engine built-in; the three hooks may remap or
    refuse registrations. Every function named here is resolved in `default`.
    """

    port: int = 0
    host: str | None = None
    auth_function_id: str | None = None
    expose_functions: tuple[FunctionFilter, ...] = ()
    middleware_function_id: str | None = None
    on_function_registration_function_id: str | None = None
    on_trigger_registration_function_id: str | None = None
    on_trigger_type_registration_function_id: str | None = None


_HOOKS: Final = (
    "auth_function_id",
    "on_function_registration_function_id",
    "on_trigger_registration_function_id",
    "on_trigger_type_registration_function_id",
)


def parse_rbac(block: Mapping[str, Any], *, port: int = 0, host: str | None = None) -> RbacSettings:
    """`RbacSettings` from a `iii-worker-manager` block's `rbac:` mapping (and the block's
    own `middleware_function_id`). Raises `ValueError` naming the key at fault."""
    rbac = block.get("rbac") or {}
    if not isinstance(rbac, dict):
        raise ValueError("`rbac` must be a mapping")
    for key in rbac:
        if key not in (*_HOOKS, "expose_functions"):
            raise ValueError(f"`rbac.{key}` is not a key of the real engine's rbac block")
    names: dict[str, str | None] = {}
    for key, value in [*((k, rbac.get(k)) for k in _HOOKS), ("middleware_function_id", None)]:
        if key == "middleware_function_id":
            value = block.get(key)
        if value is not None and not (isinstance(value, str) and value):
            raise ValueError(f"`{key}` must be a function id")
        names[key] = value
    entries = rbac.get("expose_functions") or []
    if not isinstance(entries, list):
        raise ValueError("`rbac.expose_functions` must be a list")
    filters = []
    for index, entry in enumerate(entries):
        try:
            filters.append(parse_filter(entry))
        except ValueError as exc:
            raise ValueError(f"`rbac.expose_functions[{index}]`: {exc}") from None
    return RbacSettings(port=port, host=host, expose_functions=tuple(filters), **names)


@dataclass(frozen=True, slots=True)
class Session:
    """What one connection may do: the auth function's `AuthResult`, defaults filled in.

    `namespaces` maps a namespace to the grants valid in it (and its keys are the
    namespaces the connection may declare); `allowed_functions` are grants valid in
    `default` only; `forbidden_functions` are denials valid everywhere (exact ids).
    `allowed_trigger_types` None allows binding any type. `context` goes to the middleware
    and the hooks. `function_registration_prefix` is put before every function id the
    connection registers (`prefix::id`) and taken off when the engine calls it.
    """

    namespaces: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: MappingProxyType({}))
    allowed_functions: tuple[str, ...] = ()
    forbidden_functions: tuple[str, ...] = ()
    allowed_trigger_types: tuple[str, ...] | None = None
    allow_trigger_type_registration: bool = True
    allow_function_registration: bool = True
    context: object = field(default_factory=dict)
    function_registration_prefix: str | None = None

    def prefixed(self, function_id: str) -> str:
        """The id a function this connection registers (or binds) is kept under."""
        prefix = self.function_registration_prefix
        return function_id if prefix is None else f"{prefix}::{function_id}"

    def unprefixed(self, function_id: str) -> str:
        """The id the connection knows a function by, when the engine calls it."""
        prefix = self.function_registration_prefix
        if prefix is None:
            return function_id
        return function_id.removeprefix(f"{prefix}::")


def _strings(value: object, name: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValueError(f"`{name}` must be a list of strings")
    return tuple(value)


def parse_auth_result(value: object) -> Session:
    """The `Session` an auth function's answer grants, with the real engine's defaults
    (an answer from an auth function does *not* allow trigger-type registration unless it
    says so). Raises `ValueError` for an answer that is not an `AuthResult`."""
    if not isinstance(value, dict):
        raise ValueError("the auth function must answer an object (an AuthResult)")
    namespaces: dict[str, tuple[str, ...]] = {}
    raw_namespaces = value.get("namespaces") or {}
    if not isinstance(raw_namespaces, dict):
        raise ValueError("`namespaces` must map namespaces to lists of function ids")
    for namespace, grants in raw_namespaces.items():
        namespaces[str(namespace)] = _strings(grants, f"namespaces.{namespace}")
    allowed_types = value.get("allowed_trigger_types")
    allow_types = value.get("allow_trigger_type_registration", False)
    allow_functions = value.get("allow_function_registration", True)
    for name, flag in (
        ("allow_trigger_type_registration", allow_types),
        ("allow_function_registration", allow_functions),
    ):
        if not isinstance(flag, bool):
            raise ValueError(f"`{name}` must be a boolean")
    prefix = value.get("function_registration_prefix")
    if prefix is not None and not isinstance(prefix, str):
        raise ValueError("`function_registration_prefix` must be a string")
    return Session(
        namespaces=MappingProxyType(namespaces),
        allowed_functions=_strings(value.get("allowed_functions") or [], "allowed_functions"),
        forbidden_functions=_strings(value.get("forbidden_functions") or [], "forbidden_functions"),
        allowed_trigger_types=(
            None if allowed_types is None else _strings(allowed_types, "allowed_trigger_types")
        ),
        allow_trigger_type_registration=allow_types,
        allow_function_registration=allow_functions,
        context=value.get("context", {}),
        function_registration_prefix=prefix,
    )


def _grant_covers(grant: str, function_id: str) -> bool:
    """A scoped grant: an exact id or a wildcard, bare or written `match("…")`."""
    raw = parse_match(grant)
    raw = grant if raw is None else raw
    return raw == function_id or ("*" in raw and wildcard_match(raw, function_id))


def function_allowed(
    settings: RbacSettings | None,
    session: Session,
    function_id: str,
    namespace: str,
    metadata: object = None,
) -> bool:
    """Whether `session` may call (or bind a trigger to) `function_id` in `namespace`.

    The real engine's order: a forbidden id is denied everywhere (even infrastructure);
    then a grant of the session's `namespaces[namespace]` allows; then `allowed_functions`
    allow in `default`; then the infrastructure built-ins are allowed; then it is allowed
    only if an `expose_functions` rule matches (`metadata`: the target's registered
    metadata, for metadata rules). Without RBAC settings everything is allowed.
    """
    if function_id in session.forbidden_functions:
        return False
    grants = session.namespaces.get(namespace, ())
    if any(_grant_covers(grant, function_id) for grant in grants):
        return True
    if namespace == DEFAULT_NAMESPACE and function_id in session.allowed_functions:
        return True
    if function_id in INFRASTRUCTURE_FUNCTIONS:
        return True
    if settings is None:
        return True
    return any(rule.matches(function_id, namespace, metadata) for rule in settings.expose_functions)


def auth_input(
    headers: Mapping[str, str], query: Sequence[tuple[str, str]], ip_address: str
) -> dict[str, object]:
    """What the auth function is called with: `{headers, query_params, ip_address}`;
    header names lower-case, each query parameter's values as a list, in order."""
    query_params: dict[str, list[str]] = {}
    for key, value in query:
        query_params.setdefault(key, []).append(value)
    return {
        "headers": {name.lower(): value for name, value in headers.items()},
        "query_params": query_params,
        "ip_address": ip_address,
    }
