"""Approval test fixtures: a store URL per backend (SQLite file, or the PostgreSQL schema
per test of `pg_url` in tests/conftest.py, which fails when the server is unreachable)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _quiet_plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only built-in plugins, and no webhook unless a test configures one."""
    monkeypatch.setenv("VETO_DISABLE_PLUGINS", "1")
    monkeypatch.delenv("VETO_WEBHOOK_URL", raising=False)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'veto.db'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, sqlite_url: str) -> str:
    if request.param == "sqlite":
        return sqlite_url
    url: str = request.getfixturevalue("pg_url")
    return url
