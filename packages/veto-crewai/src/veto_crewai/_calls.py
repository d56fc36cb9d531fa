"""From CrewAI's view of a tool call to a Veto ``ToolCall``: tool name, who, where, which
run, and which call.

CrewAI gives a tool-call hook the tool name, its input dict, the agent, task and crew,
but no tool-call id and no run id. This module supplies them:

- **run id**: the value set with :func:`run_context` / ``install(run_id=...)``; else
  CrewAI's execution id (``crewai.execution.get_execution_uuid()``, a fresh UUID per
  outermost ``kickoff``/``akickoff``, inherited by the threads CrewAI starts for that
  run); else the crew's kickoff event id; else none.
- **tool-call id**: the id the *model* gave the call when CrewAI runs it through native
  function calling (read from CrewAI's executing frame, see :func:`_crewai_frame`),
  because that is the id in the provider's logs and in the conversation. When there
  is none (the ReAct text path, a direct ``tool.run``, or CrewAI's own placeholder
  ``call_<number>`` ids) the id is *derived*::

      "crewai-" + sha256(json([run_id, agent, tool, canonical_args, n]))[:24]

  where ``canonical_args`` is the arguments as JSON with sorted keys and ``n`` counts
  how many times this agent already called this tool with these arguments in this
  run (0 for the first). So the id is stable (the same run replayed yields the same
  ids, parallel calls included), different for a retry of the same call, and never
  shared between runs, agents, tools or arguments.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import hashlib
import json
import sys
import threading
import unicodedata
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import FrameType
from typing import Any

from veto_core import Principal, ToolCall
from veto_core.adapters import VetoContext

__all__ = [
    "FRAMEWORK",
    "CallSite",
    "RoleMap",
    "Settings",
    "ToolNameMap",
    "build_call",
    "call_site",
    "run_context",
]

FRAMEWORK = "crewai"

#: CrewAI role -> Veto role(s), or a function of the CrewAI agent returning Veto roles
#: (``None``: keep the principal's roles).
RoleMap = Mapping[str, str | Sequence[str]] | Callable[[Any], Sequence[str] | None]
#: Tool name as the model sees it (CrewAI-sanitized) -> canonical policy name, or a function.
ToolNameMap = Mapping[str, str] | Callable[[str], str]


def _role_of(agent: Any) -> str | None:
    role = getattr(agent, "role", None)
    return role if isinstance(role, str) and role else None


@dataclass(frozen=True, kw_only=True)
class Settings:
    """What ``install`` / ``scope`` / ``guard_tool`` were given."""

    principal: Principal | None = None
    env: str | None = None
    tenant: str | None = None
    run_id: str | None = None
    context: Mapping[str, Any] | None = None
    roles: RoleMap | None = None
    agent_name: Callable[[Any], str | None] = _role_of
    tool_names: ToolNameMap | None = None
    approval_timeout: float | None = None

    def __post_init__(self) -> None:
        if self.principal is not None and not isinstance(self.principal, Principal):
            raise TypeError(f"principal must be a veto_core.Principal, not {self.principal!r}")
        if self.approval_timeout is not None and self.approval_timeout < 0:
            raise ValueError("approval_timeout must be >= 0 seconds")
        if self.roles is not None and not (callable(self.roles) or isinstance(self.roles, Mapping)):
            raise TypeError("roles must be a mapping {crewai role: veto roles} or a function")
        if self.tool_names is not None and not (
            callable(self.tool_names) or isinstance(self.tool_names, Mapping)
        ):
            raise TypeError("tool_names must be a mapping {tool name: policy name} or a function")


# --- per-run overrides --------------------------------------------------------------------


_OVERRIDES: contextvars.ContextVar[VetoContext | None] = contextvars.ContextVar(
    "veto_crewai_overrides", default=None
)


@contextlib.contextmanager
def run_context(
    *,
    principal: Principal | None = None,
    env: str | None = None,
    tenant: str | None = None,
    run_id: str | None = None,
    context: Mapping[str, Any] | None = None,
) -> Iterator[None]:
    """Override who/where/which run for every Veto-checked tool call made inside the block
    (in this thread or task, and the threads CrewAI starts from it)::

        with veto_crewai.run_context(principal=Principal(user="u1"), run_id="ticket-42"):
            crew.kickoff()

    Fields left ``None`` keep the outer value (an enclosing ``run_context``, then what
    ``install``/``scope``/``guard_tool`` were given). The agent name and role mapping
    still apply on top of ``principal``.
    """
    if principal is not None and not isinstance(principal, Principal):
        raise TypeError(f"principal must be a veto_core.Principal, not {principal!r}")
    inner = VetoContext(principal=principal, env=env, tenant=tenant, run_id=run_id, context=context)
    merged = inner.over(_OVERRIDES.get() or VetoContext())
    token = _OVERRIDES.set(merged)
    try:
        yield
    finally:
        _OVERRIDES.reset(token)


# --- where the call comes from ------------------------------------------------------------

_NATIVE_FRAMES = frozenset({"_execute_single_native_tool_call", "execute_single_native_tool_call"})
_MAX_FRAMES = 48


@dataclass(frozen=True, kw_only=True, slots=True)
class CallSite:
    """What CrewAI's executing frame tells about the current tool call."""

    call_id: str | None = None
    agent: Any = None
    task: Any = None
    crew: Any = None


