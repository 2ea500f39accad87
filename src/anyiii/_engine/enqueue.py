"""The `enqueue` action (spec §5.1): what the router hands the queue provider, and what it
answers the caller once the provider has answered.

The engine does not run the target: it calls `engine::queue::enqueue` (the queue service's,
or a worker's that provides it) with the call and a receipt id of its own, and answers the
caller `{"messageReceiptId"}` once the provider accepted the message, or `enqueue_error`
(with the way out when no provider runs), as the real engine does.
"""

from __future__ import annotations

from typing import Final

from msgspec import Raw

from .._protocol.codes import DEFAULT_NAMESPACE, ENQUEUE_ERROR, FUNCTION_NOT_FOUND
from .._protocol.frames import ErrorBody, InvokeFunction, to_raw

__all__ = ["ENQUEUE_PROVIDER", "enqueue_answer", "enqueue_request"]

ENQUEUE_PROVIDER: Final = "engine::queue::enqueue"
"""The function the `enqueue` action hands its calls to."""


def enqueue_request(call: InvokeFunction, queue: str, receipt: str) -> Raw:
    """The provider's input: the call, without `_caller_worker_id` (as in the real engine),
    and `namespace` only when it is not `default` (older providers refuse unknown keys)."""
    request: dict[str, object] = {
        "queue": queue,
        "function_id": call.function_id,
        "data": call.data,
        "messageReceiptId": receipt,
        "traceparent": call.traceparent,
        "baggage": call.baggage,
    }
    if call.namespace is not None and call.namespace != DEFAULT_NAMESPACE:
        request["namespace"] = call.namespace
    return to_raw(request)


def enqueue_answer(receipt: str, error: ErrorBody | None) -> tuple[Raw | None, ErrorBody | None]:
    """What the caller hears once the provider answered (`error` None: it accepted)."""
    if error is None:
        return to_raw({"messageReceiptId": receipt}), None
    message = f"{error.code}: {error.message}"
    if error.code == FUNCTION_NOT_FOUND:
        message = (
            f"No queue provider is running: the enqueue action goes through "
            f"{ENQUEUE_PROVIDER}, which the engine's queue service provides "
            f"(enable it in the engine's configuration). ({error.message})"
        )
    return None, ErrorBody(ENQUEUE_ERROR, message)
