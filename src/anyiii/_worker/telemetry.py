"""Optional OpenTelemetry: a span per invocation, and trace context on outgoing calls.

Turned on with `connect(otel=...)` (or `InitOptions(otel=...)`), taking the official SDK's
option shape: `True`, or a mapping / object with `enabled` (default true) and optionally
`service_name`; `OTEL_ENABLED=false` in the environment turns it off. OpenTelemetry is
not a dependency of anyiii: when `opentelemetry-api` is not installed, the option is a
no-op with one debug log line. anyiii never installs exporters or a global tracer
provider; that is the application's choice (without one, spans are non-recording and
cheap).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

__all__ = ["Telemetry", "telemetry_from_option"]

logger = logging.getLogger("anyiii.worker")


class Telemetry:
    """Spans for invocations and W3C context for outgoing calls, through OpenTelemetry."""

    def __init__(self, service_name: str | None) -> None:
        from opentelemetry import propagate, trace

        self._trace = trace
        self._propagate = propagate
        self._tracer = trace.get_tracer("anyiii", attributes=None)
        self._service_name = service_name

    @contextmanager
    def invocation_span(
        self,
        function_id: str,
        invocation_id: str | None,
        traceparent: str | None,
        baggage: str | None,
    ) -> Iterator[None]:
        """A server span for one invocation, child of the caller's trace when it sent one;
        current while the handler runs, so its calls carry it on."""
        carrier = {}
        if traceparent:
            carrier["traceparent"] = traceparent
        if baggage:
            carrier["baggage"] = baggage
        parent = self._propagate.extract(carrier)
        attributes: dict[str, str] = {"faas.trigger": "other", "iii.function_id": function_id}
        if invocation_id is not None:
            attributes["faas.invocation_id"] = invocation_id
        if self._service_name:
            attributes["service.name"] = self._service_name
        with self._tracer.start_as_current_span(
            function_id,
            context=parent,
            kind=self._trace.SpanKind.SERVER,
            attributes=attributes,
        ):
            yield

    def outgoing(self) -> tuple[str | None, str | None]:
        """The traceparent and baggage of the current OpenTelemetry context, if any."""
        carrier: dict[str, str] = {}
        self._propagate.inject(carrier)
        return carrier.get("traceparent"), carrier.get("baggage")


def _option(otel: Any, name: str, default: Any) -> Any:
    if isinstance(otel, Mapping):
        return otel.get(name, default)
    return getattr(otel, name, default)


def telemetry_from_option(otel: Any) -> Telemetry | None:
    """A `Telemetry` when the option asks for one and OpenTelemetry is installed."""
    if otel is None or otel is False:
        return None
    if os.environ.get("OTEL_ENABLED", "").strip().lower() in ("false", "0", "no", "off"):
        logger.debug("OpenTelemetry is turned off by OTEL_ENABLED")
        return None
    if otel is not True and not _option(otel, "enabled", True):
        return None
    try:
        return Telemetry(_option(otel, "service_name", None) if otel is not True else None)
    except ImportError:
        logger.debug("the otel option is set but opentelemetry-api is not installed: no spans")
        return None
