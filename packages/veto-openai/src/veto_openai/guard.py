"""``guard_agent`` / ``guard_tools``: every function tool call of an OpenAI Agents SDK agent
decided by the policy before it runs (openai-agents 0.20 to 0.24).

Where Veto sits in a function tool call:

1. ``needs_approval(run_context, args, call_id)`` (while the call has no SDK approval
   status): the pure ``decide`` — true exactly when the policy says
   ``require_approval`` — nothing written.
2. The tool input guardrail ``veto`` (before the SDK pauses, with :func:`run_config`,
   and again right before the body): records and refuses a denied call, records the
   decision and opens the approval request of a ``require_approval`` call (the SDK
   then pauses), refuses a call whose request is already closed. It lets allowed and
   SDK-approved calls through to step 3.
3. The **body gate**: the copy's ``on_invoke_tool`` wraps the original one, so nothing
   reaches the tool body without passing it, whatever the SDK version does before.
   The body runs only if the decision is allow (recorded now), or the bound request
   is APPROVED in the Veto store and is consumed now (once). An SDK approval without a
   store approval runs nothing.

Arguments are checked against the tool's JSON Schema first (:class:`ArgumentSchema`):
the decision is made on the values the tool receives. Tools reached at run time are
decided too: tools added to a guarded agent after ``guard_agent`` (its
``get_all_tools`` guards what the SDK gets each turn), handoff targets, and every agent
run inside a guarded tool body (``Agent.as_tool``): while a guarded tool runs, a
nested run's tools are guarded with the same guard (see :func:`_scoped_get_all_tools`).

Runs and data flow (DESIGN.md 2.7): after the body of an allowed (or approved and
consumed) call ran, the body gate records its output in the call's run
(``veto.observe``, effect ``require_approval`` for an approved one) before the model
sees it; an output that cannot be recorded (no ``run_id``, the store down) is withheld
and the model reads why. A guarded agent's input guardrail (:class:`VetoInputGuardrail`,
run before the first model call, not in parallel) records the run input as ``"@user"``
once per ``Runner.run``/``run_sync`` (not on a resume from a ``RunState``: the run's
history is in the store; not for an agent run inside a guarded tool, whose input a
model wrote); tool outputs of earlier turns in that input (a session, a re-sent input
list) are recorded as outputs of their tools. Hosted tools (OpenAI-side web/file search,
code interpreter, hosted MCP) return their output to the model without passing Veto: it
cannot be observed, so one that the policy's sources label is dropped ("decide") or its
hosted MCP calls refused.

Everything fails closed: an exception anywhere in the check is a refusal the model
reads (``reject_content``) or, with ``on_deny="raise"``, a
``ToolInputGuardrailTripwireTriggered`` that ends the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
import functools
import logging
import threading
from collections.abc import Awaitable, Callable, Iterable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Literal, cast

from agents import (
    Agent,
    FunctionTool,
    GuardrailFunctionOutput,
    Handoff,
    HostedMCPTool,
    InputGuardrail,
    RunConfig,
)
from agents.agent import AgentBase
from agents.exceptions import ToolInputGuardrailTripwireTriggered
from agents.run_config import ToolExecutionConfig
from agents.run_context import RunContextWrapper
from agents.tool import MCPToolApprovalFunctionResult, MCPToolApprovalRequest, ToolOriginType
from agents.tool_context import ToolContext
from agents.tool_guardrails import (
    ToolGuardrailFunctionOutput,
    ToolInputGuardrail,
    ToolInputGuardrailData,
)
from agents.util._approvals import evaluate_needs_approval_setting

from veto_core import Effect, Principal, ToolCall, Veto
from veto_core.adapters import (
    aobserve_output,
    error_text,
    observe_output,
    observe_user_input,
    recorded_call_ids,
)

from . import _gate
from ._calls import (
    FRAMEWORK,
    ArgumentSchema,
    RolesSpec,
    RunIdSpec,
    ToolNames,
    VetoContext,
    parse_arguments,
)
from ._gate import Verdict

__all__ = [
    "GUARDRAIL_NAME",
    "INPUT_GUARDRAIL_NAME",
    "VetoGuard",
    "VetoInputGuardrail",
    "VetoToolGuardrail",
    "guard_agent",
    "guard_tool",
    "guard_tools",
    "run_config",
]

log = logging.getLogger("veto_openai")

GUARDRAIL_NAME = "veto"
INPUT_GUARDRAIL_NAME = "veto-run-input"
ApprovalMode = Literal["resume", "wait"]
OnDeny = Literal["reject", "raise"]
HostedPolicy = Literal["decide", "keep", "drop"]

_NeedsApproval = bool | Callable[[RunContextWrapper[Any], dict[str, Any], str], Awaitable[bool]]
_Invoker = Callable[[ToolContext[Any], str], Awaitable[Any]]
_COPIES_MAX = 4096
_CALLS_MAX = 256  # calls in flight between a guardrail and its body gate


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
      see :mod:`veto_openai.approvals`) or ``"wait"`` (the call blocks until the
      request is decided or ``wait_timeout`` seconds pass; for simple scripts).
    - ``on_deny``: ``"reject"`` (the model reads the reason and the run goes on) or
      ``"raise"`` (``ToolInputGuardrailTripwireTriggered`` ends the run).
    - ``tool_names``: canonical names (aliases, custom mapping).
    - ``hosted_tools``: what to do with tools the SDK runs on OpenAI's side or
      without a function-tool guardrail (web/file search, code interpreter, image
      generation, computer, shells, apply_patch, custom tools): ``"decide"``
      (default) keeps one for a run only if the policy allows that run's principal a
      call to its name with no arguments, ``"keep"`` keeps them ungoverned,
      ``"drop"`` removes them. Hosted MCP tools are governed per call. When the
      policy records runs and a ``sources`` entry names such a tool, its output could
      not be recorded for flow rules: ``"decide"`` drops it, ``"keep"`` keeps it with a
      warning, and a hosted MCP call it names is refused.
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
        # Guarded copies made at run time, per original object (kept alive with it), so
        # each turn reuses one copy: {(id(original), agent, nested): (original, copy)}.
        self._copies: dict[tuple[int, str | None, bool], tuple[Any, Any]] = {}
        self._lock = threading.Lock()
        self._principals: dict[tuple[Principal, str | None, tuple[str, ...]], Principal] = {}
        # Calls built from JSON text, so the body gate reuses the guardrail's (see build_call).
        self._calls: dict[tuple[Any, ...], tuple[Any, ...]] = {}
        self._input_guardrail: VetoInputGuardrail | None = None
        self._warned: set[str] = set()

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

    def _principal(self, base: Principal, agent: str | None, extra: tuple[str, ...]) -> Principal:
        """``base`` as ``agent`` with ``extra`` roles: a frozen value, made once per
        combination (the SDK shows one call to Veto three times)."""
        key = (base, agent, extra)
        hit = self._principals.get(key)
        if hit is not None:
            return hit
        roles = tuple(dict.fromkeys((*base.roles, *extra))) if extra else base.roles
        made = Principal(
            agent=agent, roles=roles, tenant=base.tenant, user=base.user, session=base.session
        )
        if len(self._principals) >= _COPIES_MAX:
            self._principals.clear()
        self._principals[key] = made
        return made

    def build_call(
        self,
        tool: str,
        args: Any,
        *,
        tool_call_id: str | None,
        run_context: Any,
        agent_name: str | None,
        schema: ArgumentSchema | None = None,
    ) -> ToolCall:
        """The Veto ``ToolCall`` for one SDK tool call. Raises on malformed input,
        and on arguments ``schema`` does not accept (callers fail closed).
        ``run_context`` is the user's context object.

        The SDK shows one call with the same JSON text to the guardrail and to the body
        gate: the call built for it is reused while everything it was built from is the
        same (the same run context object carrying the same ``VetoContext``, this guard's
        settings unchanged; not with a ``run_id``/``roles`` function or a per-run
        ``context``, which may change in place). Equal to `_build_call`'s, always."""
        if not isinstance(args, str) or not args or callable(self.run_id) or callable(self.roles):
            return self._build_call(
                tool, args, tool_call_id=tool_call_id, run_context=run_context,
                agent_name=agent_name, schema=schema,
            )  # fmt: skip
        over = VetoContext.from_run_context(run_context)
        if over is not None and over.context:
            return self._build_call(
                tool, args, tool_call_id=tool_call_id, run_context=run_context,
                agent_name=agent_name, schema=schema,
            )  # fmt: skip
        key = (tool, args, tool_call_id, agent_name, id(run_context), id(schema))
        settings = (self.principal, self.env, self.tenant, self.context)
        hit = self._calls.get(key)
        if (
            hit is not None
            and hit[0] is run_context
            and hit[1] is schema
            and hit[2] is over
            and all(a is b for a, b in zip(hit[3], settings, strict=True))
        ):
            call: ToolCall = hit[4]
            return call
        call = self._build_call(
            tool, args, tool_call_id=tool_call_id, run_context=run_context,
            agent_name=agent_name, schema=schema,
        )  # fmt: skip
        if len(self._calls) >= _CALLS_MAX:
            self._calls.clear()
        self._calls[key] = (run_context, schema, over, settings, call)
        return call

    def _build_call(
        self,
        tool: str,
        args: Any,
        *,
        tool_call_id: str | None,
        run_context: Any,
        agent_name: str | None,
        schema: ArgumentSchema | None = None,
    ) -> ToolCall:
        """`build_call` without reuse (the reference it is tested against)."""
        if not isinstance(tool, str) or not tool:
            raise ValueError(f"tool name is missing or not a string: {tool!r}")
        parsed = parse_arguments(args)
        if schema is not None:
            schema.check(parsed, text=args if isinstance(args, str) and args else None)
        who = self.identity(run_context, agent_name)
        return ToolCall(
            tool=tool,
            args=parsed,
            principal=who.principal or self.principal,
            env=who.env,
            tenant=who.tenant,
            context=who.context or {},
            run_id=who.run_id,
            tool_call_id=tool_call_id,
            framework=FRAMEWORK,
        )

    def identity(self, run_context: Any, agent_name: str | None) -> VetoContext:
        """Who calls, where, and in which run, for the SDK run context object
        ``run_context`` (the guard's defaults under its :class:`VetoContext`)."""
        over = VetoContext.from_run_context(run_context)
        base = (over.principal if over and over.principal else None) or self.principal
        agent = agent_name or base.agent
        extra = self._roles_for(agent) if self.roles is not None else ()
        principal = self._principal(base, agent, extra)
        run_id = over.run_id if over and over.run_id else None
        if run_id is None:
            run_id = self.run_id(run_context) if callable(self.run_id) else self.run_id
        policy_context = self.context
        if over and over.context:
            policy_context = {**self.context, **over.context}
        return VetoContext(
            principal=principal,
            env=(over.env if over and over.env else None) or self.env,
            tenant=(over.tenant if over and over.tenant else None) or self.tenant,
            run_id=run_id,
            context=policy_context,
        )

    def warn_once(self, key: str, message: str) -> None:
        """Log ``message`` as a warning the first time ``key`` is seen by this guard."""
        with self._lock:
            if key in self._warned:
                return
            self._warned.add(key)
        log.warning("%s", message)

    # --- the run's input --------------------------------------------------------------------

    @property
    def input_guardrail(self) -> VetoInputGuardrail:
        """The input guardrail that records a run's human input as ``"@user"`` before
        the first model call (:func:`guard_agent` adds it to every guarded agent; add it
        to an agent's ``input_guardrails`` yourself when you only use :func:`guard_tools`)."""
        made = self._input_guardrail
        if made is None:
            made = self._input_guardrail = _make_input_guardrail(self)
        return made

    def observe_input(self, run_context: Any, agent_name: str | None, input: Any) -> str | None:
        """Record the run input (a string, or the text of its ``role: user`` items) in
        the run as ``"@user"`` (DESIGN 2.7). None when recorded (or not the person's:
        a run inside a guarded tool gets its input from a model); else why not."""
        if _SCOPE.get() is not None:
            return None  # Agent.as_tool / a run in a tool body: the input is model text
        if not self.veto.observes_runs:
            return None  # the policy keeps no run history: nothing to record
        who = self.identity(run_context, agent_name)
        try:
            text = user_text(input)
        except Exception as exc:
            why: str | None = (
                "Veto: the run's input could not be recorded in its history (fail closed): "
                f"{type(exc).__name__}: {exc}"
            )
        else:
            why = observe_user_input(
                self.veto,
                run_id=who.run_id or "",
                text=text,
                principal=who.principal,
                env=who.env,
                tenant=who.tenant,
            )
        return why

    def observe_history(self, run_context: Any, agent_name: str | None, input: Any) -> str | None:
        """Record every tool output in the run input (history a ``Session`` or
        ``result.to_input_list()`` carries into this run) as the output of its tool,
        unless this run recorded that ``tool_call_id`` already: the model reads it, so
        flow rules must see it (DESIGN 2.7). None when recorded (or nothing to record);
        else why not (the caller then lets no tool call of the run run: fail closed)."""
        if not self.veto.observes_runs or isinstance(input, str):
            return None
        try:
            outputs = history_outputs(input, self.tool_names)
            if not outputs:
                return None
            who = self.identity(run_context, agent_name)
            if not who.run_id:
                raise ValueError("the run has no run_id")
            probe = ToolCall(
                tool="@history", args={}, principal=who.principal or self.principal,
                tenant=who.tenant, run_id=who.run_id,
            )  # fmt: skip
            recorded = recorded_call_ids(self.veto, probe)
        except Exception as exc:
            return (
                "Veto: tool outputs in the run's input (its history) could not be recorded "
                f"in the run, which the policy's flow rules read (fail closed): "
                f"{type(exc).__name__}: {exc}"
            )
        for out in outputs:
            if out.call_id in recorded:
                continue
            if out.tool is None:
                return (
                    "Veto: the run's input (its history) holds the output of tool call "
                    f"{out.call_id!r} whose tool is unknown (no matching call item), so it "
                    "cannot be recorded for the policy's flow rules (fail closed)"
                )
            try:
                call = self.build_call(
                    out.tool, out.args, tool_call_id=out.call_id, run_context=run_context,
                    agent_name=agent_name,
                )  # fmt: skip
            except Exception:  # arguments that do not parse: record the output anyway
                call = self.build_call(
                    out.tool, {}, tool_call_id=out.call_id, run_context=run_context,
                    agent_name=agent_name,
                )  # fmt: skip
            why = observe_output(self.veto, call, out.output)
            if why is not None:
                return why
            recorded.add(out.call_id)
        return None

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

    def at_guardrail(self, call: ToolCall, *, can_pause: bool) -> Verdict | None:
        """The tool input guardrail (before the SDK pauses, and before the body).
        None: let the call go on (the SDK pauses it, or the body gate decides).

        Records and refuses a denied call; records a require_approval decision and
        opens its request (``can_pause``: the call may pause for it); refuses a call
        whose request is already closed. Allowed calls are recorded by the body gate."""
        try:
            decision = self.veto.decide(call)
            if decision.effect is Effect.ALLOW or not decision.enforced:
                return None  # recorded by the body gate (no store read on the hot path)
            request = _find(self.veto, call)
            if request is not None:  # decided and recorded before (a re-run of this call)
                if _open(request):
                    return None
                return _gate.not_released(call, decision, request)
            if decision.effect is Effect.REQUIRE_APPROVAL and not can_pause:
                return None  # the body gate waits for it, or refuses it
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

    def at_body(self, call: ToolCall, *, sdk_approved: bool, nested: bool) -> Verdict:
        """The body gate, right before the tool body: runs only if allowed now (and
        recorded), or the call's Veto request is APPROVED and consumed now."""
        try:
            allowed = self.veto.decide(call).effect is Effect.ALLOW
        except Exception:
            allowed = False  # recorded below, failing closed with the reason
        # An allowed call has nothing to release: decide and record it (one store write);
        # only a call that is not allowed now may have an approval to consume.
        request = None if allowed else _find(self.veto, call)
        if request is None:
            return self.fresh(call, sdk_approved=sdk_approved, nested=nested)
        try:
            if self.approvals == "wait" and _gate.state_name(request) == "pending":
                self.veto.approvals.wait(request.id, self.wait_timeout)
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
            note = (
                "; it was approved in the SDK only, which does not release a Veto-governed call"
                if sdk_approved
                else "; the run went on without pausing for it"
            )
            self._cancel(current, "the run went on: the call was not approved in Veto")
            with contextlib.suppress(Exception):
                current = self.veto.approvals.get(request.id)
        return _gate.not_released(call, decision, current, note)

    def fresh(self, call: ToolCall, *, sdk_approved: bool = False, nested: bool = False) -> Verdict:
        """Decide and record now; in ``wait`` mode block for a required approval."""
        if self.approvals == "wait":
            return _gate.authorize_and_wait(self.veto, call, self.wait_timeout)
        verdict, auth = _gate.authorize(self.veto, call)
        if verdict.run or auth is None or auth.decision.effect is not Effect.REQUIRE_APPROVAL:
            return verdict
        if nested:
            why = (
                "; it was called by an agent run inside a tool (Agent.as_tool), which "
                "cannot pause for approval (guard with approvals='wait' to wait for it)"
            )
        elif sdk_approved:
            why = "; the SDK approval alone does not release it"
        else:
            why = "; the run did not pause for it (is the tool's needs_approval intact?)"
        if auth.approval is not None and _gate.state_name(auth.approval) == "pending":
            self._cancel(auth.approval, "the run went on without pausing for this call")
            with contextlib.suppress(Exception):
                auth = dataclasses.replace(auth, approval=self.veto.approvals.get(auth.approval.id))
        return _gate.not_released(call, auth.decision, auth.approval, why)

    # Kept for callers of the 0.1 API: the body gate after an SDK approval.
    def after_sdk_approval(self, call: ToolCall) -> Verdict:
        return self.at_body(call, sdk_approved=True, nested=False)

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

    # --- what runs at run time --------------------------------------------------------------

    def _cached(
        self, original: Any, key: tuple[int, str | None, bool], make: Callable[[], Any]
    ) -> Any:
        with self._lock:
            hit = self._copies.get(key)
            if hit is not None and hit[0] is original:
                return hit[1]
        made = make()
        with self._lock:
            if len(self._copies) >= _COPIES_MAX:  # tools made per call: don't grow forever
                self._copies.clear()
            self._copies[key] = (original, made)
        return made

    def runtime_tools(
        self,
        tools: Iterable[Any],
        *,
        agent_name: str | None,
        run_context: RunContextWrapper[Any] | None,
        nested: bool = False,
    ) -> list[Any]:
        """``tools`` as a guarded agent hands them to the SDK for one turn: every
        function tool guarded (a copy made once per original), hosted MCP tools governed,
        other hosted tools decided for this run's principal."""
        out: list[Any] = []
        for tool in tools:
            if isinstance(tool, FunctionTool):
                if _is_guarded_by(tool, self, nested):
                    out.append(tool)
                    continue
                name = mcp_canonical_name(self, tool.name, getattr(tool, "_tool_origin", None))
                out.append(
                    self._cached(
                        tool,
                        (id(tool), agent_name, nested),
                        functools.partial(
                            _guard_function_tool,
                            tool,
                            self,
                            canonical=name,
                            agent_name=agent_name,
                            nested=nested,
                        ),
                    )
                )
            elif isinstance(tool, HostedMCPTool):
                if getattr(tool, "_veto_guard", None) is self:
                    out.append(tool)
                else:
                    out.append(
                        self._cached(
                            tool,
                            (id(tool), agent_name, nested),
                            functools.partial(_guard_hosted_mcp, tool, self, agent_name),
                        )
                    )
            elif _keep_ungoverned(
                tool, self, agent_name, run_context.context if run_context else None
            ):
                out.append(tool)
        return out

    def guarded_agent(self, agent: Any) -> Any:
        """A guarded copy of a handoff target (one per original agent)."""
        if not isinstance(agent, Agent) or guard_of(agent) is self:
            return agent
        return self._cached(agent, (id(agent), None, False), lambda: _guard_agent(agent, self, {}))

    def guarded_handoff(self, item: Any) -> Any:
        if isinstance(item, Agent):
            return self.guarded_agent(item)
        if isinstance(item, Handoff) and getattr(item, "_veto_guard", None) is not self:
            return self._cached(item, (id(item), None, False), lambda: _guard_handoff(item, self))
        return item


