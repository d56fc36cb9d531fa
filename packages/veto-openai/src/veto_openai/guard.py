"""``guard_agent`` / ``guard_tools``: every function tool call of an OpenAI Agents SDK agent
decided by the policy before it runs.

How the SDK (0.20) treats a function tool call, and where Veto sits:

1. ``needs_approval(run_context, args, call_id)`` (only while the call has no SDK
   approval status): Veto answers with the pure ``decide`` — true exactly when the
   policy says ``require_approval`` — and writes nothing.
2. With ``RunConfig(tool_execution=ToolExecutionConfig(pre_approval_tool_input_guardrails=True))``
   (:func:`run_config` builds one) the tool input guardrails run before the SDK pauses:
   the Veto guardrail records the decision and opens the approval request, or
   refuses the call right there (a request already rejected or expired).
3. The call pauses in ``result.interruptions``; :mod:`veto_openai.approvals` applies
   the store's decisions with ``state.approve`` / ``state.reject`` and resumes.
4. Right before the body runs the SDK runs the guardrails again (also after
   ``state.approve()``). The Veto guardrail lets the body run only if the decision is
   allow, or the bound request is APPROVED in the Veto store and is consumed now (once).
   An SDK approval without a store approval runs nothing.

Everything fails closed: an exception anywhere in the check is a refusal the model
reads (``reject_content``) or, with ``on_deny="raise"``, a
``ToolInputGuardrailTripwireTriggered`` that ends the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
import logging
import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, cast

from agents import Agent, FunctionTool, HostedMCPTool, RunConfig
from agents.run_config import ToolExecutionConfig
from agents.run_context import RunContextWrapper
from agents.tool import MCPToolApprovalFunctionResult, MCPToolApprovalRequest, ToolOriginType
from agents.tool_guardrails import (
    ToolGuardrailFunctionOutput,
    ToolInputGuardrail,
    ToolInputGuardrailData,
)
from agents.util._approvals import evaluate_needs_approval_setting

from veto_core import Effect, Principal, ToolCall, Veto

from . import _gate
from ._calls import (
    FRAMEWORK,
    RolesSpec,
    RunIdSpec,
    ToolNames,
    VetoContext,
    args_key,
    parse_arguments,
)
from ._gate import Verdict

__all__ = [
    "GUARDRAIL_NAME",
    "VetoGuard",
    "VetoToolGuardrail",
    "guard_agent",
    "guard_tool",
    "guard_tools",
    "run_config",
]

log = logging.getLogger("veto_openai")

GUARDRAIL_NAME = "veto"
ApprovalMode = Literal["resume", "wait"]
OnDeny = Literal["reject", "raise"]
HostedPolicy = Literal["decide", "keep", "drop"]

_NeedsApproval = bool | Callable[[RunContextWrapper[Any], dict[str, Any], str], Awaitable[bool]]
_MEMO_MAX = 10_000


class VetoGuard:
    """What a guarded tool decides with: the ``Veto``, who calls, and how to pause.

    - ``principal``: the base principal (user, tenant, roles, ...). ``principal.agent``
      becomes the SDK agent's ``name`` on every call.
    - ``roles``: extra roles, for every agent (a list), per agent name (a mapping), or
      a function ``agent name -> roles``.
    - ``env`` / ``tenant`` / ``context``: defaults for every call.
    - ``run_id``: a fixed run id, or a function of the run context object. A
      :class:`VetoContext` in the run context overrides all of these per run.
    - ``approvals``: ``"resume"`` (native: the run pauses in ``result.interruptions``;
      see :mod:`veto_openai.approvals`) or ``"wait"`` (the guardrail blocks until
      the request is decided or ``wait_timeout`` seconds pass; for simple scripts).
    - ``on_deny``: ``"reject"`` (the model reads the reason and the run goes on) or
      ``"raise"`` (``ToolInputGuardrailTripwireTriggered`` ends the run).
    - ``tool_names``: canonical names (aliases, custom mapping).
    - ``hosted_tools``: what to do with tools the SDK runs on OpenAI's side or
      without a function-tool guardrail (web/file search, code interpreter, image
      generation, computer, shells, apply_patch, custom tools): ``"decide"``
      (default) keeps one only if the policy allows a call to its name with no
      arguments, ``"keep"`` keeps them ungoverned, ``"drop"`` removes them. Hosted
      MCP tools are governed per call (see :func:`guard_agent`).
    """

    def __init__(
        self,
        veto: Veto,
        *,
        principal: Principal | None = None,
        roles: RolesSpec = None,
        env: str | None = None,
        tenant: str | None = None,
        run_id: RunIdSpec = None,
        context: Mapping[str, Any] | None = None,
        approvals: ApprovalMode = "resume",
        wait_timeout: float | None = None,
        on_deny: OnDeny = "reject",
        tool_names: ToolNames | None = None,
        hosted_tools: HostedPolicy = "decide",
    ) -> None:
        if approvals not in ("resume", "wait"):
            raise ValueError(f"approvals must be 'resume' or 'wait', not {approvals!r}")
        if on_deny not in ("reject", "raise"):
            raise ValueError(f"on_deny must be 'reject' or 'raise', not {on_deny!r}")
        if hosted_tools not in ("decide", "keep", "drop"):
            raise ValueError(f"hosted_tools must be decide/keep/drop, not {hosted_tools!r}")
        if principal is not None and not isinstance(principal, Principal):
            raise TypeError("principal must be a veto_core.Principal")
        self.veto = veto
        self.principal = principal or Principal()
        self.roles = roles
        self.env = env
        self.tenant = tenant
        self.run_id = run_id
        self.context = dict(context) if context else {}
        self.approvals: ApprovalMode = approvals
        self.wait_timeout = wait_timeout
        self.on_deny: OnDeny = on_deny
        self.tool_names = tool_names or ToolNames()
        self.hosted_tools: HostedPolicy = hosted_tools
        self._asked: OrderedDict[tuple[str, str, str], None] = OrderedDict()
        self._lock = threading.Lock()

    # --- building the call ------------------------------------------------------------

    def _roles_for(self, agent_name: str | None) -> tuple[str, ...]:
        spec = self.roles
        if spec is None:
            return ()
        if callable(spec):
            return tuple(spec(agent_name))
        if isinstance(spec, Mapping):
            return tuple(spec.get(agent_name or "", ()))
        if isinstance(spec, str):
            raise TypeError("roles must be a list of role names, not a string")
        return tuple(spec)

    def build_call(
        self,
        tool: str,
        args: Any,
        *,
        tool_call_id: str | None,
        run_context: Any,
        agent_name: str | None,
    ) -> ToolCall:
        """The Veto ``ToolCall`` for one SDK tool call. Raises on malformed input
        (callers fail closed). ``run_context`` is the user's context object."""
        if not isinstance(tool, str) or not tool:
            raise ValueError(f"tool name is missing or not a string: {tool!r}")
        parsed = parse_arguments(args)
        over = VetoContext.from_run_context(run_context)
        base = (over.principal if over and over.principal else None) or self.principal
        agent = agent_name or base.agent
        extra = self._roles_for(agent) if self.roles is not None else ()
        roles = tuple(dict.fromkeys((*base.roles, *extra))) if extra else base.roles
        principal = Principal(
            agent=agent, roles=roles, tenant=base.tenant, user=base.user, session=base.session
        )
        run_id = over.run_id if over and over.run_id else None
        if run_id is None:
            run_id = self.run_id(run_context) if callable(self.run_id) else self.run_id
        policy_context = self.context
        if over and over.context:
            policy_context = {**self.context, **over.context}
        return ToolCall(
            tool=tool,
            args=parsed,
            principal=principal,
            env=(over.env if over and over.env else None) or self.env,
            tenant=(over.tenant if over and over.tenant else None) or self.tenant,
            context=policy_context,
            run_id=run_id,
            tool_call_id=tool_call_id,
            framework=FRAMEWORK,
        )

    # --- "the SDK asked needs_approval for this call" memo --------------------------------

    def _remember(self, key: tuple[str, str, str], asked: bool) -> None:
        with self._lock:
            if asked:
                self._asked[key] = None
                self._asked.move_to_end(key)
                while len(self._asked) > _MEMO_MAX:
                    self._asked.popitem(last=False)
            else:
                self._asked.pop(key, None)

    def _pop_asked(self, key: tuple[str, str, str]) -> bool:
        with self._lock:
            try:
                del self._asked[key]
            except KeyError:
                return False
            return True

    # --- the three moments of a call ------------------------------------------------------

    def decide_needs_approval(self, call: ToolCall) -> bool:
        """``needs_approval``: the pure decision, no record. True exactly when the
        policy requires approval (and the guard pauses rather than waits)."""
        decision = self.veto.decide(call)
        return (
            self.approvals == "resume"
            and decision.enforced
            and decision.effect is Effect.REQUIRE_APPROVAL
        )

    def before_pause(self, call: ToolCall) -> Verdict | None:
        """The guardrail before the SDK pauses for approval. None: let it pause.

        Records a deny (and refuses), or a require_approval decision with its request
        (pausing unless the request is already closed). An allowed call is not
        recorded here: it pauses for the application's own ``needs_approval`` and is
        recorded when it runs."""
        try:
            request = self.veto.find_approval(call)
            if request is not None:  # decided and recorded before (a re-run of this call)
                if _open(request):
                    return None
                return _gate.not_released(call, self.veto.decide(call), request)
            decision = self.veto.decide(call)
            if decision.effect is Effect.ALLOW or not decision.enforced:
                return None
        except Exception as exc:
            return _gate.error(call.tool, exc)
        verdict, auth = _gate.authorize(self.veto, call)
        if (
            auth is not None
            and auth.decision.effect is Effect.REQUIRE_APPROVAL
            and not auth.approval_error
            and _open(auth.approval)
        ):
            return None
        return verdict

    def after_sdk_approval(self, call: ToolCall) -> Verdict:
        """The guardrail right before the body of a call the SDK approved: it runs only
        if the policy allows it, or its Veto request is APPROVED and consumed now."""
        try:
            request = self.veto.find_approval(call)
        except Exception as exc:
            return _gate.error(call.tool, exc)
        if request is None:  # no Veto request: decided fresh (the SDK approval is no release)
            return self.fresh(call, paused=True)
        try:
            if self.veto.check_approval(call):
                return Verdict(
                    run=True,
                    outcome="approved",
                    reason="",
                    decision=self.veto.decide(call),
                    approval_id=str(request.id),
                )
            decision = self.veto.decide(call)
            current = self.veto.approvals.get(request.id)
        except Exception as exc:
            return _gate.error(call.tool, exc)
        if decision.effect is Effect.DENY:
            return _gate.refusal(
                call.tool, "denied", _gate.decision_text(decision), decision=decision
            )
        note = ""
        if _gate.state_name(current) == "pending":
            note = "; it was approved in the SDK only, which does not release a Veto-governed call"
            self._cancel(current, "the run went on: the call was approved in the SDK only")
        return _gate.not_released(call, decision, current, note)

    def fresh(self, call: ToolCall, *, paused: bool = False) -> Verdict:
        """The guardrail right before the body of a call that did not pause: decide and
        record now; in ``wait`` mode block for a required approval."""
        if self.approvals == "wait":
            return _gate.authorize_and_wait(self.veto, call, self.wait_timeout)
        verdict, auth = _gate.authorize(self.veto, call)
        if verdict.run or auth is None or auth.decision.effect is not Effect.REQUIRE_APPROVAL:
            return verdict
        why = (
            "; the SDK approval alone does not release it"
            if paused
            else "; the run did not pause for it (is the tool's needs_approval intact?)"
        )
        if auth.approval is not None and _gate.state_name(auth.approval) == "pending":
            self._cancel(auth.approval, "the run went on without pausing for this call")
            with contextlib.suppress(Exception):
                auth = dataclasses.replace(auth, approval=self.veto.approvals.get(auth.approval.id))
        return _gate.not_released(call, auth.decision, auth.approval, why)

    def _cancel(self, request: Any, reason: str) -> None:
        with contextlib.suppress(Exception):
            self.veto.approvals.cancel(request.id, by="veto-openai", reason=reason)

    def output(self, verdict: Verdict) -> ToolGuardrailFunctionOutput:
        if verdict.run:
            return ToolGuardrailFunctionOutput.allow(output_info=verdict.info())
        if self.on_deny == "raise":
            return ToolGuardrailFunctionOutput.raise_exception(output_info=verdict.info())
        return ToolGuardrailFunctionOutput.reject_content(
            verdict.reason, output_info=verdict.info()
        )