_NO_SITE = CallSite()


def _placeholder_id(call_id: str) -> bool:
    # CrewAI invents ``call_<id(obj)>`` when the provider gave no id (e.g. Gemini): a
    # memory address, reusable within a run, so not an identity.
    return call_id.startswith("call_") and call_id[5:].isdigit()


def call_site(tool_name: str | None = None) -> CallSite:
    """Read the model's tool-call id (and agent/task/crew) from CrewAI's native
    tool-execution frame on this thread's stack, if there is one.

    CrewAI does not hand the id to hooks or tools, but both run inside
    ``_execute_single_native_tool_call`` (``AgentExecutor``) or
    ``execute_single_native_tool_call`` (step executor), whose locals name it. Read
    only, bounded, and any surprise yields an empty ``CallSite`` (the id is then
    derived): never a reason to run or block a call.
    """
    try:
        frame: FrameType | None = sys._getframe(1)
        for _ in range(_MAX_FRAMES):
            if frame is None:
                return _NO_SITE
            code = frame.f_code
            if code.co_name in _NATIVE_FRAMES and str(
                frame.f_globals.get("__name__", "")
            ).startswith("crewai."):
                local = frame.f_locals
                func_name = local.get("func_name")
                if tool_name is not None and isinstance(func_name, str) and func_name != tool_name:
                    return _NO_SITE
                owner = local.get("self")
                agent = local.get("agent", getattr(owner, "agent", None))
                task = local.get("task", getattr(owner, "task", None))
                crew = local.get("crew", getattr(owner, "crew", None))
                call_id = local.get("call_id")
                if not isinstance(call_id, str) or not call_id or _placeholder_id(call_id):
                    call_id = None
                return CallSite(call_id=call_id, agent=agent, task=task, crew=crew)
            frame = frame.f_back
    except Exception:
        return _NO_SITE
    return _NO_SITE


# --- derived tool-call ids ----------------------------------------------------------------


class _Sequencer:
    """Occurrence counters per run, for derived tool-call ids (bounded: oldest runs go)."""

    def __init__(self, max_runs: int = 1024) -> None:
        self._runs: OrderedDict[str, dict[tuple[str | None, str, str], int]] = OrderedDict()
        self._lock = threading.Lock()
        self._max_runs = max_runs

    def next(self, run_key: str, call_key: tuple[str | None, str, str]) -> int:
        with self._lock:
            counts = self._runs.get(run_key)
            if counts is None:
                counts = self._runs[run_key] = {}
                while len(self._runs) > self._max_runs:
                    self._runs.popitem(last=False)
            else:
                self._runs.move_to_end(run_key)
            n = counts.get(call_key, 0)
            counts[call_key] = n + 1
            return n


_SEQUENCER = _Sequencer()


def canonical_args(args: Mapping[str, Any]) -> str:
    return json.dumps(args, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=repr)


def derive_tool_call_id(
    run_id: str | None, agent: str | None, tool: str, args: Mapping[str, Any]
) -> str:
    """The derived id (module docstring): stable per (run, agent, tool, args, occurrence)."""
    canonical = canonical_args(args)
    n = _SEQUENCER.next(run_id or "", (agent, tool, canonical))
    material = json.dumps([run_id, agent, tool, canonical, n], ensure_ascii=False)
    return "crewai-" + hashlib.sha256(material.encode()).hexdigest()[:24]


# --- principal, names, run id -------------------------------------------------------------


