"""Approval test fixtures: a store URL per backend (SQLite file, PostgreSQL schema).

PostgreSQL tests FAIL when the server at 127.0.0.1:5432 is unreachable, unless
``VETO_SKIP_POSTGRES=1`` (then they skip). ``VETO_TEST_PG_URL`` overrides the URL.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from approval_helpers import PG_URL


@pytest.fixture(autouse=True)
def _quiet_plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only built-in plugins, and no webhook unless a test configures one."""
    monkeypatch.setenv("VETO_DISABLE_PLUGINS", "1")
    monkeypatch.delenv("VETO_WEBHOOK_URL", raising=False)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'veto.db'}"


@pytest.fixture
def pg_url() -> Iterator[str]:
    if os.environ.get("VETO_SKIP_POSTGRES") == "1":
        pytest.skip("VETO_SKIP_POSTGRES=1")
    import psycopg

    try:
        admin = psycopg.connect(PG_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL unreachable at {PG_URL} (set VETO_SKIP_POSTGRES=1 to skip): {exc}")
    schema = f"veto_apr_{secrets.token_hex(6)}"
    try:
        yield f"{PG_URL}?schema={schema}"
    finally:
        admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        admin.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, sqlite_url: str) -> str:
    if request.param == "sqlite":
        return sqlite_url
    url: str = request.getfixturevalue("pg_url")
    return url
