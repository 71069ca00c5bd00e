"""A call of one record: what reaches the connectors, and what SQLite is asked to do for it."""

from __future__ import annotations

import collections
import pathlib
import sqlite3

import orjson
import pytest

from agglo_core import Record
from benchmarks.batch_of_one import records, runtime
from handlers.connectors.sqlite import SqliteKV, Transaction, connect
from handlers.runtime.settlement import SettlementPolicy, Trigger, Verdict


def test_a_transaction_commits_what_it_wrote_and_rolls_back_on_any_exception(tmp_path: pathlib.Path) -> None:
    path = str(tmp_path / "t.db")
    conn, other = connect(path), sqlite3.connect(path)
    conn.execute("CREATE TABLE kv (key TEXT PRIMARY KEY, value BLOB NOT NULL)")
    with Transaction(conn) as tx:
        tx.execute("INSERT INTO kv VALUES ('a', x'01')")
    assert other.execute("SELECT key FROM kv").fetchall() == [("a",)]
    with pytest.raises(KeyboardInterrupt), Transaction(conn) as tx:  # not only Exceptions roll back
        tx.execute("INSERT INTO kv VALUES ('b', x'02')")
        raise KeyboardInterrupt
    assert not conn.in_transaction
    assert other.execute("SELECT key FROM kv ORDER BY key").fetchall() == [("a",)]


def statements_per_record(n: int) -> collections.Counter[str]:
    """The SQL statements binge's basic pipeline makes for ``n`` calls of one record, by their first word."""
    seen: collections.Counter[str] = collections.Counter()
    with runtime("sqlite") as rt:
        stores = {id(c): c for c in rt.connectors.values()}.values()
        assert all(isinstance(s, SqliteKV) for s in stores)
        for s in stores:
            s._connect().set_trace_callback(lambda sql: seen.update([sql.split()[0].upper()]))  # type: ignore[attr-defined]
        outcomes = [o for r in records(n) for o in rt.process([r])]
    assert all(o.ok for o in outcomes)
    return seen


def test_a_call_of_one_record_on_sqlite_makes_one_statement_per_tee_and_one_transaction_for_its_sum() -> None:
    n = 40
    seen = statements_per_record(n)
    summed = sum(1 for r in records(n) if type(r.payload.get("someNum")) in (int, float))
    # Each tee's put is a single INSERT in autocommit; the sum with its dedupe mark is one transaction that
    # reads the item and the mark and writes both.
    assert seen == {"INSERT": 2 * n + 2 * summed, "BEGIN": summed, "SELECT": 2 * summed, "COMMIT": summed}


def test_each_crossing_of_a_call_of_one_reaches_its_connector_as_one_call_of_one_effect() -> None:
    calls: list[tuple[str, int]] = []
    with runtime("memory") as rt:
        for name, connector in rt.connectors.items():
            perform = connector.perform

            def counted(effects: list, name: str = name, perform=perform) -> list:  # type: ignore[no-untyped-def]
                calls.append((name, len(effects)))
                return perform(effects)

            connector.perform = counted  # type: ignore[method-assign]
        [outcome] = rt.process([Record("one", {"someNum": 2.5, "someVocab": "buzz/x"})])
        assert rt.settle([outcome], SettlementPolicy(Trigger.PUBSUB, dead_letter="AfterEvents")) == [Verdict.DONE]
    assert outcome.ok and orjson.dumps(outcome.outputs)  # written as JSON without a second look
    assert calls == [("BeforeEvents", 1), ("AggregatorStateKVStore", 1), ("AfterEvents", 1)]  # no dead letter
