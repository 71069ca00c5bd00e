"""The durable daemon's queue: events in a SQLite file, claimed, processed, then acknowledged.

An event is committed (``synchronous=FULL``) before the daemon answers 202.
Workers claim events (marking them in flight), process them and settle them
with ``handlers.runtime.settlement``: ``done`` is deleted; ``retry`` (an outside
system failed: a state store, an output) goes back to the queue and is tried
again after a backoff, as a platform would redeliver it; ``report`` (its own data
is at fault, or its ``MAX_ATTEMPTS``-th delivery failed) moves to the ``failed``
table with its errors, so nothing disappears silently; it can be put back with
``replay_failed``. One daemon owns a queue directory (an exclusive lock), so
on start every event still marked in flight belongs to a daemon that died, and
goes back to the queue. Effects use deterministic ids and dedupe marks, so a
replayed event rewrites what it wrote before and changes no state twice.

The queue holds at most ``max_events`` events (``QueueFull`` beyond). An
``Idempotency-Key`` is remembered with its body's fingerprint and the events it
queued for ``KEY_TTL_S``: the same request again queues nothing new, another body
under the same key is a ``KeyConflict``.

A SQLite error (locked, disk full, I/O) never stops a worker: it drops its
connection, backs off and tries again, and ``health()`` names the problem until a
worker gets through again.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import random
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import orjson

from agglo_core import Record
from handlers.connectors.catalog import redact
from handlers.connectors.sqlite import connect
from handlers.runtime.settlement import DEFAULT_LIMITS, SettlementPolicy, Trigger, Verdict, backoff_s
from handlers.sources.posted import KeyConflict, conflict_message

log = logging.getLogger("agglo.queue")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS queue (
    id INTEGER PRIMARY KEY AUTOINCREMENT, record_id TEXT NOT NULL, body BLOB NOT NULL,
    inflight INTEGER NOT NULL DEFAULT 0, attempts INTEGER NOT NULL DEFAULT 0, not_before REAL NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS failed (
    id INTEGER PRIMARY KEY, record_id TEXT NOT NULL, body BLOB NOT NULL, errors BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS idempotency (
    key TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, queued BLOB NOT NULL, at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS idempotency_at ON idempotency (at);
"""

MAX_ATTEMPTS = 20
DEFAULT_MAX_EVENTS = 100_000
KEY_TTL_S = 24 * 3600
STALL_BACKOFF_MS = 100  # a stalled worker's first pause; doubled up to the runtime's cap


# A URL or connection string inside an error message (an output's endpoint, say).
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s\"'<>]+")


def redact_urls(message: str) -> str:
    """``message`` with the secrets of every URL in it hidden as its connector's spec says: the failed
    table and the log keep what went wrong, not the credentials."""
    return _URL.sub(lambda m: redact(m.group()), message)


class QueueLocked(RuntimeError):
    pass


class QueueFull(RuntimeError):
    pass


