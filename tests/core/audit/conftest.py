"""Audit test fixtures: a fresh SQLite store per test; `pg_url` (a PostgreSQL schema
per test) comes from tests/conftest.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from veto_core.audit import AuditLog, open_audit


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "veto.db"


@pytest.fixture
def sqlite_log(db_path: Path) -> Iterator[AuditLog]:
    log = open_audit(str(db_path))
    yield log
    log.close()


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
