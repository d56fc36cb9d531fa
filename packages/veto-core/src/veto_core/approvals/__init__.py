"""Approvals: durable requests bound to one exact call, decided by people (DESIGN.md 5).

>>> auth = veto.authorize(call)                          # doctest: +SKIP
>>> auth.approval.state                                   # doctest: +SKIP
<ApprovalState.PENDING: 'pending'>
>>> veto.approvals.decide(auth.approval.id, approver=Approver(id="fin", roles=("finance",)),
...                       approve=True, via="console")   # doctest: +SKIP
>>> veto.approvals.wait(auth.approval.id, timeout=30)    # doctest: +SKIP
<ApprovalState.APPROVED: 'approved'>
>>> veto.approvals.consume(auth.approval.id)             # doctest: +SKIP
True
"""

from typing import TYPE_CHECKING

from veto_core._lazy import lazy_exports

if TYPE_CHECKING:
    from veto_core.approvals.model import (
        ApprovalClosed,
        ApprovalError,
        ApprovalLinks,
        ApprovalNotFound,
        ApprovalRefused,
        ApprovalRequest,
        ApprovalState,
        ApprovalUnavailable,
        Approver,
        NotEligible,
        SelfApproval,
        Vote,
        binding_key,
    )
    from veto_core.approvals.service import ApprovalService, load_channels, open_approvals
    from veto_core.approvals.store import ApprovalStore, open_approval_store

__all__ = [
    "ApprovalClosed",
    "ApprovalError",
    "ApprovalLinks",
    "ApprovalNotFound",
    "ApprovalRefused",
    "ApprovalRequest",
    "ApprovalService",
    "ApprovalState",
    "ApprovalStore",
    "ApprovalUnavailable",
    "Approver",
    "NotEligible",
    "SelfApproval",
    "Vote",
    "binding_key",
    "load_channels",
    "open_approval_store",
    "open_approvals",
]

# Imported on first use: `veto` must start fast (DESIGN.md 8).
__getattr__, __dir__ = lazy_exports(
    globals(),
    {
        **dict.fromkeys(
            (
                "ApprovalClosed",
                "ApprovalError",
                "ApprovalLinks",
                "ApprovalNotFound",
                "ApprovalRefused",
                "ApprovalRequest",
                "ApprovalState",
                "ApprovalUnavailable",
                "Approver",
                "NotEligible",
                "SelfApproval",
                "Vote",
                "binding_key",
            ),
            "veto_core.approvals.model",
        ),
        **dict.fromkeys(
            ("ApprovalService", "load_channels", "open_approvals"), "veto_core.approvals.service"
        ),
        **dict.fromkeys(("ApprovalStore", "open_approval_store"), "veto_core.approvals.store"),
    },
)
