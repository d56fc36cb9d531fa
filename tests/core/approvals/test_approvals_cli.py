"""`veto approvals list | show | approve | deny | cancel` (the console channel)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from approval_helpers import call, make_veto
from click.testing import CliRunner

from veto_core.approvals import ApprovalState
from veto_core.cli import main


def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture(autouse=True)
def _no_acting_user(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("VETO_USER", raising=False)
    monkeypatch.delenv("VETO_ROLES", raising=False)
    monkeypatch.delenv("VETO_TOKEN", raising=False)
    monkeypatch.delenv("VETO_URL", raising=False)
    # The operator's admin key (--admin) lives in this test's own home directory.
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


def test_list_show_approve(db_url: str) -> None:
    veto = make_veto(db_url)
    rid = veto.authorize(call(args={"amount": 500, "card": "4111"})).approval.id
    code, out, _ = run("approvals", "list", "--json", "--db", db_url)
    assert code == 0
    (row,) = [json.loads(line) for line in out.splitlines()]
    assert row["id"] == rid and row["state"] == "pending" and row["args"]["card"] == "[REDACTED]"
    code, out, _ = run("approvals", "list", "--db", db_url)
    assert code == 0 and rid[:8] in out and "role:finance" in out
    code, out, _ = run("approvals", "show", rid[:13], "--db", db_url)  # a unique prefix
    assert code == 0 and rid in out and "PENDING" in out and "Payments need finance" in out

    code, out, err = run("approvals", "approve", rid, "--as", "fiona", "--admin", "--db", db_url)
    assert code == 2 and "refused" in err and "role:finance" in err
    code, out, err = run(
        "approvals", "approve", rid, "--as", "fiona", "--role", "finance", "--db", db_url,
        "--reason", "ok", "--admin",
    )  # fmt: skip
    assert code == 0, err
    assert "APPROVED" in out
    assert veto.approvals.get(rid).state is ApprovalState.APPROVED
    code, out, _ = run("approvals", "show", rid, "--db", db_url)
    assert "fiona" in out and "approve" in out and "console" in out
    code, _, err = run(
        "approvals", "deny", rid, "--as", "frank", "--role", "finance", "--db", db_url, "--admin"
    )
    assert code == 2 and "no longer be decided" in err
    veto.close()


def test_acting_user_from_the_environment_and_self_approval_refused(sqlite_url: str) -> None:
    veto = make_veto(sqlite_url)
    rid = veto.authorize(call()).approval.id
    code, _, err = run("approvals", "approve", rid, "--db", sqlite_url, "--admin")
    assert code == 2 and "--as USER" in err
    env = {"VETO_USER": "alice@example.com", "VETO_ROLES": "finance,support"}
    code, _, err = run("approvals", "approve", rid, "--db", sqlite_url, "--admin", env=env)
    assert code == 2 and "cannot approve it" in err
    env = {"VETO_USER": "frank", "VETO_ROLES": "finance"}
    code, out, _ = run(
        "approvals", "deny", rid, "--reason", "no", "--db", sqlite_url, "--admin", env=env
    )
    assert code == 0 and "DENIED" in out
    assert veto.approvals.get(rid).final_reason == "no"
    veto.close()


def test_quorum_progress_and_cancel(sqlite_url: str) -> None:
    veto = make_veto(sqlite_url)
    rid = veto.authorize(call("wire")).approval.id
    code, out, _ = run("approvals", "approve", rid, "--as", "carol", "--db", sqlite_url, "--admin")
    assert code == 0 and "1/2 approvals; still pending" in out
    code, out, _ = run("approvals", "approve", rid, "--as", "carol", "--db", sqlite_url, "--admin")
    assert code == 0 and "1/2 approvals; still pending" in out  # same approver again
    rid2 = veto.authorize(call(tool_call_id="c2")).approval.id
    code, out, _ = run("approvals", "cancel", rid2, "--as", "ops", "--db", sqlite_url, "--admin")
    assert code == 0 and "CANCELLED" in out
    code, out, _ = run("approvals", "list", "--state", "all", "--json", "--db", sqlite_url)
    assert {json.loads(line)["state"] for line in out.splitlines()} == {"pending", "cancelled"}
    veto.close()


def test_unknown_request_and_bad_store(sqlite_url: str, tmp_path: Path) -> None:
    make_veto(sqlite_url).close()
    code, _, err = run("approvals", "show", "nope", "--db", sqlite_url)
    assert code == 2 and "no approval request" in err
    code, _, err = run("approvals", "list", "--db", f"jsonl:///{tmp_path}/x.jsonl")
    assert code == 2 and "sqlite or postgresql" in err


def test_listing_opens_the_audit_log_only_to_record_an_expiry(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`approvals list` reads requests without opening the audit log (no plugin
    discovery: DESIGN.md 8's start-up budget); a request it finds overdue is expired
    and that change recorded, and an audit log that cannot be opened fails the listing
    before the change, never after it (no expiry without its record)."""
    import time

    from veto_core.approvals import service as service_mod

    veto = make_veto(sqlite_url, timeout="1s")
    fresh = make_veto(sqlite_url)
    rid = veto.authorize(call(args={"amount": 500, "card": "4111"})).approval.id
    kept = fresh.authorize(
        call(args={"amount": 600, "card": "4111"}, tool_call_id="c2")
    ).approval.id
    opened: list[str | None] = []
    real = service_mod._audit_at

    def counting(url: str | None):  # type: ignore[no-untyped-def]
        opened.append(url)
        return real(url)

    monkeypatch.setattr(service_mod, "_audit_at", counting)
    time.sleep(1.2)  # rid is overdue now; kept is not

    # A broken audit setting: reading fails only where a change must be recorded.
    code, _, err = run(
        "approvals", "list", "--db", sqlite_url, env={"VETO_AUDIT_DURABILITY": "sometimes"}
    )
    assert code == 2 and "durability" in err
    assert veto.approvals.store.get(rid).state is ApprovalState.PENDING  # not expired unrecorded

    code, out, _ = run("approvals", "list", "--json", "--state", "all", "--db", sqlite_url)
    assert code == 0
    states = {json.loads(line)["id"]: json.loads(line)["state"] for line in out.splitlines()}
    assert states == {rid: "expired", kept: "pending"}
    events = [r for r in veto.audit.query(limit=50) if r.approval and r.approval.id == rid]
    assert "expired" in [r.outcome for r in events]
    assert len(opened) == 2  # the broken attempt and this one: the expiry's record

    opened.clear()
    code, out, _ = run("approvals", "list", "--json", "--db", sqlite_url)  # nothing overdue
    assert code == 0 and [json.loads(line)["id"] for line in out.splitlines()] == [kept]
    assert opened == []  # no audit log, no plugin discovery
    assert veto.audit.verify().ok
    veto.close()
    fresh.close()
