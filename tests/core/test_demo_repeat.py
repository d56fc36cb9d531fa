"""`veto demo` run again and again on one database (issue 16 item 5): every run is
its own session (fresh run and call ids), so it asks again, waits again, and its
summary, counted from its own audit records, says the same thing every time."""

from __future__ import annotations

import json
import re
from pathlib import Path

from click.testing import CliRunner

from veto_core.cli import main

REPO = Path(__file__).resolve().parents[2]
SUMMARY = (
    "13 calls: 6 allowed, 5 denied, 2 needed approval (1 approved and ran; did not run: 1 expired)."
)


def _run(*args: str) -> str:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


def test_three_demos_in_a_row_on_one_database_each_tell_the_same_story(
    tmp_path: Path, monkeypatch: object
) -> None:
    db = str(tmp_path / "veto.db")
    runs: list[str] = []
    for _ in range(3):
        out = _run("demo", str(REPO / "policies" / "demo.yaml"), "--db", db)
        flat = " ".join(out.split())
        assert SUMMARY in flat
        # Row 6 is approved by a second process and runs; row 7 waits the full
        # second and expires: never "approved ... does not run" or "expired after 0.0 s".
        approved = re.search(r"APPROVED after ([\d.]+) s: (.+?)$", out, re.M)
        expired = re.search(r"EXPIRED after ([\d.]+) s: (.+?)$", out, re.M)
        assert approved and approved.group(2) == "the refund runs", out
        assert expired and float(expired.group(1)) >= 0.9, out
        assert expired.group(2) == "the call does not run"
        assert "APPROVAL → APPROVED, ran" in out and "APPROVAL → EXPIRED, denied" in out
        run_id = re.search(r"run=(demo-[0-9a-f]+)", out)
        assert run_id
        runs.append(run_id.group(1))
    assert len(set(runs)) == 3  # a fresh run every time
    # The store agrees: two requests per run, none left pending, each run's own.
    rows = [
        json.loads(line)
        for line in _run("approvals", "list", "--state", "all", "--json", "--db", db).splitlines()
    ]
    assert len(rows) == 6
    assert sorted(r["state"] for r in rows) == ["approved"] * 3 + ["expired"] * 3
    assert {r["run_id"] for r in rows} == set(runs)
    for run_id in runs:
        records = [
            json.loads(line)
            for line in _run(
                "audit", "query", "--run", run_id, "--json", "--limit", "1000", "--db", db
            ).splitlines()
        ]
        decisions = [
            r for r in records if r["outcome"] in ("allowed", "denied", "pending_approval")
        ]
        assert len(decisions) == 13
