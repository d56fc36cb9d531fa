"""Server state shared by every route, and the authentication/authorization helpers.

Authentication: a session cookie (browser) or ``Authorization: Bearer veto_...``
(machines). Every state change made with a session cookie needs the session's
CSRF token (form field ``csrf_token`` or header ``X-CSRF-Token``); token requests
carry no ambient credentials and need none.

Authorization is per tenant. A tenant where the user has no role does not exist
for them (404, never 403, so ids and tenant names do not leak); a role too low
for the action is 403.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import hmac
import logging
import secrets
import threading
from dataclasses import dataclass, field
from typing import Any

from fastapi import HTTPException, Request

from veto_core.audit.log import AuditLog
from veto_core.audit.sink import AuditQuery
from veto_core.audit.verify import VerifyReport
from veto_core.server.bridge import Approvals
from veto_core.server.store import ServerStore, Session, User, env_secret, role_at_least

__all__ = [
    "CSRF_HEADER",
    "SESSION_COOKIE",
    "Identity",
    "LoginRequired",
    "ServerContext",
    "ServerSettings",
]

log = logging.getLogger("veto.server")

SESSION_COOKIE = "veto_session"
LOGIN_CSRF_COOKIE = "veto_login_csrf"
CSRF_HEADER = "x-csrf-token"


@dataclass(frozen=True, kw_only=True)
class ServerSettings:
    db: str
    cookie_secure: bool | None = None  # None: Secure when the request came over https
    session_lifetime_s: int = 12 * 3600
    session_idle_s: int = 2 * 3600
    login_max_failures: int = 5  # per user name, in login_window_s
    login_max_failures_ip: int = 50  # per client address, in login_window_s
    login_window_s: int = 15 * 60
    sse_poll_s: float = 0.5
    sse_max_s: float = 300.0  # the browser's EventSource reconnects after this
    list_refresh_s: float = 15.0  # the approvals list also refreshes this often
    verify_cache_s: float = 60.0


class LoginRequired(Exception):
    """A page needs a logged-in user: redirect to /login?next=..."""

    def __init__(self, next_url: str) -> None:
        self.next_url = next_url


@dataclass(frozen=True, kw_only=True)
class Identity:
    user: User
    via: str  # "session" | "token"
    session: Session | None = None

    @property
    def username(self) -> str:
        return self.user.username

    @property
    def csrf(self) -> str:
        return self.session.csrf if self.session else ""


@dataclass
class _RevisionIndex:
    last_ts: _dt.datetime | None = None
    last_seq: int = 0
    counts: dict[str, int] = field(default_factory=dict)


class ServerContext:
    def __init__(self, settings: ServerSettings, audit: AuditLog, store: ServerStore) -> None:
        self.settings = settings
        self.audit = audit
        self.store = store
        self.approvals = Approvals(settings.db, audit)
        secret = env_secret()
        if secret is None:
            secret = store.secret_key()
            log.warning(
                "VETO_SECRET_KEY is not set: using a generated key stored in the database; "
                "set VETO_SECRET_KEY to manage it yourself"
            )
        self.secret = secret.encode("utf-8")
        self.stopping = threading.Event()
        self._verify: dict[str, tuple[float, VerifyReport]] = {}
        self._revisions: dict[str, _RevisionIndex] = {}
        self._lock = threading.Lock()

    def close(self) -> None:
        self.stopping.set()
        self.approvals.close()
        self.audit.close()
        self.store.close()

    # -- identity ----------------------------------------------------------------------

    def identify(self, request: Request) -> Identity | None:
        auth = request.headers.get("authorization")
        if auth:
            scheme, _, value = auth.partition(" ")
            if scheme.lower() != "bearer" or not value.strip():
                return None
            user = self.store.token_user(value.strip())
            return None if user is None else Identity(user=user, via="token")
        token = request.cookies.get(SESSION_COOKIE)
        if not token:
            return None
        session = self.store.get_session(token, idle_timeout_s=self.settings.session_idle_s)
        if session is None:
            return None
        user = self.store.get_user(session.username)
        if user is None or user.disabled:
            return None
        return Identity(user=user, via="session", session=session)

    def api_identity(self, request: Request) -> Identity:
        ident = self.identify(request)
        if ident is None:
            raise HTTPException(
                401, "authentication required", headers={"WWW-Authenticate": "Bearer"}
            )
        return ident

    def page_identity(self, request: Request) -> Identity:
        ident = self.identify(request)
        if ident is None:
            path = request.url.path
            if request.url.query:
                path += "?" + request.url.query
            raise LoginRequired(path)
        return ident

    # -- CSRF --------------------------------------------------------------------------

    def check_csrf(self, request: Request, ident: Identity, form_token: str | None) -> None:
        """A cookie-authenticated state change must carry the session's CSRF token."""
        if ident.via == "token":
            return
        sent = request.headers.get(CSRF_HEADER) or form_token or ""
        if not ident.session or not hmac.compare_digest(sent.encode(), ident.csrf.encode()):
            raise HTTPException(403, "CSRF token missing or invalid")
        origin = request.headers.get("origin")
        if origin and origin != "null":
            expected = f"{request.url.scheme}://{request.url.netloc}"
            if origin.rstrip("/") != expected:
                raise HTTPException(403, "cross-origin request refused")

    def login_csrf_pair(self) -> tuple[str, str]:
        """(cookie nonce, form token) for the login form (double-submit, HMAC-bound)."""
        nonce = secrets.token_urlsafe(24)
        return nonce, self._mac("login-csrf", nonce)

    def login_csrf_ok(self, nonce: str | None, token: str | None) -> bool:
        if not nonce or not token:
            return False
        return hmac.compare_digest(self._mac("login-csrf", nonce), token)

    def _mac(self, purpose: str, value: str) -> str:
        return hmac.new(self.secret, f"{purpose}:{value}".encode(), hashlib.sha256).hexdigest()

    # -- tenants -----------------------------------------------------------------------

    def tenant(self, ident: Identity, tenant: str | None, minimum: str = "viewer") -> str:
        """The tenant the request acts on; 404 if the user has no role there."""
        if tenant is None or tenant == "":
            tenants = ident.user.tenants
            if not tenants:
                raise HTTPException(404, "no tenant")
            tenant = tenants[0]
        role = ident.user.role(tenant)
        if role is None:
            raise HTTPException(404, "not found")
        if not role_at_least(role, minimum):
            raise HTTPException(403, f"this needs the {minimum} role in tenant {tenant!r}")
        return tenant

    def readable_tenants(self, ident: Identity) -> list[str]:
        return ident.user.tenants

    # -- cached views ------------------------------------------------------------------

    def verify(self, tenant: str, *, refresh: bool = False) -> VerifyReport:
        import time

        now = time.monotonic()
        with self._lock:
            hit = self._verify.get(tenant)
        if hit is not None and not refresh and now - hit[0] < self.settings.verify_cache_s:
            return hit[1]
        report = self.audit.verify(tenant)
        with self._lock:
            self._verify[tenant] = (now, report)
        return report

    def tenant_revisions(self, tenant: str) -> dict[str, int]:
        """Policy revisions that decided some record of ``tenant`` (revision -> records)."""
        with self._lock:
            idx = self._revisions.setdefault(tenant, _RevisionIndex())
            q = AuditQuery(tenant=tenant, since=idx.last_ts)
            for r in self.audit.iter_records(q):
                if idx.last_ts is not None and r.ts == idx.last_ts and r.seq <= idx.last_seq:
                    continue
                if r.policy_revision:
                    idx.counts[r.policy_revision] = idx.counts.get(r.policy_revision, 0) + 1
                idx.last_ts, idx.last_seq = r.ts, r.seq  # records come oldest first
            return dict(idx.counts)


def safe_next(value: str | None) -> str:
    """A post-login redirect target on this site only (no open redirect)."""
    if not value or not value.startswith("/") or value.startswith(("//", "/\\")):
        return "/"
    if any(c in value for c in "\\\r\n\t") or any(ord(c) < 32 for c in value):
        return "/"
    return value


def client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def page_args(**kwargs: Any) -> dict[str, Any]:
    return kwargs
