"""Names the protocol gives meaning to: error codes, built-in ids, reserved keys.

Each fact is written here once; the worker runtime, the embedded engine and the HTTP
listener import it from here. The codes the official engine and SDKs use are spelled as
they are on the wire (spec §7); the few that are anyiii's own say so.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "BAD_REQUEST",
    "CALLER_WORKER_ID_KEY",
    "CHANNELS_CREATE",
    "CHANNELS_PATH",
    "CHANNEL_CHUNK_SIZE",
    "CHANNEL_SEND_FAILED",
    "CONDITION_NOT_MET",
    "DEFAULT_NAMESPACE",
    "DESERIALIZATION_ERROR",
    "ENQUEUE_ERROR",
    "FUNCTIONS_AVAILABLE",
    "FUNCTION_NAMESPACE_CONFLICT",
    "API_KEY_NOT_FOUND",
    "AUTH_ERROR",
    "FORBIDDEN",
    "FUNCTION_NOT_FOUND",
    "HTTP_ERROR",
    "HTTP_REQUEST_FAILED",
    "HTTP_RESPONSE_FAILED",
    "HTTP_TRIGGER",
    "INVALID_ARGUMENTS",
    "INVALID_INVOCATION_ID",
    "INVALID_NAMESPACE",
    "INVALID_RESPONSE",
    "INVOCATION_CANCELLED",
    "INVOCATION_FAILED",
    "INVOCATION_STOPPED",
    "ITEM_FORBIDDEN",
    "ITEM_NOT_FOUND",
    "MALFORMED_FRAME",
    "MIDDLEWARE_TIMEOUT",
    "PRE_HANDLER",
    "NOT_FOUND",
    "NOT_IMPLEMENTED",
    "PAYLOAD_TOO_LARGE",
    "REGISTER_WORKER",
    "SECRET_NOT_FOUND",
    "TIMEOUT",
    "TIMESTAMP_ERROR",
    "TOKEN_NOT_FOUND",
    "TOO_MANY_CONNECTIONS",
    "TRIGGER_REGISTRATION_FAILED",
    "TRIGGER_TYPE_NOT_FOUND",
    "URL_VALIDATION_FAILED",
    "WORKERS_AVAILABLE",
    "WORKER_BUSY",
    "WORKER_STOPPING",
    "SET_HEADERS",
    "SET_STATUS",
    "REGISTER_TRIGGER",
]

# --- names ---------------------------------------------------------------------------------

DEFAULT_NAMESPACE: Final = "default"
"""The namespace of a worker that names none, and of the engine's built-ins (spec §6)."""

CALLER_WORKER_ID_KEY: Final = "_caller_worker_id"
"""The key the engine adds to worker-originated object payloads (spec §5.4); handlers'
typed payloads ignore it."""

REGISTER_TRIGGER: Final = "engine::register_trigger"
"""The built-in that binds a trigger outliving its caller (a durable binding, spec §8)."""

REGISTER_WORKER: Final = "engine::workers::register"
"""The built-in every worker calls (void) right after connecting (spec §4.2)."""

CHANNELS_CREATE: Final = "engine::channels::create"
"""The built-in that makes a data channel: `{buffer_size?}` → `{writer, reader}` refs (§8, §12)."""

CHANNELS_PATH: Final = "/ws/channels/"
"""Where a channel's data plane lives on the worker port: `/ws/channels/<channel_id>`, with
the query `key=<access_key>&dir=read|write` (spec §12)."""

CHANNEL_CHUNK_SIZE: Final = 64 * 1024
"""Data written to a channel goes out in binary frames of at most this many bytes, as the
official SDKs cut it (spec §12)."""

SET_STATUS: Final = "set_status"
SET_HEADERS: Final = "set_headers"
"""The `type` of the two control messages a handler sends on an `http` request's `response`
channel before its body: `{"type": "set_status", "status_code": N}` and
`{"type": "set_headers", "headers": {name: value}}` (spec §10.1)."""

HTTP_TRIGGER: Final = "http"
"""The trigger type served by the engine's REST listener (spec §10.1)."""

FUNCTIONS_AVAILABLE: Final = "engine::functions-available"
"""The built-in trigger type fired when the set of functions changes (spec §9)."""

WORKERS_AVAILABLE: Final = "engine::workers-available"
"""The built-in trigger type fired when workers connect, leave or update (spec §9)."""

PRE_HANDLER: Final = "preHandler"
"""The one phase of `http` middleware: its input's `phase`, and the only phase the real
engine runs of its engine-wide middleware (spec §10.1 "Middleware contract")."""

# --- error codes the official engine and SDKs send --------------------------------------------

