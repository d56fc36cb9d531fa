"""CrewAI adapter tests: offline, no telemetry, nothing written outside temp dirs.

The environment is set here, at import, before any test module imports crewai
(CrewAI reads these when it is imported and when a crew starts).
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

os.environ["CREWAI_DISABLE_TELEMETRY"] = "true"
os.environ["CREWAI_DISABLE_TRACKING"] = "true"
os.environ["OTEL_SDK_DISABLED"] = "true"
os.environ["CREWAI_TRACING_ENABLED"] = "false"
os.environ["CREWAI_STORAGE_DIR"] = "veto-crewai-tests"
os.environ["HOME"] = tempfile.mkdtemp(prefix="veto-crewai-home-")
os.environ.pop("VETO_DB", None)

import pytest

_TESTS = str(Path(__file__).resolve().parents[1])
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test: its own HOME, no VETO_DB, and no Veto hooks left behind."""
    import veto_crewai

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("VETO_DB", raising=False)
    yield
    veto_crewai.uninstall()
