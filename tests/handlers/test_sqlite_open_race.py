"""Processes that open one new SQLite store at the same moment all open it (`agglo run` instances started
together on one state file): turning the file to WAL is not refused as "database is locked"."""

from __future__ import annotations

import multiprocessing
import multiprocessing.synchronize
import pathlib

from handlers.connectors.sqlite import SqliteKV


def _open(path: str, barrier: multiprocessing.synchronize.Barrier) -> None:
    barrier.wait()
    SqliteKV(path)


def test_processes_opening_one_new_store_at_once_all_open_it(tmp_path: pathlib.Path) -> None:
    failed = 0
    for round_ in range(30):
        path = str(tmp_path / f"state-{round_}.db")
        barrier = multiprocessing.Barrier(4)
        procs = [multiprocessing.Process(target=_open, args=(path, barrier)) for _ in range(4)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(60)
        failed += sum(p.exitcode != 0 for p in procs)
    assert failed == 0
