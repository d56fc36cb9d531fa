"""The toolkit the framework adapters share (veto-langchain, veto-crewai, veto-openai, ...).

An adapter maps a framework's tool-call point to :meth:`veto_core.Veto.authorize` and
the outcome back to the framework's native signal (DESIGN.md section 7). Everything
here is the framework-neutral part of that job, written once:

- :class:`VetoContext`: per-run overrides of who is calling, where, and which run
  (``coerce`` from a mapping, ``over`` another context, ``from_run_context``).
- :class:`ToolNames`: a framework's tool names → the canonical names policies use,
  including MCP tools → ``mcp__<server>__<tool>``.
- :class:`Verdict` and :func:`from_authorization`: an :class:`~veto_core.Authorization`
  becomes "run it", or "don't" with an outcome word and a reason the model can read
  (naming the deciding rule ids).
- :func:`error_verdict` / :func:`fail_closed` / :func:`authorize` /
  :func:`authorize_and_wait`: any exception in the check becomes an ``error`` refusal,
  never a run.
- :func:`observe_output` / :func:`aobserve_output` / :func:`observe_user_input`: after a
  call ran, record its output in the run (DESIGN.md 2.7); when that fails the adapter
  shows the model the returned refusal text instead of the output (fail closed).
- :func:`observe_error` / :func:`aobserve_error`: the same for a call that ran and
  raised: frameworks show the model the exception's text (an error handler, a retry
  middleware, the tool's own error formatter), and an attacker's text can ride in it.
- :class:`ToolCallDenied`: the exception an adapter raises when configured to raise
  instead of answering the model.
- :func:`json_args`: a framework's argument values as the JSON the decision and the
  ``args_digest`` are made on — JSON values as they are, ``bytes``/tuples/sets/dates/
  non-string keys with an unambiguous type tag, anything else :class:`ArgumentsError`
  (DESIGN.md 7): two different values never share a digest, so an approval for one
  can never release the other. ``Veto.authorize`` refuses what has no such form.

Only a :class:`Verdict` with ``run=True`` may let a tool body execute.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .audit.record import ArgumentsError
from .audit.record import to_jsonable as _to_jsonable
from .authorize import tenant_of
from .engine import Veto
from .model import Authorization, Decision, Effect, Principal, ToolCall

__all__ = [
    "OUTCOMES",
    "ApprovalExplainer",
    "ArgumentsError",
    "ToolCallDenied",
    "ToolNames",
    "Verdict",
    "VetoContext",
    "aobserve_error",
    "aobserve_output",
    "approval_id",
    "approval_outcome",
    "approval_text",
    "authorize",
    "authorize_and_wait",
    "decision_text",
    "error_text",
    "error_verdict",
    "fail_closed",
    "from_authorization",
    "json_args",
    "not_released",
    "observe_error",
    "observe_output",
    "observe_user_input",
    "recorded_call_ids",
    "refusal",
    "state_name",
]

#: Every outcome word a :class:`Verdict` can carry. ``allowed`` and ``approved`` run
#: the tool; the others do not. ``not released``: the request is APPROVED but this call
#: did not get to use it (an approval releases one call once).
OUTCOMES = frozenset(
    {
        "allowed",
        "approved",
        "denied",
        "rejected",
        "expired",
        "pending",
        "cancelled",
        "not released",
        "error",
    }
)

_VETO_CONTEXT_KEYS = frozenset({"principal", "env", "tenant", "run_id", "context"})


# --- who, where, which run --------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class VetoContext:
    """Per-run overrides of who is calling, where, and which run this is.

    Each adapter documents where a run carries it (LangChain: the runnable config or
    the LangGraph runtime context; OpenAI Agents: the SDK run context; CrewAI:
    ``veto_crewai.run_context``). A plain mapping with the same keys works too (it
    survives serialization of a paused run). Fields left ``None`` keep the values the
    adapter was constructed with. ``context`` is what policies read as ``context.KEY``.
    """

    principal: Principal | None = None
    env: str | None = None
    tenant: str | None = None
    run_id: str | None = None
    context: Mapping[str, Any] | None = None

    @classmethod
    def coerce(cls, value: Any) -> VetoContext | None:
        """A ``VetoContext`` from itself, a mapping of its fields, or None; else TypeError.

        A ``principal`` given as a mapping becomes a :class:`~veto_core.Principal`;
        ``env``/``tenant``/``run_id`` must be strings and ``context`` a mapping.
        """
        if value is None or isinstance(value, VetoContext):
            return value
        if isinstance(value, Mapping):
            items = tuple(value.items())
            hit = _COERCED.get(id(value))
            if hit is not None and hit[0] is value and hit[1] == items:
                return hit[2]
            made = cls._of_mapping(value)
            if not isinstance(value.get("principal"), Mapping):  # nothing nested to go stale
                if len(_COERCED) >= _COERCED_MAX:
                    _COERCED.clear()
                _COERCED[id(value)] = (value, items, made)
            return made
        raise TypeError(f"expected a VetoContext or a mapping, got {type(value).__name__}")

    @classmethod
    def _of_mapping(cls, value: Mapping[str, Any]) -> VetoContext:
        unknown = set(value) - _VETO_CONTEXT_KEYS
        if unknown:
            raise TypeError(f"unknown VetoContext keys: {sorted(unknown)}")
        principal = value.get("principal")
        if isinstance(principal, Mapping):
            data = dict(principal)
            if "roles" in data and not isinstance(data["roles"], str):
                data["roles"] = tuple(data["roles"])
            principal = Principal(**data)
        if principal is not None and not isinstance(principal, Principal):
            raise TypeError(f"VetoContext.principal must be a Principal, not {principal!r}")
        context = value.get("context")
        if context is not None and not isinstance(context, Mapping):
            raise TypeError("VetoContext.context must be a mapping")
        return cls(
            principal=principal,
            env=_opt_str(value.get("env"), "env"),
            tenant=_opt_str(value.get("tenant"), "tenant"),
            run_id=_opt_str(value.get("run_id"), "run_id"),
            context=context,
        )

    @classmethod
    def from_run_context(cls, context: Any) -> VetoContext | None:
        """The ``VetoContext`` a framework's run-context object carries, if any: the
        object itself, its ``"veto"`` key (a mapping) or its ``veto`` attribute."""
        if context is None:
            return None
        if isinstance(context, VetoContext):
            return context
        if isinstance(context, Mapping):
            return cls.coerce(context.get("veto")) if "veto" in context else None
        return cls.coerce(getattr(context, "veto", None))

    def over(self, base: VetoContext) -> VetoContext:
        """``self``'s set fields on top of ``base``."""
        return VetoContext(
            principal=self.principal if self.principal is not None else base.principal,
            env=self.env if self.env is not None else base.env,
            tenant=self.tenant if self.tenant is not None else base.tenant,
            run_id=self.run_id if self.run_id is not None else base.run_id,
            context=self.context if self.context is not None else base.context,
        )


