"""The async worker runtime: `connect()`, the `Worker`, reconnection, handlers (anyio only)."""