class DurableQueue:
    def __init__(self, directory: str, batch: int = 64, backoff_s: float = 0.5, max_backoff_s: float = 60.0,
                 clock: Callable[[], float] = time.time, max_events: int = DEFAULT_MAX_EVENTS,
                 busy_timeout_s: float = 5.0) -> None:
        os.makedirs(directory, exist_ok=True)
        self.path = os.path.join(directory, "queue.db")
        self.batch, self.max_events, self.busy_timeout_s = batch, max_events, busy_timeout_s
        self.backoff_s, self.max_backoff_s, self.clock = backoff_s, max_backoff_s, clock
        self._lock_file = open(os.path.join(directory, "daemon.lock"), "a")  # noqa: SIM115 - held for life
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_file.close()
            raise QueueLocked(f"another agglo daemon is using the queue in {directory}") from None
        self._local = threading.local()
        self._wakeup = threading.Condition()
        self._stalls: dict[str, str] = {}  # worker thread -> the error that stops it
        self._workers: list[threading.Thread] = []
        conn = self._conn()
        conn.executescript(_SCHEMA)
        recovered = conn.execute("UPDATE queue SET inflight = 0 WHERE inflight = 1").rowcount
        if recovered:
            log.warning("re-queued %d event(s) left in flight by a previous daemon", recovered)

    def close(self) -> None:
        """Give up the queue directory (this thread's connection and the daemon lock)."""
        self._drop_conn()
        self._lock_file.close()

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect(self.path, synchronous="FULL")
            conn.execute(f"PRAGMA busy_timeout={int(self.busy_timeout_s * 1000)}")
            self._local.conn = conn
        return conn

    def _drop_conn(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            with contextlib.suppress(sqlite3.Error):  # already broken: forgetting it is all that is left
                conn.close()

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """A write transaction; after any SQLite error the connection is dropped (it may be mid-transaction
        after a failed COMMIT) and the next call opens a fresh one."""
        try:
            conn = self._conn()
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        except sqlite3.Error:
            self._drop_conn()
            raise

    def put(self, record_id: str, body: bytes) -> int:
        [qid] = self.put_many([(record_id, body)])
        return qid

    def put_many(self, events: list[tuple[str, bytes]], key: str | None = None,
                 fingerprint: str | None = None) -> list[int]:
        """Queue ``events`` (record id, JSON body) in one transaction and return their queue ids.

        With ``key``: if the key was seen with the same ``fingerprint``, nothing is queued and the ids it
        queued then are returned; with another fingerprint, ``KeyConflict``.
        """
        now = self.clock()
        with self._tx() as conn:
            if key is not None:
                row = conn.execute("SELECT fingerprint, queued FROM idempotency WHERE key = ? AND at > ?",
                                   (key, now - KEY_TTL_S)).fetchone()
                if row is not None:
                    if row[0] != fingerprint:
                        raise KeyConflict(conflict_message(key))
                    return list(orjson.loads(row[1]))
            held = conn.execute("SELECT COUNT(*) FROM queue").fetchone()[0]
            if held + len(events) > self.max_events:
                raise QueueFull(f"the queue holds {held} event(s), its bound is {self.max_events}")
            ids = [int(conn.execute("INSERT INTO queue (record_id, body) VALUES (?, ?)", e).lastrowid or 0)
                   for e in events]
            if key is not None:
                conn.execute("DELETE FROM idempotency WHERE at <= ?", (now - KEY_TTL_S,))
                conn.execute("INSERT OR REPLACE INTO idempotency (key, fingerprint, queued, at) VALUES (?, ?, ?, ?)",
                             (key, fingerprint, orjson.dumps(ids), now))
        with self._wakeup:
            self._wakeup.notify(len(ids))
        return ids

    def counts(self) -> dict[str, int]:
        conn = self._conn()
        inflight, unprocessed = conn.execute(
            "SELECT COALESCE(SUM(inflight), 0), COALESCE(SUM(1 - inflight), 0) FROM queue").fetchone()
        failed = conn.execute("SELECT COUNT(*) FROM failed").fetchone()[0]
        return {"inflight": inflight, "unprocessed": unprocessed, "failed": failed}

    def failed_records(self, limit: int = 100) -> list[dict[str, Any]]:
        """The oldest ``limit`` failed records: queue id, record id, event and errors."""
        rows = self._conn().execute("SELECT id, record_id, body, errors FROM failed ORDER BY id LIMIT ?",
                                    (limit,)).fetchall()
        return [{"id": i, "record": rid, "event": orjson.loads(body), "errors": orjson.loads(errors)}
                for i, rid, body, errors in rows]

    def replay_failed(self, ids: list[int] | None = None) -> int:
        """Put failed records (all, or those with the given queue ids) back in the queue, as new deliveries
        under their old record ids; returns how many."""
        with self._tx() as conn:
            where, args = ("", []) if ids is None else (f" WHERE id IN ({','.join('?' * len(ids))})", ids)
            rows = conn.execute(f"SELECT id, record_id, body FROM failed{where}", args).fetchall()
            conn.executemany("INSERT INTO queue (record_id, body) VALUES (?, ?)", [(r[1], r[2]) for r in rows])
            conn.executemany("DELETE FROM failed WHERE id = ?", [(r[0],) for r in rows])
        with self._wakeup:
            self._wakeup.notify_all()
        return len(rows)

    def claim(self) -> list[tuple[int, str, bytes]]:
        with self._tx() as conn:
            rows = conn.execute("SELECT id, record_id, body FROM queue WHERE inflight = 0 AND not_before <= ? "
                                "ORDER BY id LIMIT ?", (self.clock(), self.batch)).fetchall()
            if rows:
                conn.executemany("UPDATE queue SET inflight = 1 WHERE id = ?", [(r[0],) for r in rows])
        return rows

    def settle(self, done: list[int], failed: list[tuple[int, str, bytes, Any]],
               retry: list[int] | None = None) -> None:
        """Acknowledge processed events; put ``retry`` back for a later attempt (after a backoff) unless
        they were tried ``MAX_ATTEMPTS`` times; move failed ones to ``failed`` with their errors."""
        with self._tx() as conn:
            if retry:
                conn.executemany(
                    "UPDATE queue SET inflight = 0, attempts = attempts + 1, not_before = ? + "
                    "MIN(?, ? * (1 << MIN(attempts, 20))) WHERE id = ?",
                    [(self.clock(), self.max_backoff_s, self.backoff_s, i) for i in retry])
            conn.executemany("INSERT OR REPLACE INTO failed (id, record_id, body, errors) VALUES (?, ?, ?, ?)",
                             [(i, rid, body, orjson.dumps(errors)) for i, rid, body, errors in failed])
            conn.executemany("DELETE FROM queue WHERE id = ?", [(i,) for i in done] + [(f[0],) for f in failed])

    def start_workers(self, runtime: Any, count: int) -> None:
        """The daemon's worker threads (``health`` watches them)."""
        for i in range(count):
            thread = threading.Thread(target=self.work, args=(runtime,), name=f"agglo-queue-{i}", daemon=True)
            self._workers.append(thread)
            thread.start()

    def health(self) -> str | None:
        """None while the workers make progress, else what stops them."""
        if self._workers and not any(t.is_alive() for t in self._workers):
            return "no queue worker is running"
        stalls = list(self._stalls.values())
        return stalls[0] if stalls else None

    def work(self, runtime: Any, stop: threading.Event | None = None) -> None:
        """Process the queue until ``stop`` is set (forever, in the daemon), whatever SQLite does."""
        stop = stop or threading.Event()
        name, failures = threading.current_thread().name, 0
        while not stop.is_set():
            try:
                progressed = self.work_once(runtime)
            except Exception as e:
                if not failures:  # a SQLite error is the expected kind; anything else is a bug worth its trace
                    log.error("queue worker %s cannot use %s: %s; backing off", name, self.path, e,
                              exc_info=not isinstance(e, sqlite3.Error))
                self._stalls[name] = (f"the queue's database fails: {e}" if isinstance(e, sqlite3.Error)
                                      else f"a queue worker fails: {e}")
                stop.wait(backoff_s(failures, STALL_BACKOFF_MS, None, DEFAULT_LIMITS, random.random))
                failures += 1
                continue
            if failures:
                log.warning("queue worker %s carries on after %d failed attempt(s)", name, failures)
                failures = 0
            self._stalls.pop(name, None)
            if not progressed:
                with self._wakeup:
                    self._wakeup.wait(0.2)

    def work_once(self, runtime: Any) -> bool:
        """Settle what an earlier SQLite error left unsettled, then claim a batch, process it and settle it;
        False when there was nothing to claim."""
        unsettled = getattr(self._local, "unsettled", None)
        if unsettled is not None:
            self.settle(*unsettled)
            self._local.unsettled = None
        rows = self.claim()
        if not rows:
            return False
        try:
            settlement = self._process(runtime, rows)
        except Exception:  # a bug, not the events' fault: they go back to the queue, tried again after a backoff
            log.exception("processing %d queued event(s) failed; they stay queued", len(rows))
            self._settle_once([], [], [r[0] for r in rows])
            time.sleep(1)
            return True
        self._settle_once(*settlement)
        return True

    def _process(self, runtime: Any, rows: list[tuple[int, str, bytes]]
                 ) -> tuple[list[int], list[tuple[int, str, bytes, Any]], list[int]]:
        """Run claimed events and sort them: done, failed (with their errors, secrets hidden), retry."""
        outcomes = runtime.process([Record(rid, orjson.loads(body), source="queue") for _, rid, body in rows])
        try:
            attempts = dict(self._conn().execute(
                f"SELECT id, attempts FROM queue WHERE id IN ({','.join('?' * len(rows))})", [r[0] for r in rows]))
        except sqlite3.Error:
            self._drop_conn()
            attempts = {}  # counted as first deliveries: at worst one more attempt than MAX_ATTEMPTS
        policy = SettlementPolicy(Trigger.QUEUE, max_deliveries=MAX_ATTEMPTS)
        verdicts = runtime.settle(outcomes, policy, [attempts.get(r[0], 0) + 1 for r in rows])
        done, failed, retry = [], [], []
        for (qid, rid, body), outcome, verdict in zip(rows, outcomes, verdicts, strict=True):
            if verdict is Verdict.DONE:
                done.append(qid)
            elif verdict is Verdict.RETRY:
                retry.append(qid)
            else:
                errors = [{**e.to_dict(), "error": redact_urls(e.message)} for e in outcome.errors]
                failed.append((qid, rid, body, errors))
                for e in errors:
                    where = " / ".join(p for p in (e["pipeline"], e["process"]) if p)
                    log.error("queued event %d (record %s) failed and was moved to the failed table: %s%s",
                              qid, rid, f"{where}: " if where else "", e["error"])
        if retry:
            log.warning("%d queued event(s) failed for a reason outside them; they will be tried again",
                        len(retry))
        return done, failed, retry

    def _settle_once(self, done: list[int], failed: list[tuple[int, str, bytes, Any]], retry: list[int]) -> None:
        """Settle a processed batch; after a SQLite error the next ``work_once`` settles it before anything else,
        so no event stays marked in flight while the daemon lives."""
        self._local.unsettled = (done, failed, retry)
        self.settle(done, failed, retry)
        self._local.unsettled = None