def _open(request: Any) -> bool:
    """A request that may still release its call: pending, or approved and unused."""
    if request is None:
        return False
    state = _gate.state_name(request)
    return state == "pending" or (state == "approved" and request.consumed_at is None)


# --- the guardrail and the tool copies -----------------------------------------------------


@dataclass
class VetoToolGuardrail(ToolInputGuardrail[Any]):
    """The tool input guardrail Veto adds to a copied ``FunctionTool``."""

    guard: VetoGuard | None = field(default=None, kw_only=True)
    tool: str = field(default="", kw_only=True)  # canonical name
    agent_name: str | None = field(default=None, kw_only=True)
    original_needs_approval: _NeedsApproval = field(default=False, kw_only=True)


def _make_guardrail(
    guard: VetoGuard, canonical: str, agent_name: str | None, original: _NeedsApproval
) -> VetoToolGuardrail:
    async def veto_guardrail(data: ToolInputGuardrailData) -> ToolGuardrailFunctionOutput:
        try:
            verdict = await _check(guard, canonical, agent_name, data)
        except Exception as exc:  # fail closed, whatever happened
            verdict = _gate.error(canonical, exc)
        return guard.output(verdict)

    return VetoToolGuardrail(
        guardrail_function=veto_guardrail,
        name=GUARDRAIL_NAME,
        guard=guard,
        tool=canonical,
        agent_name=agent_name,
        original_needs_approval=original,
    )