def _find(veto: Veto, call: ToolCall) -> Any:
    """The call's approval request, or None; a store that cannot be read is None here:
    the caller then records the decision, which fails closed with the store's reason
    (``audit unavailable``) and never releases a call without an APPROVED request."""
    try:
        return veto.find_approval(call)
    except Exception:
        return None


def _open(request: Any) -> bool:
    """A request that may still release its call: pending, or approved and unused."""
    if request is None:
        return False
    state = _gate.state_name(request)
    return state == "pending" or (state == "approved" and request.consumed_at is None)


# --- the guardrail, the body gate and the tool copies -----------------------------------------


@dataclass
class VetoToolGuardrail(ToolInputGuardrail[Any]):
    """The tool input guardrail Veto adds to a copied ``FunctionTool``."""

    guard: VetoGuard | None = field(default=None, kw_only=True)
    tool: str = field(default="", kw_only=True)  # canonical name
    agent_name: str | None = field(default=None, kw_only=True)
    original_needs_approval: _NeedsApproval = field(default=False, kw_only=True)
    original_invoker: Any = field(default=None, kw_only=True)
    nested: bool = field(default=False, kw_only=True)


@dataclass
class VetoInputGuardrail(InputGuardrail[Any]):
    """The input guardrail Veto adds to a guarded agent: it records the run's human
    input as ``"@user"`` before the first model call (it runs before the model, not in
    parallel). When that fails the run goes on without it (logged, and in the result's
    ``input_guardrail_results``): its history lacks the person's words, so rules that
    allow what the user named (``tainted_by: user``) do not allow; nothing else is
    loosened."""

    guard: VetoGuard | None = field(default=None, kw_only=True)


