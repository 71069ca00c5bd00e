"""The durable daemon's queue: events in a SQLite file, claimed, processed, then acknowledged.

An event is committed (``synchronous=FULL``) before the daemon answers 202.
Workers claim events (marking them in flight), process them and settle them
with ``handlers.runtime.settlement``: ``done`` is deleted; ``retry`` (an outside
system failed: a state store, an output) goes back to the queue and is tried
again after a backoff, as a platform would redeliver it; ``report`` (its own data
is at fault, or its ``MAX_ATTEMPTS``-th delivery failed) moves to the ``failed``
table with its errors, so nothing disappears silently. One daemon owns a queue directory (an exclusive lock), so
on start every event still marked in flight belongs to a daemon that died, and
goes back to the queue. Effects use deterministic ids and dedupe marks, so a
replayed event rewrites what it wrote before and changes no state twice.
"""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import threading
import time
from typing import Any

import orjson

from agglo_core import Record
from handlers.connectors.sqlite import connect, transaction
from handlers.runtime.settlement import SettlementPolicy, Trigger, Verdict

log = logging.getLogger("agglo.queue")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS queue (
    id INTEGER PRIMARY KEY AUTOINCREMENT, record_id TEXT NOT NULL, body BLOB NOT NULL,
    inflight INTEGER NOT NULL DEFAULT 0, attempts INTEGER NOT NULL DEFAULT 0, not_before REAL NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS failed (
    id INTEGER PRIMARY KEY, record_id TEXT NOT NULL, body BLOB NOT NULL, errors BLOB NOT NULL);
"""


MAX_ATTEMPTS = 20


class QueueLocked(RuntimeError):
    pass


class DurableQueue:
    def __init__(self, directory: str, batch: int = 64, backoff_s: float = 0.5, max_backoff_s: float = 60.0,
                 clock: Any = time.time) -> None:
        os.makedirs(directory, exist_ok=True)
        self.path = os.path.join(directory, "queue.db")
        self.batch = batch
        self.backoff_s, self.max_backoff_s, self.clock = backoff_s, max_backoff_s, clock
        self._lock_file = open(os.path.join(directory, "daemon.lock"), "w")  # noqa: SIM115 - held for life
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise QueueLocked(f"another agglo daemon is using the queue in {directory}") from None
        self._local = threading.local()
        self._wakeup = threading.Condition()
        conn = self._conn()
        conn.executescript(_SCHEMA)
        recovered = conn.execute("UPDATE queue SET inflight = 0 WHERE inflight = 1").rowcount
        if recovered:
            log.warning("re-queued %d event(s) left in flight by a previous daemon", recovered)

    def close(self) -> None:
        """Give up the queue directory (this thread's connection and the daemon lock)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
        self._lock_file.close()

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = connect(self.path, synchronous="FULL")
        return conn

    def put(self, record_id: str, body: bytes) -> int:
        cur = self._conn().execute("INSERT INTO queue (record_id, body) VALUES (?, ?)", (record_id, body))
        with self._wakeup:
            self._wakeup.notify()
        return int(cur.lastrowid or 0)

    def counts(self) -> dict[str, int]:
        conn = self._conn()
        inflight, unprocessed = conn.execute(
            "SELECT COALESCE(SUM(inflight), 0), COALESCE(SUM(1 - inflight), 0) FROM queue").fetchone()
        failed = conn.execute("SELECT COUNT(*) FROM failed").fetchone()[0]
        return {"inflight": inflight, "unprocessed": unprocessed, "failed": failed}

    def claim(self) -> list[tuple[int, str, bytes]]:
        with transaction(self._conn()) as conn:
            rows = conn.execute("SELECT id, record_id, body FROM queue WHERE inflight = 0 AND not_before <= ? "
                                "ORDER BY id LIMIT ?", (self.clock(), self.batch)).fetchall()
            if rows:
                conn.executemany("UPDATE queue SET inflight = 1 WHERE id = ?", [(r[0],) for r in rows])
        return rows

    def settle(self, done: list[int], failed: list[tuple[int, str, bytes, Any]],
               retry: list[int] | None = None) -> None:
        """Acknowledge processed events; put ``retry`` back for a later attempt (after a backoff) unless
        they were tried ``MAX_ATTEMPTS`` times; move failed ones to ``failed`` with their errors."""
        with transaction(self._conn()) as conn:
            if retry:
                conn.executemany(
                    "UPDATE queue SET inflight = 0, attempts = attempts + 1, not_before = ? + "
                    "MIN(?, ? * (1 << MIN(attempts, 20))) WHERE id = ?",
                    [(self.clock(), self.max_backoff_s, self.backoff_s, i) for i in retry])
            conn.executemany("INSERT OR REPLACE INTO failed (id, record_id, body, errors) VALUES (?, ?, ?, ?)",
                             [(i, rid, body, orjson.dumps(errors)) for i, rid, body, errors in failed])
            conn.executemany("DELETE FROM queue WHERE id = ?", [(i,) for i in done] + [(f[0],) for f in failed])

    def release(self, ids: list[int]) -> None:
        self._conn().executemany("UPDATE queue SET inflight = 0 WHERE id = ?", [(i,) for i in ids])

    def work(self, runtime: Any, stop: threading.Event | None = None) -> None:
        """Process the queue until ``stop`` is set (forever, in the daemon)."""
        while stop is None or not stop.is_set():
            if not self.work_once(runtime):
                with self._wakeup:
                    self._wakeup.wait(0.2)

    def work_once(self, runtime: Any) -> bool:
        """Claim a batch, process it and settle it; False when there was nothing to claim."""
        rows = self.claim()
        if not rows:
            return False
        try:
            records = [Record(rid, orjson.loads(body), source="queue") for _, rid, body in rows]
            outcomes = runtime.process(records)
        except Exception:
            log.exception("processing %d queued event(s) failed; they stay queued", len(rows))
            self.release([r[0] for r in rows])
            time.sleep(1)
            return True
        attempts = dict(self._conn().execute(
            f"SELECT id, attempts FROM queue WHERE id IN ({','.join('?' * len(rows))})", [r[0] for r in rows]))
        policy = SettlementPolicy(Trigger.QUEUE, max_deliveries=MAX_ATTEMPTS)
        verdicts = runtime.settle(outcomes, policy, [attempts.get(r[0], 0) + 1 for r in rows])
        done, failed, retry = [], [], []
        for (qid, rid, body), outcome, verdict in zip(rows, outcomes, verdicts, strict=True):
            if verdict is Verdict.DONE:
                done.append(qid)
            elif verdict is Verdict.RETRY:
                retry.append(qid)
            else:
                failed.append((qid, rid, body, [e.to_dict() for e in outcome.errors]))
        if retry:
            log.warning("%d queued event(s) failed for a reason outside them; they will be tried again",
                        len(retry))
        self.settle(done, failed, retry)
        return True