async def _check(
    guard: VetoGuard, canonical: str, bound_agent: str | None, data: ToolInputGuardrailData
) -> Verdict:
    ctx = data.context
    agent_name = bound_agent or getattr(data.agent, "name", None)
    try:
        call = guard.build_call(
            canonical,
            ctx.tool_arguments,
            tool_call_id=ctx.tool_call_id,
            run_context=ctx.context,
            agent_name=agent_name,
        )
    except Exception as exc:
        return _gate.error(canonical, exc)
    asked = bool(guard._asked) and guard._pop_asked(
        (canonical, str(ctx.tool_call_id), args_key(call.args))
    )
    status = ctx.get_approval_status(
        ctx.tool_name, ctx.tool_call_id, tool_namespace=ctx.tool_namespace
    )
    if status is None and asked:
        verdict = guard.before_pause(call)
        if verdict is None:
            return Verdict(run=True, outcome="pending", reason="")  # the SDK pauses now
        return verdict
    if status is True:
        if guard.approvals == "wait":  # may block for a fresh approval: keep the loop free
            return await asyncio.to_thread(guard.after_sdk_approval, call)
        return guard.after_sdk_approval(call)
    if guard.approvals == "wait":
        return await asyncio.to_thread(guard.fresh, call)
    return guard.fresh(call)


