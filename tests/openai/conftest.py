"""OpenAI Agents adapter tests: offline (scripted model, fake key, no tracing); make the
shared contract (tests/contract.py) importable."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

_TESTS = str(Path(__file__).resolve().parents[1])
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)
_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

os.environ.setdefault("OPENAI_API_KEY", "test")
os.environ.setdefault("OPENAI_AGENTS_DISABLE_TRACING", "1")

import agents  # noqa: E402

agents.set_tracing_disabled(True)


@pytest.fixture(autouse=True)
def _offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A temp HOME (so ~/.veto is per test), a fake key, no VETO_DB from the caller."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("OPENAI_API_KEY", "test")
    monkeypatch.delenv("VETO_DB", raising=False)
    yield
