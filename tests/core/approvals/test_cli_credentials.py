"""Issue 16 item 1 (DESIGN.md 2.8): `veto approvals approve|deny --as X` takes no identity on
trust. It needs X's API token, X's dashboard password, or an operator's local admin key.

Exit codes (DESIGN.md 8): a missing or wrong credential and a vote the service refuses (not
eligible, own call, closed, not found) both exit 2; 1 means "deny / check failed" elsewhere.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from approval_helpers import call, make_veto
from argon2 import PasswordHasher
from click.testing import CliRunner

import veto_core.server.store as store_module
from veto_core.approvals import ApprovalState
from veto_core.cli import main
from veto_core.credentials import load_admin_key
from veto_core.server.store import open_server_store

PASSWORD = "correct horse battery"


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    for name in ("VETO_USER", "VETO_ROLES", "VETO_TOKEN", "VETO_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setattr(
        store_module, "_hasher", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    )
    yield


def run(
    *args: str, env: dict[str, str] | None = None, stdin: str | None = None
) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), env=env, input=stdin, catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def users(db: str) -> dict[str, str]:
    """fiona: finance approver in acme; dave: approver without finance; gary: globex;
    victor: viewer with finance. Returns a token per user."""
    store = open_server_store(db)
    try:
        store.add_user("fiona", PASSWORD, tenant="acme", role="approver", policy_roles=("finance",),
                       email="fiona@example.com")  # fmt: skip
        store.add_user("dave", PASSWORD, tenant="acme", role="approver")
        store.add_user(
            "gary", PASSWORD, tenant="globex", role="approver", policy_roles=("finance",)
        )
        store.add_user("victor", PASSWORD, tenant="acme", role="viewer", policy_roles=("finance",))
        return {u: store.create_token(u, "test")[1] for u in ("fiona", "dave", "gary", "victor")}
    finally:
        store.close()


def pending(db: str, tool_call_id: str = "call-1") -> str:
    veto = make_veto(db)
    try:
        req = veto.authorize(call(tool_call_id=tool_call_id)).approval
        assert req is not None
        return req.id
    finally:
        veto.close()


def state(db: str, rid: str) -> tuple[ApprovalState, list[tuple[str, str | None, tuple[str, ...]]]]:
    veto = make_veto(db)
    try:
        req = veto.approvals.get(rid)
        return req.state, [(v.approver, v.operator, v.roles) for v in req.votes]
    finally:
        veto.close()


def test_no_identity_on_trust(db_url: str) -> None:
    users(db_url)
    rid = pending(db_url)
    for verb in ("approve", "deny"):
        code, _, err = run("approvals", verb, rid, "--as", "fiona", "--role", "finance",
                           "--db", db_url)  # fmt: skip
        assert code == 2 and "needs a credential" in err, err
        env = {"VETO_USER": "fiona", "VETO_ROLES": "finance"}
        code, _, err = run("approvals", verb, rid, "--db", db_url, env=env)
        assert code == 2 and "needs a credential" in err
    assert state(db_url, rid) == (ApprovalState.PENDING, [])


def test_api_token_of_the_approver(db_url: str) -> None:
    tokens = users(db_url)
    rid = pending(db_url)
    # Someone else's token, a made-up one, a viewer's, another tenant's, one without finance:
    code, _, err = run("approvals", "approve", rid, "--as", "fiona", "--token", tokens["dave"],
                       "--db", db_url)  # fmt: skip
    assert code == 2 and "belongs to dave, not fiona" in err
    code, _, err = run("approvals", "approve", rid, "--token", "veto_forged", "--db", db_url)
    assert code == 2 and "unknown, revoked" in err
    code, _, err = run("approvals", "approve", rid, "--token", tokens["victor"], "--db", db_url)
    assert code == 2 and "no approver role in tenant 'acme'" in err
    code, _, err = run("approvals", "approve", rid, "--token", tokens["gary"], "--db", db_url)
    assert code == 2 and "no approver role in tenant 'acme'" in err
    code, _, err = run("approvals", "approve", rid, "--token", tokens["dave"], "--db", db_url)
    assert code == 2 and "role:finance" in err  # authenticated, but not eligible
    # Roles come from the account, never from flags next to a token:
    code, _, err = run("approvals", "approve", rid, "--token", tokens["dave"], "--role", "finance",
                       "--db", db_url)  # fmt: skip
    assert code == 2 and "roles come from the account" in err
    assert state(db_url, rid) == (ApprovalState.PENDING, [])

    code, out, err = run("approvals", "approve", rid, "--as", "fiona", "--reason", "ok",
                         "--db", db_url, env={"VETO_TOKEN": tokens["fiona"]})  # fmt: skip
    assert code == 0, err
    assert "APPROVED" in out
    assert state(db_url, rid) == (ApprovalState.APPROVED, [("fiona", None, ("finance",))])


def test_revoked_token_is_refused(sqlite_url: str) -> None:
    tokens = users(sqlite_url)
    rid = pending(sqlite_url)
    code, out, _ = run("users", "tokens", "fiona", "--db", sqlite_url)
    assert code == 0 and "acme" in out
    token_id = out.split("\t")[0]
    code, _, _ = run("users", "revoke-token", "fiona", token_id, "--db", sqlite_url)
    assert code == 0
    code, _, err = run("approvals", "deny", rid, "--token", tokens["fiona"], "--db", sqlite_url)
    assert code == 2 and "unknown, revoked" in err
    assert state(sqlite_url, rid) == (ApprovalState.PENDING, [])


def test_users_token_is_shown_once_stored_hashed_and_bound_to_a_tenant(sqlite_url: str) -> None:
    users(sqlite_url)
    store = open_server_store(sqlite_url)
    store.set_role("fiona", tenant="globex", role="viewer")
    store.close()
    code, _, err = run("users", "token", "fiona", "--db", sqlite_url)
    assert code != 0 and "2 tenants" in err  # which tenant is it for?
    code, out, _ = run("users", "token", "fiona", "--tenant", "acme", "--db", sqlite_url)
    assert code == 0
    secret = out.strip()
    assert secret.startswith("veto_")
    raw = b"".join(p.read_bytes() for p in Path(sqlite_url[10:]).parent.glob("veto.db*"))
    assert secret.encode() not in raw  # only its digest is stored
    user = open_server_store(sqlite_url).token_user(secret)
    assert user is not None and user.roles == {"acme": "approver"}  # not globex


def test_dashboard_password_prompted(sqlite_url: str) -> None:
    users(sqlite_url)
    rid = pending(sqlite_url)
    code, _, err = run("approvals", "approve", rid, "--as", "fiona", "--password",
                       "--db", sqlite_url, stdin="wrong password\n")  # fmt: skip
    assert code == 2 and "wrong user name or password" in err
    assert state(sqlite_url, rid) == (ApprovalState.PENDING, [])
    code, _, err = run("approvals", "approve", rid, "--as", "fiona", "--password",
                         "--db", sqlite_url, stdin=PASSWORD + "\n")  # fmt: skip
    assert code == 0, err
    assert state(sqlite_url, rid) == (ApprovalState.APPROVED, [("fiona", None, ("finance",))])


def test_password_guessing_is_throttled(sqlite_url: str) -> None:
    users(sqlite_url)
    rid = pending(sqlite_url)
    for _ in range(5):
        code, _, _ = run("approvals", "approve", rid, "--as", "fiona", "--password",
                         "--db", sqlite_url, stdin="guess-guess\n")  # fmt: skip
        assert code == 2
    code, _, err = run("approvals", "approve", rid, "--as", "fiona", "--password",
                       "--db", sqlite_url, stdin=PASSWORD + "\n")  # fmt: skip
    assert code == 2 and "too many wrong passwords" in err


def test_admin_key_records_operator_and_approver(db_url: str, tmp_path: Path) -> None:
    rid = pending(db_url)
    key_file = tmp_path / "home" / ".veto" / "admin.key"
    assert not key_file.exists()
    code, out, err = run("approvals", "approve", rid, "--as", "finance-dana", "--role", "finance",
                         "--admin", "--db", db_url)  # fmt: skip
    assert code == 0, err
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600  # created on first use, 0600
    key = load_admin_key()
    (st, votes) = state(db_url, rid)
    assert st is ApprovalState.APPROVED
    assert votes == [("finance-dana", key.operator, ("finance",))]
    assert key.fingerprint[:16] in key.operator
    code, out, _ = run("approvals", "show", rid, "--db", db_url)
    assert "finance-dana" in out and "cast by operator" in out

    veto = make_veto(db_url)
    try:
        from veto_core.audit.sink import AuditQuery

        (vote,) = veto.audit.iter_records(AuditQuery(tenant="acme", outcome="approval_vote"))
        assert "finance-dana voted to approve" in vote.reasons[0]
        assert key.operator in vote.reasons[0]
    finally:
        veto.close()


def test_admin_key_with_loose_permissions_is_refused(sqlite_url: str, tmp_path: Path) -> None:
    rid = pending(sqlite_url)
    key_file = tmp_path / "home" / ".veto" / "admin.key"
    load_admin_key()  # create it
    for mode in (0o644, 0o640, 0o606):
        os.chmod(key_file, mode)
        code, _, err = run("approvals", "approve", rid, "--as", "dana", "--role", "finance",
                           "--admin", "--db", sqlite_url)  # fmt: skip
        assert code == 2 and f"mode {mode:04o}" in err and "chmod 600" in err
    os.chmod(key_file, 0o600)
    key_file.rename(key_file.with_name("real.key"))
    key_file.symlink_to(key_file.with_name("real.key"))
    code, _, err = run("approvals", "approve", rid, "--as", "dana", "--role", "finance",
                       "--admin", "--db", sqlite_url)  # fmt: skip
    assert code == 2 and "admin key" in err
    assert state(sqlite_url, rid) == (ApprovalState.PENDING, [])


def test_a_second_operator_key_is_not_accepted_until_added(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rid = pending(sqlite_url)
    code, out, _ = run("users", "admin-key", "--db", sqlite_url)  # the first key: accepted
    assert code == 0 and "accepted" in out and "NOT" not in out
    first_home = os.environ["HOME"]

    monkeypatch.setenv("HOME", str(tmp_path / "intruder"))  # someone else who can open the db
    code, _, err = run("approvals", "approve", rid, "--as", "dana", "--role", "finance",
                       "--admin", "--db", sqlite_url)  # fmt: skip
    assert code == 2 and "does not accept the admin key" in err
    assert state(sqlite_url, rid) == (ApprovalState.PENDING, [])
    second = load_admin_key().fingerprint
    code, _, err = run("users", "admin-key", "--add", second, "--db", sqlite_url)
    assert code != 0 and "does not accept your admin key" in err  # cannot add itself

    monkeypatch.setenv("HOME", first_home)
    code, out, _ = run("users", "admin-key", "--add", second, "--db", sqlite_url)
    assert code == 0 and f"accepted admin key {second}" in out
    monkeypatch.setenv("HOME", str(tmp_path / "intruder"))
    code, _, err = run("approvals", "approve", rid, "--as", "dana", "--role", "finance",
                       "--admin", "--db", sqlite_url)  # fmt: skip
    assert code == 0, err


def test_cancel_needs_a_credential_too(sqlite_url: str) -> None:
    tokens = users(sqlite_url)
    rid = pending(sqlite_url)
    code, _, err = run("approvals", "cancel", rid, "--as", "ops", "--db", sqlite_url)
    assert code == 2 and "needs a credential" in err
    code, _, err = run("approvals", "cancel", rid, "--token", tokens["victor"], "--db", sqlite_url)
    assert code == 2 and "no approver role" in err  # a viewer cannot cancel
    assert state(sqlite_url, rid) == (ApprovalState.PENDING, [])
    code, out, err = run("approvals", "cancel", rid, "--as", "ops", "--admin", "--db", sqlite_url)
    assert code == 0 and "CANCELLED" in out, err
    veto = make_veto(sqlite_url)
    try:
        reason = veto.approvals.get(rid).final_reason or ""
    finally:
        veto.close()
    assert reason.startswith("cancelled by ops (operator ") and "admin key" in reason


def test_no_password_on_stdin_is_a_refusal(sqlite_url: str) -> None:
    users(sqlite_url)
    rid = pending(sqlite_url)
    code, _, err = run("approvals", "approve", rid, "--as", "fiona", "--password",
                       "--db", sqlite_url, stdin="")  # fmt: skip
    assert code == 2 and "no password given" in err
    assert state(sqlite_url, rid) == (ApprovalState.PENDING, [])
