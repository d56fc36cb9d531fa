"""The endpoints through which Slack and email approvers decide (DESIGN.md 5, 6).

``POST /slack/interactions`` (Slack's interactivity URL):

1. the ``v0`` signature (HMAC-SHA256 of ``v0:timestamp:body`` under the signing
   secret) is checked in constant time by ``slack_sdk``'s ``SignatureVerifier``,
   which also refuses timestamps more than 5 minutes off: else 401;
2. the (timestamp, signature) pair is remembered in the database: a payload seen
   before is a replay and decides nothing (409);
3. Slack gets its 200 at once; a background task maps the Slack user to a
   ``veto serve`` user (``[slack] users`` in ``veto.toml``, else the email that
   ``users.info`` returns), requires the approver role in the request's tenant,
   casts the vote through the approval service (eligibility, quorum, no
   self-approval, expiry) and rewrites the original message with the outcome;
   a refusal is told to the clicker alone (``chat.postEphemeral``).

``GET /approve/{token}`` shows a confirm page (changes nothing: mail scanners
prefetch links); ``POST /approve/{token}`` decides. Both need the session of the
user the link was sent to; the POST needs the session's CSRF token and marks the
token used before voting, so it works once.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import threading
import time
import urllib.parse
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import BackgroundTasks, FastAPI, Form, HTTPException, Request, Response
from fastapi.responses import JSONResponse
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool

from veto_core.approvals.channels.email import TokenClaims, TokenError, read_token
from veto_core.config import VetoConfig
from veto_core.server.bridge import Closed, NotFound, Refused, request_view
from veto_core.server.store import ServerStoreError, User, _Db, role_at_least

if TYPE_CHECKING:
    from slack_sdk import WebClient

    from veto_core.server.context import Identity, ServerContext

__all__ = ["ChannelState", "install_channel_routes"]

log = logging.getLogger("veto.server.channels")

COMPONENT = "channels"
_V1 = """
CREATE TABLE IF NOT EXISTS channel_replay (key TEXT PRIMARY KEY, ts_us BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS channel_used_tokens (
    jti TEXT PRIMARY KEY, request_id TEXT NOT NULL, approver TEXT NOT NULL,
    used_us BIGINT NOT NULL)
"""
MIGRATIONS: tuple[str, ...] = (_V1,)
REPLAY_KEEP_S = 15 * 60  # > the 5-minute freshness window: older replays are stale anyway
USER_CACHE_S = 300.0


def _now_us() -> int:
    return time.time_ns() // 1000


class ChannelState:
    """Seen Slack payloads and used email tokens, in the server's database."""

    def __init__(self, db: _Db) -> None:
        self._db = db  # the server store's connection (closed with it)
        self._migrate()

    def _migrate(self) -> None:
        def too_new(current: int, supported: int) -> ServerStoreError:
            return ServerStoreError(
                f"channel tables schema version {current} is newer than this veto-core"
            )

        self._db.migrate(component=COMPONENT, migrations=MIGRATIONS, too_new=too_new)

    def first_sighting(self, key: str) -> bool:
        """True the first time ``key`` is seen (atomically); False for a replay."""
        now = _now_us()

        def work(ex: Callable[..., list[Any]]) -> bool:
            ex("DELETE FROM channel_replay WHERE ts_us < ?", (now - REPLAY_KEEP_S * 1_000_000,))
            if ex("SELECT 1 FROM channel_replay WHERE key = ?", (key,)):
                return False
            ex("INSERT INTO channel_replay (key, ts_us) VALUES (?, ?)", (key, now))
            return True

        return bool(self._db.tx(work))

    def token_used(self, jti: str) -> bool:
        return bool(self._db.read("SELECT 1 FROM channel_used_tokens WHERE jti = ?", (jti,)))

    def use_token(self, claims: TokenClaims) -> bool:
        """Mark the token used; True exactly once per token."""

        def work(ex: Callable[..., list[Any]]) -> bool:
            if ex("SELECT 1 FROM channel_used_tokens WHERE jti = ?", (claims.jti,)):
                return False
            ex(
                "INSERT INTO channel_used_tokens (jti, request_id, approver, used_us) "
                "VALUES (?, ?, ?, ?)",
                (claims.jti, claims.request_id, claims.approver, _now_us()),
            )
            return True

        return bool(self._db.tx(work))


class _SlackUsers:
    """Slack user id -> ``veto serve`` user: explicit mapping, else by email."""

    def __init__(self, ctx: ServerContext, config: VetoConfig, client: Callable[[], WebClient]):
        self.ctx = ctx
        self.mapping = dict(config.slack.users)
        self.client = client
        self._cache: dict[str, tuple[float, str | None]] = {}
        self._lock = threading.Lock()

    def resolve(self, slack_user: str) -> User | None:
        name = self.mapping.get(slack_user)
        if name is not None:
            return self.ctx.store.get_user(name)
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(slack_user)
        if hit is not None and now - hit[0] < USER_CACHE_S:
            email = hit[1]
        else:
            info = self.client().users_info(user=slack_user)
            profile = (info.get("user") or {}).get("profile") or {}
            email = profile.get("email") if isinstance(profile, dict) else None
            with self._lock:
                self._cache[slack_user] = (now, email)
        if not email:
            return None
        want = str(email).strip().casefold()
        found = [
            u for u in self.ctx.store.list_users() if u.email and u.email.strip().casefold() == want
        ]
        return found[0] if len(found) == 1 else None  # none or ambiguous: nobody


def install_channel_routes(
    app: FastAPI, ctx: ServerContext, config: VetoConfig, templates: Jinja2Templates
) -> None:
    """Register ``POST /slack/interactions`` and ``GET|POST /approve/{token}``."""
    state = ChannelState(ctx.store._db)
    app.state.channel_state = state
    secret_holder: dict[str, str] = {}

    def token_secret() -> str:
        if "key" not in secret_holder:
            secret_holder["key"] = config.secret_key or ctx.store.secret_key()
        return secret_holder["key"]

    _slack_routes(app, ctx, config, state)
    _email_routes(app, ctx, config, state, templates, token_secret)


# --------------------------------------------------------------------------- Slack


def _slack_routes(
    app: FastAPI, ctx: ServerContext, config: VetoConfig, state: ChannelState
) -> None:
    from veto_core.approvals.channels.slack import (
        APPROVE_ACTION,
        DENY_ACTION,
        outcome_blocks,
        outcome_text,
        slack_client,
    )

    client_holder: list[WebClient] = []

    def client() -> WebClient:
        if not client_holder:
            client_holder.append(slack_client(config.slack))
        return client_holder[0]

    users = _SlackUsers(ctx, config, client)

    def verify(body: bytes, timestamp: str | None, signature: str | None) -> bool:
        secret = config.slack.signing_secret
        if not secret or not timestamp or not signature:
            return False
        try:
            int(timestamp)
            from slack_sdk.signature import SignatureVerifier
        except (ValueError, ImportError):
            return False
        return SignatureVerifier(secret).is_valid(body, timestamp, signature)

    def tell(channel: str | None, user: str, text: str) -> None:
        if not channel:
            return
        try:
            client().chat_postEphemeral(channel=channel, user=user, text=text)
        except Exception as exc:
            log.warning("Slack: could not tell %s: %s", user, exc)

    def update(channel: str | None, ts: str | None, req: Any) -> None:
        if not channel or not ts:
            return
        try:
            client().chat_update(
                channel=channel, ts=ts, text=outcome_text(req), blocks=outcome_blocks(req)
            )
        except Exception as exc:
            log.warning("Slack: could not update the message of request %s: %s", req.id, exc)

    def handle(payload: dict[str, Any], action: dict[str, Any]) -> None:
        """The click, after Slack got its 200: map, decide, update. Never approves on error."""
        slack_user = str((payload.get("user") or {}).get("id") or "")
        container = payload.get("container") or {}
        channel = (payload.get("channel") or {}).get("id") or container.get("channel_id")
        ts = (payload.get("message") or {}).get("ts") or container.get("message_ts")
        request_id = str(action.get("value") or "")
        approve = action.get("action_id") == APPROVE_ACTION
        try:
            svc = ctx.approvals.service()
            from veto_core.approvals import ApprovalNotFound

            try:
                req = svc.get(request_id)
            except ApprovalNotFound:
                log.warning("Slack: click by %s on unknown request %r", slack_user, request_id)
                tell(channel, slack_user, "Veto: this approval request does not exist.")
                return
            try:
                user = users.resolve(slack_user)
            except Exception as exc:
                log.warning("Slack: cannot look up user %s: %s", slack_user, exc)
                user = None
            if user is None or user.disabled:
                log.warning("Slack: %s is not linked to a Veto user; nothing decided", slack_user)
                tell(channel, slack_user, "Veto: your Slack account is not linked to a Veto "
                     "approver, so your click was not counted.")  # fmt: skip
                return
            if not role_at_least(user.role(req.tenant), "approver"):
                log.warning(
                    "Slack: %s (%s) has no approver role in tenant %s; nothing decided",
                    slack_user, user.username, req.tenant,
                )  # fmt: skip
                tell(channel, slack_user, f"Veto: {user.username} may not decide approvals "
                     f"in tenant {req.tenant}; nothing was decided.")  # fmt: skip
                return
            try:
                after = ctx.approvals.decide(
                    request_id,
                    username=user.username,
                    email=user.email,
                    policy_roles=user.approver_roles(req.tenant),
                    tenant=req.tenant,
                    approve=approve,
                    via="slack",
                    reason=None,
                )
            except Closed as exc:
                update(channel, ts, svc.get(request_id))
                tell(channel, slack_user, f"Veto: {exc}")
                return
            except (Refused, NotFound) as exc:
                log.warning("Slack: vote by %s refused: %s", user.username, exc)
                tell(channel, slack_user, f"Veto: your vote was refused: {exc}")
                return
            log.info(
                "Slack: %s voted to %s request %s; it is %s",
                user.username, "approve" if approve else "deny", request_id, after.state.value,
            )  # fmt: skip
            update(channel, ts, after)
        except Exception as exc:  # fail closed: log, nothing approved
            log.error("Slack: click on request %s failed: %s", request_id, exc)
            tell(channel, slack_user, f"Veto: your click could not be processed: {exc}")

    @app.post("/slack/interactions", include_in_schema=False)
    async def slack_interactions(request: Request, background: BackgroundTasks) -> Response:
        if not config.slack.signing_secret:
            return JSONResponse({"detail": "Slack is not configured on this server"}, 503)
        body = await request.body()
        timestamp = request.headers.get("x-slack-request-timestamp")
        signature = request.headers.get("x-slack-signature")
        if not verify(body, timestamp, signature):
            log.warning(
                "Slack: refused an interaction from %s: bad signature or stale timestamp",
                request.client.host if request.client else "?",
            )
            return JSONResponse({"detail": "invalid or stale Slack signature"}, 401)
        assert timestamp is not None and signature is not None
        key = hashlib.sha256(f"slack:{timestamp}:{signature}".encode()).hexdigest()
        if not await run_in_threadpool(state.first_sighting, key):
            log.warning("Slack: refused a replayed interaction (timestamp %s)", timestamp)
            return JSONResponse({"detail": "replayed Slack payload"}, 409)
        try:
            form = urllib.parse.parse_qs(body.decode("utf-8"), strict_parsing=False)
            payload = json.loads(form["payload"][0])
            if not isinstance(payload, dict):
                raise ValueError("payload is not an object")
        except (KeyError, ValueError, UnicodeDecodeError) as exc:
            return JSONResponse({"detail": f"malformed Slack payload: {exc}"}, 400)
        if payload.get("type") != "block_actions":
            return Response(status_code=200)  # not ours to act on
        for action in payload.get("actions") or []:
            if isinstance(action, dict) and action.get("action_id") in (
                APPROVE_ACTION,
                DENY_ACTION,
            ):
                background.add_task(handle, payload, action)
                break
        return Response(status_code=200)


# --------------------------------------------------------------------------- email


def _email_routes(
    app: FastAPI,
    ctx: ServerContext,
    config: VetoConfig,
    state: ChannelState,
    templates: Jinja2Templates,
    token_secret: Callable[[], str],
) -> None:
    def page(
        request: Request,
        ident: Identity | None,
        *,
        heading: str,
        status: int = 200,
        message: str | None = None,
        error: bool = False,
        req: Any = None,
        token: str = "",
        can_decide: bool = False,
    ) -> Response:
        tenant = req.tenant if req is not None else None
        return templates.TemplateResponse(
            request,
            "approve_link.html",
            {
                "ident": ident,
                "tenant": tenant,
                "tenants": ident.user.tenants if ident else [],
                "role": ident.user.role(tenant) if ident and tenant else None,
                "csrf": ident.csrf if ident else "",
                "nav": "approvals",
                "heading": heading,
                "message": message,
                "error": error,
                # Only the person the link was sent to gets here (their session): an
                # eligible approver sees the real values, as on the dashboard.
                "r": _shown(req, ident),
                "token": token,
                "can_decide": can_decide,
            },
            status_code=status,
        )

    def _shown(req: Any, ident: Identity | None) -> dict[str, Any] | None:
        if req is None:
            return None
        if ident is None:
            return request_view(req)
        return ctx.approvals.view_for(req, ident)

    def claims_of(request: Request, token: str) -> TokenClaims | Response:
        try:
            return read_token(token_secret(), token)
        except TokenError as exc:
            log.warning("email link refused: %s", exc)
            return page(request, None, heading="Link not valid", status=403, message=str(exc),
                        error=True)  # fmt: skip

    def checked(request: Request, token: str) -> tuple[TokenClaims, Identity, Any] | Response:
        claims = claims_of(request, token)
        if isinstance(claims, Response):
            return claims
        ident = ctx.page_identity(request)  # not logged in: to /login, then back here
        if ident.via != "session" or ident.username != claims.approver:
            log.warning("email link for %s used by %s: refused", claims.approver, ident.username)
            return page(request, ident, heading="Not your link", status=403, error=True,
                        message="This link was sent to another approver. Log in as the "
                        "person it was sent to, or decide from the dashboard.")  # fmt: skip
        try:
            req = ctx.approvals.get(claims.request_id, [claims.tenant])
        except NotFound:
            return page(request, ident, heading="Not found", status=404, error=True,
                        message="This approval request does not exist.")  # fmt: skip
        if not role_at_least(ident.user.role(req.tenant), "approver"):
            return page(request, ident, heading="Not allowed", status=403, error=True, req=req,
                        message="Deciding approvals needs the approver role.")  # fmt: skip
        return claims, ident, req

    @app.get("/approve/{token}", include_in_schema=False)
    def approve_link(request: Request, token: str) -> Response:
        got = checked(request, token)
        if isinstance(got, Response):
            return got
        claims, ident, req = got
        if state.token_used(claims.jti):
            return page(request, ident, heading="Link already used", status=410, error=True,
                        req=req, message="This link was used already; it works once.")  # fmt: skip
        if req.state.final:
            return page(request, ident, heading=f"Request {req.state.value}", req=req,
                        message=f"This request is {req.state.value}; it can no longer be "
                        "decided.")  # fmt: skip
        return page(request, ident, heading="Approve or deny?", req=req, token=token,
                    can_decide=True)  # fmt: skip

    @app.post("/approve/{token}", include_in_schema=False)
    def approve_post(
        request: Request,
        token: str,
        decision: Annotated[str, Form(max_length=10)] = "",
        csrf_token: Annotated[str, Form(max_length=200)] = "",
        reason: Annotated[str, Form(max_length=2000)] = "",
    ) -> Response:
        got = checked(request, token)
        if isinstance(got, Response):
            return got
        claims, ident, req = got
        ctx.check_csrf(request, ident, csrf_token)
        if decision not in ("approve", "deny"):
            raise HTTPException(400, "decision must be approve or deny")
        if not state.use_token(claims):
            log.warning("email link for request %s used twice: refused", claims.request_id)
            return page(request, ident, heading="Link already used", status=410, error=True,
                        req=req, message="This link was used already; it works once.")  # fmt: skip
        approve = decision == "approve"
        try:
            after = ctx.approvals.decide(
                claims.request_id,
                username=ident.username,
                email=ident.user.email,
                policy_roles=ident.user.approver_roles(req.tenant),
                tenant=req.tenant,
                approve=approve,
                via="email",
                reason=reason.strip() or None,
            )
        except Closed as exc:
            return page(request, ident, heading="Too late", status=409, error=True,
                        req=ctx.approvals.get(claims.request_id, [req.tenant]),
                        message=str(exc))  # fmt: skip
        except (Refused, NotFound) as exc:
            log.warning("email vote by %s refused: %s", ident.username, exc)
            return page(request, ident, heading="Vote refused", status=403, error=True, req=req,
                        message=str(exc))  # fmt: skip
        done = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        verb = "approved" if approve else "denied"
        return page(request, ident, heading=f"You {verb} this call", req=after,
                    message=f"Recorded at {done}; the request is now {after.state.value}.")  # fmt: skip