def _make_input_guardrail(guard: VetoGuard) -> VetoInputGuardrail:
    async def veto_run_input(
        context: RunContextWrapper[Any], agent: Agent[Any], input: Any
    ) -> GuardrailFunctionOutput:
        if not guard.veto.observes_runs:  # nothing would be recorded: no thread hop
            return GuardrailFunctionOutput(
                output_info={"veto": {"outcome": "not recorded", "reason": None}},
                tripwire_triggered=False,
            )
        name = getattr(agent, "name", None)
        try:
            why = await asyncio.to_thread(guard.observe_input, context.context, name, input)
        except Exception as exc:  # no identity for the run: its tool calls fail too
            why = f"Veto: the run's identity could not be read: {type(exc).__name__}: {exc}"
        if why is not None:
            log.warning("veto-openai: %s", why)
        # Tool outputs the run input carries (a Session's history, to_input_list()) are
        # read by the model: unrecorded, flow rules would not see them. Fail closed: the
        # run ends here, before the first model call, so none of its tool calls runs.
        try:
            history = await asyncio.to_thread(guard.observe_history, context.context, name, input)
        except Exception as exc:
            history = (
                "Veto: tool outputs in the run's input could not be recorded (fail closed): "
                f"{type(exc).__name__}: {exc}"
            )
        if history is not None:
            log.warning("veto-openai: %s", history)
            return GuardrailFunctionOutput(
                output_info={"veto": {"outcome": "error", "reason": history}},
                tripwire_triggered=True,
            )
        # The run goes on without the person's words in its history: a `tainted_by: user`
        # condition is then false, so what only the user could name is not allowed; each
        # tool call is still decided (a store that is down refuses it) and an output that
        # cannot be recorded is withheld. The reason is in result.input_guardrail_results.
        return GuardrailFunctionOutput(
            output_info={"veto": {"outcome": "error" if why else "recorded", "reason": why}},
            tripwire_triggered=False,
        )

    return VetoInputGuardrail(
        guardrail_function=veto_run_input,
        name=INPUT_GUARDRAIL_NAME,
        run_in_parallel=False,
        guard=guard,
    )


