"""Helpers of the Slack and email channel tests: a local fake Slack Web API, a real
SMTP server (aiosmtpd), a seeded database, the app, signed Slack interactions.

Nothing here reaches the network beyond 127.0.0.1.
"""

from __future__ import annotations

import email
import email.policy
import hashlib
import hmac
import json
import re
import secrets
import socket
import threading
import time
import urllib.parse
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from veto_core import Principal, ToolCall, Veto
from veto_core.approvals.channels.common import UserDirectory
from veto_core.approvals.channels.email import EmailChannel
from veto_core.approvals.channels.slack import APPROVE_ACTION, SlackChannel
from veto_core.config import EmailConfig, SlackConfig, VetoConfig
from veto_core.server import ServerSettings, create_app, open_server_store

PASSWORD = "correct horse battery"
BOT_TOKEN = "xoxb-test-bot-token"
SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
SECRET_KEY = "test-secret-key-for-email-tokens"
SMTP_USER, SMTP_PASS = "veto", "smtp-pass"
DASHBOARD = "http://veto.test"

POLICY = """
version: 1
name: channels-test
default: deny
redact: [args.card_number]
rules:
  - id: refunds-large
    effect: require_approval
    tools: [issue_refund]
    approval: {approvers: ["role:finance"], quorum: 1, timeout: 30m, channels: [slack, email]}
    reason: Refunds need a finance approver
  - id: wires-two-people
    effect: require_approval
    tools: [wire_transfer]
    approval: {approvers: ["role:finance"], quorum: 2, timeout: 30m, channels: [slack, email]}
    reason: Wires need two finance approvers
  - id: quick
    effect: require_approval
    tools: [quick_tool]
    approval: {approvers: ["role:finance"], quorum: 1, timeout: 1s, channels: [slack, email]}
    reason: Short-lived request
"""

# user -> (role in acme, policy roles, email)
USERS: dict[str, tuple[str, tuple[str, ...], str | None]] = {
    "alice": ("approver", ("finance",), "alice@acme.test"),
    "fiona": ("approver", ("finance",), "fiona@acme.test"),
    "dave": ("approver", (), "dave@acme.test"),  # approver, but not finance: ineligible
    "agent-user": ("approver", ("finance",), "agent@acme.test"),  # the requester
    "victor": ("viewer", ("finance",), "victor@acme.test"),  # viewer: never decides
}

