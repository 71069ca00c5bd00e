"""``sqlite:PATH``: the embedded key-value store.

WAL mode, and every batch of effects in one ``BEGIN IMMEDIATE`` transaction, so
each state change is atomic and several processes can share one file. Dedupe
marks (rows ``mark/<mark>``) past their expiry, and joins without a deadline
past their ``joinTtl`` (rows ``join/…`` with an ``expires`` time), are deleted
every ``KeyValueStore.PURGE_EVERY_S`` seconds by whichever process writes; an
expired join is ignored before that.
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

from agglo_core.effects import JOIN_PREFIX, Put
from handlers.connectors.base import Work
from handlers.connectors.kv import JOIN_TTL, MARK_PREFIX, KeyValueStore
from handlers.connectors.spec import ConnectorSpec, Option

BUSY_TIMEOUT_S = 60


def connect(path: str, synchronous: str = "NORMAL") -> sqlite3.Connection:
    """A connection in autocommit mode with WAL, shareable by threads that take turns."""
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while True:
        # Turning a new file to WAL while another process opens it can be refused at once, without SQLite's
        # busy handler (the timeout above) being asked: wait for that process as the handler would.
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            break
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() > deadline:
                conn.close()
                raise
            time.sleep(0.01)
    conn.execute(f"PRAGMA synchronous={synchronous}")
    return conn


class Transaction:
    """``BEGIN IMMEDIATE`` … ``COMMIT``, rolled back on any exception.

    A class rather than a ``contextmanager`` generator: a state change at batch size 1 is one
    transaction per call, and the generator's set-up cost about as much as a statement.
    """

    __slots__ = ("conn",)

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        self.conn.execute("COMMIT" if kind is None else "ROLLBACK")


def transaction(conn: sqlite3.Connection) -> Transaction:
    return Transaction(conn)


_AUTOCOMMIT = contextlib.nullcontext()


def _prefix_end(prefix: str) -> str:
    """The smallest string above every string that starts with ``prefix`` (for a range scan)."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1) if prefix else "\U0010ffff"


class SqliteKV(KeyValueStore):
    def __init__(self, path: str, join_ttl_s: float | None = None) -> None:
        super().__init__()
        self.path = path
        if join_ttl_s is not None:
            self.join_ttl_s = join_ttl_s
        directory = os.path.dirname(os.path.abspath(path))
        os.makedirs(directory, exist_ok=True)
        self._local = threading.local()
        with self._connect() as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value BLOB NOT NULL)")

    def _connect(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = connect(self.path)
        return conn

    def transaction(self) -> contextlib.AbstractContextManager[Any]:
        return Transaction(self._connect())

    def transaction_for(self, works: list[Work]) -> contextlib.AbstractContextManager[Any]:
        # One Put is one INSERT, atomic on its own in autocommit mode: BEGIN and COMMIT would only add two
        # statements (a tee at batch size 1 is nearly all such calls).
        if len(works) == 1 and type(works[0].effect) is Put:
            return _AUTOCOMMIT
        return Transaction(self._connect())

    def read(self, key: str) -> Any:
        row = self._connect().execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
        return None if row is None else orjson.loads(row[0])

    def write(self, key: str, value: Any) -> None:
        self._store(key, orjson.dumps(value))

    def _store(self, key: str, data: bytes) -> None:
        self._connect().execute("INSERT OR REPLACE INTO kv (key, value) VALUES (?, ?)", (key, data))

    def remove(self, key: str) -> None:
        self._connect().execute("DELETE FROM kv WHERE key = ?", (key,))

    def put(self, e: Put, body: bytes) -> None:
        self._store(e.key, body)  # already JSON

    def purge_expired(self, now_s: float | None = None) -> int:
        """Delete the dedupe marks and joins that expired (by ``now_s``); returns how many."""
        now_s = time.time() if now_s is None else now_s
        with transaction(self._connect()) as conn:
            return sum(conn.execute(
                "DELETE FROM kv WHERE key >= ? AND key < ? AND json_extract(CAST(value AS TEXT), '$.expires') < ?",
                (prefix, _prefix_end(prefix), now_s)).rowcount for prefix in (MARK_PREFIX, JOIN_PREFIX))

    def get(self, key: str) -> Any:
        return self.read(key)

    def scan(self, prefix: str = "") -> Iterator[tuple[str, Any]]:
        rows = self._connect().execute("SELECT key, value FROM kv WHERE key >= ? AND key < ? ORDER BY key",
                                       (prefix, _prefix_end(prefix))).fetchall()
        for key, value in rows:
            yield key, orjson.loads(value)

    def describe(self) -> str:
        return f"sqlite:{self.path}"


SPECS = (ConnectorSpec(
    "SQLite", ("sqlite",), ("ExternalKVStore",), SqliteKV.capabilities, None,
    "the embedded default: a SQLite file in WAL mode; each batch of state changes is one transaction; "
    "safe for several processes on one file",
    lambda ext, opts: SqliteKV(opts["path"], float(opts["joinTtl"])), form="value",
    options=(Option("path", required=True, metavar="PATH", doc="the database file, as in sqlite:state.db"),
             JOIN_TTL)),)
