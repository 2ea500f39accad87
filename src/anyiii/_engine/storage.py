"""Where the engine keeps what it acknowledged: SQLite on disk, or nothing (in memory).

`SqliteStorage` writes with the standard library's `sqlite3` in a worker thread (through
anyio, so under asyncio and trio alike), in WAL mode with `synchronous=FULL` and one
explicit transaction per batch of changes: when `write` returns, the changes are on disk
and survive a crash of the process (`kill -9`) or of the machine. The engine answers a
write only after that. What is stored is the services' business: they bring their tables,
the statements of each change and the queries that load them back (`service.py`).
`MemoryStorage` keeps nothing, for tests and `data_dir=None`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Final, Protocol

import anyio
import anyio.to_thread

from .service import Change

__all__ = ["DATABASE_FILE", "MemoryStorage", "SqliteStorage", "Storage"]

DATABASE_FILE: Final = "engine.sqlite3"
"""The database's file name inside the data directory."""

Rows = list[list[tuple[Any, ...]]]


class Storage(Protocol):
    """What the engine needs of its storage."""

    async def load(self, queries: Sequence[str]) -> Rows:
        """The rows of each query, in order."""
        ...

    async def write(self, changes: Iterable[Change]) -> None:
        """Make `changes` durable, in order, all or none."""
        ...

    async def aclose(self) -> None:
        """Release the storage."""
        ...


class MemoryStorage:
    """Keeps nothing: the engine's state lives as long as the process."""

    async def load(self, queries: Sequence[str]) -> Rows:
        return [[] for _ in queries]

    async def write(self, changes: Iterable[Change]) -> None:
        return None

    async def aclose(self) -> None:
        return None


class SqliteStorage:
    """One SQLite database file, used from one worker thread at a time."""

    def __init__(self, path: Path, schema: Sequence[str]) -> None:
        self.path = path
        self._schema = tuple(schema)
        self._limiter = anyio.CapacityLimiter(1)
        self._connection: sqlite3.Connection | None = None

    @classmethod
    async def open(cls, data_dir: Path, schema: Sequence[str]) -> SqliteStorage:
        """The database in `data_dir` (made if missing) with the tables of `schema`."""
        storage = cls(data_dir / DATABASE_FILE, schema)
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
        for statement in self._schema:
            connection.execute(statement)
        self._connection = connection

    def _db(self) -> sqlite3.Connection:
        if self._connection is None:
            raise RuntimeError("the storage is closed")
        return self._connection

    async def load(self, queries: Sequence[str]) -> Rows:
        result: Rows = await self._run(self._select, list(queries))
        return result

    def _select(self, queries: list[str]) -> Rows:
        db = self._db()
        return [list(db.execute(query)) for query in queries]

    async def write(self, changes: Iterable[Change]) -> None:
        await self._run(self._write, list(changes))

    def _write(self, changes: list[Change]) -> None:
        db = self._db()
        with _transaction(db):
            for change in changes:
                for statement, parameters in change.statements():
                    db.execute(statement, parameters)

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
