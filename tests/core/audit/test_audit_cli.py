"""``veto audit`` subcommands (invoked on the click group directly) and the exports."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import sqlite3
import zipfile
from pathlib import Path

import pytest
from audit_helpers import POLICY_REVISION, POLICY_TEXT, call, decision
from click.testing import CliRunner

from veto_core.audit import ApprovalInfo, open_audit
from veto_core.audit.cli import audit_cli, parse_since
from veto_core.model import Effect

NOW = dt.datetime.now(dt.UTC)


@pytest.fixture
def populated(db_path: Path) -> Path:
    log = open_audit(str(db_path))
    log.store_policy_revision(POLICY_REVISION, "support-agent", POLICY_TEXT, "p.yaml")
    log.record_decision(call(args={"to": "=cmd|' /C calc'!A0"}), decision(), env="prod",
                        now=NOW - dt.timedelta(days=10))  # fmt: skip
    log.record_decision(call(tool="issue_refund", user="u2"), decision(Effect.DENY, rules=("no",),
                        reasons=("Refunds need finance",)), env="prod")  # fmt: skip
    log.record_event(tenant="acme", tool="issue_refund", outcome="approved", effect="require_approval",
                     approval=ApprovalInfo(id="ap1", approvers=("alice",), channel="console",
                                           decided_at=NOW), run_id="run-1")  # fmt: skip
    log.record_decision(call(tenant="beta"), decision(), env="dev")
    log.close()
    return db_path


def run(*args: str) -> tuple[int, str]:
    res = CliRunner().invoke(audit_cli, list(args), catch_exceptions=False)
    return res.exit_code, res.output


def test_parse_since() -> None:
    now = dt.datetime(2025, 1, 10, tzinfo=dt.UTC)
    assert parse_since("1h", now=now) == now - dt.timedelta(hours=1)
    assert parse_since("7d", now=now) == now - dt.timedelta(days=7)
    assert parse_since("2025-01-01T00:00:00") == dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    assert parse_since(None) is None


def test_query_table_and_json(populated: Path) -> None:
    code, out = run("query", "--db", str(populated), "--since", "1h")
    assert code == 0 and "issue_refund" in out and "3 records" in out
    code, out = run("query", "--db", str(populated), "--json", "--tenant", "acme", "--rule", "no")
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and [r["outcome"] for r in rows] == ["denied"]
    code, out = run("query", "--db", str(populated), "--json", "--text", "FINANCE")
    assert len(out.splitlines()) == 1
    code, out = run("query", "--db", str(populated), "--json", "--limit", "1", "--offset", "1")
    assert len(out.splitlines()) == 1


def test_verify_ok_then_broken(populated: Path) -> None:
    code, out = run("verify", "--db", str(populated))
    assert code == 0 and "OK" in out and "tenant acme: 3 records" in out
    con = sqlite3.connect(populated)
    con.execute("UPDATE audit_records SET tool = 'x' WHERE tenant='acme' AND seq=2")
    con.commit()
    con.close()
    code, out = run("verify", "--db", str(populated))
    assert code == 1 and "BROKEN" in out and "record seq 2" in out
    res = CliRunner().invoke(audit_cli, ["verify", "--db", str(populated), "--json"])
    assert json.loads(res.stdout)["tenants"][0]["broken"]["seq"] == 2


def test_export_formats(populated: Path, tmp_path: Path) -> None:
    code, out = run("export", "--db", str(populated), "--format", "jsonl", "--tenant", "acme")
    assert code == 0 and [json.loads(x)["seq"] for x in out.splitlines()] == [1, 2, 3]
    target = tmp_path / "a.csv"
    code, _ = run("export", "--db", str(populated), "--format", "csv", "--out", str(target))
    rows = list(csv.DictReader(io.StringIO(target.read_text())))
    assert len(rows) == 4 and rows[0]["args"].startswith('{"to":"=cmd')
    code, out = run("export", "--db", str(populated), "--format", "ocsf", "--tenant", "acme")
    events = [json.loads(x) for x in out.splitlines()]
    assert {e["class_uid"] for e in events} == {6003}
    assert [e["disposition"] for e in events] == ["Allowed", "Blocked", "Allowed"]
    assert events[1]["api"]["operation"] == "issue_refund"
    assert events[1]["actor"]["user"]["uid"] == "u2" and events[1]["type_uid"] == 600399


def test_csv_neutralizes_formulas() -> None:
    from veto_core.audit.export import _csv_safe

    assert _csv_safe("=1+1") == "'=1+1" and _csv_safe("ok") == "ok"


def test_evidence_pack(populated: Path, tmp_path: Path) -> None:
    pack = tmp_path / "pack.zip"
    code, out = run("evidence", "--db", str(populated), "--out", str(pack), "--since", "90d")
    assert code == 0 and "chain OK" in out, out
    with zipfile.ZipFile(pack) as z:
        names = set(z.namelist())
        assert {"README.md", "records.jsonl", "verification.json", "verification.txt",
                "policies/index.json", "approvals_summary.json", "manifest.json",
                "checkpoints.json", f"policies/{POLICY_REVISION}.txt"} <= names  # fmt: skip
        assert len(z.read("records.jsonl").splitlines()) == 4
        assert json.loads(z.read("verification.json"))["ok"] is True
        idx = json.loads(z.read("policies/index.json"))
        assert idx[0]["revision"] == POLICY_REVISION and idx[0]["records"] == 3
        appr = json.loads(z.read("approvals_summary.json"))
        assert appr["requests"] == 1 and appr["by_final_outcome"] == {"approved": 1}
        import hashlib

        manifest = json.loads(z.read("manifest.json"))
        for name, digest in manifest.items():
            assert hashlib.sha256(z.read(name)).hexdigest() == digest


def test_erase_and_purge_commands(populated: Path) -> None:
    code, out = run("erase", "--db", str(populated), "--user", "u2")
    assert code == 0 and "erased 1 records" in out
    code, out = run("purge", "--db", str(populated), "--retention-days", "5", "--json")
    assert code == 0 and {r["tenant"]: r["deleted"] for r in json.loads(out)} == {
        "acme": 1,
        "beta": 0,
    }
    code, out = run("checkpoint", "--db", str(populated))
    assert code == 0 and "public key" in out
    code, out = run("verify", "--db", str(populated))
    assert code == 0, out


def test_store_errors_are_clean_messages(tmp_path: Path) -> None:
    res = CliRunner().invoke(audit_cli, ["query", "--db", "nosuch://x"])
    assert res.exit_code != 0 and "no audit sink" in res.output


def test_default_db_from_env(populated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VETO_DB", str(populated))
    code, out = run("query", "--json")
    assert code == 0 and len(out.splitlines()) == 4
