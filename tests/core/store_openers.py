"""Every store Veto opens on a database URL, by name: the audit trail, approvals,
limits, runs and the server's tables (tests that must hold for each of them)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from veto_core.approvals.store import open_approval_store
from veto_core.audit import open_audit
from veto_core.limits import open_limit_store
from veto_core.runs.backends import open_run_store
from veto_core.server.store import ServerStore

OPENERS: dict[str, Callable[[str], Any]] = {
    "audit": open_audit,
    "approvals": open_approval_store,
    "limits": open_limit_store,
    "runs": open_run_store,
    "server": ServerStore,
}
