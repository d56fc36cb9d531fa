"""The JSON API (what machines and the webhook channel use), the user store on SQLite
and PostgreSQL, `veto users` / `veto serve`, and fail-closed behaviour."""

from __future__ import annotations

import io
import json
import zipfile
from typing import Any

from click.testing import CliRunner
from fastapi import FastAPI
from fastapi.testclient import TestClient
from server_helpers import PASSWORD, POLICY_V2, World, csrf_of, token_for

from veto_core import Veto
from veto_core.approvals import ApprovalState
from veto_core.audit.export import export_records
from veto_core.audit.sink import AuditQuery
from veto_core.cli import main
from veto_core.server import ServerStore, ServerStoreError, open_server_store


def bearer(world: World, user: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token_for(world.db, user)}"}


def test_approvals_api_round_trip(world: World, app: FastAPI) -> None:
    c = TestClient(app)
    h = bearer(world, "fiona")
    small = world.call(world.acme, 20)
    assert small.approval is None
    a = world.call(world.acme, 300).approval
    b = world.call(world.acme, 400).approval
    listed = c.get("/api/approvals", headers=h).json()["requests"]
    assert [r["id"] for r in listed] == [b.id, a.id]  # newest first
    first = listed[1]
    assert first["tool"] == "issue_refund" and first["state"] == "pending"
    assert first["args"]["card_number"] == "[REDACTED]"
    assert first["rule_ids"] == ["refunds-large"] and first["seconds_left"] > 0
    assert c.get(f"/api/approvals/{a.id}", headers=h).json()["id"] == a.id
    assert c.get("/api/approvals/nope", headers=h).status_code == 404

    r = c.post(f"/api/approvals/{a.id}/approve", headers=h)  # no body at all
    assert r.status_code == 200 and r.json()["state"] == "approved"
    assert world.acme.approvals.wait(a.id, timeout=1) is ApprovalState.APPROVED
    assert world.acme.approvals.consume(a.id) is True
    r = c.post(f"/api/approvals/{b.id}/deny", json={"reason": "fraud"}, headers=h)
    assert r.json()["state"] == "denied" and r.json()["final_reason"] == "fraud"
    # deciding again: 409, state unchanged
    assert c.post(f"/api/approvals/{b.id}/approve", json={}, headers=h).status_code == 409
    assert world.acme.approvals.get(b.id).state is ApprovalState.DENIED
    # via "api" with the token's user
    votes = world.acme.approvals.get(a.id).votes
    assert [(v.approver, v.via) for v in votes] == [("fiona", "api")]
    assert c.get("/api/approvals?state=all", headers=h).json()["requests"][0]["id"] == b.id
    assert c.get("/api/approvals?state=approved", headers=h).json()["requests"][0]["id"] == a.id


def test_audit_api_filters_paging_export(world: World, app: FastAPI) -> None:
    c = TestClient(app)
    h = bearer(world, "victor")  # a viewer reads everything of its tenant
    for amount in (1, 2, 3, 4, 5):
        world.call(world.acme, amount, run="run-x")
    world.call(world.acme, 5, tool="delete_customer", user="mallory")
    page = c.get("/api/audit?limit=2", headers=h).json()
    assert page["tenant"] == "acme" and len(page["records"]) == 2 and page["next_offset"] == 2
    assert page["records"][0]["tool"] == "delete_customer"  # newest first
    denied = c.get("/api/audit?outcome=denied", headers=h).json()["records"]
    assert [r["principal"]["user"] for r in denied] == ["mallory"]
    assert len(c.get("/api/audit?run=run-x&rule=refunds-small", headers=h).json()["records"]) == 5
    assert len(c.get("/api/audit?user=mallory&since=1h", headers=h).json()["records"]) == 1
    assert c.get("/api/audit?text=never%20deleted", headers=h).json()["records"][0]["seq"] == 6
    assert c.get("/api/audit?since=yesterday-ish", headers=h).status_code == 400
    assert c.get("/api/audit?limit=0", headers=h).status_code == 422
    rid = denied[0]["id"]
    one = c.get(f"/api/audit/records/{rid}", headers=h).json()
    assert one["id"] == rid and one["outcome"] == "denied"
    assert c.get("/api/audit/verify", headers=h).json()["ok"] is True

    for fmt in ("jsonl", "csv", "ocsf"):
        r = c.get(f"/api/audit/export?fmt={fmt}&run=run-x", headers=h)
        assert r.status_code == 200 and "attachment" in r.headers["content-disposition"]
        cli = io.StringIO()
        export_records(
            world.acme.audit.iter_records(AuditQuery(tenant="acme", run_id="run-x")), fmt, cli
        )
        assert r.text == cli.getvalue(), fmt

    r = c.get("/api/audit/evidence", headers=h)
    assert r.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(r.content)) as z:
        assert json.loads(z.read("verification.json"))["ok"] is True
        assert len(z.read("records.jsonl").splitlines()) == 6


