"""Every PostgreSQL store opens a fresh schema while others open it too.

``CREATE SCHEMA IF NOT EXISTS`` (and ``CREATE TABLE IF NOT EXISTS``) is not safe
against itself: two sessions creating the same name at once can both pass the
"not exists" check, and the loser fails on the catalog's unique index. Workers of
one deployment start together, so each store must serialize its DDL (the shared
advisory lock) instead of failing the call that opened it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from store_openers import OPENERS

OPENERS_AT_ONCE = 6
ROUNDS = 4


@pytest.mark.parametrize("store", sorted(OPENERS))
def test_openers_starting_together_all_open_a_fresh_schema(store: str, pg_url: str) -> None:
    for round_ in range(ROUNDS):
        url = pg_url.replace("?schema=", f"?schema=r{round_}_")
        opened, failed = _open_together(OPENERS[store], url)
        try:
            assert not failed, failed
        finally:
            for handle in opened:
                handle.close()
            _drop(url)


def _open_together(opener: Callable[[str], Any], url: str) -> tuple[list[Any], list[BaseException]]:
    start = threading.Barrier(OPENERS_AT_ONCE)
    opened: list[Any] = []
    failed: list[BaseException] = []

    def open_one() -> None:
        start.wait()
        try:
            opened.append(opener(url))
        except BaseException as exc:
            failed.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(OPENERS_AT_ONCE)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return opened, failed


def _drop(url: str) -> None:
    import psycopg

    base, _, schema = url.partition("?schema=")
    with psycopg.connect(base, autocommit=True) as con:
        con.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