@functools.lru_cache(maxsize=4096)
def _sanitized(name: str) -> str:
    from crewai.utilities.string_utils import sanitize_tool_name

    return sanitize_tool_name(unicodedata.normalize("NFC", name))


def canonical_tool_name(settings: Settings, name: str) -> str:
    """CrewAI's sanitized name (what the model calls, what hooks see), then the mapping."""
    sanitized = _sanitized(name)
    names = settings.tool_names
    if names is None:
        return sanitized
    if isinstance(names, Mapping):
        return str(names.get(sanitized, names.get(name, sanitized)))
    out = names(sanitized)
    if not isinstance(out, str) or not out:
        raise ValueError(f"tool_names returned {out!r} for {sanitized!r}")
    return out


def _mapped_roles(roles: RoleMap | None, agent: Any) -> tuple[str, ...] | None:
    if roles is None or agent is None:
        return None
    if isinstance(roles, Mapping):
        role = _role_of(agent)
        if role is None or role not in roles:
            return None
        value = roles[role]
        return (value,) if isinstance(value, str) else tuple(value)
    out = roles(agent)
    if out is None:
        return None
    if isinstance(out, str):
        raise TypeError("the roles function must return a sequence of role names, not a string")
    return tuple(out)


def resolve_principal(settings: Settings, base: Principal | None, agent: Any) -> Principal:
    """The base principal, with ``agent`` = the CrewAI agent's name (its role by default)
    and ``roles`` = the mapped roles of the agent's CrewAI role (when mapped)."""
    principal = base or Principal()
    if agent is None:
        return principal
    name = settings.agent_name(agent)
    roles = _mapped_roles(settings.roles, agent)
    key = (principal, str(name) if name else None, roles)
    hit = _PRINCIPALS.get(key)
    if hit is not None:
        return hit
    changes: dict[str, Any] = {}
    if name:
        changes["agent"] = str(name)
    if roles is not None:
        changes["roles"] = roles
    made = replace(principal, **changes) if changes else principal
    if len(_PRINCIPALS) >= _PRINCIPALS_MAX:
        _PRINCIPALS.clear()
    _PRINCIPALS[key] = made
    return made


# Principals are frozen values: one per (base, agent name, roles), built once (a
# ``dataclasses.replace`` per call was a fifth of the hook's own work).
_PRINCIPALS: dict[tuple[Principal, str | None, tuple[str, ...] | None], Principal] = {}
_PRINCIPALS_MAX = 1024


def _run_id_from_crewai(crew: Any) -> str | None:
    try:
        from crewai.execution import get_execution_uuid

        run = get_execution_uuid()
    except Exception:
        run = None
    if run:
        return str(run)
    kickoff = getattr(crew, "_kickoff_event_id", None) if crew is not None else None
    return str(kickoff) if kickoff else None


@dataclass(frozen=True, kw_only=True)
class CallInput:
    """One tool call as CrewAI presents it (hook context or guarded tool)."""

    tool_name: str
    args: Any
    agent: Any = None
    crew: Any = None
    task: Any = None
    model_call_id: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


def build_call(settings: Settings, item: CallInput) -> ToolCall:
    """The Veto ``ToolCall`` for one CrewAI tool call. Raises on malformed input (callers
    fail closed)."""
    name = item.tool_name
    if not isinstance(name, str) or not name:
        raise ValueError(f"tool name is missing or not a string: {name!r}")
    args = item.args
    if args is None:
        args = {}
    if isinstance(args, str):
        args = {"input": args}
    if not isinstance(args, Mapping):
        raise TypeError(f"tool arguments must be an object, got {type(args).__name__}")
    args = dict(args)
    over = _OVERRIDES.get() or VetoContext()
    base = over.principal if over.principal is not None else settings.principal
    principal = resolve_principal(settings, base, item.agent)
    tool = canonical_tool_name(settings, name)
    run_id = over.run_id or settings.run_id or _run_id_from_crewai(item.crew)
    context = over.context if over.context is not None else settings.context
    call_id = item.model_call_id or derive_tool_call_id(run_id, principal.agent, tool, args)
    return ToolCall(
        tool=tool,
        args=args,
        principal=principal,
        env=over.env or settings.env,
        tenant=over.tenant or settings.tenant,
        context=dict(context) if context else {},
        run_id=run_id,
        tool_call_id=call_id,
        framework=FRAMEWORK,
    )