def test_policies_and_explain_api(world: World, app: FastAPI, client_for: Any) -> None:
    world.call(world.acme, 10)
    v2 = Veto.from_yaml(POLICY_V2, env="prod", tenant="acme", db=world.db)
    try:
        world.call(v2, 10)
    finally:
        v2.close()
    c = client_for("fiona")
    revs = c.get("/api/policies").json()["revisions"]
    assert [r["revision"] for r in revs] == [v2.policy_revision, world.acme.policy_revision]
    assert all(r["records"] == 1 for r in revs)
    one = c.get(f"/api/policies/{v2.policy_revision}").json()
    assert json.loads(one["content"])["name"] == "server-test"
    d = c.get(f"/api/policies/diff?a={revs[1]['revision']}&b={revs[0]['revision']}").json()
    assert [r["id"] for r in d["semantic"]["rules_added"]] == ["crm-reads"]
    assert '+        "less_or_equal": 50' in d["diff"]
    h = {"X-CSRF-Token": csrf_of(c)}
    call = {"tool": "issue_refund", "args": {"amount": 75}, "env": "prod", "tenant": "globex"}
    out = c.post("/api/explain", json={"call": call}, headers=h).json()
    assert out["decision"]["effect"] == "require_approval"  # latest revision: over 50
    assert out["tenant"] == "acme"  # a user explains calls of their own tenant only
    old = c.post(
        "/api/explain",
        json={"call": call, "revision": world.acme.policy_revision},
        headers=h,
    ).json()
    assert old["decision"]["effect"] == "allow"
    bad = c.post("/api/explain", json={"call": {"tool": 3}}, headers=h)
    assert bad.status_code == 400
    # a revision that only another tenant used is not visible
    Veto.from_yaml(POLICY_V2 + "# globex only\n", tenant="globex", db=world.db)
    g = Veto.from_yaml(POLICY_V2.replace("50}", "60}"), env="prod", tenant="globex", db=world.db)
    try:
        world.call(g, 10)
        assert c.get(f"/api/policies/{g.policy_revision}").status_code == 404
    finally:
        g.close()


def test_tokens_api(world: World, client_for: Any) -> None:
    c = client_for("dave")
    h = {"X-CSRF-Token": csrf_of(c)}
    r = c.post("/api/tokens", json={"name": "webhook"}, headers=h)
    assert r.status_code == 201
    secret, tid = r.json()["token"], r.json()["id"]
    machine = TestClient(c.app)
    assert (
        machine.get("/api/me", headers={"Authorization": f"Bearer {secret}"}).json()["username"]
        == "dave"
    )
    assert [t["name"] for t in c.get("/api/tokens").json()["tokens"]] == ["webhook"]
    assert c.delete(f"/api/tokens/{tid}", headers=h).status_code == 204
    assert machine.get("/api/me", headers={"Authorization": f"Bearer {secret}"}).status_code == 401


def test_store_failure_is_a_503_and_approves_nothing(world: World, app: FastAPI) -> None:
    c = TestClient(app)
    h = bearer(world, "fiona")
    pending = world.call(world.acme, 500).approval

    def broken(*_a: Any, **_k: Any) -> Any:
        from veto_core.approvals import ApprovalUnavailable

        raise ApprovalUnavailable("disk on fire")

    svc = app.state.ctx.approvals.service()
    original = svc.store.mutate
    svc.store.mutate = broken
    try:
        r = c.post(f"/api/approvals/{pending.id}/approve", json={}, headers=h)
        assert r.status_code == 503
    finally:
        svc.store.mutate = original
    assert world.acme.approvals.get(pending.id).state is ApprovalState.PENDING


