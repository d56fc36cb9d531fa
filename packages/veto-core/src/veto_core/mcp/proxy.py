"""``veto mcp proxy``: an MCP server that forwards to the real one (DESIGN.md 7a).

Serving one client over stdio, the proxy is a relay of the SDK's own messages
(:mod:`veto_core.mcp.relay`): the client's session runs end to end with the
upstream server and only ``tools/call`` (and ``tools/list`` for ``hide_denied``)
is intercepted. Serving streamable HTTP (many clients, one upstream), it is one
SDK client session to the upstream server (a subprocess over stdio, or a
streamable HTTP endpoint) behind an SDK ``Server`` of its own. Either way
``tools/list`` passes through (``hide_denied`` leaves out tools the policy can
never allow for the caller) and every ``tools/call`` goes through
:class:`~veto_core.mcp.gate.McpGate` before it is forwarded. Upstream failures
(crash, malformed messages, timeouts) become ``isError`` results: a call whose
answer cannot be trusted is never reported as a success.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.to_thread

from .. import __version__
from ..adapters import Verdict, error_text
from ..engine import Veto
from .gate import Caller, McpGate, ToolCatalog
from .identity import Identity, TokenAuthority, TokenRefused
from .names import mcp_tool_name

__all__ = ["McpProxy", "ProxySettings"]

log = logging.getLogger("veto.mcp")

_IDENTITY_KEY = "veto_mcp_identity"


@dataclass(frozen=True, kw_only=True)
class ProxySettings:
    """How one proxy runs (what ``veto mcp proxy`` parses its flags into)."""

    name: str
    command: Sequence[str] = ()
    url: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    hide_denied: bool = False
    listen: tuple[str, int] | None = None  # serve streamable HTTP here; None: stdio
    auth: str = "token"  # over HTTP: "token" (bearer token of `veto users token`) or "none"
    path: str = "/mcp"
    call_timeout_s: float | None = None  # per forwarded call (None: the SDK's default)


class McpProxy:
    """One upstream server behind one gate. ``run()`` serves until the client(s) go."""

    def __init__(
        self,
        veto: Veto,
        settings: ProxySettings,
        identity: Identity,
        *,
        gate: McpGate | None = None,
        tokens: TokenAuthority | None = None,
    ) -> None:
        if bool(settings.command) == bool(settings.url):
            raise ValueError("give the upstream server as a command or as --upstream URL, not both")
        self.veto = veto
        self.settings = settings
        self.identity = identity
        self.gate = gate or McpGate(veto, settings.name)
        self.tokens = tokens
        self.catalog: ToolCatalog | None = None
        self.session: Any = None
        self.upstream_error: str | None = None  # set when the upstream connection is gone
        self._run_id = f"mcp-{uuid.uuid4().hex}"
        self._inflight: set[anyio.CancelScope] = set()
        self._broken_why = "the connection broke"
        self._list_lock = anyio.Lock()

    # --- who is calling ---------------------------------------------------------------

    def caller(self, http_request: Any | None) -> Caller:
        """The caller of one request: the proxy's identity over stdio; over HTTP the
        identity the auth layer attached to this very request (never a default)."""
        if http_request is None:
            if self.settings.listen is not None:
                raise TokenRefused("no HTTP request context: refusing to guess the caller")
            ident = self.identity
            run_id = self._run_id
        else:
            ident = http_request.scope.get("state", {}).get(_IDENTITY_KEY)
            if not isinstance(ident, Identity):
                raise TokenRefused("the request carries no authenticated identity")
            session_id = http_request.headers.get("mcp-session-id")
            run_id = f"mcp-{session_id}" if session_id else f"mcp-{uuid.uuid4().hex}"
        return Caller(principal=ident.principal, env=ident.env, tenant=ident.tenant, run_id=run_id)

    # --- handlers ---------------------------------------------------------------------

    async def on_list(self, info: Any) -> list[dict[str, Any]]:
        caller = self.caller(info.http_request)
        catalog = await self.refresh()
        tools = [dict(t) for t in catalog.tools.values()]
        if self.settings.hide_denied:
            visible = set(await anyio.to_thread.run_sync(self.gate.visible, catalog, caller))
            tools = [t for t in tools if t["name"] in visible]
        return tools

    async def on_call(self, name: str, arguments: Mapping[str, Any] | None, info: Any) -> Any:
        from .sdk import error_result

        tool = mcp_tool_name(self.gate.server, str(name))
        try:
            caller = self.caller(info.http_request)
        except TokenRefused as exc:
            return error_result(f"Veto: tool call '{tool}' was not run (denied): {exc}")
        if self.upstream_error is not None:
            return error_result(self.unavailable(tool))
        verdict = await self.gate.check(self.catalog, name, arguments, caller, info.progress)
        if not verdict.run:
            return error_result(verdict.reason, meta=verdict.info())
        return await self._forward(name, arguments or {}, info.progress, verdict)

    async def _forward(
        self, name: str, arguments: Mapping[str, Any], progress: Any, verdict: Verdict
    ) -> Any:
        from .sdk import call_upstream, dump, error_result

        label = getattr(verdict.call, "tool", name)
        with anyio.CancelScope() as scope:
            self._inflight.add(scope)
            try:
                result = await call_upstream(self.session, name, arguments, progress)
                # The output reaches the client only once it is in the run (DESIGN.md 2.7).
                withheld = await self.gate.observe(verdict, dump(result))
                if withheld is not None:
                    return error_result(withheld, meta=verdict.info())
                return result
            except Exception as exc:
                log.warning("upstream call %s failed: %s: %s", label, type(exc).__name__, exc)
                self._note_failure(exc)
                # The client reads the error's text (an McpError carries the upstream's
                # message): it is this call's output, recorded before it is shown.
                withheld = await self.gate.observe(verdict, error_text(exc))
                if withheld is not None:
                    return error_result(withheld, meta=verdict.info())
                return error_result(self.failed(label, f"{type(exc).__name__}: {exc}"))
            finally:
                self._inflight.discard(scope)
        return error_result(self.failed(label, self.upstream_error or self._broken_why))

    def unavailable(self, tool: str) -> str:
        """The refusal of a call made after the upstream connection is gone."""
        return (
            f"Veto: tool call '{tool}' was not run (error): the upstream MCP server is "
            f"unavailable: {self.upstream_error}"
        )

    @staticmethod
    def failed(tool: str, why: str) -> str:
        """The error of an allowed call whose forwarding failed: never a success."""
        return (
            f"Veto: tool call '{tool}' was allowed but the upstream MCP server failed "
            f"(its result is unknown): {why}"
        )

    async def refresh(self) -> ToolCatalog:
        """Read the upstream's tool list (all pages) and make it the catalog."""
        from .sdk import list_all_tools

        if self.upstream_error is not None:
            raise RuntimeError(f"the upstream MCP server is unavailable: {self.upstream_error}")
        async with self._list_lock:
            tools = await list_all_tools(self.session)
            self.catalog = ToolCatalog.build(self.gate.server, tools)
            return self.catalog

    # --- upstream health --------------------------------------------------------------

    async def on_upstream_message(self, message: Any) -> None:
        """The upstream session's message handler: a malformed message (one the SDK could
        not parse) fails every call in flight: their answers may be the ones that were
        lost. Other errors (a late answer to a call already given up) are logged."""
        if isinstance(message, ValueError):  # JSON or JSON-RPC validation failed
            log.warning("the upstream MCP server sent a malformed message: %s", message)
            self._fail_inflight(f"the upstream sent a malformed message: {message}")
            return
        if isinstance(message, Exception):
            log.warning("upstream MCP session: %s", message)
            return
        method = getattr(getattr(message, "root", message), "method", None)
        if method == "notifications/tools/list_changed":
            self.catalog = None  # calls are refused until the list is read again
            try:
                await self.refresh()
            except Exception as exc:
                log.warning("could not re-read the upstream's tool list: %s", exc)

    def _note_failure(self, exc: Exception) -> None:
        if isinstance(
            exc, anyio.ClosedResourceError | anyio.BrokenResourceError | anyio.EndOfStream
        ):
            self.upstream_error = f"the connection to it is closed ({type(exc).__name__})"
        elif "connection closed" in str(exc).lower():
            self.upstream_error = "the connection to it is closed"

    def _fail_inflight(self, why: str) -> None:
        self._broken_why = why
        for scope in list(self._inflight):
            scope.cancel()

    # --- running ----------------------------------------------------------------------

    def build_server(self) -> Any:
        from .sdk import build_server

        return build_server(
            f"veto-proxy:{self.settings.name}", __version__, self.on_list, self.on_call
        )

    async def run(self, *, handle_signals: bool = False) -> None:
        """Connect to the upstream and serve until the client(s) go. With
        ``handle_signals`` (the CLI), SIGTERM/SIGINT cancel like a disconnect does, so
        calls waiting for approval cancel their requests before the process exits."""
        async with anyio.create_task_group() as tg:
            if handle_signals:
                tg.start_soon(_cancel_on_signal, tg.cancel_scope)
            await self._run()
            tg.cancel_scope.cancel()

    async def _run(self) -> None:
        s = self.settings
        if s.listen is None:
            # One client on stdio: relay its session to the upstream (relay.py).
            from .relay import serve_stdio

            await serve_stdio(self)
            return
        from .sdk import open_upstream

        async with open_upstream(
            command=s.command or None,
            url=s.url,
            headers=s.headers,
            message_handler=self.on_upstream_message,
            call_timeout_s=s.call_timeout_s,
        ) as session:
            self.session = session
            await self.refresh()
            await self._serve_http(self.build_server(), *s.listen)

    def http_app(self, server: Any, host: str = "127.0.0.1") -> Any:
        """The ASGI app serving ``server`` over streamable HTTP at ``settings.path``,
        every request authenticated first (``--auth token``)."""
        from contextlib import asynccontextmanager

        from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
        from mcp.server.transport_security import TransportSecuritySettings
        from starlette.applications import Starlette
        from starlette.responses import JSONResponse
        from starlette.routing import Route

        security = None
        if host in ("127.0.0.1", "localhost", "::1"):
            # What the SDK does for its own loopback servers: no DNS rebinding.
            security = TransportSecuritySettings(
                enable_dns_rebinding_protection=True,
                allowed_hosts=["127.0.0.1:*", "localhost:*", "[::1]:*"],
                allowed_origins=["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"],
            )
        manager = StreamableHTTPSessionManager(app=server, security_settings=security)
        proxy = self

        class Endpoint:
            async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
                try:
                    ident = await proxy._authenticate(scope)
                except TokenRefused as exc:
                    response = JSONResponse(
                        {"error": "unauthorized", "detail": str(exc)},
                        status_code=401,
                        headers={"WWW-Authenticate": 'Bearer realm="veto"'},
                    )
                    await response(scope, receive, send)
                    return
                scope.setdefault("state", {})[_IDENTITY_KEY] = ident
                await manager.handle_request(scope, receive, send)

        @asynccontextmanager
        async def lifespan(app: Any) -> Any:
            async with manager.run():
                yield

        return Starlette(routes=[Route(self.settings.path, endpoint=Endpoint())], lifespan=lifespan)

    async def _authenticate(self, scope: Any) -> Identity:
        if self.settings.auth == "none":
            return self.identity
        if self.tokens is None:
            raise TokenRefused("token auth is not configured")
        header = ""
        for key, value in scope.get("headers", ()):
            if key == b"authorization":
                header = value.decode("latin-1")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise TokenRefused("missing 'Authorization: Bearer <token>' (a `veto users token`)")
        tokens = self.tokens
        return await anyio.to_thread.run_sync(tokens.identity, token.strip())

    async def _serve_http(self, server: Any, host: str, port: int) -> None:
        import uvicorn

        config = uvicorn.Config(
            self.http_app(server, host), host=host, port=port, log_level="warning", lifespan="on"
        )
        await uvicorn.Server(config).serve()


async def _cancel_on_signal(scope: anyio.CancelScope, grace_s: float = 5.0) -> None:
    """SIGTERM/SIGINT: cancel everything (calls waiting for approval cancel their
    requests), then exit. When stdin is not a pipe the SDK reads it in a worker
    thread that no cancellation can interrupt while the client keeps it open, so a
    watchdog ends the process after ``grace_s`` seconds if the orderly shutdown has
    not."""
    import os
    import signal
    import threading

    def watchdog() -> None:
        time.sleep(grace_s)
        log.warning("veto mcp proxy: still running %ss after the signal, exiting", grace_s)
        os._exit(0)

    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            log.warning("veto mcp proxy: signal %s, shutting down", signum)
            scope.cancel()
            threading.Thread(target=watchdog, daemon=True).start()
            return
