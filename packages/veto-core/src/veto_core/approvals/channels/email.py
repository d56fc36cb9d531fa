"""``email`` channel: one message per eligible approver, with a link to ``veto serve``.

Enabled when ``VETO_SMTP_URL`` (or ``[email] smtp_url``) is set; needs
``VETO_DASHBOARD_URL`` (where ``veto serve`` is reachable) and a sender
(``VETO_SMTP_FROM``). Recipients are the ``veto serve`` users of the request's
tenant who hold the approver role, are eligible under the rule's ``approvers``,
and have an email address.

Each link carries a token: ``base64url(claims) "." base64url(HMAC-SHA256)`` under
``VETO_SECRET_KEY`` (or the key ``veto serve`` generated in the database). The
claims bind it to one request and one approver, with an expiry (at most
``token_ttl`` and never past the request's deadline) and a random id that the
server stores when the token is used, so it works once. Opening the link (GET)
shows a confirm page and changes nothing; only the form's POST decides, and only
for the approver the link was sent to, logged in.

Sending uses the standard library (``smtplib``): STARTTLS with
``?starttls=1``, implicit TLS with ``smtps://``, login when the URL has credentials.
"""

from __future__ import annotations

import base64
import datetime as _dt
import hashlib
import hmac
import html
import json
import logging
import secrets
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from veto_core.approvals.channels.common import UserDirectory, pretty_args, summary_lines
from veto_core.approvals.model import ApprovalLinks, ApprovalRequest
from veto_core.config import ConfigError, EmailConfig, SmtpSettings, VetoConfig, load_config
from veto_core.hookspecs import ApprovalChannel, hookimpl

if TYPE_CHECKING:
    import smtplib
    from email.message import EmailMessage

# smtplib, ssl and email.message are imported when mail is sent: every process that
# opens the store registers this plugin, and `veto` must start fast (DESIGN.md 8).

__all__ = [
    "EmailChannel",
    "TokenClaims",
    "TokenError",
    "make_token",
    "read_token",
    "smtp_connection",
    "veto_approval_channels",
]

log = logging.getLogger("veto.approvals.email")

_PURPOSE = b"veto-email-approval-v1:"


class TokenError(Exception):
    """An approval link token that is malformed, forged or expired."""


@dataclass(frozen=True, kw_only=True, slots=True)
class TokenClaims:
    request_id: str
    approver: str  # the veto serve user name the link was sent to
    tenant: str
    expires_at: _dt.datetime
    jti: str  # random; stored by the server when used (single use)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(key: bytes, body: str) -> bytes:
    return hmac.new(key, _PURPOSE + body.encode("ascii"), hashlib.sha256).digest()


def make_token(
    secret: str | bytes,
    *,
    request_id: str,
    approver: str,
    tenant: str,
    expires_at: _dt.datetime,
    jti: str | None = None,
) -> str:
    key = secret.encode("utf-8") if isinstance(secret, str) else secret
    claims = {
        "r": request_id,
        "a": approver,
        "t": tenant,
        "e": int(expires_at.timestamp()),
        "j": jti or secrets.token_urlsafe(16),
    }
    body = _b64(json.dumps(claims, separators=(",", ":"), sort_keys=True).encode("utf-8"))
    return f"{body}.{_b64(_mac(key, body))}"


def read_token(secret: str | bytes, token: str, *, now: _dt.datetime | None = None) -> TokenClaims:
    """The claims of a genuine, unexpired token; else :class:`TokenError`.
    (Whether it was used already is the server's store to say.)"""
    key = secret.encode("utf-8") if isinstance(secret, str) else secret
    if not isinstance(token, str) or len(token) > 2000 or token.count(".") != 1:
        raise TokenError("malformed approval link")
    body, sig = token.split(".")
    try:
        given = _unb64(sig)
        body.encode("ascii")
    except (ValueError, UnicodeEncodeError):
        raise TokenError("malformed approval link") from None
    if not hmac.compare_digest(_mac(key, body), given):
        raise TokenError("this approval link is not valid")
    try:
        raw = json.loads(_unb64(body))
        claims = TokenClaims(
            request_id=str(raw["r"]),
            approver=str(raw["a"]),
            tenant=str(raw["t"]),
            expires_at=_dt.datetime.fromtimestamp(int(raw["e"]), _dt.UTC),
            jti=str(raw["j"]),
        )
    except (ValueError, KeyError, TypeError, OverflowError):
        raise TokenError("malformed approval link") from None
    if (now or _dt.datetime.now(_dt.UTC)) >= claims.expires_at:
        raise TokenError("this approval link has expired")
    return claims