# A run's context mapping is read again on every call of the run (three times per call in
# veto-openai): the VetoContext made of it is kept while its items are the same objects
# (strings, a Principal, the ``context`` mapping a VetoContext holds by reference anyway).
# A ``principal`` given as a mapping is converted each time: it could change in place.
_COERCED: dict[int, tuple[Mapping[str, Any], tuple[tuple[Any, Any], ...], VetoContext]] = {}
_COERCED_MAX = 256


def _opt_str(value: Any, name: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise TypeError(f"VetoContext.{name} must be a string, not {type(value).__name__}")


# --- tool names --------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class ToolNames:
    """How a framework's tool names map to the canonical names policies use
    (DESIGN.md 2.3).

    - ``aliases``: exact renames, ``{"search": "web.search"}``.
    - ``mcp_servers``: servers whose tools are named ``<server>_<tool>`` (e.g.
      LangChain's ``MultiServerMCPClient(..., tool_name_prefix=True)``); such a name
      becomes ``mcp__<server>__<tool>`` (the longest matching server name wins).
    - ``mcp_tools``: for tools loaded without the prefix, which server each bare tool
      name comes from: ``{"create_issue": "github"}`` → ``mcp__github__create_issue``.
    - ``custom``: a last-resort function ``name -> canonical name``.

    :meth:`mcp` names a tool whose server the framework reports separately. A name
    already in the ``mcp__server__tool`` form is kept. Names are NFC-normalized.
    """

    aliases: Mapping[str, str] = field(default_factory=dict)
    mcp_servers: tuple[str, ...] = ()
    mcp_tools: Mapping[str, str] = field(default_factory=dict)
    custom: Callable[[str], str] | None = None
    _cache: dict[str, str] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.mcp_servers, str):
            raise TypeError("ToolNames.mcp_servers must be a tuple of server names")
        servers = tuple(sorted(self.mcp_servers, key=len, reverse=True))
        object.__setattr__(self, "mcp_servers", servers)

    def canonical(self, name: str) -> str:
        """The canonical policy name for a tool name as the framework gives it."""
        hit = self._cache.get(name)
        if hit is not None:
            return hit
        out = self._canonical(unicodedata.normalize("NFC", name))
        if len(self._cache) < 4096:
            self._cache[name] = out
        return out

    def mcp(self, server: str, tool: str) -> str:
        """The canonical name of ``tool`` from MCP server ``server``:
        ``mcp__<server>__<tool>`` (a ``<server>_`` prefix on ``tool`` is removed), then
        the aliases."""
        server = unicodedata.normalize("NFC", server)
        tool = unicodedata.normalize("NFC", tool)
        if tool.startswith(server + "_") and len(tool) > len(server) + 1:
            tool = tool[len(server) + 1 :]
        return self.canonical(f"mcp__{server}__{tool}")

    def _canonical(self, name: str) -> str:
        if name in self.aliases:
            return self.aliases[name]
        if name.startswith("mcp__"):
            return name
        if name in self.mcp_tools:
            return f"mcp__{self.mcp_tools[name]}__{name}"
        for server in self.mcp_servers:
            if name.startswith(server + "_") and len(name) > len(server) + 1:
                return f"mcp__{server}__{name[len(server) + 1 :]}"
        if self.custom is not None:
            return self.custom(name)
        return name


