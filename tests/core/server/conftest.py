"""Fixtures of the server tests (defined in server_helpers.py).

Passwords are hashed with cheap argon2 parameters here: the production cost
(~0.3 s a hash on CI's 2 cores) would dominate the suite's time.
"""

from collections.abc import Iterator

import pytest
from argon2 import PasswordHasher
from server_helpers import app, client_for, db, live_server, world

import veto_core.server.store as store_module

__all__ = ["app", "client_for", "db", "live_server", "world"]


@pytest.fixture(autouse=True)
def _fast_password_hashing(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(
        store_module, "_hasher", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    )
    yield
