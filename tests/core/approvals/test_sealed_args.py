"""Issue 16 item 3: eligible approvers of a pending request see the values redaction hides;
the audit trail stays redacted, the real values are stored only encrypted (per-tenant key)
and are erased when the request ends and by `veto audit erase`."""

from __future__ import annotations

import datetime as _dt
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from approval_helpers import REQUESTER, call, make_veto
from argon2 import PasswordHasher
from click.testing import CliRunner

import veto_core.server.store as store_module
from veto_core import Veto
from veto_core.approvals import ApprovalState, Approver, NotEligible, SelfApproval
from veto_core.audit.sink import AuditQuery
from veto_core.cli import main
from veto_core.server.store import open_server_store
from veto_core.testing import FakeClock

SECRET = "DE89-3704-0044-0532-0130-00"  # the IBAN the policy redacts (args.card)
ARGS = {"amount": 500, "to": "acct-9", "card": SECRET}
FINANCE = Approver(id="fiona", roles=("finance",))


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    for name in ("VETO_USER", "VETO_ROLES", "VETO_TOKEN", "VETO_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setattr(
        store_module, "_hasher", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    )
    yield


def raw_bytes(url: str) -> bytes:
    """Every byte of the SQLite database and its WAL/SHM files."""
    path = Path(url.removeprefix("sqlite:///"))
    return b"".join(p.read_bytes() for p in sorted(path.parent.glob(path.name + "*")))


def sealed_column(url: str, rid: str) -> str | None:
    if url.startswith("sqlite:///"):
        con = sqlite3.connect(url.removeprefix("sqlite:///"))
        try:
            row = con.execute(
                "SELECT args_sealed FROM approval_requests WHERE id = ?", (rid,)
            ).fetchone()
        finally:
            con.close()
    else:
        import psycopg

        from veto_core.audit.postgres import _split_url

        conninfo, schema = _split_url(url)
        with psycopg.connect(conninfo) as con:
            con.execute(f'SET search_path TO "{schema}"')
            row = con.execute(
                "SELECT args_sealed FROM approval_requests WHERE id = %s", (rid,)
            ).fetchone()
    assert row is not None
    return None if row[0] is None else str(row[0])


def test_eligible_approvers_see_the_real_values_and_nobody_else(db_url: str) -> None:
    veto = make_veto(db_url)
    req = veto.authorize(call(args=ARGS)).approval
    assert req is not None and req.args is not None and req.args["card"] == "[REDACTED]"
    assert veto.approvals.approver_args(req.id, FINANCE) == ARGS
    with pytest.raises(NotEligible):
        veto.approvals.approver_args(req.id, Approver(id="dave", roles=("support",)))
    with pytest.raises(SelfApproval):
        veto.approvals.approver_args(req.id, Approver(id=REQUESTER.user or "", roles=("finance",)))
    # The audit trail keeps the redacted copy only.
    for record in veto.audit.iter_records(AuditQuery(tenant="acme")):
        assert SECRET not in str(record.to_dict())
    sealed = sealed_column(db_url, req.id)
    assert sealed is not None and SECRET not in sealed
    veto.close()


def _approve(veto: Veto, rid: str, clock: FakeClock) -> None:
    veto.approvals.decide(rid, approver=FINANCE, approve=True)


def _approve_and_consume(veto: Veto, rid: str, clock: FakeClock) -> None:
    veto.approvals.decide(rid, approver=FINANCE, approve=True)
    assert veto.approvals.consume(rid)


def _deny(veto: Veto, rid: str, clock: FakeClock) -> None:
    veto.approvals.decide(rid, approver=FINANCE, approve=False, reason="no")


def _expire(veto: Veto, rid: str, clock: FakeClock) -> None:
    clock.advance(2 * 3600)
    assert veto.approvals.get(rid).state is ApprovalState.EXPIRED


def _cancel(veto: Veto, rid: str, clock: FakeClock) -> None:
    veto.approvals.cancel(rid, by="ops")


