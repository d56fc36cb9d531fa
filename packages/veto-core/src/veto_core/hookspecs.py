"""The plugin contract (pluggy, project name ``veto``): DESIGN.md 5.

A plugin is any object or module with functions marked ``@hookimpl`` named like
the specs below; third-party plugins register through the ``veto`` entry-point
group. Built-in channels, sinks and operators are registered the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import pluggy

if TYPE_CHECKING:
    from veto_core.approvals.model import ApprovalLinks, ApprovalRequest
    from veto_core.audit.sink import AuditSink, SinkConfig
    from veto_core.audit.witness import AuditWitness, WitnessConfig
    from veto_core.model import Principal

__all__ = ["PROJECT", "ApprovalChannel", "Operator", "hookimpl", "hookspec"]

PROJECT = "veto"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


class ApprovalChannel(Protocol):
    """Delivers approval requests to approvers (console, dashboard, slack, email, webhook).

    ``name`` is what a rule's ``approval.channels`` lists. ``notify`` is called once
    per new request with a frozen copy of it and the ways to decide it; it should
    return promptly (the agent's call waits on it) and may raise: a failing channel
    is logged and recorded, and the other channels are still notified. A channel
    never decides a request itself; decisions come back through the approval
    service (CLI, server API, signed Slack/email callbacks).
    """

    name: str

    def notify(self, request: ApprovalRequest, links: ApprovalLinks) -> None: ...


Operator = Callable[[Any], Callable[[Any], bool]]
"""A condition operator: ``compile(operand) -> predicate(value)``."""


@hookspec
def veto_approval_channels() -> list[ApprovalChannel]:  # type: ignore[empty-body]
    """Approval channels this plugin provides."""


@hookspec
def veto_audit_sinks(config: SinkConfig) -> list[AuditSink]:  # type: ignore[empty-body]
    """A sink for the configured URL scheme, or ``[]`` if the scheme is not this plugin's."""


@hookspec
def veto_audit_witness(config: WitnessConfig) -> list[AuditWitness]:  # type: ignore[empty-body]
    """A witness for the configured URL (``[audit] witness``), or ``[]`` if not this
    plugin's scheme: it keeps signed chain heads where the store's writers cannot reach."""


@hookspec
def veto_condition_operators() -> dict[str, Operator]:  # type: ignore[empty-body]
    """Extra policy condition operators: name -> compile(operand) -> predicate."""


@hookspec(firstresult=True)
def veto_principal_from_context(framework: str, context: object) -> Principal | None:
    """Derive the calling principal from a framework's run context (first answer wins)."""