def _make_needs_approval(
    guard: VetoGuard, canonical: str, agent_name: str | None, original: _NeedsApproval
) -> Callable[[RunContextWrapper[Any], dict[str, Any], str], Awaitable[bool]]:
    async def veto_needs_approval(
        run_context: RunContextWrapper[Any], params: dict[str, Any], call_id: str
    ) -> bool:
        need = False
        key: tuple[str, str, str] | None = None
        try:
            call = guard.build_call(
                canonical,
                params,
                tool_call_id=call_id,
                run_context=run_context.context,
                agent_name=agent_name,
            )
            need = guard.decide_needs_approval(call)
            if need or guard._asked:
                key = (canonical, str(call_id), args_key(call.args))
        except Exception:
            need = False  # the guardrail decides again and refuses (fail closed)
        if not need and original is not False:
            need = await evaluate_needs_approval_setting(original, run_context, params, call_id)
            if need and key is None:
                with contextlib.suppress(Exception):
                    key = (canonical, str(call_id), args_key(parse_arguments(params)))
        if key is not None:
            guard._remember(key, need)
        return need

    return veto_needs_approval


def _veto_guardrail_of(tool: FunctionTool) -> VetoToolGuardrail | None:
    for g in tool.tool_input_guardrails or ():
        if isinstance(g, VetoToolGuardrail):
            return g
    return None


def _guard_function_tool(
    tool: FunctionTool, guard: VetoGuard, *, canonical: str | None, agent_name: str | None
) -> FunctionTool:
    previous = _veto_guardrail_of(tool)
    others = [g for g in (tool.tool_input_guardrails or ()) if not isinstance(g, VetoToolGuardrail)]
    original = previous.original_needs_approval if previous else tool.needs_approval
    name = canonical or guard.tool_names.canonical(tool.name)
    new = copy.copy(tool)
    new.tool_input_guardrails = [_make_guardrail(guard, name, agent_name, original), *others]
    new.needs_approval = _make_needs_approval(guard, name, agent_name, original)
    return new