def user_text(input: Any) -> str:
    """The person's words in an SDK run input: the string itself, or the text of the
    ``role: user`` items of an input list (string content, or its text parts), one
    per line. Anything else is a ``TypeError`` (the run does not start)."""
    if isinstance(input, str):
        return input
    if not isinstance(input, list | tuple):
        raise TypeError(f"the run input is neither a string nor a list of items: {input!r}")
    texts: list[str] = []
    for item in input:
        if _field(item, "role") != "user":
            continue
        content = _field(item, "content")
        if isinstance(content, str):
            texts.append(content)
            continue
        for part in content or ():
            text = _field(part, "text")
            if isinstance(text, str):
                texts.append(text)
    return "\n".join(texts)


@dataclass(frozen=True)
class HistoryOutput:
    """One tool output in a run input: its call id, its tool's canonical name (None:
    unknown), the call's arguments and the output the model reads."""

    call_id: str
    tool: str | None
    args: Any
    output: Any


# output item type -> the type of the call item it answers
_OUTPUT_OF = {
    "function_call_output": "function_call",
    "custom_tool_call_output": "custom_tool_call",
    "computer_call_output": "computer_call",
    "local_shell_call_output": "local_shell_call",
    "shell_call_output": "shell_call",
    "apply_patch_call_output": "apply_patch_call",
}
# call types without a name of their own: the SDK tool's name
_FIXED_NAMES = {
    "computer_call": "computer_use_preview",
    "local_shell_call": "local_shell",
    "shell_call": "shell",
    "apply_patch_call": "apply_patch",
}
# hosted calls whose item carries what the model read: type -> (tool name, output fields)
_HOSTED_OUTPUTS = {
    "file_search_call": ("file_search", ("results",)),
    "code_interpreter_call": ("code_interpreter", ("outputs",)),
    "web_search_call": ("web_search", ("action",)),
}
# items that are tool output but not a tool's text the model could copy from
_NOT_OUTPUTS = {"tool_search_output", "image_generation_call", "mcp_list_tools"}


