"""Fixtures of the MCP proxy tests (helpers in mcp_helpers.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from mcp_helpers import POLICY, World, stop


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    w = World(tmp=tmp_path, policy=policy, db=f"sqlite:///{tmp_path / 'veto.db'}",
              runs_file=tmp_path / "runs.log")  # fmt: skip
    try:
        yield w
    finally:
        for proc in w.procs:
            stop(proc)


@pytest.fixture
def fast_passwords(monkeypatch: pytest.MonkeyPatch) -> None:
    """Cheap argon2 parameters for the dashboard users these tests create."""
    from argon2 import PasswordHasher

    import veto_core.server.store as store_module

    monkeypatch.setattr(
        store_module, "_hasher", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    )
