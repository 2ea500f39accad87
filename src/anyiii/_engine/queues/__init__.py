"""Durable queues in the embedded engine: named queues (the `enqueue` action), durable
topics (`iii::durable::publish` and `durable:subscriber`) and their dead letters."""

from __future__ import annotations

from .config import ConfigError, DeliveryPolicy
from .service import QueueService

__all__ = ["ConfigError", "DeliveryPolicy", "QueueService"]
