"""The person's words in a CrewAI run (DESIGN.md 2.7): a kickoff's ``inputs``.

What the person said is what the application passes to ``crew.kickoff(inputs=...)``
(or ``akickoff``, or a Flow's ``kickoff``): the values interpolated into the task
descriptions. The task descriptions themselves are the developer's text, not the
person's, so they are not recorded as ``"@user"``.

How it is recorded:

- CrewAI dispatches its ``INPUT`` interception point once per kickoff, synchronously,
  on the kickoff's thread, after ``before_kickoff_callbacks``. A process-wide hook
  (:func:`listen`, registered once by ``install``/``scope``/``guard_tool``) keeps that
  context per CrewAI execution id. Only the **outermost** kickoff of an execution
  counts: a crew kicked off from inside a run (by a tool, a flow step, an agent) gets
  inputs that a program or the model wrote, never the person, and recording those
  as ``"@user"`` would let a model launder attacker text into "the user said so".
- The first tool call Veto decides in that kickoff records the inputs' values (not
  their keys, which the developer named) in the call's run as ``"@user"``, with the
  call's principal, env, tenant and run id, *before* that call is decided; parallel
  calls wait for it. Once per (kickoff, tenant, run): a later kickoff with the same
  ``run_id`` records its own inputs. If recording fails, every call of that kickoff
  is refused (with the reason) until it succeeds.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from crewai.execution import get_execution_uuid

from veto_core import ToolCall, Veto
from veto_core.adapters import observe_user_input

__all__ = ["listen", "observe_kickoff_inputs"]

_MAX_KICKOFFS = 1024

_lock = threading.Lock()
#: CrewAI execution id -> the outermost kickoff's INPUT context (its ``payload`` is read
#: when the first tool call is decided, after every INPUT hook had its say).
_kickoffs: OrderedDict[str, Any] = OrderedDict()
#: (id(veto), execution id, tenant, run id) whose inputs are recorded.
_recorded: OrderedDict[tuple[int, str, str | None, str], None] = OrderedDict()
_recording: dict[tuple[int, str, str | None, str], threading.Lock] = {}


def _remember_kickoff(ctx: Any) -> None:
    """CrewAI ``INPUT`` hook: keep the outermost kickoff's context. Never raises, never
    changes the inputs."""
    try:
        execution = get_execution_uuid()
        if not execution:
            return
        with _lock:
            if execution in _kickoffs:
                return  # a nested kickoff of the same run: not the person's words
            _kickoffs[execution] = ctx
            while len(_kickoffs) > _MAX_KICKOFFS:
                _kickoffs.popitem(last=False)
    except Exception:
        return


def listen() -> None:
    """Register :func:`_remember_kickoff` on CrewAI's ``INPUT`` point (once; again if
    someone cleared CrewAI's hooks)."""
    from crewai.hooks.dispatch import InterceptionPoint, get_global_hook_list

    with _lock:
        hooks = get_global_hook_list(InterceptionPoint.INPUT)
        if _remember_kickoff not in hooks:
            hooks.append(_remember_kickoff)


def _person_values(ctx: Any) -> list[Any]:
    inputs = getattr(ctx, "payload", None)
    if inputs is None:
        inputs = getattr(ctx, "inputs", None)
    if not isinstance(inputs, Mapping):
        return []
    return [
        v
        for v in inputs.values()
        if isinstance(v, str | Mapping | list | tuple)
        or (isinstance(v, int | float) and not isinstance(v, bool))
    ]


def observe_kickoff_inputs(veto: Veto, call: ToolCall) -> str | None:
    """Record the current kickoff's inputs in ``call``'s run as ``"@user"`` unless done
    already (see the module docstring). Returns None, or the reason they could not be
    recorded (the caller refuses the call)."""
    if not veto.observes_runs:  # the policy keeps no run history: nothing to record
        return None
    execution = get_execution_uuid()
    run_id = call.run_id
    if not execution or not run_id:
        return None
    key = (id(veto), execution, call.tenant, run_id)
    with _lock:
        ctx = _kickoffs.get(execution)
        if ctx is None or key in _recorded:
            return None
        gate = _recording.setdefault(key, threading.Lock())
    with gate:
        with _lock:
            if key in _recorded:
                return None
        values = _person_values(ctx)
        failure = None
        if values:
            failure = observe_user_input(
                veto,
                run_id=run_id,
                text=values,
                principal=call.principal,
                env=call.env,
                tenant=call.tenant,
            )
        with _lock:
            if failure is None:
                _recorded[key] = None
                while len(_recorded) > _MAX_KICKOFFS * 4:
                    _recorded.popitem(last=False)
            _recording.pop(key, None)
        return failure
