"""Server test helpers and fixtures (the fixtures are re-exported by conftest.py): a seeded database (two tenants, users of every role), the
app behind FastAPI's TestClient, and a real uvicorn server in a background thread.

Browser tests drive Debian's /usr/bin/chromium; they FAIL when it is missing
unless ``VETO_SKIP_CHROMIUM=1``.
"""

from __future__ import annotations

import contextlib
import re
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from veto_core import Principal, ToolCall, Veto
from veto_core.server import ServerSettings, create_app, open_server_store

PASSWORD = "correct horse battery"
ARTIFACTS = Path(__file__).parent / "artifacts"

POLICY = """
version: 1
name: server-test
default: deny
redact: [args.card_number]
rules:
  - id: refunds-small
    effect: allow
    tools: [issue_refund]
    if: {field: args.amount, less_or_equal: 100}
    reason: Refunds up to 100 are within support's authority
  - id: refunds-large
    effect: require_approval
    tools: [issue_refund]
    if: {field: args.amount, greater_than: 100}
    approval: {approvers: ["role:finance"], quorum: 1, timeout: 30m}
    reason: Refunds over 100 need a finance approver
  - id: no-delete
    effect: deny
    tools: [delete_customer]
    reason: Customers are never deleted by agents
"""

POLICY_V2 = (
    POLICY.replace("less_or_equal: 100}", "less_or_equal: 50}").replace(
        "greater_than: 100}", "greater_than: 50}"
    )
    + """  - id: crm-reads
    effect: allow
    tools: ["crm.get_*"]
    reason: CRM lookups are read-only
"""
)

# user -> (tenant, role, policy roles)
USERS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "alice": ("acme", "admin", ("finance",)),  # admin and finance approver in acme
    "fiona": ("acme", "approver", ("finance",)),
    "dave": ("acme", "approver", ()),  # approver, but not eligible for finance requests
    "victor": ("acme", "viewer", ("finance",)),  # viewer: may never decide
    "gary": ("globex", "approver", ("finance",)),
    "agent-user": ("acme", "approver", ("finance",)),  # the principal.user of acme's calls
}


@dataclass
class World:
    db: str
    acme: Veto
    globex: Veto

    def call(
        self,
        veto: Veto,
        amount: float,
        *,
        tool: str = "issue_refund",
        user: str = "agent-user",
        run: str | None = None,
    ) -> Any:
        return veto.authorize(
            ToolCall(
                tool=tool,
                args={"amount": amount, "currency": "EUR", "card_number": "4111111111111111"},
                principal=Principal(agent="support-bot", roles=("support",), user=user),
                run_id=run or f"run-{secrets.token_hex(3)}",
                tool_call_id=f"call-{secrets.token_hex(3)}",
                framework="test",
            )
        )


def seed(db: str) -> World:
    acme = Veto.from_yaml(POLICY, env="prod", tenant="acme", db=db)
    globex = Veto.from_yaml(POLICY, env="prod", tenant="globex", db=db)
    store = open_server_store(db)
    try:
        for name, (tenant, role, prs) in USERS.items():
            store.add_user(name, PASSWORD, tenant=tenant, role=role, policy_roles=prs)
    finally:
        store.close()
    return World(db=db, acme=acme, globex=globex)


@pytest.fixture
def db(tmp_path: Path) -> str:
    return str(tmp_path / "veto.db")


@pytest.fixture
def world(db: str) -> Iterator[World]:
    w = seed(db)
    yield w
    w.acme.close()
    w.globex.close()


@pytest.fixture
def app(world: World) -> Iterator[FastAPI]:
    a = create_app(settings=ServerSettings(db=world.db, sse_max_s=5.0))
    yield a
    a.state.ctx.close()


def login(client: TestClient, username: str, password: str = PASSWORD, next_url: str = "/") -> Any:
    page = client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token, page.text
    return client.post(
        "/login",
        data={"username": username, "password": password, "csrf_token": token.group(1),
              "next": next_url},
        follow_redirects=False,
    )  # fmt: skip


def csrf_of(client: TestClient) -> str:
    me = client.get("/api/me")
    assert me.status_code == 200, me.text
    token = me.json()["csrf_token"]
    assert isinstance(token, str)
    return token


@pytest.fixture
def client_for(app: FastAPI) -> Iterator[Any]:
    """``client_for("alice")``: a TestClient logged in as alice."""
    clients: list[TestClient] = []

    def make(username: str) -> TestClient:
        c = TestClient(app)
        clients.append(c)
        r = login(c, username)
        assert r.status_code == 303, r.text
        return c

    yield make
    for c in clients:
        c.close()


def token_for(db: str, username: str) -> str:
    store = open_server_store(db)
    try:
        return store.create_token(username, "test")[1]
    finally:
        store.close()


# --------------------------------------------------------------------------- live server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        assert isinstance(port, int)
        return port


@dataclass
class LiveServer:
    url: str
    app: FastAPI
    world: World


@contextlib.contextmanager
def serve(world: World, **settings: Any) -> Iterator[LiveServer]:
    """A real uvicorn server on 127.0.0.1 (a free port) in a background thread."""
    import uvicorn

    options: dict[str, Any] = {"sse_poll_s": 0.25, "sse_max_s": 30.0, **settings}
    app = create_app(settings=ServerSettings(db=world.db, **options))
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", timeout_graceful_shutdown=1
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        assert thread.is_alive(), "uvicorn exited"
        time.sleep(0.05)
    try:
        yield LiveServer(url=f"http://127.0.0.1:{port}", app=app, world=world)
    finally:
        app.state.ctx.stopping.set()  # ends open event streams
        server.should_exit = True
        thread.join(timeout=10)
        app.state.ctx.close()


@pytest.fixture
def live_server(world: World) -> Iterator[LiveServer]:
    with serve(world) as server:
        yield server
