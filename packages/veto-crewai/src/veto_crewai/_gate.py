"""Turn a ``ToolCall`` into "run it" or "don't, because ...", failing closed.

Every path here ends in a :class:`Verdict`; any exception (store down, a bug, a plugin
that raises, an approval service that fails) becomes a refusal with a reason, never a
run. Only ``Verdict.run`` lets a tool body execute. The ``Verdict`` and the mapping
are the ones all adapters share (:mod:`veto_core.adapters`); CrewAI words a held
approval with the ``Authorization``'s own reason.
"""

from __future__ import annotations

import asyncio

from veto_core import Authorization, ToolCall, Veto
from veto_core import adapters as _shared
from veto_core.adapters import Verdict, decision_text
from veto_core.adapters import error_verdict as failure

__all__ = ["Verdict", "check", "failure"]


def _explain_approval(auth: Authorization, outcome: str) -> str:
    """CrewAI's wording: the ``Authorization``'s own one-line reason (the decision's
    reasons and the approval's state), with the rule ids."""
    return decision_text(auth.decision, auth.reason)


def from_authorization(call: ToolCall, auth: Authorization) -> Verdict:
    """Map an ``Authorization`` (after any waiting) to a ``Verdict``."""
    return _shared.from_authorization(call, auth, explain_approval=_explain_approval)


def _on_event_loop_thread() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def check(veto: Veto, call: ToolCall, *, approval_timeout: float | None = None) -> Verdict:
    """Decide, durably record and, when approval is required, block until the request is
    decided or expires (``Veto.authorize_and_wait``; ``approval_timeout`` caps the rule's
    timeout). Runs only if allowed, or APPROVED and consumed by this very call.

    Called on a thread that runs an event loop, it never blocks: an approval that is not
    already granted is refused (with that reason) instead of waited for.
    """

    def decide() -> Verdict:
        timeout = 0.0 if _on_event_loop_thread() else approval_timeout
        return from_authorization(call, veto.authorize_and_wait(call, timeout=timeout))

    return _shared.fail_closed(call.tool, decide, call=call)