def _plain(value: Any) -> Any:
    dump = getattr(value, "model_dump", None)
    return dump(exclude_none=True) if callable(dump) else value


def history_outputs(input: Any, names: ToolNames) -> list[HistoryOutput]:
    """The tool outputs in an SDK run input list, in order: each ``*_call_output``
    item with the tool named by the call item of the same ``call_id`` (None when there
    is none), and the outputs hosted call items carry (hosted MCP, file search, code
    interpreter, web search). An output item of an unknown type is an output of an
    unknown tool (fail closed)."""
    if not isinstance(input, list | tuple):
        raise TypeError(f"the run input is neither a string nor a list of items: {input!r}")
    items = [_plain(i) for i in input]
    calls: dict[tuple[str, str], Any] = {}
    for item in items:
        kind, call_id = _field(item, "type"), _field(item, "call_id")
        if isinstance(kind, str) and isinstance(call_id, str):
            calls.setdefault((kind, call_id), item)
    found: list[HistoryOutput] = []
    for item in items:
        kind = _field(item, "type")
        if not isinstance(kind, str) or kind in _NOT_OUTPUTS:
            continue
        if kind == "mcp_call":
            server = str(_field(item, "server_label") or "hosted")
            tool = names.mcp(server, str(_field(item, "name") or ""))
            found.append(
                HistoryOutput(
                    str(_field(item, "id") or ""), tool, _field(item, "arguments") or {},
                    [_field(item, "output"), _field(item, "error")],
                )
            )  # fmt: skip
            continue
        if kind in _HOSTED_OUTPUTS:
            tool, fields = _HOSTED_OUTPUTS[kind]
            output = [_field(item, f) for f in fields]
            found.append(HistoryOutput(str(_field(item, "id") or ""), tool, {}, output))
            continue
        if not kind.endswith("_output"):
            continue
        call_id = _field(item, "call_id") or _field(item, "id")
        call_id = str(call_id) if call_id else ""
        call_kind = _OUTPUT_OF.get(kind)
        call = calls.get((call_kind, call_id)) if call_kind and call_id else None
        name: str | None = None
        args: Any = {}
        if call is not None and call_kind is not None:
            raw = _FIXED_NAMES.get(call_kind) or _field(call, "name")
            if isinstance(raw, str) and raw:
                name = names.canonical(raw)
            args = _field(call, "arguments") or _field(call, "input") or {}
            if not isinstance(args, str | Mapping):
                args = {}
        found.append(HistoryOutput(call_id or f"<{kind}>", name, args, _field(item, "output")))
    return found


