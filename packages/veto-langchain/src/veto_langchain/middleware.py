"""``VetoMiddleware``: policy-check, record and (when required) pause every tool call of a
LangChain v1 agent built with ``create_agent(model, tools, middleware=[...])``."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from typing import Annotated, Any, Literal, NotRequired

from langchain.agents.middleware import AgentMiddleware, AgentState
from langchain.agents.middleware.types import PrivateStateAttr
from langchain_core.messages import BaseMessage, HumanMessage, ToolMessage
from langgraph.config import get_config
from langgraph.errors import GraphBubbleUp
from langgraph.types import Command, interrupt

from veto_core import Effect, Principal, ToolCall, Veto

from . import _flow, _gate
from ._args import received_args
from ._calls import CallDefaults, ToolNames, VetoContext, build_call, has_checkpointer, run_of
from ._nested import governing, in_decided_call, outer_run_id
from .errors import ToolCallDenied

__all__ = ["VetoMiddleware"]

OnDeny = Literal["message", "raise"]
ApprovalMode = Literal["auto", "interrupt", "wait"]
_Step = _gate.Verdict | _gate.PendingApproval
_SEEN = "veto_user_messages"  # ids of the human messages already observed as "@user"
_RUN = "veto_run_id"  # the run id made for an invocation that has none
_INPUT = "veto_input_messages"  # ids of the human messages the invocation started with
_OTHER = "veto_other_messages"  # ids of human messages that are not the person's
_TOOLS = "veto_tool_messages"  # tool_call_ids of the tool messages in the run's history
_PENDING = "veto_unrecorded_tool_messages"  # ... of those not recorded yet (fail closed)


class VetoState(AgentState[Any]):
    """The agent state with what Veto keeps about the messages: the ids of the human
    messages observed as "@user" (each once per run, also across invocations of a
    checkpointed thread), of those an invocation started with (only they can be the
    person's input), of the human messages added during a run (never the person's), the
    tool call ids of the tool messages the run's history has (or could not be given),
    and, for an invocation given no run id, the one made for it."""

    veto_user_messages: NotRequired[Annotated[list[str], PrivateStateAttr]]
    veto_run_id: NotRequired[Annotated[str, PrivateStateAttr]]
    veto_input_messages: NotRequired[Annotated[list[str], PrivateStateAttr]]
    veto_other_messages: NotRequired[Annotated[list[str], PrivateStateAttr]]
    veto_tool_messages: NotRequired[Annotated[list[str], PrivateStateAttr]]
    veto_unrecorded_tool_messages: NotRequired[Annotated[list[str], PrivateStateAttr]]


class VetoMiddleware(AgentMiddleware):
    """Decide every tool call of a ``create_agent`` agent before it runs.

    >>> agent = create_agent(model, tools, middleware=[VetoMiddleware(veto)])  # doctest: +SKIP

    - **allow**: the tool runs (the handler is called once).
    - **deny**: the tool does not run; the model receives
      ``ToolMessage(status="error", content=<reason with rule ids>)``, or
      :class:`ToolCallDenied` is raised when ``on_deny="raise"``.
    - **require approval**: with a checkpointer on the graph (``approval="auto"``,
      the default, or ``"interrupt"``) the node calls LangGraph ``interrupt()`` with
      a payload (``request_id``, ``tool``, ``args`` after redaction, ``reasons``,
      ``rule_ids``, ``approvers``...). Decide the request in the approval store,
      then resume with ``Command(resume=...)``: the middleware looks the request
      up by its binding and runs the tool only if it is APPROVED (the resume value
      itself is never trusted). The re-run of the node neither creates a second
      request nor writes a second decision record. Without a checkpointer (or with
      ``approval="wait"``) it blocks until the request is decided or the rule's
      timeout (capped by ``approval_timeout``) passes; anything but APPROVED is a
      refusal the model sees.
    - **any error** (store down, malformed arguments, an exception in Veto): the
      tool does not run and the model is told why.

    ``principal``/``env``/``tenant``/``context``/``run_id`` set the defaults; each
    run may override them with a :class:`VetoContext` in
    ``config["configurable"]["veto"]`` or the runtime ``context``. The run id
    defaults to the LangGraph ``thread_id``, else the invocation's ``config["run_id"]``,
    else a new id made for the invocation (kept in the agent state). ``tool_names``
    maps LangChain tool names to canonical policy names (MCP tools →
    ``mcp__server__tool``).

    Runs and data flow (DESIGN.md 2.7): before the agent starts, the human messages of
    its state are recorded in the run as ``"@user"`` (each once: their ids are kept in
    the agent state). If that fails, each tool call tries again before it is decided and,
    if it still fails, is decided and recorded but does not run (the model is told why).
    An agent started inside a tool call (a sub-agent) records no input: it comes from the
    outer model; its calls join the outer call's run. After an allowed or approved call
    ran, what the model will see of it is recorded (an approved one with effect
    ``require_approval``); if that fails the model gets a refusal instead of the output
    (the body ran).

    Placement: put it **first** in ``middleware=[...]`` (outermost), so the call is
    authorized once before any retry/fallback middleware calls the handler again.
    Middleware listed before it sees the call before it is authorized.

    The async path (``ainvoke``/``astream``) runs the decision, the durable record and
    any blocking wait in a worker thread; the event loop is never blocked.
    """

    def __init__(
        self,
        veto: Veto,
        *,
        principal: Principal | None = None,
        env: str | None = None,
        tenant: str | None = None,
        context: Mapping[str, Any] | None = None,
        run_id: str | None = None,
        on_deny: OnDeny = "message",
        approval: ApprovalMode = "auto",
        approval_timeout: float | None = None,
        tool_names: ToolNames | None = None,
    ) -> None:
        super().__init__()
        if on_deny not in ("message", "raise"):
            raise ValueError(f"on_deny must be 'message' or 'raise', not {on_deny!r}")
        if approval not in ("auto", "interrupt", "wait"):
            raise ValueError(f"approval must be 'auto', 'interrupt' or 'wait', not {approval!r}")
        self.veto = veto
        self.on_deny: OnDeny = on_deny
        self.approval: ApprovalMode = approval
        self.approval_timeout = approval_timeout
        self._defaults = CallDefaults(
            base=VetoContext(
                principal=principal, env=env, tenant=tenant, run_id=run_id, context=context
            ),
            tool_names=tool_names or ToolNames(),
        )

    state_schema = VetoState

    # --- the hooks ----------------------------------------------------------------------

    def before_agent(self, state: Any, runtime: Any) -> dict[str, Any] | None:
        run, update = self._start(state, runtime)
        return self._record_input(state, run, update)

    async def abefore_agent(self, state: Any, runtime: Any) -> dict[str, Any] | None:
        run, update = self._start(state, runtime)
        if not self.veto.observes_runs:  # nothing to record: no thread hop
            return self._record_input(state, run, update)
        return await asyncio.to_thread(self._record_input, state, run, update)

    def before_model(self, state: Any, runtime: Any) -> dict[str, Any] | None:
        return _mark_added(state)

    async def abefore_model(self, state: Any, runtime: Any) -> dict[str, Any] | None:
        return _mark_added(state)

    def after_agent(self, state: Any, runtime: Any) -> dict[str, Any] | None:
        return _mark_added(state)

    async def aafter_agent(self, state: Any, runtime: Any) -> dict[str, Any] | None:
        return _mark_added(state)

    def wrap_tool_call(
        self,
        request: Any,
        handler: Callable[[Any], ToolMessage | Command[Any]],
    ) -> ToolMessage | Command[Any]:
        call = self._call(request)
        if isinstance(call, _gate.Verdict):
            return self._blocked(request, call, None)
        unrecorded = self._input_unrecorded(request, call)
        if self._interrupts(request):
            step = self._before_interrupt(call)
            verdict = step if isinstance(step, _gate.Verdict) else None
            if verdict is None and not self._can_pause(request):
                verdict = self._cannot_pause(call)
            if verdict is None:
                assert isinstance(step, _gate.PendingApproval)
                interrupt(
                    _gate.approval_payload(
                        self.veto, call, step.decision, step.approval, step.approval_id
                    )
                )
                verdict = self._after_resume(call, step)
        else:
            verdict = _gate.authorize_and_wait(self.veto, call, self.approval_timeout)
        if verdict.run and unrecorded is not None:
            verdict = _gate.withheld(call, unrecorded)
        if verdict.run:
            try:
                with governing(self.veto, call, self._defaults.tool_names):
                    result = handler(request)
            except ToolCallDenied as exc:  # a tool inside this one was refused
                return self._blocked(request, _inner_refusal(exc), call)
            except GraphBubbleUp:  # an interrupt or a parent command: not an error
                raise
            except Exception as exc:  # the tool ran and failed: a handler shows its text
                withheld = _flow.observe_raised(self.veto, call, exc, verdict)
                if withheld is None:
                    raise
                return self._withheld(request, call, withheld)
            withheld = _flow.observe_result(self.veto, call, result, verdict)
            return result if withheld is None else self._withheld(request, call, withheld)
        return self._blocked(request, verdict, call)

    async def awrap_tool_call(
        self,
        request: Any,
        handler: Callable[[Any], Awaitable[ToolMessage | Command[Any]]],
    ) -> ToolMessage | Command[Any]:
        call = self._call(request)
        if isinstance(call, _gate.Verdict):
            return self._blocked(request, call, None)
        unrecorded = (
            await asyncio.to_thread(self._input_unrecorded, request, call)
            if self.veto.observes_runs  # else nothing to record: no thread hop
            else None
        )
        if self._interrupts(request):
            step = await asyncio.to_thread(self._before_interrupt, call)
            verdict = step if isinstance(step, _gate.Verdict) else None
            if verdict is None and not self._can_pause(request):
                verdict = self._cannot_pause(call)
            if verdict is None:
                assert isinstance(step, _gate.PendingApproval)
                interrupt(
                    _gate.approval_payload(
                        self.veto, call, step.decision, step.approval, step.approval_id
                    )
                )
                verdict = await asyncio.to_thread(self._after_resume, call, step)
        else:
            verdict = await asyncio.to_thread(
                _gate.authorize_and_wait, self.veto, call, self.approval_timeout
            )
        if verdict.run and unrecorded is not None:
            verdict = _gate.withheld(call, unrecorded)
        if verdict.run:
            try:
                with governing(self.veto, call, self._defaults.tool_names):
                    result = await handler(request)
            except ToolCallDenied as exc:  # a tool inside this one was refused
                return self._blocked(request, _inner_refusal(exc), call)
            except GraphBubbleUp:  # an interrupt or a parent command: not an error
                raise
            except Exception as exc:  # the tool ran and failed: a handler shows its text
                withheld = await _flow.aobserve_raised(self.veto, call, exc, verdict)
                if withheld is None:
                    raise
                return self._withheld(request, call, withheld)
            withheld = await _flow.aobserve_result(self.veto, call, result, verdict)
            return result if withheld is None else self._withheld(request, call, withheld)
        return self._blocked(request, verdict, call)

    # --- steps --------------------------------------------------------------------------

    def _unobserved(
        self, state: Any, messages: list[BaseMessage], candidates: set[str]
    ) -> tuple[list[Any], list[str]] | None:
        """The human messages among ``candidates`` (ids) not yet observed and the ids seen
        after observing them; None when there is nothing to do (or this agent runs inside
        a tool call)."""
        if in_decided_call():
            return None
        seen = list(state.get(_SEEN) or ())
        known = set(seen)
        new = [
            m
            for m in messages
            if isinstance(m, HumanMessage) and m.id in candidates and m.id not in known
        ]
        if not new:
            return None
        seen.extend(str(m.id) for m in new)
        return new, seen

    def _record_input(
        self, state: Any, run: ToolCall, update: dict[str, Any]
    ) -> dict[str, Any] | None:
        """At the start of an invocation: name the person's input (the human messages it
        starts with that no earlier invocation of the run had: a human message added
        during a run came from a tool or a node, never from the person) and record it
        as ``"@user"``, marking each seen only when recorded (if not, each tool call
        tries again and does not run while it fails); record the tool messages of the
        input that the run's history lacks (history re-sent without a checkpointer)."""
        try:
            messages = _flow.input_messages(state)
        except Exception:  # unreadable messages: each tool call reports it
            return _with_unreadable(update)
        other = list(state.get(_OTHER) or ())
        excluded = set(other) | set(state.get(_SEEN) or ())
        carried = _flow.tool_produced(messages, excluded, set(state.get(_TOOLS) or ()))
        if carried:
            other.extend(h for hs in carried.values() for h in hs if h not in excluded)
            update[_OTHER] = other
            excluded |= set(other)
        inputs = [
            str(m.id)
            for m in messages
            if isinstance(m, HumanMessage) and m.id is not None and m.id not in excluded
        ]
        update[_INPUT] = [] if in_decided_call() else inputs
        if not self.veto.observes_runs:  # nothing to record (a flow policy loaded
            return update  # later records the messages then)
        pending = self._unobserved(state, messages, set(inputs))
        if pending is not None and _flow.observe_user_messages(self.veto, pending[0], run) is None:
            update[_SEEN] = pending[1]
        tools, unrecorded, _ = self._record_history(state, messages, run, carried)
        update[_TOOLS] = tools
        update[_PENDING] = unrecorded
        return update

    def _record_history(
        self,
        state: Any,
        messages: list[BaseMessage],
        run: ToolCall,
        carried: dict[str, list[str]],
        only: set[str] | None = None,
    ) -> tuple[list[str], list[str], str | None]:
        """Record the tool messages (with the human messages that came with them) that
        the run's history does not have (of ``only``, if given): given in the input (a
        history re-sent without a checkpointer), the model reads them. Returns the tool
        call ids now in the run's history, those not recorded (the invocation's tool
        calls do not run) and the first reason."""
        handled = list(state.get(_TOOLS) or ())
        done = set(handled)
        todo = [
            m
            for m in messages
            if isinstance(m, ToolMessage)
            and m.tool_call_id not in done
            and (only is None or m.tool_call_id in only)
        ]
        if not todo:
            return handled, [], None
        if not self.veto.observes_runs:
            return [*handled, *(m.tool_call_id for m in todo)], [], None
        by_id = {str(m.id): m for m in messages if m.id is not None}
        extras = {
            tool_call_id: [str(by_id[h].text) for h in ids if h in by_id]
            for tool_call_id, ids in carried.items()
        }
        recorded, failed, why = _flow.record_tool_messages(
            self.veto, self._defaults.tool_names, messages, todo, run, extras
        )
        return [*handled, *recorded], failed, why

    def _input_unrecorded(self, request: Any, call: ToolCall) -> str | None:
        """Why the run's history lacks what the model read, if it does (``before_agent``
        could not record the person's input or the tool messages of the input, and
        recording them again now failed too): the call is decided and recorded as
        usual, but does not run."""
        if not self.veto.observes_runs:
            return None  # the policy keeps no run history: nothing to record
        state = getattr(request, "state", None)
        if not isinstance(state, Mapping):
            return None
        try:
            messages = _flow.input_messages(state)
            pending = self._unobserved(state, messages, set(state.get(_INPUT) or ()))
        except Exception as exc:
            return _flow.input_unreadable(exc)
        if pending is not None:
            why = _flow.observe_user_messages(self.veto, pending[0], call)
            if why is not None:
                return why
        unrecorded = set(state.get(_PENDING) or ())
        if not unrecorded:
            return None
        carried = _flow.tool_produced(
            messages, set(state.get(_SEEN) or ()), set(state.get(_TOOLS) or ())
        )
        run = replace(call, tool="@user", args={}, tool_call_id=None)
        return self._record_history(state, messages, run, carried, only=unrecorded)[2]

    def _start(self, state: Any, runtime: Any) -> tuple[ToolCall, dict[str, Any]]:
        """The run this invocation belongs to, and the state update that names it when
        nothing else does: the run of the tool call this agent runs inside (a sub-agent),
        else a new id for this invocation (kept in the state, so a resume keeps it)."""
        try:
            config = get_config()
        except RuntimeError:  # not inside a runnable: only the constructor's values apply
            config = None
        run = run_of(self._defaults, config, getattr(runtime, "context", None))
        if run.run_id is not None:
            return run, {}
        run_id = state.get(_RUN) or outer_run_id() or f"langchain-{uuid.uuid4()}"
        update = {} if state.get(_RUN) == run_id else {_RUN: run_id}
        return replace(run, run_id=run_id), update

    def _withheld(self, request: Any, call: ToolCall, text: str) -> ToolMessage | Command[Any]:
        """The call ran but its output could not be recorded: the model gets ``text``."""
        return self._blocked(request, _gate.withheld(call, text), call)

    def _call(self, request: Any) -> ToolCall | _gate.Verdict:
        tc = request.tool_call
        name = tc.get("name") if isinstance(tc, Mapping) else None
        try:
            runtime = getattr(request, "runtime", None)
            call = build_call(
                self._defaults,
                name=name,  # type: ignore[arg-type]
                args=received_args(getattr(request, "tool", None), tc.get("args")),
                tool_call_id=tc.get("id"),
                config=getattr(runtime, "config", None),
                runtime_context=getattr(runtime, "context", None),
            )
            state = getattr(request, "state", None)
            if call.run_id is None and isinstance(state, Mapping) and state.get(_RUN):
                call = replace(call, run_id=str(state[_RUN]))
            return call
        except Exception as exc:
            placeholder = ToolCall(tool=str(name or "?"))
            return _gate.refusal(
                placeholder,
                "error",
                f"the call could not be read, so it is blocked (fail closed): "
                f"{type(exc).__name__}: {exc}",
            )

    def _interrupts(self, request: Any) -> bool:
        if self.approval == "wait":
            return False
        if self.approval == "interrupt":
            return True
        return self._can_pause(request)

    def _can_pause(self, request: Any) -> bool:
        runtime = getattr(request, "runtime", None)
        return has_checkpointer(getattr(runtime, "config", None))

    def _cannot_pause(self, call: ToolCall) -> _gate.Verdict:
        return _gate.refusal(
            call,
            "error",
            "approval is required and approval='interrupt' was configured, but the graph "
            "has no checkpointer, so it cannot pause and resume (compile it with a "
            "checkpointer, or use approval='wait')",
        )

    def _before_interrupt(self, call: ToolCall) -> _Step:
        """First run: decide and record (once). Re-run after a resume: find that record."""
        decided = _gate.decide(self.veto, call)
        if isinstance(decided, _gate.Verdict):
            return decided
        if decided.effect is Effect.REQUIRE_APPROVAL:
            try:
                existing = _gate.find_pending(self.veto, call)
            except Exception as exc:
                return _gate.refusal(
                    call, "error", f"the approval store could not be read (fail closed): {exc}"
                )
            if existing is not None:
                return existing
        verdict, auth = _gate.authorize(self.veto, call)
        if auth is not None and not verdict.run and auth.decision.effect is Effect.REQUIRE_APPROVAL:
            return _gate.PendingApproval(
                decision=auth.decision,
                approval=auth.approval,
                approval_id=verdict.approval_id,
            )
        return verdict

    def _after_resume(self, call: ToolCall, pending: _gate.PendingApproval) -> _gate.Verdict:
        """Resumed: only an APPROVED, unconsumed request in the store releases the call."""
        if _gate.check_approval(self.veto, call):
            return _gate.Verdict(
                run=True,
                outcome="approved",
                reason="",
                decision=pending.decision,
                approval_id=pending.approval_id,
            )
        state = _gate.approval_state(self.veto, pending.approval_id) or "not approved"
        outcome = {"denied": "rejected", "approved": "not released"}.get(state, state)
        what = f"approval request {pending.approval_id}" if pending.approval_id else "the request"
        return _gate.refusal(
            call,
            outcome,
            f"the graph was resumed but {what} is {state} in the approval store; only an "
            f"APPROVED request releases the call. Approval was required: "
            f"{_gate.decision_text(pending.decision)}",
            decision=pending.decision,
            approval_id=pending.approval_id,
        )

    def _blocked(
        self, request: Any, verdict: _gate.Verdict, call: ToolCall | None
    ) -> ToolMessage | Command[Any]:
        tc = request.tool_call if isinstance(request.tool_call, Mapping) else {}
        tool_call_id = str(tc.get("id") or "")
        name = str(tc.get("name") or (call.tool if call else ""))
        if self.on_deny == "raise":
            raise ToolCallDenied(
                verdict.reason,
                tool=call.tool if call else name,
                outcome=verdict.outcome,
                tool_call_id=tool_call_id or None,
                decision=verdict.decision,
                approval_id=verdict.approval_id,
            )
        return ToolMessage(
            content=verdict.reason,
            tool_call_id=tool_call_id,
            name=name,
            status="error",
        )


