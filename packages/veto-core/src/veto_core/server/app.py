"""``veto serve``: the FastAPI application (pages + JSON API).

Pages (HTML, Jinja2 + HTMX, session cookie): ``/approvals``, ``/audit``,
``/policies``, ``/explain``, ``/login``. JSON API (session cookie + CSRF header,
or ``Authorization: Bearer``): ``/api/...``, described by ``/openapi.json``.
Every route is scoped to one tenant the user holds a role in.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as _dt
import json
import logging
import os
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import Body, FastAPI, Form, HTTPException, Query, Request, Response
from fastapi.responses import (
    FileResponse,
    JSONResponse,
    RedirectResponse,
    StreamingResponse,
)
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, Field
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from veto_core import __version__
from veto_core.audit.errors import AuditError
from veto_core.audit.export import CSV_COLUMNS, EXPORT_FORMATS, build_evidence_pack, iter_text
from veto_core.audit.log import AuditLog, open_audit
from veto_core.audit.record import AuditRecord
from veto_core.audit.sink import AuditQuery, PolicyRevision
from veto_core.config import VetoConfig
from veto_core.server.bridge import (
    ApprovalsUnavailable,
    Closed,
    NotFound,
    Refused,
    request_view,
)
from veto_core.server.context import (
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    Identity,
    LoginRequired,
    ServerContext,
    ServerSettings,
    client_ip,
    safe_next,
)
from veto_core.server.store import ServerStore, ServerStoreError, role_at_least
from veto_core.server.views import (
    FilterError,
    explain_call,
    policy_diff,
    pretty_policy,
    query_from_params,
    record_view,
    semantic_diff,
)

__all__ = ["create_app"]

log = logging.getLogger("veto.server")
HERE = Path(__file__).parent
PAGE_SIZE = 50

templates = Jinja2Templates(directory=str(HERE / "templates"))


# --------------------------------------------------------------------------- API models


class DecisionIn(BaseModel):
    reason: str | None = Field(default=None, max_length=2000)


class ExplainIn(BaseModel):
    call: dict[str, Any]
    revision: str | None = Field(default=None, description="Policy revision (default: latest)")
    tenant: str | None = None


class UserIn(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    tenant: str = Field(min_length=1, max_length=200)
    role: Literal["viewer", "approver", "admin"]
    password: str | None = Field(default=None, min_length=8, max_length=1024)
    policy_roles: list[str] = Field(default_factory=list)
    email: str | None = Field(default=None, max_length=320)


class TokenIn(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    tenant: str | None = Field(
        default=None, description="The tenant the token acts in (default: the caller's only one)"
    )


class Problem(BaseModel):
    detail: str


_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem, "description": "Not authenticated"},
    403: {"model": Problem, "description": "Forbidden (role, CSRF)"},
    404: {"model": Problem, "description": "Not found (or another tenant's)"},
}


# --------------------------------------------------------------------------- app


def create_app(
    db: str | None = None,
    *,
    settings: ServerSettings | None = None,
    audit: AuditLog | None = None,
    config: VetoConfig | None = None,
) -> FastAPI:
    """The dashboard + API on the database at ``db`` ($VETO_DB or ~/.veto/veto.db).

    ``config``: Slack/email settings and secrets (default: ``veto.toml`` + environment).
    """
    from veto_core.audit.log import default_audit_url
    from veto_core.config import load_config
    from veto_core.server.channels import install_channel_routes

    if settings is None:
        settings = ServerSettings(db=db or default_audit_url())
    ctx = ServerContext(settings, audit or open_audit(settings.db), ServerStore(settings.db))

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            ctx.stopping.set()

    app = FastAPI(
        title="Veto",
        version=__version__,
        description="Approvals, audit trail and policies of Veto. Authenticate with "
        "`Authorization: Bearer veto_...` (create one with `veto users token NAME`).",
        docs_url=None,  # Swagger UI loads from a CDN: not here
        redoc_url=None,
        openapi_url="/openapi.json",
        lifespan=lifespan,
    )
    app.state.ctx = ctx
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    _install_handlers(app)
    _security_headers(app)
    _pages(app, ctx)
    _api(app, ctx)
    install_channel_routes(app, ctx, config or load_config(), templates)
    return app


def _security_headers(app: FastAPI) -> None:
    @app.middleware("http")
    async def headers(request: Request, call_next: Any) -> Response:
        response: Response = await call_next(request)
        h = response.headers
        h.setdefault("X-Content-Type-Options", "nosniff")
        h.setdefault("X-Frame-Options", "DENY")
        h.setdefault("Referrer-Policy", "same-origin")
        h.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
            "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
        )
        if not request.url.path.startswith("/static/"):
            h.setdefault("Cache-Control", "no-store")
        return response


def _wants_json(request: Request) -> bool:
    return request.url.path.startswith("/api/") or request.url.path == "/openapi.json"


def _install_handlers(app: FastAPI) -> None:
    @app.exception_handler(LoginRequired)
    async def login_required(request: Request, exc: LoginRequired) -> Response:
        if request.headers.get("hx-request"):
            return Response(status_code=401, headers={"HX-Redirect": "/login"})
        return RedirectResponse(f"/login?next={_quote(exc.next_url)}", status_code=303)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        if _wants_json(request):
            return JSONResponse(
                {"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers
            )
        return templates.TemplateResponse(
            request,
            "error.html",
            {"status": exc.status_code, "detail": exc.detail, "ident": None},
            status_code=exc.status_code,
            headers=exc.headers,
        )

    async def unavailable(request: Request, exc: Exception) -> Response:
        log.error("store unavailable: %s", exc)
        detail = f"store unavailable: {exc}"
        if _wants_json(request):
            return JSONResponse({"detail": detail}, status_code=503)
        return templates.TemplateResponse(
            request,
            "error.html",
            {"status": 503, "detail": detail, "ident": None},
            status_code=503,
        )

    app.add_exception_handler(AuditError, unavailable)
    app.add_exception_handler(ServerStoreError, unavailable)
    app.add_exception_handler(ApprovalsUnavailable, unavailable)


def _quote(value: str) -> str:
    from urllib.parse import quote

    return quote(value, safe="")


def _ctx(request: Request) -> ServerContext:
    ctx = request.app.state.ctx
    assert isinstance(ctx, ServerContext)
    return ctx


# --------------------------------------------------------------------------- shared logic


def _find_record(ctx: ServerContext, tenant: str, record_id: str) -> AuditRecord:
    """The tenant's record with that id (the UUIDv7's time narrows the search)."""
    try:
        u = uuid.UUID(record_id)
    except ValueError:
        raise HTTPException(404, "not found") from None
    rid = str(u)
    if u.version == 7:
        ms = u.int >> 80
        try:
            at = _dt.datetime.fromtimestamp(ms / 1000, _dt.UTC)
            window = AuditQuery(
                tenant=tenant,
                since=at - _dt.timedelta(seconds=5),
                until=at + _dt.timedelta(seconds=5),
            )
            for r in ctx.audit.iter_records(window):
                if r.id == rid:
                    return r
        except (OverflowError, ValueError, OSError):
            pass
    for r in ctx.audit.iter_records(AuditQuery(tenant=tenant)):
        if r.id == rid:
            return r
    raise HTTPException(404, "not found")


def _revisions(ctx: ServerContext, tenant: str) -> list[tuple[PolicyRevision, int]]:
    """Revisions that decided records of ``tenant``, newest first, with record counts."""
    counts = ctx.tenant_revisions(tenant)
    revs = [(p, counts[p.revision]) for p in ctx.audit.policy_revisions() if p.revision in counts]
    revs.sort(key=lambda x: x[0].first_seen, reverse=True)
    return revs


def _revision(ctx: ServerContext, tenant: str, revision: str) -> PolicyRevision:
    for p, _ in _revisions(ctx, tenant):
        if p.revision == revision:
            return p
    raise HTTPException(404, "not found")


def _audit_page(
    ctx: ServerContext,
    tenant: str,
    params: dict[str, Any],
    limit: int,
    offset: int,
    *,
    newest_first: bool = True,
) -> tuple[list[AuditRecord], bool]:
    try:
        q = query_from_params(
            tenant, params, limit=limit + 1, offset=offset, newest_first=newest_first
        )
    except FilterError as exc:
        raise HTTPException(400, str(exc)) from None
    rows = list(ctx.audit.iter_records(q))
    return rows[:limit], len(rows) > limit


def _export(ctx: ServerContext, tenant: str, params: dict[str, Any], fmt: str) -> StreamingResponse:
    if fmt not in EXPORT_FORMATS:
        raise HTTPException(400, f"format must be one of {', '.join(EXPORT_FORMATS)}")
    try:
        q = query_from_params(tenant, params, newest_first=False)
    except FilterError as exc:
        raise HTTPException(400, str(exc)) from None

    def body() -> Iterator[str]:
        if fmt == "csv":
            import csv
            import io

            buf = io.StringIO()
            csv.writer(buf).writerow(CSV_COLUMNS)
            yield buf.getvalue()
        yield from iter_text(ctx.audit.iter_records(q), fmt)

    ext = {"jsonl": "jsonl", "csv": "csv", "ocsf": "ocsf.jsonl"}[fmt]
    media = "text/csv" if fmt == "csv" else "application/x-ndjson"
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    return StreamingResponse(
        body(),
        media_type=media,
        headers={
            "Content-Disposition": f'attachment; filename="veto-audit-{tenant}-{stamp}.{ext}"'
        },
    )


def _evidence(ctx: ServerContext, tenant: str, params: dict[str, Any]) -> FileResponse:
    try:
        q = query_from_params(tenant, params)
    except FilterError as exc:
        raise HTTPException(400, str(exc)) from None
    fd, name = tempfile.mkstemp(prefix="veto-evidence-", suffix=".zip")
    os.close(fd)
    path = Path(name)
    try:
        build_evidence_pack(ctx.audit, path, since=q.since, until=q.until, tenant=tenant)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    return FileResponse(
        path,
        media_type="application/zip",
        filename=f"veto-evidence-{tenant}-{stamp}.zip",
        background=BackgroundTask(path.unlink, missing_ok=True),
    )


def _decide(
    ctx: ServerContext, ident: Identity, request_id: str, approve: bool, reason: str | None
) -> Any:
    """Authorize and cast one vote. 404 other tenants, 403 below approver, 409 closed."""
    req = _get_request(ctx, ident, request_id)
    role = ident.user.role(req.tenant)
    if not role_at_least(role, "approver"):
        raise HTTPException(403, "deciding approvals needs the approver role")
    via = "dashboard" if ident.via == "session" else "api"
    try:
        return ctx.approvals.decide(
            request_id,
            username=ident.username,
            email=ident.user.email,
            policy_roles=ident.user.approver_roles(req.tenant),
            tenant=req.tenant,
            approve=approve,
            via=via,
            reason=reason,
        )
    except NotFound:
        raise HTTPException(404, "not found") from None
    except Closed as exc:
        raise HTTPException(409, str(exc)) from None
    except Refused as exc:
        raise HTTPException(403, str(exc)) from None


def _get_request(ctx: ServerContext, ident: Identity, request_id: str) -> Any:
    try:
        return ctx.approvals.get(request_id, ctx.readable_tenants(ident))
    except NotFound:
        raise HTTPException(404, "not found") from None


def _fingerprint(ctx: ServerContext, tenants: list[str]) -> str:
    reqs = ctx.approvals.list_requests(tenants, "pending")
    return json.dumps([[r.id, r.state.value, len(r.votes)] for r in reqs])


async def _event_stream(
    request: Request, ctx: ServerContext, tenants: list[str]
) -> AsyncIterator[str]:
    """``event: approvals`` whenever the pending requests of ``tenants`` change."""
    settings = ctx.settings
    started = time.monotonic()
    try:
        last: str = await run_in_threadpool(_fingerprint, ctx, tenants)
    except Exception as exc:
        last = f"error: {exc}"
    # A first event right away: whatever changed between the page load and this
    # connection is fetched once (no missed update).
    yield "retry: 1000\nevent: approvals\ndata: {}\n\n"
    last_sent = time.monotonic()
    while not ctx.stopping.is_set() and time.monotonic() - started < settings.sse_max_s:
        if await request.is_disconnected():
            break
        try:
            fp = await run_in_threadpool(_fingerprint, ctx, tenants)
        except Exception as exc:  # the page shows the error on its next refresh
            fp = f"error: {exc}"
        now = time.monotonic()
        if fp != last:
            yield f"event: approvals\ndata: {json.dumps({'at': time.time()})}\n\n"
            last, last_sent = fp, now
        elif now - last_sent > 15:
            yield ": keep-alive\n\n"
            last_sent = now
        await asyncio.sleep(settings.sse_poll_s)


_SSE_HEADERS = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}


# --------------------------------------------------------------------------- pages


def _base(
    request: Request, ctx: ServerContext, ident: Identity, tenant: str, nav: str
) -> dict[str, Any]:
    return {
        "ident": ident,
        "tenant": tenant,
        "tenants": ident.user.tenants,
        "role": ident.user.role(tenant),
        "csrf": ident.csrf,
        "nav": nav,
        "version": __version__,
    }


def _pages(app: FastAPI, ctx: ServerContext) -> None:
    s = ctx.settings

    @app.get("/", include_in_schema=False)
    def index(request: Request) -> Response:
        ctx.page_identity(request)
        return RedirectResponse("/approvals", status_code=303)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    # -- login / logout ------------------------------------------------------------

    def login_page(
        request: Request, next_url: str, error: str | None, status: int, username: str = ""
    ) -> Response:
        nonce, token = ctx.login_csrf_pair()
        resp = templates.TemplateResponse(
            request,
            "login.html",
            {"next": safe_next(next_url), "error": error, "csrf": token, "ident": None,
             "username": username},
            status_code=status,
        )  # fmt: skip
        resp.set_cookie(
            LOGIN_CSRF_COOKIE,
            nonce,
            httponly=True,
            samesite="strict",
            secure=_secure(request, s),
            max_age=3600,
            path="/login",
        )
        return resp

    @app.get("/login", include_in_schema=False)
    def login_form(request: Request, next: str = "/") -> Response:
        return login_page(request, next, None, 200)

    @app.post("/login", include_in_schema=False)
    def login(
        request: Request,
        username: Annotated[str, Form(max_length=200)] = "",
        password: Annotated[str, Form(max_length=1024)] = "",
        csrf_token: Annotated[str, Form(max_length=200)] = "",
        next: Annotated[str, Form(max_length=2000)] = "/",
    ) -> Response:
        if not ctx.login_csrf_ok(request.cookies.get(LOGIN_CSRF_COOKIE), csrf_token):
            return login_page(request, next, "Your login form expired; please try again.", 403)
        ip = client_ip(request)
        ukey, ikey = f"user:{username.casefold()}", f"ip:{ip}"
        if (
            ctx.store.recent_failures(ukey, s.login_window_s) >= s.login_max_failures
            or ctx.store.recent_failures(ikey, s.login_window_s) >= s.login_max_failures_ip
        ):
            minutes = s.login_window_s // 60
            resp = login_page(
                request,
                next,
                f"Too many failed attempts. Try again in {minutes} minutes.",
                429,
                username,
            )
            resp.headers["Retry-After"] = str(s.login_window_s)
            return resp
        user = ctx.store.authenticate(username, password) if username and password else None
        if user is None:
            ctx.store.record_failure(ukey, ikey)
            return login_page(request, next, "Wrong user name or password.", 401, username)
        ctx.store.clear_failures(ukey)
        old = request.cookies.get(SESSION_COOKIE)
        if old:  # never carry a pre-login session over (session fixation)
            ctx.store.delete_session(old)
        session = ctx.store.create_session(user.username, lifetime_s=s.session_lifetime_s)
        resp = RedirectResponse(safe_next(next), status_code=303)
        resp.set_cookie(
            SESSION_COOKIE,
            session.token,
            httponly=True,
            samesite="lax",
            secure=_secure(request, s),
            max_age=s.session_lifetime_s,
            path="/",
        )
        resp.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
        return resp

    @app.post("/logout", include_in_schema=False)
    def logout(request: Request, csrf_token: Annotated[str, Form()] = "") -> Response:
        ident = ctx.page_identity(request)
        ctx.check_csrf(request, ident, csrf_token)
        if ident.session:
            ctx.store.delete_session(ident.session.token)
        resp = RedirectResponse("/login", status_code=303)
        resp.delete_cookie(SESSION_COOKIE, path="/")
        return resp

    # -- approvals -----------------------------------------------------------------

    def approvals_ctx(
        request: Request, ident: Identity, tenant: str, error: str | None = None
    ) -> dict[str, Any]:
        base = _base(request, ctx, ident, tenant, "approvals")
        try:
            reqs = [
                ctx.approvals.view_for(r, ident)
                for r in ctx.approvals.list_requests([tenant], "pending")
            ]
            unavailable = None
        except ApprovalsUnavailable as exc:
            reqs, unavailable = [], str(exc)
        base.update(
            requests=reqs,
            unavailable=unavailable,
            error=error,
            can_decide=role_at_least(ident.user.role(tenant), "approver"),
            username=ident.username,
            refresh_s=f"{ctx.settings.list_refresh_s:g}",
        )
        return base

    @app.get("/approvals", include_in_schema=False)
    def approvals_page(request: Request, tenant: str | None = None) -> Response:
        ident = ctx.page_identity(request)
        t = ctx.tenant(ident, tenant)
        return templates.TemplateResponse(
            request, "approvals.html", approvals_ctx(request, ident, t)
        )

    @app.get("/approvals/_list", include_in_schema=False)
    def approvals_list(request: Request, tenant: str | None = None) -> Response:
        ident = ctx.page_identity(request)
        t = ctx.tenant(ident, tenant)
        return templates.TemplateResponse(
            request, "_approvals_list.html", approvals_ctx(request, ident, t)
        )

    def page_decide(
        request: Request, request_id: str, approve: bool, csrf_token: str, reason: str
    ) -> Response:
        ident = ctx.page_identity(request)
        ctx.check_csrf(request, ident, csrf_token)
        status, error = 200, None
        tenant: str | None = None
        try:
            req = _get_request(ctx, ident, request_id)
            tenant = req.tenant
            _decide(ctx, ident, request_id, approve, reason.strip() or None)
        except HTTPException as exc:
            if exc.status_code == 404:
                raise
            status, error = exc.status_code, str(exc.detail)
        t = ctx.tenant(ident, tenant)
        if request.headers.get("hx-request"):
            return templates.TemplateResponse(
                request,
                "_approvals_list.html",
                approvals_ctx(request, ident, t, error),
                status_code=status,
            )
        if error is None:
            return RedirectResponse(f"/approvals?tenant={_quote(t)}", status_code=303)
        return templates.TemplateResponse(
            request, "approvals.html", approvals_ctx(request, ident, t, error), status_code=status
        )

    @app.post("/approvals/{request_id}/approve", include_in_schema=False)
    def page_approve(
        request: Request,
        request_id: str,
        csrf_token: Annotated[str, Form()] = "",
        reason: Annotated[str, Form(max_length=2000)] = "",
    ) -> Response:
        return page_decide(request, request_id, True, csrf_token, reason)

    @app.post("/approvals/{request_id}/deny", include_in_schema=False)
    def page_deny(
        request: Request,
        request_id: str,
        csrf_token: Annotated[str, Form()] = "",
        reason: Annotated[str, Form(max_length=2000)] = "",
    ) -> Response:
        return page_decide(request, request_id, False, csrf_token, reason)

    @app.get("/events", include_in_schema=False)
    def page_events(request: Request, tenant: str | None = None) -> StreamingResponse:
        ident = ctx.page_identity(request)
        t = ctx.tenant(ident, tenant)
        return StreamingResponse(
            _event_stream(request, ctx, [t]), media_type="text/event-stream", headers=_SSE_HEADERS
        )

    # -- audit ---------------------------------------------------------------------

    @app.get("/audit", include_in_schema=False)
    def audit_page(
        request: Request,
        tenant: str | None = None,
        offset: Annotated[int, Query(ge=0)] = 0,
    ) -> Response:
        ident = ctx.page_identity(request)
        t = ctx.tenant(ident, tenant)
        params = dict(request.query_params)
        base = _base(request, ctx, ident, t, "audit")
        error = None
        try:
            rows, more = _audit_page(ctx, t, params, PAGE_SIZE, offset)
        except HTTPException as exc:
            rows, more, error = [], False, str(exc.detail)
        filters = {k: params.get(k, "") for k in ("since", "until", "tool", "outcome", "rule",
                                                  "agent", "user", "run", "text", "effect")}  # fmt: skip
        qs = "&".join(f"{k}={_quote(v)}" for k, v in filters.items() if v)
        base.update(
            records=[record_view(r) for r in rows],
            more=more,
            offset=offset,
            page_size=PAGE_SIZE,
            filters=filters,
            qs=qs,
            error=error,
            verify=ctx.verify(t, refresh=params.get("verify") == "1"),
        )
        return templates.TemplateResponse(request, "audit.html", base)

    @app.get("/audit/records/{record_id}", include_in_schema=False)
    def audit_record(request: Request, record_id: str, tenant: str | None = None) -> Response:
        ident = ctx.page_identity(request)
        t = ctx.tenant(ident, tenant)
        r = _find_record(ctx, t, record_id)
        base = _base(request, ctx, ident, t, "audit")
        head = ctx.audit.sink.chain_head(t)
        base.update(r=record_view(r), head_seq=head[0] if head else None)
        return templates.TemplateResponse(request, "record.html", base)

    @app.get("/audit/export", include_in_schema=False)
    def audit_export(request: Request, fmt: str = "jsonl", tenant: str | None = None) -> Response:
        ident = ctx.page_identity(request)
        t = ctx.tenant(ident, tenant)
        return _export(ctx, t, dict(request.query_params), fmt)

    @app.get("/audit/evidence", include_in_schema=False)
    def audit_evidence(request: Request, tenant: str | None = None) -> Response:
        ident = ctx.page_identity(request)
        t = ctx.tenant(ident, tenant)
        return _evidence(ctx, t, dict(request.query_params))

    # -- policies / explain --------------------------------------------------------

    @app.get("/policies", include_in_schema=False)
    def policies_page(request: Request, tenant: str | None = None) -> Response:
        ident = ctx.page_identity(request)
        t = ctx.tenant(ident, tenant)
        base = _base(request, ctx, ident, t, "policies")
        base.update(revisions=_revisions(ctx, t))
        return templates.TemplateResponse(request, "policies.html", base)

    @app.get("/policies/diff", include_in_schema=False)
    def policies_diff(
        request: Request, a: str = "", b: str = "", tenant: str | None = None
    ) -> Response:
        ident = ctx.page_identity(request)
        t = ctx.tenant(ident, tenant)
        ra, rb = _revision(ctx, t, a), _revision(ctx, t, b)
        lines, summary = policy_diff(ra, rb)
        base = _base(request, ctx, ident, t, "policies")
        base.update(a=ra, b=rb, lines=lines, summary=summary)
        return templates.TemplateResponse(request, "diff.html", base)

    @app.get("/policies/{revision}", include_in_schema=False)
    def policy_page(request: Request, revision: str, tenant: str | None = None) -> Response:
        ident = ctx.page_identity(request)
        t = ctx.tenant(ident, tenant)
        rev = _revision(ctx, t, revision)
        base = _base(request, ctx, ident, t, "policies")
        base.update(rev=rev, content=pretty_policy(rev), revisions=_revisions(ctx, t))
        return templates.TemplateResponse(request, "policy.html", base)

    def explain_ctx(
        request: Request, ident: Identity, t: str, revision: str | None, call_text: str
    ) -> dict[str, Any]:
        base = _base(request, ctx, ident, t, "explain")
        revs = _revisions(ctx, t)
        base.update(revisions=revs, revision=revision or (revs[0][0].revision if revs else ""),
                    call_text=call_text, result=None, error=None)  # fmt: skip
        return base

    _EXAMPLE = json.dumps(
        {"tool": "issue_refund", "args": {"amount": 250, "currency": "EUR"},
         "principal": {"agent": "support-bot", "roles": ["support"], "user": "u1"}, "env": "prod"},
        indent=2,
    )  # fmt: skip

    @app.get("/explain", include_in_schema=False)
    def explain_page(
        request: Request, tenant: str | None = None, revision: str | None = None
    ) -> Response:
        ident = ctx.page_identity(request)
        t = ctx.tenant(ident, tenant)
        return templates.TemplateResponse(
            request, "explain.html", explain_ctx(request, ident, t, revision, _EXAMPLE)
        )

    @app.post("/explain", include_in_schema=False)
    def explain_post(
        request: Request,
        tenant: Annotated[str, Form()] = "",
        revision: Annotated[str, Form()] = "",
        call: Annotated[str, Form(max_length=200_000)] = "",
        csrf_token: Annotated[str, Form()] = "",
    ) -> Response:
        ident = ctx.page_identity(request)
        ctx.check_csrf(request, ident, csrf_token)
        t = ctx.tenant(ident, tenant or None)
        base = explain_ctx(request, ident, t, revision, call)
        status = 200
        try:
            rev = _revision(ctx, t, revision)
            base["result"] = explain_call(rev.content, json.loads(call), t)
        except HTTPException:
            base["error"], status = "Choose a policy revision of this tenant.", 400
        except ValueError as exc:  # JSON, call format and policy errors
            base["error"], status = str(exc), 400
        return templates.TemplateResponse(request, "explain.html", base, status_code=status)


def _secure(request: Request, s: ServerSettings) -> bool:
    return s.cookie_secure if s.cookie_secure is not None else request.url.scheme == "https"


# --------------------------------------------------------------------------- JSON API


def _api(app: FastAPI, ctx: ServerContext) -> None:
    def ident_of(request: Request) -> Identity:
        return ctx.api_identity(request)

    def write_ident(request: Request) -> Identity:
        ident = ctx.api_identity(request)
        ctx.check_csrf(request, ident, None)
        return ident

    @app.get("/api/me", tags=["auth"], responses=_ERRORS)
    def api_me(request: Request) -> dict[str, Any]:
        """The caller: user name, role per tenant, and the CSRF token for cookie sessions."""
        ident = ident_of(request)
        return {
            "username": ident.username,
            "email": ident.user.email,
            "roles": ident.user.roles,
            "policy_roles": {t: list(r) for t, r in ident.user.policy_roles.items()},
            "via": ident.via,
            "csrf_token": ident.csrf or None,
        }

    # -- approvals -----------------------------------------------------------------

    @app.get("/api/approvals", tags=["approvals"], responses=_ERRORS)
    def api_approvals(
        request: Request,
        tenant: str | None = None,
        state: Literal["pending", "approved", "denied", "expired", "cancelled", "all"] = "pending",
    ) -> dict[str, Any]:
        """Approval requests (newest first) of one tenant, or of every tenant the caller can read."""
        ident = ident_of(request)
        tenants = [ctx.tenant(ident, tenant)] if tenant else ctx.readable_tenants(ident)
        reqs = ctx.approvals.list_requests(tenants, None if state == "all" else state)
        return {"requests": [ctx.approvals.view_for(r, ident) for r in reqs]}

    @app.get("/api/approvals/{request_id}", tags=["approvals"], responses=_ERRORS)
    def api_approval(request: Request, request_id: str) -> dict[str, Any]:
        """One request. `args` is redacted as in the audit trail; `approver_args` has the
        real values for an approver eligible to approve it while it is pending (else null)."""
        ident = ident_of(request)
        return ctx.approvals.view_for(_get_request(ctx, ident, request_id), ident)

    @app.post(
        "/api/approvals/{request_id}/approve",
        tags=["approvals"],
        responses={**_ERRORS, 409: {"model": Problem, "description": "No longer pending"}},
    )
    def api_approve(
        request: Request, request_id: str, body: Annotated[DecisionIn | None, Body()] = None
    ) -> dict[str, Any]:
        """Vote to approve (recorded with the caller's identity; channel `dashboard` for a
        browser session, `api` for a token). Eligibility and quorum are enforced."""
        ident = write_ident(request)
        return request_view(_decide(ctx, ident, request_id, True, body.reason if body else None))

    @app.post(
        "/api/approvals/{request_id}/deny",
        tags=["approvals"],
        responses={**_ERRORS, 409: {"model": Problem, "description": "No longer pending"}},
    )
    def api_deny(
        request: Request, request_id: str, body: Annotated[DecisionIn | None, Body()] = None
    ) -> dict[str, Any]:
        """Deny (one deny vetoes the request)."""
        ident = write_ident(request)
        return request_view(_decide(ctx, ident, request_id, False, body.reason if body else None))

    @app.post(
        "/api/approvals/{request_id}/cancel",
        tags=["approvals"],
        responses={**_ERRORS, 409: {"model": Problem, "description": "Already decided"}},
    )
    def api_cancel(
        request: Request, request_id: str, body: Annotated[DecisionIn | None, Body()] = None
    ) -> dict[str, Any]:
        """Cancel a pending request (e.g. the run was abandoned): the call never runs.
        Needs the approver role in the request's tenant, as `veto approvals cancel`."""
        ident = write_ident(request)
        req = _get_request(ctx, ident, request_id)
        if not role_at_least(ident.user.role(req.tenant), "approver"):
            raise HTTPException(403, "cancelling approvals needs the approver role")
        try:
            after = ctx.approvals.cancel(
                req.id, username=ident.username, reason=body.reason if body else None
            )
        except NotFound:
            raise HTTPException(404, "not found") from None
        except Closed as exc:
            raise HTTPException(409, str(exc)) from None
        return request_view(after)

    @app.get("/api/events", include_in_schema=False)
    def api_events(request: Request, tenant: str | None = None) -> StreamingResponse:
        """Server-sent events: `event: approvals` when pending requests change."""
        ident = ident_of(request)
        tenants = [ctx.tenant(ident, tenant)] if tenant else ctx.readable_tenants(ident)
        return StreamingResponse(
            _event_stream(request, ctx, tenants),
            media_type="text/event-stream",
            headers=_SSE_HEADERS,
        )

    # -- audit ---------------------------------------------------------------------

    @app.get("/api/audit", tags=["audit"], responses={**_ERRORS, 400: {"model": Problem}})
    def api_audit(
        request: Request,
        tenant: str | None = None,
        since: str | None = Query(None, description="1h, 24h, 7d, ... or ISO-8601"),
        until: str | None = None,
        tool: str | None = None,
        outcome: str | None = None,
        effect: str | None = None,
        rule: str | None = None,
        agent: str | None = None,
        user: str | None = None,
        run: str | None = None,
        text: str | None = None,
        shadow: bool = Query(False, description="Only calls shadow mode would have blocked"),
        order: Literal["newest", "oldest"] = "newest",
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    ) -> dict[str, Any]:
        """Audit records of one tenant (default: the caller's first), newest first."""
        ident = ident_of(request)
        t = ctx.tenant(ident, tenant)
        params = {"since": since, "until": until, "tool": tool, "outcome": outcome,
                  "effect": effect, "rule": rule, "agent": agent, "user": user, "run": run,
                  "text": text, "shadow": shadow}  # fmt: skip
        rows, more = _audit_page(ctx, t, params, limit, offset, newest_first=order == "newest")
        return {
            "tenant": t,
            "records": [r.to_dict() for r in rows],
            "offset": offset,
            "limit": limit,
            "next_offset": offset + limit if more else None,
        }

    @app.get("/api/audit/records/{record_id}", tags=["audit"], responses=_ERRORS)
    def api_audit_record(
        request: Request, record_id: str, tenant: str | None = None
    ) -> dict[str, Any]:
        ident = ident_of(request)
        t = ctx.tenant(ident, tenant)
        return _find_record(ctx, t, record_id).to_dict()

    @app.get("/api/audit/verify", tags=["audit"], responses=_ERRORS)
    def api_audit_verify(request: Request, tenant: str | None = None) -> dict[str, Any]:
        """Verify the tenant's whole hash chain now."""
        ident = ident_of(request)
        t = ctx.tenant(ident, tenant)
        report = ctx.verify(t, refresh=True)
        out: dict[str, Any] = report.to_dict()
        return out

    @app.get(
        "/api/audit/export",
        tags=["audit"],
        responses={**_ERRORS, 200: {"content": {"application/x-ndjson": {}, "text/csv": {}}}},
        response_class=StreamingResponse,
    )
    def api_audit_export(
        request: Request,
        fmt: Literal["jsonl", "csv", "ocsf"] = "jsonl",
        tenant: str | None = None,
        since: str | None = None,
        until: str | None = None,
        tool: str | None = None,
        outcome: str | None = None,
        effect: str | None = None,
        rule: str | None = None,
        agent: str | None = None,
        user: str | None = None,
        run: str | None = None,
        text: str | None = None,
        shadow: bool = False,
    ) -> Response:
        """Stream the records (the same bytes as `veto audit export`)."""
        ident = ident_of(request)
        t = ctx.tenant(ident, tenant)
        params = {"since": since, "until": until, "tool": tool, "outcome": outcome,
                  "effect": effect, "rule": rule, "agent": agent, "user": user, "run": run,
                  "text": text, "shadow": shadow}  # fmt: skip
        return _export(ctx, t, params, fmt)

    @app.get(
        "/api/audit/evidence",
        tags=["audit"],
        responses={**_ERRORS, 200: {"content": {"application/zip": {}}}},
        response_class=FileResponse,
    )
    def api_audit_evidence(
        request: Request,
        tenant: str | None = None,
        since: str | None = None,
        until: str | None = None,
    ) -> Response:
        """SOC 2 evidence pack (zip) of the tenant, as `veto audit evidence` builds it."""
        ident = ident_of(request)
        t = ctx.tenant(ident, tenant)
        return _evidence(ctx, t, {"since": since, "until": until})

    # -- policies ------------------------------------------------------------------

    def rev_dict(
        p: PolicyRevision, records: int | None = None, content: bool = False
    ) -> dict[str, Any]:
        d: dict[str, Any] = {"revision": p.revision, "name": p.name, "source": p.source,
                             "first_seen": p.first_seen.isoformat()}  # fmt: skip
        if records is not None:
            d["records"] = records
        if content:
            d["content"] = p.content
        return d

    @app.get("/api/policies", tags=["policies"], responses=_ERRORS)
    def api_policies(request: Request, tenant: str | None = None) -> dict[str, Any]:
        """Policy revisions that decided the tenant's calls, newest first."""
        ident = ident_of(request)
        t = ctx.tenant(ident, tenant)
        return {"tenant": t, "revisions": [rev_dict(p, n) for p, n in _revisions(ctx, t)]}

    @app.get("/api/policies/diff", tags=["policies"], responses=_ERRORS)
    def api_policy_diff(
        request: Request, a: str, b: str, tenant: str | None = None
    ) -> dict[str, Any]:
        """Unified diff of two revisions' canonical JSON, and a rule-level summary."""
        ident = ident_of(request)
        t = ctx.tenant(ident, tenant)
        ra, rb = _revision(ctx, t, a), _revision(ctx, t, b)
        lines, summary = policy_diff(ra, rb)
        sem = semantic_diff(ra, rb)
        return {
            "a": a,
            "b": b,
            "summary": summary,
            "semantic": None if sem is None else sem.to_dict(),
            "diff": "\n".join(x.text for x in lines),
        }

    @app.get("/api/policies/{revision}", tags=["policies"], responses=_ERRORS)
    def api_policy(request: Request, revision: str, tenant: str | None = None) -> dict[str, Any]:
        ident = ident_of(request)
        t = ctx.tenant(ident, tenant)
        return rev_dict(_revision(ctx, t, revision), content=True)

    @app.post("/api/explain", tags=["policies"], responses={**_ERRORS, 400: {"model": Problem}})
    def api_explain(request: Request, body: ExplainIn) -> dict[str, Any]:
        """Decide a call under a stored revision (default: the tenant's latest) and trace
        every rule. Read-only: nothing is recorded."""
        ident = write_ident(request)
        t = ctx.tenant(ident, body.tenant)
        if body.revision:
            rev = _revision(ctx, t, body.revision)
        else:
            revs = _revisions(ctx, t)
            if not revs:
                raise HTTPException(404, "no policy revision recorded for this tenant")
            rev = revs[0][0]
        try:
            return explain_call(rev.content, body.call, t)
        except ValueError as exc:
            raise HTTPException(400, str(exc)) from None

    # -- users & tokens --------------------------------------------------------------

    def user_dict(u: Any, tenant: str) -> dict[str, Any]:
        return {"username": u.username, "role": u.role(tenant), "email": u.email,
                "policy_roles": list(u.approver_roles(tenant)), "disabled": u.disabled}  # fmt: skip

    @app.get("/api/users", tags=["users"], responses=_ERRORS)
    def api_users(request: Request, tenant: str | None = None) -> dict[str, Any]:
        """Users of the tenant (admin)."""
        ident = ident_of(request)
        t = ctx.tenant(ident, tenant, "admin")
        return {"tenant": t, "users": [user_dict(u, t) for u in ctx.store.list_users(t)]}

    @app.post(
        "/api/users",
        tags=["users"],
        status_code=201,
        responses={**_ERRORS, 400: {"model": Problem}, 409: {"model": Problem}},
    )
    def api_add_user(request: Request, body: UserIn) -> dict[str, Any]:
        """Create a user with a role in the tenant, or (without `password`) grant an
        existing user a role in it (admin of that tenant)."""
        ident = write_ident(request)
        t = ctx.tenant(ident, body.tenant, "admin")
        existing = ctx.store.get_user(body.username)
        try:
            if existing is None:
                if body.password is None:
                    raise HTTPException(400, "a new user needs a password")
                ctx.store.add_user(body.username, body.password, tenant=t, role=body.role,
                                   policy_roles=body.policy_roles, email=body.email)  # fmt: skip
            else:
                if body.password is not None:
                    raise HTTPException(409, "user exists; omit password to grant a role")
                ctx.store.set_role(body.username, tenant=t, role=body.role,
                                   policy_roles=body.policy_roles)  # fmt: skip
        except ServerStoreError as exc:
            if "database" in str(exc):
                raise
            raise HTTPException(400, str(exc)) from None
        u = ctx.store.get_user(body.username)
        assert u is not None
        return user_dict(u, t)

    @app.delete("/api/users/{username}", tags=["users"], status_code=204, responses=_ERRORS)
    def api_remove_user(request: Request, username: str, tenant: str | None = None) -> Response:
        """Revoke the user's role in the tenant (admin)."""
        ident = write_ident(request)
        t = ctx.tenant(ident, tenant, "admin")
        u = ctx.store.get_user(username)
        if u is None or u.role(t) is None:
            raise HTTPException(404, "not found")
        ctx.store.set_role(username, tenant=t, role=None)
        return Response(status_code=204)

    @app.get("/api/tokens", tags=["auth"], responses=_ERRORS)
    def api_tokens(request: Request) -> dict[str, Any]:
        """The caller's API tokens (never their secrets)."""
        ident = ident_of(request)
        return {
            "tokens": [
                {"id": t.id, "name": t.name, "tenant": t.tenant,
                 "created_at": t.created_at.isoformat(),
                 "last_used_at": t.last_used_at.isoformat() if t.last_used_at else None}
                for t in ctx.store.list_tokens(ident.username)
            ]
        }  # fmt: skip

    @app.post("/api/tokens", tags=["auth"], status_code=201, responses=_ERRORS)
    def api_new_token(request: Request, body: TokenIn) -> dict[str, Any]:
        """A new API token for the caller; the secret is shown only in this response."""
        ident = write_ident(request)
        tenant = ctx.tenant(ident, body.tenant) if body.tenant or ident.via == "token" else None
        try:
            tok, secret = ctx.store.create_token(ident.username, body.name, tenant=tenant)
        except ServerStoreError as exc:
            if "database" in str(exc):
                raise
            raise HTTPException(400, str(exc)) from None
        return {"id": tok.id, "name": tok.name, "tenant": tok.tenant, "token": secret}

    @app.delete("/api/tokens/{token_id}", tags=["auth"], status_code=204, responses=_ERRORS)
    def api_revoke_token(request: Request, token_id: str) -> Response:
        ident = write_ident(request)
        if not ctx.store.revoke_token(ident.username, token_id):
            raise HTTPException(404, "not found")
        return Response(status_code=204)