@pytest.mark.parametrize(
    "end",
    [_approve, _approve_and_consume, _deny, _expire, _cancel],
    ids=["approved", "consumed", "denied", "expired", "cancelled"],
)
def test_plaintext_never_stored_and_ciphertext_gone_when_the_request_ends(
    sqlite_url: str, end: Callable[[Veto, str, FakeClock], None]
) -> None:
    clock = FakeClock(_dt.datetime(2026, 1, 5, 9, 0, tzinfo=_dt.UTC))
    veto = make_veto(sqlite_url, clock=clock)
    req = veto.authorize(call(args=ARGS)).approval
    assert req is not None
    sealed = sealed_column(sqlite_url, req.id)
    assert sealed is not None
    assert SECRET.encode() not in raw_bytes(sqlite_url)  # pending: stored encrypted only
    assert sealed.encode() in raw_bytes(sqlite_url)
    end(veto, req.id, clock)
    assert sealed_column(sqlite_url, req.id) is None
    assert veto.approvals.approver_args(req.id, FINANCE) is None
    veto.close()
    raw = raw_bytes(sqlite_url)
    assert SECRET.encode() not in raw
    assert sealed.encode() not in raw  # the ciphertext itself is gone too


def test_audit_erase_removes_the_sealed_values(db_url: str) -> None:
    veto = make_veto(db_url)
    req = veto.authorize(call(args=ARGS)).approval
    assert req is not None
    assert sealed_column(db_url, req.id) is not None
    veto.close()
    result = CliRunner().invoke(
        main, ["audit", "erase", "--db", db_url, "--user", REQUESTER.user or ""]
    )
    assert result.exit_code == 0, result.output
    assert sealed_column(db_url, req.id) is None
    if db_url.startswith("sqlite:///"):
        assert SECRET.encode() not in raw_bytes(db_url)


def test_a_sealed_value_is_bound_to_its_request(sqlite_url: str) -> None:
    """Copying one request's ciphertext onto another does not reveal it there."""
    veto = make_veto(sqlite_url)
    a = veto.authorize(call(args=ARGS, tool_call_id="a")).approval
    b = veto.authorize(call(args={**ARGS, "card": "other"}, tool_call_id="b")).approval
    assert a is not None and b is not None
    sealed_a = sealed_column(sqlite_url, a.id)
    con = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"))
    con.execute("UPDATE approval_requests SET args_sealed = ? WHERE id = ?", (sealed_a, b.id))
    con.commit()
    con.close()
    from veto_core.approvals import ApprovalUnavailable

    with pytest.raises(ApprovalUnavailable, match="do not belong to this request"):
        veto.approvals.approver_args(b.id, FINANCE)
    veto.close()


def test_cli_show_reveals_to_an_eligible_approver_with_a_credential(sqlite_url: str) -> None:
    veto = make_veto(sqlite_url)
    req = veto.authorize(call(args=ARGS)).approval
    assert req is not None
    veto.close()
    store = open_server_store(sqlite_url)
    store.add_user(
        "fiona", "correct horse", tenant="acme", role="approver", policy_roles=("finance",)
    )
    store.add_user("dave", "correct horse", tenant="acme", role="approver")
    fiona, dave = (store.create_token(u, "t")[1] for u in ("fiona", "dave"))
    store.close()

    def show(*extra: str) -> str:
        r = CliRunner().invoke(main, ["approvals", "show", req.id, "--db", sqlite_url, *extra])
        assert r.exit_code == 0, r.output
        return r.output

    assert SECRET not in show() and "[REDACTED]" in show()
    out = show("--token", fiona)
    assert SECRET in out and "args (unredacted)" in out
    out = show("--token", dave)
    assert SECRET not in out and "stay hidden" in out
    out = show("--as", "finance-dana", "--role", "finance", "--admin")
    assert SECRET in out
    r = CliRunner().invoke(main, ["approvals", "show", req.id, "--json", "--db", sqlite_url,
                                  "--token", fiona])  # fmt: skip
    assert '"approver_args"' in r.output and SECRET in r.output