def guard_tool(tool: FunctionTool, veto: Veto | VetoGuard, **options: Any) -> FunctionTool:
    """A copy of ``tool`` whose every call Veto decides (the original is untouched).

    ``options`` are :class:`VetoGuard`'s, plus ``agent`` (an ``Agent`` or a name) when
    the tool is not attached with :func:`guard_agent`: the principal's agent name for
    the ``needs_approval`` check (the guardrail reads the running agent itself)."""
    agent = options.pop("agent", None)
    guard = veto if isinstance(veto, VetoGuard) else VetoGuard(veto, **options)
    if not isinstance(tool, FunctionTool):
        raise TypeError(f"guard_tool takes a FunctionTool, got {type(tool).__name__}")
    return _guard_function_tool(tool, guard, canonical=None, agent_name=_agent_name(agent))


def guard_tools(tools: Iterable[Any], veto: Veto | VetoGuard, **options: Any) -> list[Any]:
    """Copies of ``tools``: every ``FunctionTool`` guarded, hosted MCP tools governed
    per call, other tools kept or dropped by ``hosted_tools`` (see :class:`VetoGuard`)."""
    agent = options.pop("agent", None)
    guard = veto if isinstance(veto, VetoGuard) else VetoGuard(veto, **options)
    return _guard_tool_list(list(tools), guard, _agent_name(agent))


def _agent_name(agent: Any) -> str | None:
    if agent is None or isinstance(agent, str):
        return agent
    name = getattr(agent, "name", None)
    return name if isinstance(name, str) else None


def _guard_tool_list(tools: list[Any], guard: VetoGuard, agent_name: str | None) -> list[Any]:
    out: list[Any] = []
    for tool in tools:
        if isinstance(tool, FunctionTool):
            out.append(_guard_function_tool(tool, guard, canonical=None, agent_name=agent_name))
        elif isinstance(tool, HostedMCPTool):
            out.append(_guard_hosted_mcp(tool, guard, agent_name))
        elif _keep_ungoverned(tool, guard, agent_name):
            out.append(tool)
    return out


def _tool_name(tool: Any) -> str:
    name = getattr(tool, "name", None)
    return name if isinstance(name, str) and name else type(tool).__name__


def _keep_ungoverned(tool: Any, guard: VetoGuard, agent_name: str | None) -> bool:
    """A tool the SDK gives Veto no per-call hook for: keep it only if configured so."""
    name = guard.tool_names.canonical(_tool_name(tool))
    if guard.hosted_tools == "keep":
        log.warning("veto-openai: tool %r is kept UNGOVERNED (hosted_tools='keep')", name)
        return True
    if guard.hosted_tools == "drop":
        log.warning("veto-openai: tool %r removed: Veto cannot check its calls", name)
        return False
    try:
        call = guard.build_call(
            name, {}, tool_call_id=None, run_context=None, agent_name=agent_name
        )
        decision = guard.veto.decide(call)
    except Exception as exc:
        log.warning("veto-openai: tool %r removed: the policy check failed: %s", name, exc)
        return False
    if decision.effect is Effect.ALLOW:
        log.info(
            "veto-openai: tool %r kept: the policy allows it (its calls are not checked)", name
        )
        return True
    log.warning(
        "veto-openai: tool %r removed: Veto cannot check its calls and the policy says %s (%s)",
        name,
        decision.effect.value,
        decision.reason,
    )
    return False


# --- hosted MCP: the SDK asks on_approval_request before OpenAI runs the call ----------------


def _guard_hosted_mcp(tool: HostedMCPTool, guard: VetoGuard, agent_name: str | None) -> Any:
    config = dict(tool.tool_config)
    server = str(config.get("server_label") or "hosted")
    config["require_approval"] = "always"

    async def on_approval_request(request: MCPToolApprovalRequest) -> MCPToolApprovalFunctionResult:
        data = request.data
        name = guard.tool_names.mcp(server, str(getattr(data, "name", "") or ""))
        try:
            call = guard.build_call(
                name,
                getattr(data, "arguments", None),
                tool_call_id=getattr(data, "id", None),
                run_context=request.ctx_wrapper.context,
                agent_name=agent_name,
            )
        except Exception as exc:
            verdict = _gate.error(name, exc)
        else:
            verdict = await asyncio.to_thread(
                _gate.authorize_and_wait, guard.veto, call, guard.wait_timeout
            )
        if verdict.run:
            return {"approve": True}
        return {"approve": False, "reason": verdict.reason}

    return dataclasses.replace(
        tool, tool_config=cast(Any, config), on_approval_request=on_approval_request
    )


