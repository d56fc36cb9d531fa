"""The quickstart examples print commands with `--db PATH` (the console channel's
`veto approvals approve ... --db`, the closing `veto audit query --db`): that store
must still exist after the example exits (issue 16 item 11), and a second run
starts afresh rather than finding the first run's decided requests."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from veto_core.cli import main

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "langchain_quickstart.py"


def test_the_printed_store_outlives_the_example(tmp_path: Path) -> None:
    env = {**os.environ, "HOME": str(tmp_path)}
    env.pop("VETO_DB", None)
    for _ in range(2):
        proc = subprocess.run(
            [sys.executable, str(EXAMPLE)], capture_output=True, text=True, timeout=180, env=env
        )
        assert proc.returncode == 0, proc.stderr
        printed = set(re.findall(r"--db (\S+)", proc.stdout + proc.stderr))
        assert printed, proc.stdout
        for url in printed:
            path = Path(url.removeprefix("sqlite:///"))
            assert path.is_file(), url
            assert str(path).startswith(str(tmp_path))
            result = CliRunner().invoke(main, ["audit", "verify", "--db", url])
            assert result.exit_code == 0, result.output
        assert "RAN      issue_refund: refunded 250.00" in proc.stdout