# Slack user id -> email users.info returns (fiona is mapped explicitly instead)
SLACK_EMAILS = {
    "UALICE": "alice@acme.test",
    "UDAVE": "dave@acme.test",
    "UAGENT": "agent@acme.test",
    "UVICTOR": "victor@acme.test",
    "USTRANGER": "stranger@elsewhere.test",
}
SLACK_MAPPING = {"UFIONA": "fiona"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        assert isinstance(port, int)
        return port


def wait_until(pred: Any, timeout: float = 10.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = pred()
        if got:
            return got
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


# --------------------------------------------------------------------------- fake Slack


@dataclass
class SlackCall:
    method: str
    data: dict[str, Any]
    auth: str | None


class FakeSlack:
    """A Slack Web API on 127.0.0.1 that records what it is sent."""

    def __init__(self, emails: dict[str, str]) -> None:
        self.emails = dict(emails)
        self.delay_s = 0.0  # slow every answer down (Slack's 3-second budget)
        self.calls: list[SlackCall] = []
        self._lock = threading.Lock()
        self._ts = 0
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _answer(self, data: dict[str, Any]) -> None:
                method = self.path.split("?")[0].rsplit("/", 1)[-1]
                auth = self.headers.get("Authorization")
                with fake._lock:
                    fake.calls.append(SlackCall(method, data, auth))
                time.sleep(fake.delay_s)
                body = json.dumps(fake.answer(method, data, auth)).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                ctype = self.headers.get("Content-Type") or ""
                if "json" in ctype:
                    data = json.loads(raw or b"{}")
                else:
                    data = {k: v[-1] for k, v in urllib.parse.parse_qs(raw.decode()).items()}
                self._answer(data)

            def do_GET(self) -> None:
                query = urllib.parse.urlsplit(self.path).query
                self._answer({k: v[-1] for k, v in urllib.parse.parse_qs(query).items()})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/api/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def answer(self, method: str, data: dict[str, Any], auth: str | None) -> dict[str, Any]:
        if auth != f"Bearer {BOT_TOKEN}":
            return {"ok": False, "error": "not_authed"}
        if method == "chat.postMessage":
            with self._lock:
                self._ts += 1
                ts = f"1700000000.{self._ts:06d}"
            return {"ok": True, "channel": data.get("channel"), "ts": ts}
        if method == "chat.update":
            return {"ok": True, "channel": data.get("channel"), "ts": data.get("ts")}
        if method == "chat.postEphemeral":
            return {"ok": True, "message_ts": "1700000000.999999"}
        if method == "users.info":
            user = data.get("user")
            if user not in self.emails:
                return {"ok": False, "error": "user_not_found"}
            return {"ok": True, "user": {"id": user, "profile": {"email": self.emails[user]}}}
        return {"ok": False, "error": "unknown_method"}

    def of(self, method: str) -> list[SlackCall]:
        with self._lock:
            return [c for c in self.calls if c.method == method]

    def wait_for(self, method: str, n: int = 1, timeout: float = 10.0) -> list[SlackCall]:
        return list(
            wait_until(
                lambda: len(self.of(method)) >= n and self.of(method), timeout, f"{n} x {method}"
            )
        )

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def interaction_body(
    request_id: str,
    user: str,
    action: str = APPROVE_ACTION,
    *,
    channel: str = "C0VETO",
    ts: str = "1700000000.000001",
) -> bytes:
    payload = {
        "type": "block_actions",
        "user": {"id": user, "username": user.lower()},
        "team": {"id": "T0TEAM"},
        "channel": {"id": channel},
        "container": {"type": "message", "message_ts": ts, "channel_id": channel},
        "message": {"ts": ts, "text": "Approval needed"},
        "response_url": "http://127.0.0.1:9/never-used",
        "actions": [
            {
                "type": "button",
                "action_id": action,
                "block_id": "veto_actions",
                "value": request_id,
                "action_ts": f"{time.time():.6f}",
            }
        ],
    }
    return urllib.parse.urlencode({"payload": json.dumps(payload)}).encode()


def slack_signature(body: bytes, timestamp: str, secret: str = SIGNING_SECRET) -> str:
    base = b"v0:" + timestamp.encode() + b":" + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def signed_headers(
    body: bytes, *, timestamp: int | None = None, secret: str = SIGNING_SECRET
) -> dict[str, str]:
    ts = str(int(time.time()) if timestamp is None else timestamp)
    return {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": slack_signature(body, ts, secret),
    }


# --------------------------------------------------------------------------- SMTP


class Inbox:
    """Collects what the aiosmtpd server receives."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self.logins: list[str] = []
        self._lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        with self._lock:
            self.messages.append(msg)
            self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        return "250 OK"

    def to(self, address: str) -> list[EmailMessage]:
        with self._lock:
            return [m for m in self.messages if m["To"] == address]

    def wait_for(self, n: int, timeout: float = 10.0) -> list[EmailMessage]:
        wait_until(lambda: len(self.messages) >= n, timeout, f"{n} messages")
        with self._lock:
            return list(self.messages)


def text_of(msg: EmailMessage) -> str:
    part = msg.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())


def html_of(msg: EmailMessage) -> str:
    part = msg.get_body(preferencelist=("html",))
    assert part is not None
    return str(part.get_content())


def link_token(msg: EmailMessage) -> str:
    m = re.search(re.escape(DASHBOARD) + r"/approve/([A-Za-z0-9_\-.]+)", text_of(msg))
    assert m, text_of(msg)
    return m.group(1)


@dataclass
class SmtpServer:
    port: int
    inbox: Inbox
    controller: Any

    @property
    def url(self) -> str:
        return f"smtp://{SMTP_USER}:{SMTP_PASS}@127.0.0.1:{self.port}"


# --------------------------------------------------------------------------- world


@dataclass
class World:
    db: str
    config: VetoConfig
    veto: Veto
    app: FastAPI
    slack: FakeSlack
    smtp: SmtpServer
    clients: list[TestClient] = field(default_factory=list)

    def call(
        self,
        tool: str = "issue_refund",
        amount: float = 250.0,
        *,
        user: str = "agent-user",
    ) -> Any:
        return self.veto.authorize(self.tool_call(tool, amount, user=user))

    def tool_call(
        self, tool: str = "issue_refund", amount: float = 250.0, *, user: str = "agent-user"
    ) -> ToolCall:
        return ToolCall(
            tool=tool,
            args={"amount": amount, "currency": "EUR", "card_number": "4111111111111111"},
            principal=Principal(agent="support-bot", roles=("support",), user=user),
            run_id=f"run-{secrets.token_hex(3)}",
            tool_call_id=f"call-{secrets.token_hex(3)}",
            framework="test",
        )

    def client(self, username: str | None = None) -> TestClient:
        c = TestClient(self.app, base_url=DASHBOARD)
        self.clients.append(c)
        if username is not None:
            login(c, username)
        return c

    def state(self, request_id: str) -> str:
        return str(self.veto.approvals.get(request_id).state.value)

    def outcomes(self, request_id: str) -> list[tuple[str, str | None]]:
        """(outcome, channel) of every audit record of the request, oldest first."""
        out = []
        for r in self.veto.audit.iter_records():
            if r.approval is not None and r.approval.id == request_id:
                out.append((r.outcome, r.approval.channel))
        return out


def make_config(db: str, slack_url: str, smtp_url: str) -> VetoConfig:
    return VetoConfig(
        db=db,
        secret_key=SECRET_KEY,
        dashboard_url=DASHBOARD,
        slack=SlackConfig(
            bot_token=BOT_TOKEN,
            signing_secret=SIGNING_SECRET,
            channel="C0VETO",
            api_url=slack_url,
            users=SLACK_MAPPING,
        ),
        email=EmailConfig(smtp_url=smtp_url, sender="veto@acme.test"),
    )


def channels_for(config: VetoConfig) -> list[Any]:
    directory = UserDirectory(config.db)
    return [
        SlackChannel(config.slack, directory=directory),
        EmailChannel(config, directory=directory),
    ]


def seed_users(db: str) -> None:
    store = open_server_store(db)
    try:
        for name, (role, prs, mail) in USERS.items():
            store.add_user(name, PASSWORD, tenant="acme", role=role, policy_roles=prs, email=mail)
    finally:
        store.close()


def login(client: TestClient, username: str) -> None:
    page = client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token, page.text
    r = client.post(
        "/login",
        data={
            "username": username,
            "password": PASSWORD,
            "csrf_token": token.group(1),
            "next": "/",
        },
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf_token" value="([^"]*)"', html)
    assert m, html
    return m.group(1)


@pytest.fixture
def fake_slack() -> Iterator[FakeSlack]:
    fake = FakeSlack(SLACK_EMAILS)
    yield fake
    fake.close()


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult, LoginPassword

    inbox = Inbox()

    def authenticator(
        server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and (
            auth_data.login == SMTP_USER.encode() and auth_data.password == SMTP_PASS.encode()
        )
        if ok:
            inbox.logins.append(auth_data.login.decode())
        return AuthResult(success=ok)

    port = free_port()
    controller = Controller(
        inbox,
        hostname="127.0.0.1",
        port=port,
        authenticator=authenticator,
        auth_require_tls=False,
        auth_required=True,
    )
    with warnings.catch_warnings():  # AUTH without TLS: fine on 127.0.0.1 in a test
        warnings.simplefilter("ignore", UserWarning)
        controller.start()
    yield SmtpServer(port=port, inbox=inbox, controller=controller)
    controller.stop()


@pytest.fixture
def world(tmp_path: Path, fake_slack: FakeSlack, smtp: SmtpServer) -> Iterator[World]:
    db = str(tmp_path / "veto.db")
    seed_users(db)
    config = make_config(db, fake_slack.url, smtp.url)
    veto = Veto.from_yaml(POLICY, env="prod", tenant="acme", db=db)
    veto.approvals.use_channels(channels_for(config))
    app = create_app(settings=ServerSettings(db=db), config=config)
    w = World(db=db, config=config, veto=veto, app=app, slack=fake_slack, smtp=smtp)
    yield w
    for c in w.clients:
        c.close()
    app.state.ctx.close()
    veto.close()
