"""STARTTLS with credentials against aiosmtpd (a self-signed certificate made in the
test): the client verifies the certificate, logs in only over TLS, and an
untrusted certificate means no mail and a recorded channel failure."""

from __future__ import annotations

import datetime as _dt
import ipaddress
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from channel_helpers import SMTP_PASS, SMTP_USER, Inbox, free_port, seed_users, text_of

from veto_core import Principal, ToolCall, Veto
from veto_core.approvals.channels.common import UserDirectory
from veto_core.approvals.channels.email import EmailChannel
from veto_core.config import EmailConfig, VetoConfig

POLICY = """
version: 1
name: tls
rules:
  - id: needs-ok
    effect: require_approval
    tools: [issue_refund]
    approval: {approvers: ["role:finance"], channels: [email]}
"""


def self_signed(tmp: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = _dt.datetime.now(_dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _dt.timedelta(minutes=5))
        .not_valid_after(now + _dt.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture
def tls_smtp(tmp_path: Path) -> Iterator[tuple[int, Inbox, Path]]:
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult, LoginPassword

    cert, key = self_signed(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    inbox = Inbox()

    def auth(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
            SMTP_USER.encode(),
            SMTP_PASS.encode(),
        )
        if ok:
            inbox.logins.append(SMTP_USER)
        return AuthResult(success=ok)

    port = free_port()
    controller = Controller(
        inbox,
        hostname="127.0.0.1",
        port=port,
        tls_context=context,
        require_starttls=True,
        authenticator=auth,
        auth_required=True,
        auth_require_tls=True,
    )
    controller.start()
    yield port, inbox, cert
    controller.stop()


def run(db: str, smtp_url: str) -> tuple[Veto, Any]:
    config = VetoConfig(
        db=db,
        secret_key="k" * 32,
        dashboard_url="https://veto.test",
        email=EmailConfig(smtp_url=smtp_url, sender="veto@acme.test"),
    )
    veto = Veto.from_yaml(POLICY, tenant="acme", db=db)
    veto.approvals.use_channels([EmailChannel(config, directory=UserDirectory(db))])
    auth = veto.authorize(
        ToolCall(
            tool="issue_refund",
            args={"amount": 5},
            principal=Principal(agent="bot", user="agent-user"),
            run_id="r",
            tool_call_id="c",
        )
    )
    return veto, auth


@pytest.mark.filterwarnings("ignore::ResourceWarning")
def test_starttls_login_and_untrusted_certificate(
    tmp_path: Path, tls_smtp: tuple[int, Inbox, Path]
) -> None:
    port, inbox, cert = tls_smtp
    db = str(tmp_path / "veto.db")
    seed_users(db)
    base = f"smtp://{SMTP_USER}:{SMTP_PASS}@127.0.0.1:{port}?starttls=1&timeout=5"

    veto, auth = run(db, f"{base}&cafile={cert}")
    msgs = inbox.wait_for(2)
    assert sorted(m["To"] for m in msgs) == ["alice@acme.test", "fiona@acme.test"]
    assert inbox.logins == [SMTP_USER] and "https://veto.test/approve/" in text_of(msgs[0])
    assert veto.approvals.get(auth.approval.id).state.value == "pending"
    veto.close()

    (tmp_path / "db2").mkdir()
    db2 = str(tmp_path / "db2" / "veto.db")
    seed_users(db2)
    veto, auth = run(db2, base)  # the system CAs do not trust the test certificate
    outcomes = [r.outcome for r in veto.audit.iter_records()]
    assert "approval_notify_failed" in outcomes
    assert len(inbox.messages) == 2  # nothing more was sent
    assert veto.approvals.get(auth.approval.id).state.value == "pending"
    veto.close()
