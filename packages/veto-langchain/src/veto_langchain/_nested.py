"""Everything that runs inside a decided tool call is decided too (DESIGN.md 7).

An agent built with ``create_agent`` can be another agent's tool, and any tool body can
call tools. Those inner tools run through their own tool node or ``BaseTool.run``, not
through the outer agent's middleware. While an allowed call runs, :func:`governing`
puts a :class:`~veto_langchain.callbacks.NestedGuard` in a context variable that
LangChain's callback configuration picks up (``register_configure_hook``), so every tool
that starts inside, at any depth, is decided under the outer call's principal and run
before its body runs. A denial raises :class:`ToolCallDenied` out of the inner tool; the
outer integration turns it into the outer call's refusal.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from langchain_core.tracers.context import register_configure_hook

from veto_core import ToolCall, Veto

from ._calls import ToolNames

if TYPE_CHECKING:
    from .callbacks import NestedGuard

__all__ = [
    "enter_call",
    "finished",
    "governing",
    "in_decided_call",
    "leave_call",
    "outer_run_id",
    "start_of_decided_call",
]


@dataclass(eq=False, kw_only=True)
class _Decided:
    """The call an integration decided and is now running (possibly retried)."""

    veto: Veto
    tool: str
    tool_call_id: str | None
    run_id: str | None = None
    active: set[Any] = field(default_factory=set)  # LangChain run ids of its running starts
    lock: threading.Lock = field(default_factory=threading.Lock)


_GUARD: ContextVar[NestedGuard | None] = ContextVar("veto_langchain_nested_guard", default=None)
_DECIDED: ContextVar[_Decided | None] = ContextVar("veto_langchain_decided", default=None)
register_configure_hook(_GUARD, True)


def start_of_decided_call(veto: Veto, tool: str, tool_call_id: str | None, run_id: Any) -> Any:
    """The token when this tool start *is* the call an integration just decided (its first
    run, or a retry after the previous run ended); ``None`` otherwise. A start with the
    same name and id while that call is running is a different, inner call: decided."""
    token = _DECIDED.get()
    if token is None or token.veto is not veto:
        return None
    if token.tool != tool or token.tool_call_id != tool_call_id:
        return None
    with token.lock:
        if token.active and run_id not in token.active:
            return None
        token.active.add(run_id)
        return token


_IN_CALL: ContextVar[tuple[str | None] | None] = ContextVar("veto_langchain_in_call", default=None)


def in_decided_call() -> bool:
    """True while the body of a decided call runs (on this thread or task). An agent
    started there is a tool of the outer run: its input came from the outer model, not
    from the person, so it is never observed as ``"@user"`` (DESIGN.md 2.7)."""
    return _DECIDED.get() is not None or _IN_CALL.get() is not None


def outer_run_id() -> str | None:
    """The run id of the decided call whose body is running, if any: an agent started
    there belongs to that run."""
    token = _DECIDED.get()
    if token is not None:
        return token.run_id
    marked = _IN_CALL.get()
    return None if marked is None else marked[0]


def enter_call(run_id: str | None) -> Token[tuple[str | None] | None]:
    """Mark the current context as inside a decided call of run ``run_id`` (for the
    callback handler, which lets a body run from ``on_tool_start``; the tool's body runs
    in a copy of this context). Undo with :func:`leave_call`."""
    return _IN_CALL.set((run_id,))


def leave_call(token: Token[tuple[str | None] | None]) -> None:
    try:
        _IN_CALL.reset(token)
    except ValueError:  # ended in another context: clear it there
        _IN_CALL.set(None)


def finished(token: Any, run_id: Any) -> None:
    """The decided call's run ``run_id`` ended (so a retry is the same call again)."""
    with token.lock:
        token.active.discard(run_id)


@contextlib.contextmanager
def governing(veto: Veto, call: ToolCall, tool_names: ToolNames) -> Iterator[None]:
    """Run an allowed call's body with every tool started inside it decided."""
    from .callbacks import NestedGuard

    guard = NestedGuard(veto, call, tool_names)
    decided = _DECIDED.set(
        _Decided(veto=veto, tool=call.tool, tool_call_id=call.tool_call_id, run_id=call.run_id)
    )
    installed = _GUARD.set(guard)
    try:
        yield
    finally:
        _GUARD.reset(installed)
        _DECIDED.reset(decided)