def _field(item: Any, name: str) -> Any:
    return item.get(name) if isinstance(item, Mapping) else getattr(item, name, None)


# While a guarded tool body runs, agents run inside it (``Agent.as_tool``, or any
# ``Runner.run`` in a tool) have their tools guarded with the same guard.
_SCOPE: ContextVar[VetoGuard | None] = ContextVar("veto_openai_scope", default=None)


def _approval_status(ctx: Any) -> bool | None:
    """The SDK's approval status of the call (True: ``state.approve``); None when it
    has none or cannot say. Only used to tell the moments apart and for messages: a
    True never releases a call by itself."""
    try:
        status = ctx.is_tool_approved(ctx.tool_name, ctx.tool_call_id)
        if status is None:
            status = ctx.get_approval_status(
                ctx.tool_name, ctx.tool_call_id, tool_namespace=getattr(ctx, "tool_namespace", None)
            )
    except Exception:
        return None
    return status if isinstance(status, bool) else None


def _make_guardrail(
    guard: VetoGuard,
    canonical: str,
    agent_name: str | None,
    original: _NeedsApproval,
    schema: ArgumentSchema,
    *,
    nested: bool,
    original_invoker: Any,
) -> VetoToolGuardrail:
    async def veto_guardrail(data: ToolInputGuardrailData) -> ToolGuardrailFunctionOutput:
        ctx = data.context
        try:
            call = guard.build_call(
                canonical,
                ctx.tool_arguments,
                tool_call_id=ctx.tool_call_id,
                run_context=ctx.context,
                agent_name=agent_name or getattr(data.agent, "name", None),
                schema=schema,
            )
            status = _approval_status(ctx)
            verdict: Verdict | None = None
            if status is None:  # before the pause, or the body of a call that did not pause
                verdict = guard.at_guardrail(
                    call, can_pause=guard.approvals == "resume" and not nested
                )
        except Exception as exc:  # fail closed, whatever happened
            verdict = _gate.error(canonical, exc)
        return guard.output(verdict or Verdict(run=True, outcome="pending", reason=""))

    return VetoToolGuardrail(
        guardrail_function=veto_guardrail,
        name=GUARDRAIL_NAME,
        guard=guard,
        tool=canonical,
        agent_name=agent_name,
        original_needs_approval=original,
        original_invoker=original_invoker,
        nested=nested,
    )


def _make_body_gate(
    guard: VetoGuard,
    canonical: str,
    agent_name: str | None,
    schema: ArgumentSchema,
    invoke: _Invoker,
    guardrail: VetoToolGuardrail,
    *,
    nested: bool,
) -> _Invoker:
    async def veto_body_gate(ctx: ToolContext[Any], input: str) -> Any:
        try:
            call = guard.build_call(
                canonical,
                input,
                tool_call_id=getattr(ctx, "tool_call_id", None),
                run_context=getattr(ctx, "context", None),
                agent_name=agent_name or getattr(getattr(ctx, "agent", None), "name", None),
                schema=schema,
            )
            sdk_approved = _approval_status(ctx) is True
            if guard.approvals == "wait":  # may block: keep the event loop free
                verdict = await asyncio.to_thread(
                    guard.at_body, call, sdk_approved=sdk_approved, nested=nested
                )
            else:
                verdict = guard.at_body(call, sdk_approved=sdk_approved, nested=nested)
        except Exception as exc:  # fail closed, whatever happened
            verdict = _gate.error(canonical, exc)
        if not verdict.run:
            return _refuse(guard, guardrail, verdict)
        token = _SCOPE.set(guard)
        try:
            output = await invoke(ctx, input)
        except (Exception, asyncio.CancelledError) as exc:
            # It ran and failed; the SDK (a failure_error_function, the runner's error
            # handling, even for a CancelledError the tool raised) may show the model
            # the error's text: record it first.
            if not guard.veto.observes_runs:
                raise
            output = error_text(exc)
            raised: BaseException | None = exc
        else:
            raised = None
        finally:
            _SCOPE.reset(token)
        # The body ran: record its output in the run (DESIGN 2.7) before the model sees
        # it; an output that could not be recorded is withheld (fail closed). A policy
        # with no flow rules records nothing: nothing to prepare.
        if not guard.veto.observes_runs:
            return output
        effect = Effect.REQUIRE_APPROVAL if verdict.outcome == "approved" else Effect.ALLOW
        if guard.approvals == "wait":
            withheld = await aobserve_output(guard.veto, call, output, effect=effect)
        else:
            withheld = observe_output(guard.veto, call, output, effect=effect)
        if withheld is None:
            if raised is not None:
                raise raised
            return output
        return _refuse(guard, guardrail, Verdict(run=False, outcome="error", reason=withheld))

    return veto_body_gate


def _refuse(guard: VetoGuard, guardrail: VetoToolGuardrail, verdict: Verdict) -> str:
    """What the model reads instead of a tool's output (``on_deny="raise"``: end the run)."""
    if guard.on_deny == "raise":
        out = guard.output(verdict)
        raise ToolInputGuardrailTripwireTriggered(guardrail=guardrail, output=out)
    return verdict.reason


def _make_needs_approval(
    guard: VetoGuard,
    canonical: str,
    agent_name: str | None,
    original: _NeedsApproval,
    schema: ArgumentSchema,
    *,
    nested: bool,
) -> Callable[[RunContextWrapper[Any], dict[str, Any], str], Awaitable[bool]]:
    async def veto_needs_approval(
        run_context: RunContextWrapper[Any], params: dict[str, Any], call_id: str
    ) -> bool:
        need = False
        if not nested:  # a nested run cannot pause: its calls wait or are refused
            try:
                call = guard.build_call(
                    canonical,
                    params,
                    tool_call_id=call_id,
                    run_context=run_context.context,
                    agent_name=agent_name,
                    schema=schema,
                )
                need = guard.decide_needs_approval(call)
            except Exception:
                need = False  # the guardrail and the body gate refuse it (fail closed)
        if not need and original is not False:
            need = await evaluate_needs_approval_setting(original, run_context, params, call_id)
        return need

    return veto_needs_approval


