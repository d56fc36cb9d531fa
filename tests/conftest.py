"""Fixtures shared by every test package.

PostgreSQL tests FAIL when the server at 127.0.0.1:5432 is unreachable, unless
``VETO_SKIP_POSTGRES=1`` (then they skip). ``VETO_TEST_PG_URL`` overrides the URL.
Each test gets its own schema, dropped afterwards.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

# Some framework test packages point HOME at a temp dir when they are collected (CrewAI
# writes under HOME on import). Pin uv's cache to the real one first, so tests that build
# a package offline (the example channel plugin) still find it.
os.environ.setdefault("UV_CACHE_DIR", str(Path.home() / ".cache" / "uv"))

# The CLI keeps validated policies in ~/.cache/veto (policy/cache.py). Tests load
# thousands of throwaway policies: keep them out of the real home; the cache's own
# tests switch it on in a temporary one.
os.environ.setdefault("VETO_POLICY_CACHE", "off")

PG_URL = os.environ.get("VETO_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


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


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Count the docs' code blocks that opt out of being run (tests/test_docs.py), with why."""
    reports = [r for rs in terminalreporter.stats.values() for r in rs if hasattr(r, "nodeid")]
    if not any(r.nodeid.startswith("tests/test_docs.py::") for r in reports):
        return
    from docs_blocks import inventory

    ran, skipped = inventory()
    terminalreporter.write_sep("-", f"docs code blocks: {ran} run, {len(skipped)} not run")
    for block in skipped:
        terminalreporter.write_line(f"not run {block.where}: {block.not_run}")
