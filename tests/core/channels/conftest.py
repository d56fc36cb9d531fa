"""Fixtures of the channel tests (defined in channel_helpers.py). Passwords are
hashed with cheap argon2 parameters, as in the server tests."""

from collections.abc import Iterator

import pytest
from argon2 import PasswordHasher
from channel_helpers import fake_slack, smtp, world

import veto_core.server.store as store_module

__all__ = ["fake_slack", "smtp", "world"]


@pytest.fixture(autouse=True)
def _fast_password_hashing(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(
        store_module, "_hasher", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    )
    yield
