"""Audit test fixtures: a fresh SQLite store per test, and a PostgreSQL schema per test.

PostgreSQL tests FAIL when the server at 127.0.0.1:5432 is unreachable, unless
``VETO_SKIP_POSTGRES=1`` (then they skip). ``VETO_TEST_PG_URL`` overrides the URL.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from veto_core.audit import AuditLog, open_audit

PG_URL = os.environ.get("VETO_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "veto.db"


@pytest.fixture
def sqlite_log(db_path: Path) -> Iterator[AuditLog]:
    log = open_audit(str(db_path))
    yield log
    log.close()


@pytest.fixture
def pg_url() -> Iterator[str]:
    if os.environ.get("VETO_SKIP_POSTGRES") == "1":
        pytest.skip("VETO_SKIP_POSTGRES=1")
    import psycopg

    try:
        admin = psycopg.connect(PG_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL unreachable at {PG_URL} (set VETO_SKIP_POSTGRES=1 to skip): {exc}")
    schema = f"veto_test_{secrets.token_hex(6)}"
    try:
        yield f"{PG_URL}?schema={schema}"
    finally:
        admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        admin.close()


@pytest.fixture(params=["sqlite", "postgresql", "jsonl"])
def any_log(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[AuditLog]:
    if request.param == "sqlite":
        url = str(tmp_path / "veto.db")
    elif request.param == "jsonl":
        url = f"jsonl:///{tmp_path / 'audit.jsonl'}"
    else:
        url = request.getfixturevalue("pg_url")
    log = open_audit(url)
    yield log
    log.close()
