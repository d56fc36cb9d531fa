"""The dashboard's view of the approvals service (``veto_core.approvals``).

One place adapts the service's API, so pages and the JSON API never import it
directly. Every failure is an exception the routes turn into an error status:
nothing here can approve a request except an explicit :meth:`Approvals.decide`
by an authenticated, authorized user (fail closed).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from veto_core.audit.log import AuditLog
    from veto_core.server.context import Identity

__all__ = ["Approvals", "ApprovalsUnavailable", "Closed", "NotFound", "Refused"]


class ApprovalsUnavailable(Exception):
    """The approval store cannot be opened or read (HTTP 503)."""


class NotFound(Exception):
    """No such request, or it belongs to a tenant the user cannot see (HTTP 404)."""


class Refused(Exception):
    """The vote is not accepted: not eligible, own call, ... (HTTP 403)."""


class Closed(Exception):
    """The request is no longer pending (HTTP 409)."""


@contextlib.contextmanager
def _service_errors(request_id: str, failed: str) -> Iterator[None]:
    """The approval service's errors as the routes' exceptions: unknown request ->
    :class:`NotFound`, no longer pending -> :class:`Closed`, vote refused ->
    :class:`Refused`; anything else -> :class:`ApprovalsUnavailable` (``failed: ...``)."""
    from veto_core.approvals import ApprovalClosed, ApprovalNotFound, ApprovalRefused

    try:
        yield
    except ApprovalNotFound as exc:
        raise NotFound(request_id) from exc
    except ApprovalClosed as exc:
        raise Closed(str(exc)) from exc
    except ApprovalRefused as exc:
        raise Refused(str(exc)) from exc
    except ApprovalsUnavailable:
        raise
    except Exception as exc:
        raise ApprovalsUnavailable(f"{failed}: {exc}") from exc


class Approvals:
    """Lazily opened approval service on the server's database URL."""

    def __init__(self, db: str, audit: AuditLog | None = None) -> None:
        self.db = db
        self.audit = audit  # shared with the server: votes are recorded in the same log
        self._service: Any = None
        self._lock = threading.Lock()

    def service(self) -> Any:
        if self._service is None:
            with self._lock:
                if self._service is None:
                    try:
                        from veto_core.approvals import (
                            ApprovalService,
                            open_approval_store,
                            open_approvals,
                        )
                    except ImportError as exc:
                        raise ApprovalsUnavailable(
                            f"the approvals service is not available in this build: {exc}"
                        ) from exc
                    try:
                        if self.audit is None:
                            self._service = open_approvals(self.db)
                        else:
                            store = open_approval_store(self.db)
                            self._service = ApprovalService(store, self.audit, db=self.db)
                    except Exception as exc:
                        raise ApprovalsUnavailable(
                            f"cannot open the approval store: {exc}"
                        ) from exc
        return self._service

    def close(self) -> None:
        svc = self._service
        if svc is not None and hasattr(svc, "close"):
            svc.close()

    # -- reading ---------------------------------------------------------------------

    def list_requests(self, tenants: list[str], state: str | None = "pending") -> list[Any]:
        """Requests of ``tenants`` (newest first); ``state=None``: every state."""
        from veto_core.approvals import ApprovalState

        svc = self.service()
        out: list[Any] = []
        try:
            st = None if state is None else ApprovalState(state)
        except ValueError as exc:
            raise NotFound(f"unknown state {state!r}") from exc
        for t in tenants:
            try:
                out.extend(svc.list(tenant=t, state=st))
            except Exception as exc:
                raise ApprovalsUnavailable(f"cannot list approval requests: {exc}") from exc
        out.sort(key=lambda r: r.created_at, reverse=True)
        return out

    def get(self, request_id: str, tenants: list[str]) -> Any:
        """The request, if it belongs to one of ``tenants``; else :class:`NotFound`."""
        with _service_errors(request_id, "cannot read approval request"):
            req = self.service().get(request_id)
        if req is None or req.tenant not in tenants:
            raise NotFound(request_id)
        return req

    # -- deciding --------------------------------------------------------------------

    def decide(
        self,
        request_id: str,
        *,
        username: str,
        email: str | None,
        policy_roles: tuple[str, ...],
        tenant: str,
        approve: bool,
        via: str,
        reason: str | None,
    ) -> Any:
        """Cast the user's vote; the service enforces eligibility, quorum, self-approval."""
        from veto_core.approvals import Approver

        with _service_errors(request_id, "the decision was not recorded"):
            approver = Approver(id=username, roles=policy_roles, email=email, tenant=tenant)
            return self.service().decide(
                request_id, approver=approver, approve=approve, via=via, reason=reason or None
            )

    def cancel(self, request_id: str, *, username: str, reason: str | None) -> Any:
        """PENDING -> CANCELLED by ``username`` (the caller checked its approver role).
        Cancelling a cancelled request changes nothing and answers it (as the local CLI
        does); :class:`Closed` if it was approved, denied or expired instead."""
        from veto_core.approvals import ApprovalState

        with _service_errors(request_id, "the cancellation was not recorded"):
            after = self.service().cancel(request_id, by=username, reason=reason or None)
        if after.state is not ApprovalState.CANCELLED:
            raise Closed(
                f"approval request {request_id} is {after.state.value}; "
                "it can no longer be cancelled"
            )
        return after

    def view_for(self, req: Any, ident: Identity) -> dict[str, Any]:
        """``req`` as ``ident`` may see it, on every page and API that shows a request:
        ``approver_args`` holds the values redaction hides, only for an approver eligible
        to approve it while it is pending (else None)."""
        from veto_core.server.store import role_at_least

        view = request_view(req)
        view["approver_args"] = None
        if not req.state.final and role_at_least(ident.user.role(req.tenant), "approver"):
            view["approver_args"] = self.approver_args(
                req.id,
                username=ident.username,
                email=ident.user.email,
                policy_roles=ident.user.approver_roles(req.tenant),
                tenant=req.tenant,
            )
        return view

    def approver_args(
        self,
        request_id: str,
        *,
        username: str,
        email: str | None,
        policy_roles: tuple[str, ...],
        tenant: str,
    ) -> Any:
        """The unredacted arguments if this user may approve the pending request, else
        None (not eligible, the requester, or the request ended and they were erased)."""
        from veto_core.approvals import ApprovalRefused, Approver

        approver = Approver(id=username, roles=policy_roles, email=email, tenant=tenant)
        try:
            return self.service().approver_args(request_id, approver)
        except ApprovalRefused:
            return None
        except Exception as exc:
            raise ApprovalsUnavailable(f"cannot read the request's arguments: {exc}") from exc


def request_view(req: Any, now: _dt.datetime | None = None) -> dict[str, Any]:
    """A request as the API returns it, plus what the page shows (time left)."""
    d: dict[str, Any] = dict(req.to_dict())
    now = now or _dt.datetime.now(_dt.UTC)
    left = (req.expires_at - now).total_seconds()
    d["seconds_left"] = max(0, int(left))
    return d