def _veto_guardrail_of(tool: FunctionTool) -> VetoToolGuardrail | None:
    for g in tool.tool_input_guardrails or ():
        if isinstance(g, VetoToolGuardrail):
            return g
    return None


def _is_guarded_by(tool: FunctionTool, guard: VetoGuard, nested: bool) -> bool:
    g = _veto_guardrail_of(tool)
    return g is not None and g.guard is guard and (g.nested or not nested)


def _guard_function_tool(
    tool: FunctionTool,
    guard: VetoGuard,
    *,
    canonical: str | None,
    agent_name: str | None,
    nested: bool = False,
) -> FunctionTool:
    previous = _veto_guardrail_of(tool)
    others = [g for g in (tool.tool_input_guardrails or ()) if not isinstance(g, VetoToolGuardrail)]
    original = previous.original_needs_approval if previous else tool.needs_approval
    invoke: _Invoker = previous.original_invoker if previous else tool.on_invoke_tool
    name = canonical or guard.tool_names.canonical(tool.name)
    schema = ArgumentSchema(tool.params_json_schema)
    new = copy.copy(tool)
    if previous is None:
        invoke = new.on_invoke_tool  # the SDK may rebind its invoker to the copy
    guardrail = _make_guardrail(
        guard, name, agent_name, original, schema, nested=nested, original_invoker=invoke
    )
    new.tool_input_guardrails = [guardrail, *others]
    new.needs_approval = _make_needs_approval(
        guard, name, agent_name, original, schema, nested=nested
    )
    new.on_invoke_tool = _make_body_gate(
        guard, name, agent_name, schema, invoke, guardrail, nested=nested
    )
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
    _install_scope_hook()
    return _guard_function_tool(tool, guard, canonical=None, agent_name=_agent_name(agent))


def guard_tools(tools: Iterable[Any], veto: Veto | VetoGuard, **options: Any) -> list[Any]:
    """Copies of ``tools``: every ``FunctionTool`` guarded, hosted MCP tools governed
    per call, other tools kept or dropped by ``hosted_tools`` (see :class:`VetoGuard`)."""
    agent = options.pop("agent", None)
    guard = veto if isinstance(veto, VetoGuard) else VetoGuard(veto, **options)
    _install_scope_hook()
    return _guard_tool_list(list(tools), guard, _agent_name(agent), decide_hosted=True)


def _agent_name(agent: Any) -> str | None:
    if agent is None or isinstance(agent, str):
        return agent
    name = getattr(agent, "name", None)
    return name if isinstance(name, str) else None


def _guard_tool_list(
    tools: list[Any], guard: VetoGuard, agent_name: str | None, *, decide_hosted: bool
) -> list[Any]:
    out: list[Any] = []
    for tool in tools:
        if isinstance(tool, FunctionTool):
            out.append(_guard_function_tool(tool, guard, canonical=None, agent_name=agent_name))
        elif isinstance(tool, HostedMCPTool):
            out.append(_guard_hosted_mcp(tool, guard, agent_name))
        elif not decide_hosted or _keep_ungoverned(tool, guard, agent_name, None):
            out.append(tool)  # a guarded agent decides it again for each run
    return out


def _tool_name(tool: Any) -> str:
    name = getattr(tool, "name", None)
    return name if isinstance(name, str) and name else type(tool).__name__


_UNRECORDABLE = "its output cannot be recorded for the policy's flow rules"


def _flow_blind(guard: VetoGuard, name: str, run_context: Any, agent_name: str | None) -> bool:
    """True when the policy (of the run's tenant) records runs and a source names the
    tool ``name``: its output would give the run labels, but Veto never sees it. A
    policy that cannot be read counts as naming it (fail closed)."""
    veto = guard.veto
    if not veto.observes_runs:
        return False
    try:
        tenant = guard.identity(run_context, agent_name).tenant
        if tenant is not None and tenant != veto.tenant:
            veto = veto.for_tenant(tenant)
        return bool(veto.policy.sources_for(name))
    except Exception:
        return True