FUNCTION_NOT_FOUND: Final = "function_not_found"
INVOCATION_FAILED: Final = "invocation_failed"
INVOCATION_STOPPED: Final = "invocation_stopped"
TRIGGER_REGISTRATION_FAILED: Final = "trigger_registration_failed"
ENQUEUE_ERROR: Final = "enqueue_error"
CHANNEL_SEND_FAILED: Final = "channel_send_failed"
DESERIALIZATION_ERROR: Final = "deserialization_error"
INVALID_ARGUMENTS: Final = "INVALID_ARGUMENTS"
INVALID_NAMESPACE: Final = "INVALID_NAMESPACE"
AUTH_ERROR: Final = "AUTH_ERROR"
"""A worker handshake an RBAC listener's auth function refused (sent in an `error` frame
before the engine closes the socket, spec §1)."""
FORBIDDEN: Final = "FORBIDDEN"
"""The caller may not do this (spec §7.1): RBAC denied a call, a trigger binding or a
namespace; or `engine::unregister_trigger` of another live worker's binding."""
NOT_FOUND: Final = "NOT_FOUND"
ITEM_NOT_FOUND: Final = "not_found"
"""The per-item error in a batch answer (`engine::functions::info` with `function_ids`)."""
ITEM_FORBIDDEN: Final = "forbidden"
"""The per-id error in an `engine::functions::info` batch answer for a function that exists
but the caller's RBAC session may not see (the real engine's)."""
TIMEOUT: Final = "TIMEOUT"
"""A caller's own wait for a result ran out (the official SDKs' code)."""

# --- HTTP-invoked functions: the engine's own HTTP call failed (spec §7.1) --------------------

HTTP_REQUEST_FAILED: Final = "http_request_failed"
"""The request could not be sent or got no answer in time (the real engine's code for a
timeout too)."""
HTTP_RESPONSE_FAILED: Final = "http_response_failed"
"""The answer's body could not be read."""
HTTP_ERROR: Final = "http_error"
"""The answer had status 400 or above and no `{"error": {...}}` body of its own."""
URL_VALIDATION_FAILED: Final = "url_validation_failed"
"""The function's URL breaks the engine's URL policy (HTTPS, allowlist, private IPs)."""
SECRET_NOT_FOUND: Final = "secret_not_found"
TOKEN_NOT_FOUND: Final = "token_not_found"
API_KEY_NOT_FOUND: Final = "api_key_not_found"
"""The environment variable an `hmac` / `bearer` / `api_key` auth names is not set."""
TIMESTAMP_ERROR: Final = "timestamp_error"
"""The engine's clock reads before the Unix epoch, so a request cannot be timestamped."""

FUNCTION_NAMESPACE_CONFLICT: Final = "FUNCTION_NAMESPACE_CONFLICT"
"""The one `registrationrejected` code that is not fatal (spec §3.11)."""

# --- HTTP listener envelopes (spec §10.1) -------------------------------------------------------

BAD_REQUEST: Final = "BAD_REQUEST"
PAYLOAD_TOO_LARGE: Final = "PAYLOAD_TOO_LARGE"
INVALID_RESPONSE: Final = "invalid_response"
"""A handler's result cannot be mapped to an HTTP response (anyiii's own use), or an
HTTP-invoked function answered 2xx with a body that is not JSON (the real engine's)."""
CONDITION_NOT_MET: Final = "CONDITION_NOT_MET"
"""422: the route's `condition_function_id` answered `false` (spec §7.3)."""
MIDDLEWARE_TIMEOUT: Final = "MIDDLEWARE_TIMEOUT"
"""504: a middleware function did not answer in time (spec §7.3)."""
TOO_MANY_CONNECTIONS: Final = "TOO_MANY_CONNECTIONS"
"""503 (anyiii's own): the REST listener holds as many connections as its
`ConnectionLimits` allow, in all or from this client's address."""
NOT_IMPLEMENTED: Final = "NOT_IMPLEMENTED"
"""501 (anyiii's own): a request method no route can have (methods are case-sensitive,
RFC 9110 §9.1: `get` is not `GET`)."""

# --- anyiii's own ---------------------------------------------------------------------------------

MALFORMED_FRAME: Final = "malformed_frame"
"""The frame of this invocation (or of its result) could not be decoded."""

INVALID_INVOCATION_ID: Final = "invalid_invocation_id"
"""A call's invocation id is not UUID text (the Rust engine drops those)."""

WORKER_BUSY: Final = "worker_busy"
"""The worker is at its `WorkerLimits`; the invocation was refused at once."""

WORKER_STOPPING: Final = "worker_stopping"
"""The worker is draining and takes no new invocations."""

INVOCATION_CANCELLED: Final = "invocation_cancelled"
"""The handler was cancelled (the worker's shutdown) before it answered."""

TRIGGER_TYPE_NOT_FOUND: Final = "trigger_type_not_found"
"""A binding reached a worker that does not (or no longer) provide its trigger type."""
