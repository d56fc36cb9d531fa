"""``console`` channel: tells the operator how to decide from the command line.

Writes one line per request to the ``veto.approvals.console`` logger (WARNING,
so it shows on stderr without any logging setup). Decisions come back through
``veto approvals approve|deny ID``.
"""

from __future__ import annotations

import logging

from veto_core.approvals.model import ApprovalLinks, ApprovalRequest
from veto_core.hookspecs import ApprovalChannel, hookimpl

__all__ = ["ConsoleChannel", "veto_approval_channels"]

log = logging.getLogger("veto.approvals.console")


class ConsoleChannel:
    name = "console"

    def notify(self, request: ApprovalRequest, links: ApprovalLinks) -> None:
        who = request.needs
        log.warning(
            "approval needed [%s] %s by %s (%s): %s; approvers: %s; approve: %s",
            request.id,
            request.tool,
            request.requester or request.principal.agent or "an agent",
            request.tenant,
            "; ".join(request.reasons) or "policy requires approval",
            who,
            links.approve_command,
        )


@hookimpl
def veto_approval_channels() -> list[ApprovalChannel]:
    return [ConsoleChannel()]
