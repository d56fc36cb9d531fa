"""Every SQLite store opens a database another process is busy with, instead of failing.

Switching a new database to WAL needs its exclusive lock. SQLite refuses at once,
without waiting, when the opener already reads the file and another connection
holds the write lock (waiting could deadlock). Two processes opening one fresh
database together hit this: the CI run of the limits concurrency test lost a worker
to "cannot open audit database …: database is locked". Each store must wait it out.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest
from store_openers import OPENERS

HELD_S = 0.4


def _hold_write_lock(path: Path, started: threading.Event) -> None:
    """Another process's migration in progress: the write lock on a rollback-journal file."""
    con = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    con.execute("BEGIN IMMEDIATE")
    con.execute("CREATE TABLE IF NOT EXISTS other_component (x)")
    started.set()
    time.sleep(HELD_S)
    con.execute("COMMIT")
    con.close()


@pytest.mark.parametrize("store", sorted(OPENERS))
def test_a_store_opens_a_fresh_database_while_another_opener_holds_its_write_lock(
    store: str, tmp_path: Path
) -> None:
    path = tmp_path / "veto.db"
    sqlite3.connect(path).execute("CREATE TABLE seed (x)").connection.close()
    started = threading.Event()
    holder = threading.Thread(target=_hold_write_lock, args=(path, started))
    holder.start()
    try:
        assert started.wait(10)
        opened = time.monotonic()
        handle = OPENERS[store](f"sqlite:///{path}")
        waited = time.monotonic() - opened
    finally:
        holder.join()
    try:
        mode = sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0]
        assert mode == "wal"
        assert waited < 30  # it waited for the lock (bounded), not failed at once
    finally:
        handle.close()
