"""The decision half of the MCP proxy, free of the ``mcp`` SDK (DESIGN.md 7a).

:class:`McpGate` answers one question per ``tools/call``: may this call be forwarded
to the upstream server? It checks what the proxy alone can know (the tool was
announced, its name is unambiguous, the arguments are small enough and match the
announced input schema), then decides through :meth:`veto_core.Veto.authorize` as
``mcp__<server>__<tool>`` with ``framework="mcp"``, and for ``require_approval``
waits until the usual channels decide (reporting progress while it waits).
Everything that goes wrong is a refusal: only :attr:`Verdict.run` forwards a call.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import anyio
import anyio.to_thread

from ..adapters import Verdict, aobserve_output, error_verdict, from_authorization, refusal
from ..engine import Veto
from ..model import Authorization, Effect, Principal, ToolCall, make_decision
from ..policy.compiler import normalize_tool_name
from .names import mcp_tool_name

__all__ = [
    "DEFAULT_MAX_ARG_BYTES",
    "Caller",
    "McpGate",
    "Progress",
    "ToolCatalog",
    "may_ever_run",
]

log = logging.getLogger("veto.mcp")

#: Arguments larger than this (compact JSON, UTF-8) are refused before the policy.
DEFAULT_MAX_ARG_BYTES = 256 * 1024

#: ``(progress, total, message) -> None``: progress to the client while a call waits.
Progress = Callable[[float, float | None, str], Awaitable[None]]


@dataclass(frozen=True, kw_only=True, slots=True)
class Caller:
    """Who a call through the proxy is made for: principal, env, tenant, and the
    run (one per client session) the call belongs to."""

    principal: Principal
    env: str | None = None
    tenant: str | None = None
    run_id: str = field(default_factory=lambda: f"mcp-{uuid.uuid4().hex}")


@dataclass(frozen=True, kw_only=True)
class ToolCatalog:
    """The upstream's announced tools (name -> wire-form ``Tool`` dict), with the
    canonical name of each and the names that collide after canonicalization."""

    server: str
    tools: Mapping[str, Mapping[str, Any]]
    canonical: Mapping[str, str]
    ambiguous: frozenset[str]
    _validators: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def build(cls, server: str, tools: Sequence[Mapping[str, Any]]) -> ToolCatalog:
        by_name: dict[str, Mapping[str, Any]] = {}
        canonical: dict[str, str] = {}
        owners: dict[str, list[str]] = {}
        for tool in tools:
            name = tool.get("name")
            if not isinstance(name, str) or not name:
                continue
            by_name[name] = tool
            canonical[name] = mcp_tool_name(server, name)
            owners.setdefault(canonical[name], []).append(name)
        ambiguous = frozenset(n for names in owners.values() if len(names) > 1 for n in names)
        return cls(server=server, tools=by_name, canonical=canonical, ambiguous=ambiguous)

    def validator(self, name: str) -> Any:
        """A compiled JSON Schema validator for the tool's ``inputSchema`` (raises
        ``jsonschema.SchemaError`` for a schema that is not one)."""
        hit = self._validators.get(name)
        if hit is None:
            from jsonschema import validators

            schema = self.tools[name].get("inputSchema")
            if not isinstance(schema, Mapping):
                raise ValueError("the tool announced no inputSchema object")
            schema = dict(schema)
            cls = validators.validator_for(schema, default=validators.Draft202012Validator)
            cls.check_schema(schema)
            hit = cls(schema)
            self._validators[name] = hit
        return hit


def _local_store(veto: Veto) -> bool:
    """True when the audit store is a local SQLite file (the default store too)."""
    import os

    url = veto.db or os.environ.get("VETO_DB") or "sqlite"
    return str(url).startswith("sqlite")


def may_ever_run(veto: Veto, tool: str, caller: Caller) -> bool:
    """False when the policy can never let ``tool`` run for this caller, whatever the
    arguments: an unconditional deny rule applies, or no rule could allow it or ask
    for approval and the default is deny. Conservative: a conditional rule counts as
    "may". Used by ``--hide-denied`` to leave such tools out of ``tools/list``."""
    try:
        tenant = caller.tenant or caller.principal.tenant or veto.tenant
        v = veto.for_tenant(tenant) if tenant is not None and tenant != veto.tenant else veto
        p = v.policy
    except Exception:
        return False  # no policy for this tenant: every call is refused anyway
    if not p.enforced:
        return True  # mode: shadow lets every call through
    env = caller.env or v.env
    if (p.requires_env and env is None) or (p.requires_tenant and tenant is None):
        return False
    roles = p.effective_roles(caller.principal.roles)
    may = p.default is not Effect.DENY
    for rule in p.candidates(normalize_tool_name(tool)):
        if rule.envs is not None and env not in rule.envs:
            continue
        if rule.tenants is not None and tenant not in rule.tenants:
            continue
        if rule.roles is not None and rule.roles.isdisjoint(roles):
            continue
        if rule.agents is not None and caller.principal.agent not in rule.agents:
            continue
        if rule.effect is Effect.DENY and rule.condition is None:
            return False
        if rule.effect is not Effect.DENY or rule.otherwise is Effect.REQUIRE_APPROVAL:
            may = True
    return may


class McpGate:
    """Decides each ``tools/call`` of one upstream server (see the module doc).

    ``approval_poll_s`` is how often a waiting call reports progress; the wait
    itself ends when the request is decided or expires (its rule's timeout).

    ``single_client``: the gate serves one client's calls (the stdio proxy). Then a
    call that is allowed or denied outright (no approval request, no limit counters)
    and recorded in a local SQLite store is authorized on the event loop's own
    thread: the durable record is one local commit either way, and the two thread
    hand-offs it saves are two waits for a core on a busy machine. Everything else
    (approvals, which may notify channels; limits; PostgreSQL; many clients, whose
    records the store's writer commits together) is authorized in a worker thread.
    """

    def __init__(
        self,
        veto: Veto,
        server: str,
        *,
        max_arg_bytes: int = DEFAULT_MAX_ARG_BYTES,
        approval_poll_s: float = 1.0,
        single_client: bool = False,
    ) -> None:
        if not server or "__" in server:
            raise ValueError(f"invalid MCP server name {server!r} (non-empty, no '__')")
        self.veto = veto
        self.server = server
        self.max_arg_bytes = max_arg_bytes
        self.approval_poll_s = approval_poll_s
        self.inline = single_client and _local_store(veto)

    def _inline_ok(self, call: ToolCall) -> bool:
        """True when ``call`` may be authorized on the loop's thread (see the class doc):
        a heuristic that picks the thread, never the decision (both run ``authorize``)."""
        if not self.inline:
            return False
        try:
            veto = self.veto
            if veto.policy.limits:
                return False
            return veto.decide(call).effect is not Effect.REQUIRE_APPROVAL
        except Exception:
            return False

    def visible(self, catalog: ToolCatalog, caller: Caller) -> list[str]:
        """The announced tool names this caller may ever run (for ``--hide-denied``)."""
        return [n for n, c in catalog.canonical.items() if may_ever_run(self.veto, c, caller)]

    async def observe(self, verdict: Verdict, result: Any) -> str | None:
        """Record a forwarded call's result in its run (DESIGN.md 2.7) before the client
        sees it: None when recorded, else the refusal the client gets instead (the tool
        ran; its output is withheld, fail closed). ``result`` is the upstream's
        ``CallToolResult`` in wire form (a mapping; an error result is observed too)."""
        call = verdict.call
        if call is None:
            return "Veto: the output of a call that was never decided is withheld (fail closed)"
        effect = Effect.REQUIRE_APPROVAL if verdict.outcome == "approved" else Effect.ALLOW
        return await aobserve_output(self.veto, call, result, effect=effect)

    async def check(
        self,
        catalog: ToolCatalog | None,
        name: str,
        arguments: Mapping[str, Any] | None,
        caller: Caller,
        progress: Progress | None = None,
    ) -> Verdict:
        """The verdict for one ``tools/call``; never raises except for cancellation
        (a cancelled wait cancels the approval request first)."""
        try:
            return await self._check(catalog, name, arguments, caller, progress)
        except anyio.get_cancelled_exc_class():
            raise
        except Exception as exc:
            log.exception("MCP gate failed for %r", name)
            return error_verdict(mcp_tool_name(self.server, str(name)), exc)

    async def _check(
        self,
        catalog: ToolCatalog | None,
        name: str,
        arguments: Mapping[str, Any] | None,
        caller: Caller,
        progress: Progress | None,
    ) -> Verdict:
        args = dict(arguments or {})
        canonical = mcp_tool_name(self.server, name)
        call = ToolCall(
            tool=canonical,
            args=args,
            principal=caller.principal,
            env=caller.env,
            tenant=caller.tenant,
            run_id=caller.run_id,
            tool_call_id=f"mcp-{uuid.uuid4().hex}",
            framework="mcp",
        )
        why = self._precheck(catalog, name, args)
        if why is not None:
            if self.inline:
                return self._refuse(call, why)
            return await anyio.to_thread.run_sync(self._refuse, call, why)
        if self._inline_ok(call):
            auth = self.veto.authorize(call)
        else:
            auth = await anyio.to_thread.run_sync(self.veto.authorize, call)
        d = auth.decision
        waits = d.effect is Effect.REQUIRE_APPROVAL and d.enforced and auth.approval_error is None
        if waits and auth.approval is not None:
            auth = await self._await_approval(auth, progress)
        return from_authorization(call, auth)

    def _precheck(self, catalog: ToolCatalog | None, name: str, args: dict[str, Any]) -> str | None:
        """Why the proxy refuses this call before the policy sees it, or None."""
        if catalog is None:
            return "the upstream MCP server's tool list is not available"
        if name not in catalog.tools:
            return (
                f"the upstream MCP server {self.server!r} never announced a tool named "
                f"{name!r} in tools/list"
            )
        if name in catalog.ambiguous:
            others = sorted(
                n for n in catalog.ambiguous if catalog.canonical[n] == catalog.canonical[name]
            )
            return (
                f"tools {others} of server {self.server!r} share the policy name "
                f"{catalog.canonical[name]!r}; none of them is forwarded"
            )
        size = len(json.dumps(args, ensure_ascii=False, separators=(",", ":")).encode())
        if size > self.max_arg_bytes:
            return (
                f"arguments are {size} bytes, more than the proxy's limit of {self.max_arg_bytes}"
            )
        try:
            validator = catalog.validator(name)
        except Exception as exc:
            return f"the tool's announced inputSchema cannot be used to check the call: {exc}"
        # Strict validation: a value the server would coerce to another type ("1e3" for
        # a number) is refused, so the policy decides what the tool body receives.
        error = next(iter(validator.iter_errors(args)), None)
        if error is not None:
            where = "/".join(str(p) for p in error.absolute_path) or "(arguments)"
            return f"arguments do not match the tool's inputSchema at {where}: {error.message}"
        return None

    def _refuse(self, call: ToolCall, why: str) -> Verdict:
        """Record the proxy's own refusal (best effort: it is a refusal either way)."""
        veto = self.veto
        p = veto.policy
        decision = make_decision(
            Effect.DENY, (), (), (f"MCP proxy: {why}",), (), p.name, p.revision, None
        )
        record = call
        if why.startswith("arguments are "):
            record = replace(call, args={})  # never store what was refused for its size
        try:
            veto.audit.record_decision(
                record, decision, env=veto.env, tenant=veto.tenant, redact=veto.redact
            )
        except Exception as exc:
            log.warning("the MCP proxy's refusal of %s was not recorded: %s", call.tool, exc)
        return refusal(call.tool, "denied", f"MCP proxy: {why}", decision=decision, call=call)

    async def _await_approval(
        self, auth: Authorization, progress: Progress | None
    ) -> Authorization:
        """Wait for the request's decision, reporting progress; a cancelled wait (the
        client went away or cancelled the call) cancels the request: it never runs."""
        veto = self.veto
        request = auth.approval
        assert request is not None
        service = veto.approvals
        rid = str(request.id)
        started = time.monotonic()
        timeout = auth.decision.approval.timeout_s if auth.decision.approval else None
        try:
            while True:
                state = await anyio.to_thread.run_sync(
                    service.wait, rid, self.approval_poll_s, abandon_on_cancel=True
                )
                if state.final:
                    break
                if progress is not None:
                    waited = time.monotonic() - started
                    await progress(
                        waited,
                        timeout,
                        f"waiting for approval {rid} ({waited:.0f}s): "
                        f"veto approvals approve {rid}, or the dashboard",
                    )
            return await anyio.to_thread.run_sync(veto.wait_for_approval, auth, 0)
        except BaseException:
            with anyio.CancelScope(shield=True):
                try:
                    await anyio.to_thread.run_sync(
                        lambda: service.cancel(
                            rid,
                            by="mcp-proxy",
                            reason="cancelled: the MCP client disconnected or cancelled the "
                            "call while it waited for approval",
                        )
                    )
                except Exception as exc:
                    log.warning("approval %s could not be cancelled: %s", rid, exc)
            raise
