"""Where the engine keeps what it acknowledged: SQLite on disk, or nothing (in memory).

`SqliteStorage` writes with the standard library's `sqlite3` in a worker thread (through
anyio, so under asyncio and trio alike), in WAL mode with `synchronous=FULL` and one
explicit transaction per batch of changes: when `write` returns, the changes are on disk
and survive a crash of the process (`kill -9`) or of the machine. The engine answers a
write only after that. `MemoryStorage` keeps nothing, for tests and `data_dir=None`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

import anyio
import anyio.to_thread
import msgspec

from .state import StateChange

__all__ = ["MemoryStorage", "SqliteStorage", "Storage"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS state (
    scope TEXT NOT NULL,
    key TEXT NOT NULL,
    value BLOB NOT NULL,
    PRIMARY KEY (scope, key)
)
"""


class Storage(Protocol):
    """What the engine needs of its storage."""

    async def load_state(self) -> list[tuple[str, str, Any]]:
        """Every stored (scope, key, value)."""
        ...

    async def write(self, changes: Iterable[StateChange]) -> None:
        """Make `changes` durable, in order, all or none."""
        ...

    async def aclose(self) -> None:
        """Release the storage."""
        ...


class MemoryStorage:
    """Keeps nothing: the engine's state lives as long as the process."""

    async def load_state(self) -> list[tuple[str, str, Any]]:
        return []

    async def write(self, changes: Iterable[StateChange]) -> None:
        return None

    async def aclose(self) -> None:
        return None


class SqliteStorage:
    """One SQLite database file, used from one worker thread at a time."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._limiter = anyio.CapacityLimiter(1)
        self._connection: sqlite3.Connection | None = None

    @classmethod
    async def open(cls, data_dir: Path) -> SqliteStorage:
        """The database in `data_dir` (made if missing), ready to use."""
        storage = cls(data_dir / "engine.sqlite3")
        await storage._run(storage._open, data_dir)
        return storage

    async def _run(self, function: Any, *args: Any) -> Any:
        return await anyio.to_thread.run_sync(function, *args, limiter=self._limiter)

    def _open(self, data_dir: Path) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        # check_same_thread=False: anyio may run successive calls on different threads of
        # its pool; the limiter of one makes sure only one uses the connection at a time.
        connection = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=FULL")
        connection.execute(_SCHEMA)
        self._connection = connection

    def _db(self) -> sqlite3.Connection:
        if self._connection is None:
            raise RuntimeError("the storage is closed")
        return self._connection

    async def load_state(self) -> list[tuple[str, str, Any]]:
        rows: list[tuple[str, str, bytes]] = await self._run(self._select_state)
        return [(scope, key, msgspec.json.decode(value)) for scope, key, value in rows]

    def _select_state(self) -> list[tuple[str, str, bytes]]:
        return list(self._db().execute("SELECT scope, key, value FROM state"))

    async def write(self, changes: Iterable[StateChange]) -> None:
        await self._run(self._write, list(changes))

    def _write(self, changes: list[StateChange]) -> None:
        db = self._db()
        with _transaction(db):
            for change in changes:
                if change.deleted:
                    db.execute(
                        "DELETE FROM state WHERE scope = ? AND key = ?", (change.scope, change.key)
                    )
                else:
                    db.execute(
                        "INSERT OR REPLACE INTO state (scope, key, value) VALUES (?, ?, ?)",
                        (change.scope, change.key, msgspec.json.encode(change.new)),
                    )

    async def aclose(self) -> None:
        with anyio.CancelScope(shield=True):
            await self._run(self._close)

    def _close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


class _transaction:
    """BEGIN IMMEDIATE … COMMIT, or ROLLBACK when the block raises."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self._db.execute("ROLLBACK" if exc_type is not None else "COMMIT")
