"""`veto mcp proxy` over streamable HTTP: an HTTP upstream, the proxy serving HTTP with
bearer tokens of `veto users token`, and the dashboard API releasing an approval."""

from __future__ import annotations

from typing import Any

import anyio
import httpx
import pytest
from mcp_helpers import World, call, http_session, is_error, run, stdio_session, text_of

from veto_core.approvals import ApprovalState

PASSWORD = "correct horse battery"


def _users(world: World) -> dict[str, str]:
    """bob (the agent's user) and alice (approver) in acme, gary in globex; tokens."""
    from veto_core.server import open_server_store

    store = open_server_store(world.db)
    try:
        store.add_user("bob", PASSWORD, tenant="acme", role="viewer")
        store.add_user("alice", PASSWORD, tenant="acme", role="approver")
        store.add_user("gary", PASSWORD, tenant="globex", role="approver")
        return {u: store.create_token(u, "test")[1] for u in ("bob", "alice", "gary")}
    finally:
        store.close()


@pytest.mark.usefixtures("fast_passwords")
def test_http_proxy_allowed_denied_and_approval_by_the_dashboard(world: World) -> None:
    """HTTP upstream, proxy serving HTTP: the token's user is the principal; an approval
    is released through the dashboard's JSON API (POST /api/approvals/{id}/approve)."""
    from fastapi.testclient import TestClient

    from veto_core.server import ServerSettings, create_app

    tokens = _users(world)
    upstream = world.start_upstream_http()
    url = world.start_proxy_http(upstream=["--upstream", upstream])
    dashboard = TestClient(create_app(settings=ServerSettings(db=world.db)))

    async def body() -> dict[str, Any]:
        out: dict[str, Any] = {}
        async with http_session(url, tokens["bob"]) as s:
            out["list"] = {t.name for t in (await s.list_tools()).tools}
            out["echo"] = await call(s, "echo", {"text": "over http"})
            out["delete"] = await call(s, "delete_repo", {"name": "prod"})
            async with anyio.create_task_group() as tg:

                async def calling() -> None:
                    out["refund"] = await call(s, "refund", {"amount": 250, "to": "acct-9"})

                tg.start_soon(calling)
                req = await world.pending()
                assert world.runs("refund") == []
                r = await anyio.to_thread.run_sync(
                    lambda: dashboard.post(
                        f"/api/approvals/{req.id}/approve",
                        headers={"Authorization": f"Bearer {tokens['alice']}"},
                    )
                )
                assert r.status_code == 200 and r.json()["state"] == "approved", r.text
        return out

    out = run(body)
    assert out["list"] == {"echo", "refund", "delete_repo", "crash", "garbage"}
    assert not is_error(out["echo"]) and "over http" in text_of(out["echo"])
    assert is_error(out["delete"]) and "no-delete" in text_of(out["delete"])
    assert not is_error(out["refund"]) and "refunded 250" in text_of(out["refund"])
    assert [r["tool"] for r in world.runs()] == ["echo", "refund"]
    echo = world.records("mcp__gh__echo")[0]
    assert echo.principal.user == "bob" and echo.framework == "mcp" and echo.tenant == "acme"
    [req] = world.requests()
    assert req.state is ApprovalState.APPROVED and [v.via for v in req.votes] == ["api"]


@pytest.mark.usefixtures("fast_passwords")
def test_http_proxy_refuses_requests_without_a_valid_token(world: World) -> None:
    tokens = _users(world)
    url = world.start_proxy_http()
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "x", "version": "0"}}}  # fmt: skip
    headers = {"Accept": "application/json, text/event-stream"}
    for auth in (None, "Bearer nope", f"Basic {tokens['bob']}", f"Bearer {tokens['gary']}"):
        h = dict(headers, **({"Authorization": auth} if auth else {}))
        r = httpx.post(url, json=init, headers=h, timeout=30)
        assert r.status_code == 401, (auth, r.status_code, r.text)
    assert "no role in tenant 'acme'" in r.json()["detail"]  # gary is globex's

    async def body() -> Any:
        async with http_session(url, tokens["bob"]) as s:
            return await call(s, "echo", {"text": "with a token"})

    assert not is_error(run(body))
    assert world.runs() == [{"tool": "echo", "args": {"text": "with a token"}}]


@pytest.mark.usefixtures("fast_passwords")
def test_http_client_that_closes_its_session_while_pending_cancels_the_request(
    world: World,
) -> None:
    tokens = _users(world)
    url = world.start_proxy_http()

    async def body() -> str:
        async with http_session(url, tokens["bob"]) as s, anyio.create_task_group() as tg:
            tg.start_soon(call, s, "refund", {"amount": 300, "to": "acct-5"})
            req = await world.pending()
            tg.cancel_scope.cancel()
        return req.id  # the session is closed (DELETE): the proxy cancels its calls

    rid = run(body)
    final = world.request(rid)
    for _ in range(200):
        final = world.request(rid)
        if final.state is not ApprovalState.PENDING:
            break
        anyio.run(anyio.sleep, 0.05)
    assert final.state is ApprovalState.CANCELLED, final
    assert world.veto_cli("approvals", "approve", rid, "--as", "alice").returncode == 2
    assert world.runs() == []


def test_stdio_proxy_in_front_of_an_http_upstream(world: World) -> None:
    upstream = world.start_upstream_http()

    async def body() -> tuple[Any, Any]:
        async with stdio_session(world, upstream=["--upstream", upstream]) as s:
            return await call(s, "echo", {"text": "a"}), await call(s, "delete_repo", {"name": "b"})

    ok, denied = run(body)
    assert not is_error(ok) and is_error(denied)
    assert world.runs() == [{"tool": "echo", "args": {"text": "a"}}]
