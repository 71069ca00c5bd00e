"""``sqlite:PATH``: the embedded key-value store.

WAL mode, and every batch of effects in one ``BEGIN IMMEDIATE`` transaction, so
each state change is atomic and several processes can share one file. Dedupe
marks (rows ``mark/<mark>``) past their expiry are deleted every
``PURGE_EVERY_S`` seconds by whichever process writes.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from typing import Any

import orjson

from agglo_core.config import External
from handlers.connectors.kv import MARK_PREFIX, perform_kv

PURGE_EVERY_S = 600


def connect(path: str, synchronous: str = "NORMAL") -> sqlite3.Connection:
    """A connection in autocommit mode with WAL, shareable by threads that take turns."""
    conn = sqlite3.connect(path, timeout=60, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    return conn


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` … ``COMMIT``, rolled back on any exception."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


class SqliteKV:
    def __init__(self, path: str) -> None:
        self.path = path
        directory = os.path.dirname(os.path.abspath(path))
        os.makedirs(directory, exist_ok=True)
        self._local = threading.local()
        self._next_purge = time.time() + PURGE_EVERY_S
        with self._connect() as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value BLOB NOT NULL)")

    def _connect(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = connect(self.path)
        return conn

    def perform(self, effects: list[Any]) -> list[Any]:
        conn = self._connect()

        def get(key: str) -> Any:
            row = conn.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
            return None if row is None else orjson.loads(row[0])

        def put(key: str, value: Any) -> None:
            conn.execute("INSERT OR REPLACE INTO kv (key, value) VALUES (?, ?)", (key, orjson.dumps(value)))

        def delete(key: str) -> None:
            conn.execute("DELETE FROM kv WHERE key = ?", (key,))

        with transaction(conn):
            results = perform_kv(effects, get, put, delete)
        if time.time() >= self._next_purge:
            self._next_purge = time.time() + PURGE_EVERY_S
            self.purge_expired()
        return results

    def purge_expired(self, now_s: float | None = None) -> int:
        """Delete the dedupe marks that expired (by ``now_s``); returns how many."""
        with transaction(self._connect()) as conn:
            return conn.execute(
                "DELETE FROM kv WHERE key >= ? AND key < ? AND json_extract(CAST(value AS TEXT), '$.expires') < ?",
                (MARK_PREFIX, MARK_PREFIX[:-1] + chr(ord(MARK_PREFIX[-1]) + 1),
                 time.time() if now_s is None else now_s)).rowcount

    def get(self, key: str) -> Any:
        row = self._connect().execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
        return None if row is None else orjson.loads(row[0])


def register(registry: Any) -> None:
    def build(ext: External) -> SqliteKV:
        path = ext.connectionString.split(":", 1)[1]
        if not path:
            raise ValueError(f"external system '{ext.name}': sqlite needs a path, as in sqlite:state.db")
        return SqliteKV(path)

    registry.register("ExternalKVStore", "sqlite", build)