def _keep_ungoverned(tool: Any, guard: VetoGuard, agent_name: str | None, run_context: Any) -> bool:
    """A tool the SDK gives Veto no per-call hook for: keep it only if configured so,
    or if the policy allows this run's principal a call to it."""
    name = guard.tool_names.canonical(_tool_name(tool))
    if guard.hosted_tools == "drop":
        log.warning("veto-openai: tool %r removed: Veto cannot check its calls", name)
        return False
    blind = _flow_blind(guard, name, run_context, agent_name)
    if guard.hosted_tools == "keep":
        log.warning("veto-openai: tool %r is kept UNGOVERNED (hosted_tools='keep')", name)
        if blind:
            guard.warn_once(
                name,
                f"veto-openai: tool {name!r} is kept (hosted_tools='keep') although the "
                f"policy's sources label it: {_UNRECORDABLE}",
            )
        return True
    if blind:
        log.warning(
            "veto-openai: tool %r removed: the policy's sources label it and %s",
            name,
            _UNRECORDABLE,
        )
        return False
    try:
        call = guard.build_call(
            name, {}, tool_call_id=None, run_context=run_context, agent_name=agent_name
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
    log.info(
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
        if _flow_blind(guard, name, request.ctx_wrapper.context, agent_name):
            why = (
                f"Veto: hosted MCP tool call '{name}' was not run: the policy's sources "
                f"label it and {_UNRECORDABLE} (it never passes Veto)"
            )
            log.warning("veto-openai: %s", why)
            return {"approve": False, "reason": why}
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

    new = dataclasses.replace(
        tool, tool_config=cast(Any, config), on_approval_request=on_approval_request
    )
    object.__setattr__(new, "_veto_guard", guard)
    return new


# --- handoffs ----------------------------------------------------------------------------------


def _guard_handoff(item: Handoff[Any, Any], guard: VetoGuard) -> Handoff[Any, Any]:
    """A copy of a ``handoff()`` whose target agent is guarded when the run hands off."""
    invoke = item.on_invoke_handoff

    async def on_invoke_handoff(ctx: RunContextWrapper[Any], input_json: str) -> Any:
        return guard.guarded_agent(await invoke(ctx, input_json))

    new = dataclasses.replace(item, on_invoke_handoff=on_invoke_handoff)
    object.__setattr__(new, "_veto_guard", guard)
    return new


# --- agents ----------------------------------------------------------------------------------


def guard_agent(agent: Agent[Any], veto: Veto | VetoGuard, **options: Any) -> Agent[Any]:
    """A copy of ``agent`` whose tool calls Veto decides (the original is untouched).

    - every ``FunctionTool`` is a copy with the Veto guardrail, ``needs_approval`` and
      the body gate; so are tools added to the copy later (``agent.tools.append``,
      ``agent.clone(tools=...)``): the copy guards what the SDK gets on every turn;
    - tools of the agent's ``mcp_servers`` (listed by the SDK at run time) are guarded
      the same way, named ``mcp__<server>__<tool>``;
    - hosted MCP tools (``HostedMCPTool``) ask Veto on every approval request (the
      server is set to ``require_approval="always"``; a required approval waits in
      place, ``wait_timeout`` seconds at most);
    - other hosted/local tools follow ``hosted_tools``, decided for each run's principal;
    - handoffs (``Agent`` objects and ``handoff()`` objects) lead to guarded agents;
    - agents used as tools (``Agent.as_tool``), and any agent run inside a guarded tool,
      have their tools decided under the same guard (a required approval in there
      cannot pause the outer run: it waits with ``approvals="wait"``, else is refused);
    - the run input is recorded as ``"@user"`` by an input guardrail (first in
      ``input_guardrails``), and every executed call's output is recorded in the run
      named by ``run_id`` (DESIGN.md 2.7): give each run a ``run_id``, or its tool
      outputs are withheld from the model.

    ``options`` are :class:`VetoGuard`'s. Run it with :func:`run_config` so approvals
    are recorded when the run pauses.
    """
    guard = veto if isinstance(veto, VetoGuard) else VetoGuard(veto, **options)
    _install_scope_hook()
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
        {
            "__veto_guard__": guard,
            "__veto_base__": base_cls,
            "get_mcp_tools": _guarded_mcp_tools,
            "get_all_tools": _guarded_all_tools,
        },
    )
    new = copy.copy(agent)
    new.__class__ = cls
    seen[id(agent)] = new
    new.tools = _guard_tool_list(list(agent.tools), guard, agent.name, decide_hosted=False)
    new.input_guardrails = [
        guard.input_guardrail,
        *(g for g in agent.input_guardrails if not isinstance(g, VetoInputGuardrail)),
    ]
    new.handoffs = [
        _guard_agent(h, guard, seen) if isinstance(h, Agent) else guard.guarded_handoff(h)
        for h in agent.handoffs
    ]
    return new


async def _guarded_mcp_tools(self: Agent[Any], run_context: RunContextWrapper[Any]) -> list[Any]:
    base_cls = type(self).__veto_base__  # type: ignore[attr-defined]
    tools = await base_cls.get_mcp_tools(self, run_context)
    guard: VetoGuard = type(self).__veto_guard__  # type: ignore[attr-defined]
    return guard.runtime_tools(tools, agent_name=self.name, run_context=run_context)


async def _guarded_all_tools(self: Agent[Any], run_context: RunContextWrapper[Any]) -> list[Any]:
    """What the SDK runs this turn: the agent's tools as they are now, every one guarded;
    handoffs added since the last turn are guarded before the SDK reads them."""
    guard: VetoGuard = type(self).__veto_guard__  # type: ignore[attr-defined]
    handoffs = [guard.guarded_handoff(h) for h in self.handoffs]
    if any(a is not b for a, b in zip(handoffs, self.handoffs, strict=True)):
        self.handoffs = handoffs
    base_cls = type(self).__veto_base__  # type: ignore[attr-defined]
    tools = await base_cls.get_all_tools(self, run_context)
    return guard.runtime_tools(tools, agent_name=self.name, run_context=run_context)


_BASE_GET_ALL_TOOLS: Any = None


def _install_scope_hook() -> None:
    """Once per process: ``AgentBase.get_all_tools`` guards an agent's tools while a
    guarded tool body runs (``_SCOPE``), so an agent used as a tool, or run by hand
    inside a tool, cannot run a tool the guard did not decide. Outside a guarded tool
    body it is the SDK's own method, unchanged."""
    global _BASE_GET_ALL_TOOLS
    if _BASE_GET_ALL_TOOLS is not None:
        return
    _BASE_GET_ALL_TOOLS = AgentBase.get_all_tools

    async def get_all_tools(self: Any, run_context: RunContextWrapper[Any]) -> list[Any]:
        tools: list[Any] = await _BASE_GET_ALL_TOOLS(self, run_context)
        guard = _SCOPE.get()
        if guard is None or guard_of(self) is not None:
            return tools
        return guard.runtime_tools(
            tools, agent_name=getattr(self, "name", None), run_context=run_context, nested=True
        )

    AgentBase.get_all_tools = get_all_tools  # type: ignore[method-assign]


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