# --- agents ----------------------------------------------------------------------------------


def guard_agent(agent: Agent[Any], veto: Veto | VetoGuard, **options: Any) -> Agent[Any]:
    """A copy of ``agent`` whose tool calls Veto decides (the original is untouched).

    - every ``FunctionTool`` is a copy with the Veto guardrail and ``needs_approval``;
    - tools of the agent's ``mcp_servers`` (listed by the SDK at run time) are guarded
      the same way, named ``mcp__<server>__<tool>``;
    - hosted MCP tools (``HostedMCPTool``) ask Veto on every approval request (the
      server is set to ``require_approval="always"``; a required approval waits in
      place, ``wait_timeout`` seconds at most);
    - other hosted/local tools follow ``hosted_tools`` (see :class:`VetoGuard`);
    - ``handoffs`` to ``Agent`` objects are guarded recursively (``Handoff`` objects
      built with ``handoff()`` are kept: their target agent is theirs to guard).

    ``options`` are :class:`VetoGuard`'s. Run it with :func:`run_config` so approvals
    are recorded when the run pauses.
    """
    guard = veto if isinstance(veto, VetoGuard) else VetoGuard(veto, **options)
    return _guard_agent(agent, guard, {})


def _guard_agent(agent: Agent[Any], guard: VetoGuard, seen: dict[int, Agent[Any]]) -> Agent[Any]:
    if id(agent) in seen:
        return seen[id(agent)]
    if not isinstance(agent, Agent):
        raise TypeError(f"guard_agent takes an agents.Agent, got {type(agent).__name__}")
    base_cls = getattr(type(agent), "__veto_base__", type(agent))
    cls = type(
        f"Veto{base_cls.__name__}",
        (base_cls,),
        {"__veto_guard__": guard, "__veto_base__": base_cls, "get_mcp_tools": _guarded_mcp_tools},
    )
    new = copy.copy(agent)
    new.__class__ = cls
    seen[id(agent)] = new
    new.tools = _guard_tool_list(list(agent.tools), guard, agent.name)
    new.handoffs = [
        _guard_agent(h, guard, seen) if isinstance(h, Agent) else h for h in agent.handoffs
    ]
    return new


async def _guarded_mcp_tools(self: Agent[Any], run_context: RunContextWrapper[Any]) -> list[Any]:
    base_cls = type(self).__veto_base__  # type: ignore[attr-defined]
    tools = await base_cls.get_mcp_tools(self, run_context)
    guard: VetoGuard = type(self).__veto_guard__  # type: ignore[attr-defined]
    out: list[Any] = []
    for tool in tools:
        if isinstance(tool, FunctionTool):
            name = mcp_canonical_name(guard, tool.name, getattr(tool, "_tool_origin", None))
            out.append(_guard_function_tool(tool, guard, canonical=name, agent_name=self.name))
        elif _keep_ungoverned(tool, guard, self.name):
            out.append(tool)
    return out


def mcp_canonical_name(guard: VetoGuard, name: str, origin: Any) -> str:
    """``mcp__<server>__<tool>`` for a tool of a local MCP server, else the plain name."""
    server = getattr(origin, "mcp_server_name", None)
    if getattr(origin, "type", None) == ToolOriginType.MCP and server:
        return guard.tool_names.mcp(str(server), name)
    return guard.tool_names.canonical(name)


def guard_of(agent: Any) -> VetoGuard | None:
    """The guard ``guard_agent`` attached to ``agent`` (None for other agents)."""
    guard = getattr(type(agent), "__veto_guard__", None)
    return guard if isinstance(guard, VetoGuard) else None


def run_config(base: RunConfig | None = None, **overrides: Any) -> RunConfig:
    """``base`` (or a new ``RunConfig``) with the tool input guardrails running before
    the SDK pauses for approval, so Veto records the decision and opens the approval
    request as the run pauses (and refuses a call whose request is already closed)."""
    cfg = dataclasses.replace(base, **overrides) if base is not None else RunConfig(**overrides)
    execution = cfg.tool_execution or ToolExecutionConfig()
    cfg.tool_execution = dataclasses.replace(execution, pre_approval_tool_input_guardrails=True)
    return cfg