# --- the verdict -------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class Verdict:
    """An adapter's answer for one call.

    ``run`` is the only thing that lets the tool body execute. ``reason`` is the text
    the model (or the application) sees when it does not run; it names the deciding
    rule ids. ``outcome`` is one of :data:`OUTCOMES`. ``call`` is the decided
    ``ToolCall`` when one was built.
    """

    run: bool
    outcome: str
    reason: str
    decision: Decision | None = None
    approval_id: str | None = None
    call: ToolCall | None = None

    def info(self) -> dict[str, Any]:
        """A JSON-safe summary (outcome, reason, approval id, rule ids, policy revision)."""
        d = self.decision
        return {
            "veto": {
                "outcome": self.outcome,
                "reason": self.reason,
                "approval_id": self.approval_id,
                "rule_ids": list(d.deciding_rule_ids) if d is not None else [],
                "policy_revision": d.policy_revision if d is not None else None,
            }
        }


class ToolCallDenied(PermissionError):
    """A tool call was not run: denied by policy, not approved, or the check failed.

    ``outcome`` is ``denied``, ``rejected``, ``expired``, ``pending``, ``cancelled``,
    ``error``... (:data:`OUTCOMES`); ``reason`` is the text (with rule ids) a model or a
    person can read.
    """

    def __init__(
        self,
        reason: str,
        *,
        tool: str,
        outcome: str,
        tool_call_id: str | None = None,
        decision: Decision | None = None,
        approval_id: str | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.tool = tool
        self.outcome = outcome
        self.tool_call_id = tool_call_id
        self.decision = decision
        self.approval_id = approval_id


def json_args(args: Mapping[str, Any]) -> Any:
    """The canonical JSON form of a call's arguments (see the module docstring);
    raises :class:`ArgumentsError` naming the first value that has none."""
    return _to_jsonable(args)


def refusal(
    tool: str,
    outcome: str,
    why: str,
    *,
    decision: Decision | None = None,
    approval_id: str | None = None,
    call: ToolCall | None = None,
) -> Verdict:
    """A ``Verdict`` that does not run the tool, with a reason the model can read:
    ``Veto: tool call '<tool>' was not run (<outcome>): <why>``."""
    text = f"Veto: tool call '{tool}' was not run ({outcome}): {why}"
    return Verdict(
        run=False,
        outcome=outcome,
        reason=text,
        decision=decision,
        approval_id=approval_id,
        call=call,
    )


def error_verdict(tool: str, exc: BaseException, *, call: ToolCall | None = None) -> Verdict:
    """The ``error`` refusal for an exception anywhere in the check (fail closed)."""
    return refusal(
        tool,
        "error",
        "the policy check failed, so the call is blocked (fail closed): "
        f"{type(exc).__name__}: {exc}",
        call=call,
    )


def fail_closed(
    tool: str, check: Callable[[], Verdict], *, call: ToolCall | None = None
) -> Verdict:
    """``check()``, or the ``error`` refusal when it raises anything."""
    try:
        return check()
    except Exception as exc:
        return error_verdict(tool, exc, call=call)


def decision_text(decision: Decision, text: str | None = None) -> str:
    """``text`` (default: the decision's reasons), followed by the deciding rule ids not
    already named in it as ``[rule-id]``."""
    reasons = (decision.reason if text is None else text) or "no reason given"
    ids = [r for r in decision.deciding_rule_ids if f"[{r}]" not in reasons]
    if ids:
        reasons += " [" + ", ".join(ids) + "]"
    return reasons


def state_name(approval: Any) -> str | None:
    """An approval request's state in lower case (``pending``, ``approved``, ...), or
    None when it has none."""
    state = getattr(approval, "state", None)
    if state is None:
        return None
    return str(getattr(state, "value", state)).lower()


def approval_id(approval: Any) -> str | None:
    """An approval request's id as text, or None."""
    ident = getattr(approval, "id", None) if approval is not None else None
    return None if ident is None else str(ident)


_STATE_OUTCOME = {"denied": "rejected", "approved": "not released"}


def approval_outcome(approval: Any) -> str:
    """The outcome word for a require_approval call that did not run, from its request's
    state: a denied request is ``rejected``; an approved one this call did not get to
    use is ``not released``; no request or no state is ``pending``."""
    state = state_name(approval) or "pending"
    return _STATE_OUTCOME.get(state, state)


#: ``(auth, outcome) -> why``: the text for a require_approval call that does not run.
ApprovalExplainer = Callable[[Authorization, str], str]


def approval_text(auth: Authorization, outcome: str) -> str:
    """The default :data:`ApprovalExplainer`: why the approval path failed (``error``),
    else the request's state, then the decision's reasons and rule ids."""
    decision = auth.decision
    if auth.approval_error:
        return (
            f"the approval could not be handled (fail closed): {auth.approval_error}. "
            f"Approval was required: {decision_text(decision)}"
        )
    return _not_released_text(decision, auth.approval, "")


def _not_released_text(decision: Decision, approval: Any, note: str) -> str:
    state = state_name(approval) or "pending"
    ident = approval_id(approval)
    if state == "approved":
        state = "approved but already used (an approval releases one call once)"
    final = getattr(approval, "final_reason", None)
    what = f"approval request {ident}" if ident else "the approval request"
    detail = f" ({final})" if final and state in ("denied", "expired", "cancelled") else ""
    return f"{what} is {state}{detail}{note}. Approval was required: {decision_text(decision)}"


def not_released(call: ToolCall, decision: Decision, approval: Any, note: str = "") -> Verdict:
    """The refusal for a require_approval call whose request does not (or no longer)
    release it; ``note`` is appended to the request's state."""
    return refusal(
        call.tool,
        approval_outcome(approval),
        _not_released_text(decision, approval, note),
        decision=decision,
        approval_id=approval_id(approval),
        call=call,
    )


def from_authorization(
    call: ToolCall, auth: Authorization, *, explain_approval: ApprovalExplainer | None = None
) -> Verdict:
    """Map an ``Authorization`` (after any waiting) to a ``Verdict``.

    ``allowed``/``approved`` run; a denial is ``denied`` with the decision's reasons and
    rule ids; a require_approval call that was not released is ``error`` (the approval
    path failed), ``pending``, ``rejected``, ``expired``, ``cancelled`` or ``not
    released``, explained by ``explain_approval`` (default: the request's state and the
    decision's reasons).
    """
    decision = auth.decision
    ident = approval_id(auth.approval)
    if auth.run_tool:
        outcome = "approved" if decision.effect is Effect.REQUIRE_APPROVAL else "allowed"
        return Verdict(
            run=True, outcome=outcome, reason="", decision=decision, approval_id=ident, call=call
        )
    if decision.effect is Effect.REQUIRE_APPROVAL:
        outcome = "error" if auth.approval_error else approval_outcome(auth.approval)
        why = (explain_approval or approval_text)(auth, outcome)
        return refusal(call.tool, outcome, why, decision=decision, approval_id=ident, call=call)
    return refusal(call.tool, "denied", decision_text(decision), decision=decision, call=call)


def authorize(
    veto: Veto, call: ToolCall, *, explain_approval: ApprovalExplainer | None = None
) -> tuple[Verdict, Authorization | None]:
    """Decide and durably record once (``Veto.authorize``; creates the approval request
    when required). A require_approval decision is a refusal here (the caller pauses or
    waits). Any exception is an ``error`` refusal and no ``Authorization``."""
    try:
        auth = veto.authorize(call)
        return from_authorization(call, auth, explain_approval=explain_approval), auth
    except Exception as exc:
        return error_verdict(call.tool, exc, call=call), None


def authorize_and_wait(
    veto: Veto,
    call: ToolCall,
    timeout: float | None = None,
    *,
    explain_approval: ApprovalExplainer | None = None,
) -> Verdict:
    """Decide, record, and when approval is required block until it is decided or
    ``timeout`` passes (``Veto.authorize_and_wait``). Runs only if allowed, or APPROVED
    and released to this call. Any exception is an ``error`` refusal."""
    return fail_closed(
        call.tool,
        lambda: from_authorization(
            call,
            veto.authorize_and_wait(call, timeout=timeout),
            explain_approval=explain_approval,
        ),
        call=call,
    )


def _withheld(tool: Any, exc: BaseException) -> str:
    return (
        f"Veto: the output of tool call '{tool}' was withheld: it could not be recorded "
        f"in the run's history, which the policy's flow rules read (fail closed): "
        f"{type(exc).__name__}: {exc}"
    )


def observe_output(
    veto: Veto, call: ToolCall, output: Any, *, effect: Effect = Effect.ALLOW
) -> str | None:
    """After ``call`` ran (allowed, or approved: ``effect=Effect.REQUIRE_APPROVAL``),
    record ``output`` in its run (``Veto.observe``, DESIGN.md 2.7).

    Returns None when recorded, else the refusal text the adapter must give the model
    *instead of* the output (any failure: no ``run_id``, the store unreachable, ...).
    """
    try:
        veto.observe(call, output, effect=effect)
        return None
    except Exception as exc:
        return _withheld(call.tool, exc)


async def aobserve_output(
    veto: Veto, call: ToolCall, output: Any, *, effect: Effect = Effect.ALLOW
) -> str | None:
    """`observe_output` for async code paths."""
    try:
        await veto.aobserve(call, output, effect=effect)
        return None
    except Exception as exc:
        return _withheld(call.tool, exc)


_ERROR_CHAIN_LIMIT = 32  # exceptions read from one error (causes, contexts, groups)


def error_text(exc: BaseException) -> str:
    """Everything a framework may show the model of a tool's exception, as one text:
    for the exception, its ``__cause__``/``__context__`` chain and an exception group's
    members, each one's type name, ``str()`` and ``repr()``, one per line (handlers
    quote ``str(e)``, ``repr(e)`` or ``f"{type(e).__name__}: {e}"``)."""
    parts: list[str] = []
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo and len(seen) < _ERROR_CHAIN_LIMIT:
        e = todo.pop(0)
        if id(e) in seen:
            continue
        seen.add(id(e))
        parts.append(type(e).__name__)
        for show in (str, repr):
            try:
                parts.append(show(e))
            except Exception as broken:  # a broken __str__ shows nothing of it
                parts.append(f"<{type(broken).__name__} while reading the error>")
        todo.extend(x for x in (e.__cause__, e.__context__) if x is not None)
        if isinstance(e, BaseExceptionGroup):
            todo.extend(e.exceptions)
    return "\n".join(parts)


def observe_error(
    veto: Veto, call: ToolCall, exc: BaseException, *, effect: Effect = Effect.ALLOW
) -> str | None:
    """After ``call`` ran and raised ``exc``, record the error's text (:func:`error_text`)
    as its output in the run, as :func:`observe_output` does (nothing when the policy
    keeps no run history). Returns None when recorded: the adapter re-raises ``exc``,
    so the framework handles it as it would have. Otherwise the refusal text the adapter
    must give instead, never re-raising ``exc``: an outer handler would show the model
    its unrecorded text."""
    if not veto.observes_runs:
        return None
    return observe_output(veto, call, error_text(exc), effect=effect)


async def aobserve_error(
    veto: Veto, call: ToolCall, exc: BaseException, *, effect: Effect = Effect.ALLOW
) -> str | None:
    """:func:`observe_error` for async code paths."""
    if not veto.observes_runs:
        return None
    return await aobserve_output(veto, call, error_text(exc), effect=effect)


def recorded_call_ids(veto: Veto, call: ToolCall) -> set[str]:
    """The tool call ids the history of ``call``'s run holds (read from the run store):
    what an adapter recording a history carried into the run skips. Raises when the
    store cannot be read."""
    events = veto.run_store.load(tenant_of(call, veto.tenant), call.run_id or "", now=veto.clock())
    return {e.tool_call_id for e in events if e.tool_call_id}


def observe_user_input(
    veto: Veto,
    *,
    run_id: str,
    text: Any,
    principal: Principal | None = None,
    env: str | None = None,
    tenant: str | None = None,
) -> str | None:
    """Record the person's own input (user messages, a crew's task inputs, the Agents
    SDK run input) in the run as the pseudo-tool ``"@user"`` (2.7). Returns None, or
    the reason it could not be recorded (the adapter should then not start the run)."""
    try:
        veto.observe_user(text, run_id=run_id, principal=principal, env=env, tenant=tenant)
        return None
    except Exception as exc:
        return (
            "Veto: the run's input could not be recorded in its history (fail closed): "
            f"{type(exc).__name__}: {exc}"
        )
