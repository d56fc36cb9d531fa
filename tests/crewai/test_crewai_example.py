"""examples/crewai_quickstart.py runs offline and shows allow, deny and a held approval;
it writes nothing outside its temp HOME (CrewAI's own files included)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "crewai_quickstart.py"


def test_quickstart_example_runs_offline(tmp_path: Path) -> None:
    home, cwd = tmp_path / "home", tmp_path / "cwd"
    home.mkdir()
    cwd.mkdir()
    env = {**os.environ, "HOME": str(home), "TMPDIR": str(tmp_path)}
    env.pop("VETO_DB", None)
    proc = subprocess.run(
        [sys.executable, str(EXAMPLE)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=cwd,
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    # the decision is on what the tool receives: the schema makes the amount a float
    assert "PENDING  issue_refund({'amount': 250.0}) needs ['alice']" in out
    assert "RAN      call-1: customer ann@example.com: gold tier" in out
    assert "BLOCKED  call-2: Veto: tool call 'send_email' was not run (denied)" in out
    assert "[no-external-mail]" in out
    assert "RAN      call-3: refunded 250.00" in out
    assert "issue_refund=approval_consumed" in out and "send_email=denied" in out
    assert "VERIFIED True" in out
    assert list(cwd.iterdir()) == []
