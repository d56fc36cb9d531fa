"""Runs an `examples/<framework>_injection.py` demo and checks what it shows: the
injected payment is denied by the flow rule and its tool body never runs; the same
IBAN named by the person is paid. Shared by the three frameworks' tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
IBAN = "DE89 3704 0044 0532 0130 00"


def check_injection_example(name: str, tmp_path: Path) -> None:
    home, cwd = tmp_path / "home", tmp_path / "cwd"
    home.mkdir()
    cwd.mkdir()
    env = {**os.environ, "HOME": str(home), "TMPDIR": str(tmp_path)}
    env.pop("VETO_DB", None)
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / name)],
        capture_output=True, text=True, timeout=180, env=env, cwd=cwd,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines == [
        "injected BLOCKED  Veto: tool call 'send_money' was not run (denied): This IBAN comes "
        "from an email the assistant read, not from you [pay-injected-iban]",
        "ledger   []",  # the tool body never ran
        f"named    RAN      paid 900 to {IBAN}",
        f"ledger   ['900 to {IBAN}']",
    ], proc.stdout + proc.stderr
    # the example's store lives under its HOME; nothing is written to the working directory
    assert list(cwd.iterdir()) == []
