"""examples/mcp_proxy_quickstart.py runs offline and shows allow, deny and approval."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "mcp_proxy_quickstart.py"


def test_mcp_quickstart_example_runs() -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLE)], capture_output=True, text=True, timeout=240
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert "tools: read_file, write_file, delete_file" in out
    assert "-> ok: hello from the demo server" in out
    assert "-> ERROR: Veto: tool call 'mcp__files__delete_file' was not run (denied)" in out
    assert "[alice] veto approvals approve" in out
    assert "-> ok: wrote 14 characters to notes.txt" in out
    rows = [line.split()[:3] for line in out.split("audit trail:")[1].splitlines() if line.strip()]
    assert rows[:3] == [
        ["mcp", "mcp__files__read_file", "allowed"],
        ["mcp", "mcp__files__delete_file", "denied"],
        ["mcp", "mcp__files__write_file", "pending_approval"],
    ]
    # Two processes write these: the approver's CLI ("approved", recorded just after it
    # commits the request's new state) and the proxy ("approval_consumed", once it sees
    # that state), so either may be recorded first.
    assert {r[2] for r in rows[3:][-2:]} == {"approved", "approval_consumed"}