def _inner_refusal(exc: ToolCallDenied) -> _gate.Verdict:
    return _gate.Verdict(
        run=False,
        outcome=exc.outcome,
        reason=f"a tool call inside this one ({exc.tool}) was not run: {exc.reason}",
        decision=exc.decision,
        approval_id=exc.approval_id,
    )


# --- what the state's messages are -----------------------------------------------------------


def _with_unreadable(update: dict[str, Any]) -> dict[str, Any]:
    """Messages that cannot be read: no human message is the person's input here (each
    tool call reports why, ``_input_unrecorded``)."""
    update[_INPUT] = []
    return update


def _mark_added(state: Any) -> dict[str, Any] | None:
    """During a run (before each model call, and at its end): the human messages that
    were not in the state when the invocation started were added by a tool or a node,
    so no later invocation takes them for the person's input; the tool messages now in
    the state were produced under this middleware (recorded, or a refusal)."""
    try:
        messages = _flow.input_messages(state)
    except Exception:
        return None
    update: dict[str, Any] = {}
    other = list(state.get(_OTHER) or ())
    known = set(other) | set(state.get(_SEEN) or ()) | set(state.get(_INPUT) or ())
    added = [
        str(m.id)
        for m in messages
        if isinstance(m, HumanMessage) and m.id is not None and m.id not in known
    ]
    if added:
        update[_OTHER] = [*other, *added]
    tools = list(state.get(_TOOLS) or ())
    have = set(tools) | set(state.get(_PENDING) or ())
    new_tools = [
        m.tool_call_id
        for m in messages
        if isinstance(m, ToolMessage) and m.tool_call_id and m.tool_call_id not in have
    ]
    if new_tools:
        update[_TOOLS] = [*tools, *new_tools]
    return update or None