@contextmanager
def smtp_connection(settings: SmtpSettings) -> Iterator[smtplib.SMTP]:
    """A logged-in SMTP session (STARTTLS / implicit TLS as configured)."""
    import smtplib
    import ssl

    context = ssl.create_default_context(cafile=settings.ca_file)
    smtp: smtplib.SMTP
    if settings.ssl:
        smtp = smtplib.SMTP_SSL(
            settings.host, settings.port, timeout=settings.timeout_s, context=context
        )
    else:
        smtp = smtplib.SMTP(settings.host, settings.port, timeout=settings.timeout_s)
    try:
        smtp.ehlo()
        if settings.starttls:
            smtp.starttls(context=context)
            smtp.ehlo()
        if settings.username:
            smtp.login(settings.username, settings.password or "")
        yield smtp
    finally:
        try:
            smtp.quit()
        except (smtplib.SMTPException, OSError):
            smtp.close()


def build_message(
    request: ApprovalRequest, *, sender: str, to: str, name: str, link: str
) -> EmailMessage:
    from email.message import EmailMessage
    from email.utils import make_msgid

    rows = summary_lines(request)
    args = pretty_args(request)
    msg = EmailMessage()
    msg["Subject"] = f"[Veto] Approval needed: {request.tool} ({request.tenant})"
    msg["From"] = sender
    msg["To"] = to
    msg["Message-ID"] = make_msgid(domain="veto.local")
    msg["X-Veto-Request"] = request.id
    width = max(len(label) for label, _ in rows)
    text = "\n".join(
        [
            f"Hello {name},",
            "",
            "An agent's tool call is waiting for your decision.",
            "",
            *(f"{label.ljust(width)}  {value}" for label, value in rows),
            "",
            "Arguments:",
            args,
            "",
            "Open this link to review it, then approve or deny (opening it decides nothing):",
            link,
            "",
            "The link works once, only for you, until the request expires.",
        ]
    )
    msg.set_content(text)
    e = html.escape
    table = "".join(
        f"<tr><th align='left' style='padding-right:1em'>{e(label)}</th><td>{e(value)}</td></tr>"
        for label, value in rows
    )
    msg.add_alternative(
        "<html><body>"
        f"<p>Hello {e(name)},</p><p>An agent's tool call is waiting for your decision.</p>"
        f"<table>{table}</table><p><b>Arguments</b></p><pre>{e(args)}</pre>"
        f'<p><a href="{e(link)}">Review and decide</a> (opening the link decides nothing)</p>'
        "<p style='color:#666'>The link works once, only for you, until the request expires.</p>"
        "</body></html>",
        subtype="html",
    )
    return msg


class EmailChannel:
    """Mails each eligible approver a single-use link to ``/approve/{token}``."""

    name = "email"

    def __init__(
        self,
        config: VetoConfig,
        *,
        directory: UserDirectory | None = None,
        clock: Callable[[], _dt.datetime] | None = None,
    ) -> None:
        self.config = config
        self.email: EmailConfig = config.email
        self.directory = directory or UserDirectory(config.db)
        self.clock = clock or (lambda: _dt.datetime.now(_dt.UTC))

    def _secret(self) -> str:
        return self.config.secret_key or self.directory.secret_key()

    def _base_url(self) -> str:
        base = self.config.dashboard_url
        if not base:
            raise RuntimeError("VETO_DASHBOARD_URL is not set: approval links need it")
        return base.rstrip("/")

    def _sender(self) -> str:
        if not self.email.sender:
            raise RuntimeError("VETO_SMTP_FROM is not set")
        return self.email.sender

    def notify(self, request: ApprovalRequest, links: ApprovalLinks) -> None:
        recipients = [u for u in self.directory.eligible(request) if u.email]
        if not recipients:
            raise RuntimeError(
                f"no eligible approver with an email address in tenant {request.tenant!r} "
                f"(approvers: {request.needs})"
            )
        base, sender, secret = self._base_url(), self._sender(), self._secret()
        expires = min(
            request.expires_at, self.clock() + _dt.timedelta(seconds=self.email.token_ttl_s)
        )
        messages = []
        for user in recipients:
            token = make_token(
                secret,
                request_id=request.id,
                approver=user.username,
                tenant=request.tenant,
                expires_at=expires,
            )
            assert user.email is not None
            messages.append(
                build_message(
                    request,
                    sender=sender,
                    to=user.email,
                    name=user.username,
                    link=f"{base}/approve/{token}",
                )
            )
        self._send(messages)

    def _send(self, messages: Sequence[EmailMessage]) -> None:
        with smtp_connection(self.email.smtp()) as smtp:
            for msg in messages:
                smtp.send_message(msg)

    def send_test(self, to: str) -> None:
        """``veto channels test email --to ADDR``."""
        from email.message import EmailMessage

        msg = EmailMessage()
        msg["Subject"] = "[Veto] test message"
        msg["From"] = self._sender()
        msg["To"] = to
        msg.set_content("Veto can send approval requests to this address.")
        self._send([msg])


@hookimpl
def veto_approval_channels() -> list[ApprovalChannel]:
    try:
        config = load_config()
    except ConfigError as exc:
        log.error("email channel disabled: %s", exc)
        return []
    if not config.email.smtp_url:
        return []
    return [EmailChannel(config)]
