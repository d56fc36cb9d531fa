"""examples/openai_agents_quickstart.py runs offline: allow, deny, and approve → RunState JSON
→ fresh Veto → resume."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "openai_agents_quickstart.py"


def test_quickstart_example_runs_offline(tmp_path: Path) -> None:
    env = {**os.environ, "HOME": str(tmp_path)}
    env.pop("VETO_DB", None)
    env.pop("OPENAI_API_KEY", None)  # the example needs no key
    proc = subprocess.run(
        [sys.executable, str(EXAMPLE)], capture_output=True, text=True, timeout=120, env=env
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "PAUSED   issue_refund({'amount': 250}) needs ['alice']" in out
    assert "RAN      call-1: customer ann@example.com: gold tier" in out
    assert "BLOCKED  call-2: " in out and "[no-external-mail]" in out
    assert "RAN      call-3: refunded 250.00" in out
    assert "AGENT    All done." in out
    assert "issue_refund=pending_approval" in out and "issue_refund=approval_consumed" in out
    assert out.count("=pending_approval") == 1
    assert "VERIFIED True" in out