def test_events_stream_announces_changes(world: World, app: FastAPI) -> None:
    c = TestClient(app)
    h = bearer(world, "fiona")
    world.call(world.acme, 500)
    with c.stream("GET", "/api/events?tenant=acme", headers=h) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        lines = r.iter_lines()
        assert next(lines) == "retry: 1000"
        assert next(lines) == "event: approvals"  # the initial sync
        world.call(world.acme, 600)
        for line in lines:
            if line == "event: approvals":
                break
        else:
            raise AssertionError("no approvals event")


def _store_round_trip(store: ServerStore) -> None:
    store.add_user("ann", PASSWORD, tenant="t1", role="approver", policy_roles=["finance"])
    store.set_role("ann", tenant="t2", role="viewer")
    u = store.authenticate("ann", PASSWORD)
    assert u is not None and u.roles == {"t1": "approver", "t2": "viewer"}
    assert u.approver_roles("t1") == ("finance",)
    assert store.authenticate("ann", "wrong password") is None
    assert store.authenticate("nobody", PASSWORD) is None
    s = store.create_session("ann", lifetime_s=60)
    got = store.get_session(s.token, idle_timeout_s=60)
    assert got is not None and got.csrf == s.csrf
    store.delete_session(s.token)
    assert store.get_session(s.token, idle_timeout_s=60) is None
    tok, secret = store.create_token("ann", "ci", tenant="t2")
    user = store.token_user(secret)
    assert user is not None and user.username == "ann"
    assert user.roles == {"t2": "viewer"} and tok.tenant == "t2"  # bound to its tenant
    store.record_failure("user:ann")
    assert store.recent_failures("user:ann", 60) == 1
    store.clear_failures("user:ann")
    assert store.recent_failures("user:ann", 60) == 0
    try:
        store.add_user("ann", PASSWORD, tenant="t1", role="viewer")
        raise AssertionError("duplicate user accepted")
    except ServerStoreError:
        pass
    assert store.secret_key() == store.secret_key()
    assert store.remove_user("ann") and store.token_user(secret) is None
    _ = tok


def test_user_store_sqlite(db: str) -> None:
    store = open_server_store(db)
    try:
        _store_round_trip(store)
    finally:
        store.close()


def test_user_store_postgres_and_server_on_postgres(pg_url: str) -> None:
    store = open_server_store(pg_url)
    try:
        _store_round_trip(store)
    finally:
        store.close()
    from server_helpers import seed

    from veto_core.server import ServerSettings, create_app

    w = seed(pg_url)
    app = create_app(settings=ServerSettings(db=pg_url))
    try:
        c = TestClient(app)
        h = {"Authorization": f"Bearer {token_for(pg_url, 'fiona')}"}
        pending = w.call(w.acme, 500).approval
        r = c.post(f"/api/approvals/{pending.id}/approve", json={}, headers=h)
        assert r.status_code == 200 and r.json()["state"] == "approved"
        assert len(c.get("/api/audit", headers=h).json()["records"]) >= 3
    finally:
        app.state.ctx.close()
        w.acme.close()
        w.globex.close()


def test_users_cli(db: str) -> None:
    runner = CliRunner()
    r = runner.invoke(
        main,
        ["users", "add", "zoe", "--role", "approver", "--tenant", "acme",
         "--approver-role", "finance", "--password-stdin", "--db", db],
        input=PASSWORD + "\n",
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    r = runner.invoke(main, ["users", "add", "zoe", "--role", "admin", "--tenant", "beta",
                             "--db", db])  # fmt: skip
    assert r.exit_code == 0 and "admin in beta" in r.output
    r = runner.invoke(main, ["users", "list", "--db", db])
    assert "zoe\tacme:approver [finance], beta:admin" in r.output
    r = runner.invoke(main, ["users", "token", "zoe", "--db", db])
    assert r.exit_code == 2 and "2 tenants" in r.output  # a token acts in one tenant
    r = runner.invoke(main, ["users", "token", "zoe", "--tenant", "beta", "--db", db])
    assert r.stdout.startswith("veto_") and "in beta (shown once)" in r.stderr
    r = runner.invoke(
        main, ["users", "add", "x", "--role", "viewer", "--tenant", "a", "--password-stdin",
               "--db", db], input="short\n",
    )  # fmt: skip
    assert r.exit_code == 2 and "at least 8" in r.output  # a usage error (DESIGN.md 8)
    r = runner.invoke(main, ["users", "remove", "zoe", "--db", db])
    assert r.exit_code == 0
    r = runner.invoke(main, ["serve", "--help"])
    assert r.exit_code == 0 and "--port" in r.output and "--db" in r.output
