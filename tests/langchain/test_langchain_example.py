"""examples/langchain_quickstart.py runs offline and shows allow, deny and approve+resume."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "langchain_quickstart.py"


def test_quickstart_example_runs_offline(tmp_path: Path) -> None:
    env = {**os.environ, "HOME": str(tmp_path)}
    env.pop("VETO_DB", None)
    proc = subprocess.run(
        [sys.executable, str(EXAMPLE)], capture_output=True, text=True, timeout=120, env=env
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    # the decision is on what the tool receives: the schema makes the amount a float
    assert "PAUSED   issue_refund({'amount': 250.0}) needs ['alice']" in out
    assert "RAN      lookup_customer: customer ann@example.com" in out
    assert "BLOCKED  send_email: " in out and "[no-external-mail]" in out
    assert "RAN      issue_refund: refunded 250.00" in out
    assert "issue_refund=approval_consumed" in out
    assert "VERIFIED True" in out
