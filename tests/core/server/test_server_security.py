"""Security of `veto serve`: authentication, sessions, CSRF, rate limiting, tenant
isolation, roles, eligibility. Every refusal is checked to change nothing."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from server_helpers import PASSWORD, World, csrf_of, login, token_for

from veto_core.server.context import SESSION_COOKIE, safe_next

# --------------------------------------------------------------------------- login


def test_pages_require_login(app: FastAPI) -> None:
    c = TestClient(app)
    for path in ("/", "/approvals", "/audit", "/policies", "/explain", "/audit/export"):
        r = c.get(path, follow_redirects=False)
        assert r.status_code == 303, path
        assert r.headers["location"].startswith("/login?next=")
    for path in ("/api/approvals", "/api/audit", "/api/policies", "/api/me", "/api/users"):
        r = c.get(path)
        assert r.status_code == 401, path
        assert r.headers["www-authenticate"] == "Bearer"


def test_login_sets_a_hardened_session_cookie(app: FastAPI) -> None:
    c = TestClient(app)
    r = login(c, "alice", next_url="/audit")
    assert r.status_code == 303 and r.headers["location"] == "/audit"
    cookie = r.headers["set-cookie"]
    assert f"{SESSION_COOKIE}=" in cookie
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Max-Age=" in cookie
    assert "Path=/" in cookie
    assert c.get("/api/me").json()["username"] == "alice"


def test_cookie_is_secure_over_https(app: FastAPI) -> None:
    c = TestClient(app, base_url="https://testserver")
    r = login(c, "alice")
    assert r.status_code == 303
    assert "Secure" in r.headers["set-cookie"]


def test_wrong_password_and_unknown_user_look_the_same(app: FastAPI) -> None:
    c = TestClient(app)
    a = login(c, "alice", "wrong password!")
    b = login(c, "nobody", "wrong password!")
    assert a.status_code == b.status_code == 401
    assert "Wrong user name or password" in a.text and "Wrong user name or password" in b.text
    assert SESSION_COOKIE not in c.cookies


def test_login_without_csrf_token_is_refused(app: FastAPI) -> None:
    c = TestClient(app)
    r = c.post("/login", data={"username": "alice", "password": PASSWORD}, follow_redirects=False)
    assert r.status_code == 403
    assert SESSION_COOKIE not in c.cookies
    c.get("/login")  # a login cookie, but a forged form token
    r = c.post(
        "/login",
        data={"username": "alice", "password": PASSWORD, "csrf_token": "forged"},
        follow_redirects=False,
    )
    assert r.status_code == 403


def test_login_rate_limited_per_user(app: FastAPI) -> None:
    c = TestClient(app)
    for _ in range(5):
        assert login(c, "fiona", "not the password").status_code == 401
    r = login(c, "fiona")  # even the right password, while locked
    assert r.status_code == 429
    assert "Too many failed attempts" in r.text
    assert int(r.headers["retry-after"]) > 0
    assert SESSION_COOKIE not in c.cookies
    assert login(c, "alice").status_code == 303  # other users are not locked out


def test_session_fixation_is_impossible(app: FastAPI) -> None:
    c = TestClient(app)
    planted = "attacker-chosen-session-id"
    c.cookies.set(SESSION_COOKIE, planted)
    r = login(c, "alice")
    assert r.status_code == 303
    issued = [k.value for k in c.cookies.jar if k.name == SESSION_COOKIE and k.value != planted]
    assert len(issued) == 1
    new = issued[0]
    # The planted id is not a session, before or after the login.
    evil = TestClient(app)
    evil.cookies.set(SESSION_COOKIE, planted)
    assert evil.get("/api/me").status_code == 401
    # A second login gets a fresh id; the first one keeps working only until logout.
    c2 = TestClient(app)
    login(c2, "alice")
    assert c2.cookies.get(SESSION_COOKIE) != new


def test_logout_ends_the_session(app: FastAPI) -> None:
    c = TestClient(app)
    login(c, "alice")
    old = c.cookies.get(SESSION_COOKIE)
    assert old
    assert c.post("/logout", follow_redirects=False).status_code == 403  # no CSRF token
    r = c.post("/logout", data={"csrf_token": csrf_of(c)}, follow_redirects=False)
    assert r.status_code == 303
    replay = TestClient(app)
    replay.cookies.set(SESSION_COOKIE, old)
    assert replay.get("/api/me").status_code == 401


@pytest.mark.parametrize(
    "target",
    [
        "//evil.example/x",
        "https://evil.example/",
        "/\\evil.example",
        "http:/evil.example",
        "javascript:alert(1)",
        "/%0d%0aLocation:%20https://evil.example",
        "\\\\evil.example",
        "",
    ],
)
def test_open_redirect_on_login_is_impossible(app: FastAPI, target: str) -> None:
    c = TestClient(app)
    r = login(c, "alice", next_url=target)
    assert r.status_code == 303
    loc = r.headers["location"]
    assert loc.startswith("/") and not loc.startswith("//") and "evil" not in loc.split("?")[0][:2]
    assert safe_next(target) in ("/", target)
    if safe_next(target) == "/":
        assert loc == "/"


def test_login_redirects_back_to_the_page_asked_for(app: FastAPI) -> None:
    c = TestClient(app)
    r = c.get("/audit?tool=issue_refund", follow_redirects=False)
    nxt = r.headers["location"].split("next=", 1)[1]
    page = c.get(r.headers["location"])
    assert 'name="next" value="/audit?tool=issue_refund"' in page.text
    assert nxt == "%2Faudit%3Ftool%3Dissue_refund"


# --------------------------------------------------------------------------- CSRF


def test_state_changes_without_csrf_are_refused(world: World, client_for: Any) -> None:
    pending = world.call(world.acme, 500).approval
    c = client_for("fiona")
    # page form without the token
    r = c.post(f"/approvals/{pending.id}/approve", data={}, follow_redirects=False)
    assert r.status_code == 403
    # JSON API with the session cookie but no X-CSRF-Token header
    r = c.post(f"/api/approvals/{pending.id}/approve", json={})
    assert r.status_code == 403
    r = c.post(f"/api/approvals/{pending.id}/deny", json={}, headers={"X-CSRF-Token": "nope"})
    assert r.status_code == 403
    assert world.acme.approvals.get(pending.id).state.value == "pending"
    # a cross-origin request with the right token is refused too
    r = c.post(
        f"/api/approvals/{pending.id}/approve",
        json={},
        headers={"X-CSRF-Token": csrf_of(c), "Origin": "https://evil.example"},
    )
    assert r.status_code == 403
    assert world.acme.approvals.get(pending.id).state.value == "pending"
    # with the token it works
    r = c.post(
        f"/api/approvals/{pending.id}/approve", json={}, headers={"X-CSRF-Token": csrf_of(c)}
    )
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "approved"


def test_bearer_tokens_need_no_csrf_and_bad_tokens_are_401(world: World, app: FastAPI) -> None:
    c = TestClient(app)
    tok = token_for(world.db, "fiona")
    pending = world.call(world.acme, 500).approval
    assert c.get("/api/me", headers={"Authorization": "Bearer veto_wrong"}).status_code == 401
    assert c.get("/api/me", headers={"Authorization": f"Basic {tok}"}).status_code == 401
    r = c.post(
        f"/api/approvals/{pending.id}/deny",
        json={"reason": "no"},
        headers={"Authorization": f"Bearer {tok}"},
    )
    assert r.status_code == 200 and r.json()["state"] == "denied"


# --------------------------------------------------------------------------- tenants & roles


def test_cross_tenant_url_access_is_404(world: World, client_for: Any) -> None:
    theirs = world.call(world.globex, 700).approval
    their_record = world.call(world.globex, 5).record_id
    mine = world.call(world.acme, 5).record_id
    c = client_for("alice")  # admin of acme, nothing in globex
    csrf = csrf_of(c)
    h = {"X-CSRF-Token": csrf}
    for path in (
        "/approvals?tenant=globex",
        "/audit?tenant=globex",
        f"/audit/records/{their_record}?tenant=globex",
        f"/audit/records/{their_record}?tenant=acme",
        f"/audit/records/{their_record}",
        "/audit/export?fmt=jsonl&tenant=globex",
        "/audit/evidence?tenant=globex",
        "/policies?tenant=globex",
        f"/policies/{world.globex.policy_revision}?tenant=globex",
        "/events?tenant=globex",
        "/api/approvals?tenant=globex",
        f"/api/approvals/{theirs.id}",
        "/api/audit?tenant=globex",
        f"/api/audit/records/{their_record}",
        f"/api/audit/records/{their_record}?tenant=globex",
        "/api/audit/export?tenant=globex",
        "/api/audit/verify?tenant=globex",
        "/api/policies?tenant=globex",
        "/api/users?tenant=globex",
    ):
        assert c.get(path).status_code == 404, path
    assert c.get(f"/api/audit/records/{mine}").status_code == 200
    for verb in ("approve", "deny"):
        assert c.post(f"/api/approvals/{theirs.id}/{verb}", json={}, headers=h).status_code == 404
        r = c.post(f"/approvals/{theirs.id}/{verb}", data={"csrf_token": csrf})
        assert r.status_code == 404
    # nothing of globex leaks into acme's lists
    assert all(r["tenant"] == "acme" for r in c.get("/api/approvals").json()["requests"])
    assert all(r["tenant"] == "acme" for r in c.get("/api/audit").json()["records"])
    assert theirs.id not in c.get("/approvals").text
    assert world.globex.approvals.get(theirs.id).state.value == "pending"


def test_viewer_cannot_approve(world: World, client_for: Any) -> None:
    pending = world.call(world.acme, 500).approval
    c = client_for("victor")
    csrf = csrf_of(c)
    r = c.post(f"/api/approvals/{pending.id}/approve", json={}, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 403
    r = c.post(f"/approvals/{pending.id}/approve", data={"csrf_token": csrf})
    assert r.status_code == 403
    page = c.get("/approvals")
    assert pending.id in page.text and "View only" in page.text
    assert f"/approvals/{pending.id}/approve" not in page.text  # no buttons shown
    assert world.acme.approvals.get(pending.id).state.value == "pending"


def test_eligibility_and_self_approval_are_enforced_server_side(
    world: World, client_for: Any
) -> None:
    pending = world.call(world.acme, 500).approval
    dave = client_for("dave")  # approver role, but not "finance"
    r = dave.post(
        f"/api/approvals/{pending.id}/approve", json={}, headers={"X-CSRF-Token": csrf_of(dave)}
    )
    assert r.status_code == 403 and "finance" in r.json()["detail"]
    requester = client_for("agent-user")  # the call's principal.user
    r = requester.post(
        f"/api/approvals/{pending.id}/approve",
        json={},
        headers={"X-CSRF-Token": csrf_of(requester)},
    )
    assert r.status_code == 403 and "cannot approve" in r.json()["detail"]
    assert "someone else must decide" in requester.get("/approvals").text
    assert world.acme.approvals.get(pending.id).state.value == "pending"


def test_only_admins_manage_users(world: World, client_for: Any) -> None:
    fiona = client_for("fiona")
    assert fiona.get("/api/users").status_code == 403
    alice = client_for("alice")
    h = {"X-CSRF-Token": csrf_of(alice)}
    users = alice.get("/api/users").json()["users"]
    assert {u["username"] for u in users} == {
        "alice", "fiona", "dave", "victor", "agent-user"
    }  # fmt: skip
    r = alice.post(
        "/api/users",
        json={"username": "nina", "tenant": "acme", "role": "viewer", "password": "x" * 12},
        headers=h,
    )
    assert r.status_code == 201 and r.json()["role"] == "viewer"
    # granting a role in a tenant alice does not administer: 404
    r = alice.post(
        "/api/users",
        json={"username": "nina", "tenant": "globex", "role": "admin"},
        headers=h,
    )
    assert r.status_code == 404
    # an existing user's password cannot be reset through another tenant's admin
    r = alice.post(
        "/api/users",
        json={"username": "gary", "tenant": "acme", "role": "viewer", "password": "y" * 12},
        headers=h,
    )
    assert r.status_code == 409
    assert alice.delete("/api/users/nina", headers=h).status_code == 204
    assert alice.delete("/api/users/gary", headers=h).status_code == 404  # not in acme


def test_security_headers(app: FastAPI) -> None:
    r = TestClient(app).get("/login")
    assert r.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
    assert r.headers["x-content-type-options"] == "nosniff"
    assert not re.search(r"https?://", r.text.split("<main>")[0]), "no external assets"
