"""Issue 16 items 1 and 3 on the server side: API tokens bound to one tenant, approvers
seeing redacted values on the API and dashboard, and the CLI talking to a real
`veto serve` (VETO_URL + VETO_TOKEN) instead of opening the database."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from fastapi import FastAPI
from fastapi.testclient import TestClient
from server_helpers import World, free_port, token_for

from veto_core.approvals import ApprovalState
from veto_core.cli import main
from veto_core.server import open_server_store

CARD = "4111111111111111"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_approver_args_only_for_eligible_approvers_of_pending_requests(
    world: World, app: FastAPI, client_for: Any
) -> None:
    c = TestClient(app)
    req = world.call(world.acme, 300).approval
    seen = {}
    for user in ("fiona", "alice", "dave", "victor", "agent-user"):
        body = c.get(f"/api/approvals/{req.id}", headers=bearer(token_for(world.db, user))).json()
        assert body["args"]["card_number"] == "[REDACTED]"
        seen[user] = body["approver_args"]
    assert seen["fiona"] == {"amount": 300, "currency": "EUR", "card_number": CARD}
    assert seen["alice"] == seen["fiona"]  # admin and finance approver
    assert seen["dave"] is None  # approver, but not eligible (no finance)
    assert seen["victor"] is None  # viewer
    assert seen["agent-user"] is None  # the requester
    listed = c.get("/api/approvals", headers=bearer(token_for(world.db, "fiona"))).json()
    assert listed["requests"][0]["approver_args"]["card_number"] == CARD

    page = client_for("fiona").get("/approvals").text
    assert CARD in page
    assert CARD not in client_for("dave").get("/approvals").text

    h = bearer(token_for(world.db, "fiona"))
    assert c.post(f"/api/approvals/{req.id}/approve", headers=h).status_code == 200
    assert c.get(f"/api/approvals/{req.id}", headers=h).json()["approver_args"] is None


def test_tokens_are_bound_to_one_tenant(world: World, app: FastAPI) -> None:
    store = open_server_store(world.db)
    store.set_role("fiona", tenant="globex", role="approver", policy_roles=("finance",))
    with pytest.raises(Exception, match="2 tenants"):
        store.create_token("fiona", "ambiguous")
    _, acme_only = store.create_token("fiona", "acme", tenant="acme")
    store.close()
    g = world.call(world.globex, 500).approval
    c = TestClient(app)
    h = bearer(acme_only)
    assert c.get("/api/me", headers=h).json()["roles"] == {"acme": "approver"}
    assert c.get(f"/api/approvals/{g.id}", headers=h).status_code == 404
    assert c.post(f"/api/approvals/{g.id}/approve", headers=h).status_code == 404
    assert c.get("/api/audit?tenant=globex", headers=h).status_code == 404
    assert world.globex.approvals.get(g.id).state is ApprovalState.PENDING
    made = c.post("/api/tokens", json={"name": "x"}, headers=h).json()
    assert made["tenant"] == "acme"  # a token can only make tokens for its own tenant


# --------------------------------------------------------------------------- veto serve


@pytest.fixture
def veto_serve(world: World, tmp_path: Path) -> Iterator[str]:
    """`veto serve` in its own process on a random port of 127.0.0.1."""
    port = free_port()
    env = {**os.environ, "VETO_SECRET_KEY": "s" * 48, "VETO_DISABLE_PLUGINS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "veto_core.cli", "serve", "--host", "127.0.0.1", "--port",
         str(port), "--db", world.db, "--log-level", "warning"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else "exited"
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "veto serve did not start"
        time.sleep(0.1)
    try:
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def cli(url: str, token: str | None, *args: str) -> tuple[int, str, str]:
    # VETO_DB points where no database can be opened: remote mode must not touch one.
    env = {"VETO_URL": url, "VETO_DB": "/nonexistent/dir/veto.db", "VETO_TOKEN": token or ""}
    r = CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)
    return r.exit_code, r.stdout, r.stderr


def test_cli_talks_to_veto_serve_with_an_api_token(world: World, veto_serve: str) -> None:
    url = veto_serve
    fiona, dave, gary = (token_for(world.db, u) for u in ("fiona", "dave", "gary"))
    req = world.call(world.acme, 300).approval
    world.call(world.globex, 400)

    code, _, err = cli(url, None, "approvals", "list")
    assert code == 2 and "VETO_TOKEN" in err
    code, _, err = cli(url, "veto_forged", "approvals", "list")
    assert code == 2 and "401" in err

    code, out, err = cli(url, fiona, "approvals", "list", "--json")
    assert code == 0, err
    (row,) = [json.loads(line) for line in out.splitlines()]  # acme only, not globex
    assert row["id"] == req.id and row["args"]["card_number"] == "[REDACTED]"
    code, out, _ = cli(url, fiona, "approvals", "show", req.id[-12:], "--json")
    assert code == 0 and json.loads(out)["approver_args"]["card_number"] == CARD
    code, out, _ = cli(url, dave, "approvals", "show", req.id, "--json")
    assert code == 0 and "approver_args" not in json.loads(out) and CARD not in out

    code, _, err = cli(url, fiona, "approvals", "approve", req.id, "--as", "finance-dana")
    assert code == 2 and "belongs to fiona, not finance-dana" in err
    code, _, err = cli(url, fiona, "approvals", "approve", req.id, "--role", "finance")
    assert code == 2 and "do not apply" in err
    code, _, err = cli(url, dave, "approvals", "approve", req.id)
    assert code == 2 and "role:finance" in err  # the server refuses (403)
    code, _, err = cli(url, gary, "approvals", "approve", req.id)
    assert code == 2  # another tenant's request does not exist for gary
    assert world.acme.approvals.get(req.id).state is ApprovalState.PENDING

    code, out, err = cli(url, fiona, "approvals", "approve", req.id[:20], "--reason", "checked")
    assert code == 0, err
    assert "APPROVED" in out
    (vote,) = world.acme.approvals.get(req.id).votes
    assert (vote.approver, vote.via, vote.reason) == ("fiona", "api", "checked")

    code, out, err = cli(url, fiona, "audit", "query", "--json", "--tool", "issue_refund")
    assert code == 0, err
    records = [json.loads(line) for line in out.splitlines()]
    assert records and {r["tenant"] for r in records} == {"acme"}
    assert "approved" in {r["outcome"] for r in records}
    assert CARD not in out  # the audit trail stays redacted
    code, out, _ = cli(url, fiona, "audit", "query", "--outcome", "approved")
    assert code == 0 and "approved" in out and "1 records" in out
    code, out, err = cli(url, gary, "audit", "export", "--format", "csv")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("id,") and len(lines) >= 2 and "globex" in out and "acme" not in out
    code, _, err = cli(url, fiona, "audit", "export", "--tenant", "globex")
    assert code != 0 and "404" in err


def test_cancel_through_the_api_needs_the_approver_role_of_the_tenant(
    world: World, app: FastAPI
) -> None:
    c = TestClient(app)
    req = world.call(world.acme, 300).approval
    done = world.call(world.acme, 310).approval
    h = {u: bearer(token_for(world.db, u)) for u in ("dave", "victor", "gary", "fiona")}
    assert c.post(f"/api/approvals/{req.id}/cancel", headers=h["victor"]).status_code == 403
    assert c.post(f"/api/approvals/{req.id}/cancel", headers=h["gary"]).status_code == 404
    assert world.acme.approvals.get(req.id).state is ApprovalState.PENDING

    # Cancelling is not a vote: any approver of the tenant may end a pending request.
    r = c.post(
        f"/api/approvals/{req.id}/cancel", json={"reason": "run abandoned"}, headers=h["dave"]
    )
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "cancelled"
    after = world.acme.approvals.get(req.id)
    assert after.state is ApprovalState.CANCELLED and after.final_reason == "run abandoned"
    again = c.post(f"/api/approvals/{req.id}/cancel", headers=h["dave"])
    assert again.status_code == 200 and again.json()["state"] == "cancelled"  # idempotent

    assert c.post(f"/api/approvals/{done.id}/approve", headers=h["fiona"]).status_code == 200
    late = c.post(f"/api/approvals/{done.id}/cancel", headers=h["dave"])
    assert late.status_code == 409 and "approved" in late.text
    assert world.acme.approvals.get(done.id).state is ApprovalState.APPROVED


def test_cli_cancels_through_veto_serve(world: World, veto_serve: str) -> None:
    url = veto_serve
    dave, victor = token_for(world.db, "dave"), token_for(world.db, "victor")
    req = world.call(world.acme, 300).approval
    code, _, err = cli(url, dave, "approvals", "cancel", req.id, "--admin", "--as", "ops")
    assert code == 2 and "do not apply" in err
    code, _, err = cli(url, victor, "approvals", "cancel", req.id)
    assert code == 2 and "approver role" in err  # the server refuses (403)
    code, _, err = cli(url, dave, "approvals", "cancel", req.id, "--as", "fiona")
    assert code == 2 and "belongs to dave, not fiona" in err
    assert world.acme.approvals.get(req.id).state is ApprovalState.PENDING
    code, out, err = cli(url, dave, "approvals", "cancel", req.id[-12:], "--reason", "abandoned")
    assert code == 0, err
    assert f"{req.id} is CANCELLED" in out
    after = world.acme.approvals.get(req.id)
    assert after.state is ApprovalState.CANCELLED and after.final_reason == "abandoned"
