"""``veto approvals``: list | show | approve | deny | cancel (the console channel's other half).

Mounted on the main command by ``main.add_command(approvals_cli, "approvals")``.
Every subcommand takes ``--db`` (default ``$VETO_DB`` or ``~/.veto/veto.db``).
The acting user comes from ``--as`` (or ``$VETO_USER``), with roles from ``--role``
(repeatable, or ``$VETO_ROLES`` comma-separated). The console trusts the operator
who runs it: authenticated approvers use the server (``veto serve``).

Exit codes: 0 done, 1 refused (not eligible, own call, no longer pending, not
found), 2 usage or store error.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from veto_core.approvals.model import (
    ApprovalError,
    ApprovalNotFound,
    ApprovalRefused,
    ApprovalRequest,
    ApprovalState,
    Approver,
)
from veto_core.approvals.service import ApprovalService, open_approvals

__all__ = ["ENV_ROLES", "ENV_USER", "approvals_cli"]

ENV_USER = "VETO_USER"
ENV_ROLES = "VETO_ROLES"

F = TypeVar("F", bound=Callable[..., Any])

_STYLE = {
    ApprovalState.PENDING: "yellow",
    ApprovalState.APPROVED: "green",
    ApprovalState.DENIED: "red",
    ApprovalState.EXPIRED: "red",
    ApprovalState.CANCELLED: "dim",
}


def _console() -> Console:
    console = Console(highlight=False, soft_wrap=False)
    if not console.is_terminal:
        console = Console(highlight=False, soft_wrap=False, width=140)
    return console


def _db_option(f: F) -> F:
    return click.option(
        "--db",
        "db",
        default=None,
        metavar="URL",
        help="Store: path, sqlite:///x.db or postgresql://... (default: $VETO_DB or ~/.veto/veto.db).",
    )(f)


def _open(db: str | None) -> ApprovalService:
    try:
        return open_approvals(db)
    except ApprovalError as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(2) from None


def _fail(exc: ApprovalError) -> SystemExit:
    click.echo(f"refused: {exc}" if isinstance(exc, ApprovalRefused) else f"error: {exc}", err=True)
    return SystemExit(1 if isinstance(exc, ApprovalRefused | ApprovalNotFound) else 2)


def _acting(user: str | None, roles: tuple[str, ...], email: str | None) -> Approver:
    who = user or os.environ.get(ENV_USER)
    if not who:
        click.echo("error: who is deciding? pass --as USER or set $VETO_USER", err=True)
        raise SystemExit(2)
    if not roles:
        roles = tuple(r.strip() for r in os.environ.get(ENV_ROLES, "").split(",") if r.strip())
    try:
        return Approver(id=who, roles=roles, email=email)
    except ApprovalError as exc:  # an id with hidden characters (DESIGN.md 2.8)
        raise _fail(exc) from None


def _votes(req: ApprovalRequest) -> str:
    n = len(req.approved_by)  # a quorum per requirement: "n/q" only when there is one
    return f"{n}/{req.quorum}" if len(req.requirements) == 1 else str(n)


@click.group("approvals")
def approvals_cli() -> None:
    """Approval requests: list, show, approve, deny, cancel."""


@approvals_cli.command("list")
@click.option("--tenant", default=None, help="Only this tenant's requests.")
@click.option(
    "--state",
    default="pending",
    show_default=True,
    type=click.Choice([*(s.value for s in ApprovalState), "all"]),
)
@click.option("--limit", default=100, show_default=True, type=int)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per request.")
@_db_option
def list_cmd(tenant: str | None, state: str, limit: int, as_json: bool, db: str | None) -> None:
    """Requests, newest first (pending ones by default)."""
    service = _open(db)
    try:
        rows = service.list(tenant=tenant, state=None if state == "all" else state, limit=limit)
    except ApprovalError as exc:
        raise _fail(exc) from None
    finally:
        service.close()
    if as_json:
        for r in rows:
            click.echo(json.dumps(r.to_dict(), sort_keys=True, ensure_ascii=False))
        return
    console = _console()
    if not rows:
        console.print(f"no {'' if state == 'all' else state + ' '}approval requests")
        return
    table = Table()
    for col in (
        "id",
        "state",
        "tenant",
        "tool",
        "args",
        "requester",
        "approvers",
        "votes",
        "expires",
    ):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(
            r.id, f"[{_STYLE[r.state]}]{r.state.value}[/]", r.tenant, escape(r.tool),
            escape(json.dumps(r.args, ensure_ascii=False)), escape(r.requester or r.principal.agent or ""),
            escape(r.needs), _votes(r), r.expires_at.strftime("%Y-%m-%d %H:%M:%S"),
        )  # fmt: skip
    console.print(table)


@approvals_cli.command("show")
@click.argument("request_id")
@click.option("--json", "as_json", is_flag=True)
@_db_option
def show_cmd(request_id: str, as_json: bool, db: str | None) -> None:
    """One request with its votes (ID may be a unique prefix)."""
    service = _open(db)
    try:
        req = service.get(service.resolve(request_id))
    except ApprovalError as exc:
        raise _fail(exc) from None
    finally:
        service.close()
    if as_json:
        click.echo(json.dumps(req.to_dict(), sort_keys=True, ensure_ascii=False, indent=2))
        return
    console = _console()
    console.print(f"[bold]{req.id}[/]  [{_STYLE[req.state]}]{req.state.value.upper()}[/]")
    lines = [
        ("tool", req.tool),
        ("args", json.dumps(req.args, ensure_ascii=False)),
        ("tenant / env", f"{req.tenant} / {req.env or '-'}"),
        ("requested by", f"{req.requester or '-'} (agent {req.principal.agent or '-'})"),
        ("run / tool call", f"{req.run_id or '-'} / {req.tool_call_id or '-'}"),
        ("why", "; ".join(req.reasons)),
        (
            "approvers",
            f"{req.needs} (each requirement is met on its own)",
        ),
        ("created", req.created_at.isoformat()),
        ("expires", req.expires_at.isoformat()),
    ]
    if req.decided_at:
        lines.append(("decided", req.decided_at.isoformat()))
    if req.final_reason:
        lines.append(("outcome", req.final_reason))
    if req.consumed_at:
        lines.append(("released", req.consumed_at.isoformat()))
    for k, v in lines:
        console.print(f"  {k:<16}{escape(v)}")
    for vote in req.votes:
        verb = "[green]approve[/]" if vote.approve else "[red]deny[/]"
        extra = f": {escape(vote.reason)}" if vote.reason else ""
        console.print(
            f"  vote            {escape(vote.approver)} {verb} via {escape(vote.via)} at {vote.at.isoformat()}{extra}"
        )


def _decide(
    request_id: str,
    *,
    approve: bool,
    user: str | None,
    roles: tuple[str, ...],
    email: str | None,
    reason: str | None,
    via: str,
    as_json: bool,
    db: str | None,
) -> None:
    approver = _acting(user, roles, email)
    service = _open(db)
    try:
        req = service.decide(
            service.resolve(request_id), approver=approver, approve=approve, via=via, reason=reason
        )
    except ApprovalError as exc:
        raise _fail(exc) from None
    finally:
        service.close()
    if as_json:
        click.echo(json.dumps(req.to_dict(), sort_keys=True, ensure_ascii=False))
        return
    if req.state is ApprovalState.PENDING:
        click.echo(
            f"vote recorded: {req.id} has {_votes(req)} approvals; still pending "
            f"(needs {req.needs})"
        )
    else:
        click.echo(f"{req.id} is {req.state.value.upper()} ({_votes(req)} approvals)")


def _vote_options(f: F) -> F:
    f = click.option(
        "--as", "user", default=None, metavar="USER", help="Who decides (default: $VETO_USER)."
    )(f)
    f = click.option(
        "--role",
        "roles",
        multiple=True,
        metavar="ROLE",
        help="A role you hold (repeatable; default: $VETO_ROLES).",
    )(f)
    f = click.option(
        "--email", default=None, help="Your email, if the rule names approvers by email."
    )(f)
    f = click.option(
        "--via", default="console", show_default=True, help="Channel recorded with the vote."
    )(f)
    f = click.option("--json", "as_json", is_flag=True)(f)
    return _db_option(f)  # fmt: skip


@approvals_cli.command("approve")
@click.argument("request_id")
@click.option("--reason", default=None, help="Why (recorded with the vote).")
@_vote_options
def approve_cmd(
    request_id: str, reason: str | None, user: str | None, roles: tuple[str, ...],
    email: str | None, via: str, as_json: bool, db: str | None,
) -> None:  # fmt: skip
    """Vote to approve request ID (a unique prefix is enough)."""
    _decide(request_id, approve=True, user=user, roles=roles, email=email, reason=reason,
            via=via, as_json=as_json, db=db)  # fmt: skip


@approvals_cli.command("deny")
@click.argument("request_id")
@click.option("--reason", default=None, help="Why (the agent sees it).")
@_vote_options
def deny_cmd(
    request_id: str, reason: str | None, user: str | None, roles: tuple[str, ...],
    email: str | None, via: str, as_json: bool, db: str | None,
) -> None:  # fmt: skip
    """Deny request ID: one deny vetoes it."""
    _decide(request_id, approve=False, user=user, roles=roles, email=email, reason=reason,
            via=via, as_json=as_json, db=db)  # fmt: skip


@approvals_cli.command("cancel")
@click.argument("request_id")
@click.option("--as", "user", default=None, metavar="USER")
@click.option("--reason", default=None)
@_db_option
def cancel_cmd(request_id: str, user: str | None, reason: str | None, db: str | None) -> None:
    """Cancel a pending request (an operator action, e.g. the run was abandoned)."""
    who = user or os.environ.get(ENV_USER)
    service = _open(db)
    try:
        req = service.cancel(service.resolve(request_id), by=who, reason=reason)
    except ApprovalError as exc:
        raise _fail(exc) from None
    finally:
        service.close()
    click.echo(f"{req.id} is {req.state.value.upper()}")
    if req.state is not ApprovalState.CANCELLED:
        raise SystemExit(1)
