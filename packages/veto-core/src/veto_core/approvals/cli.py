"""``veto approvals``: list | show | approve | deny | cancel (the console channel's other half).

Mounted on the main command by ``main.add_command(approvals_cli, "approvals")``.
Every subcommand takes ``--db`` (default ``$VETO_DB`` or ``~/.veto/veto.db``).

Nobody is taken on trust (DESIGN.md 2.8): ``approve``/``deny --as X`` needs X's
credential, an API token of X (``--token`` or ``$VETO_TOKEN``; X's roles and tenant
come from their account) or X's dashboard password (``--password``, prompted), or an
operator's local admin key (``--admin``: ``~/.veto/admin.key``; then ``--role``
says which roles X holds and the vote records both the operator and X). ``show``
with a credential also reveals the redacted arguments to an eligible approver.

With ``$VETO_URL`` set, ``list``/``show``/``approve``/``deny`` talk to ``veto serve``
with the API token instead of opening the database.

Exit codes (DESIGN.md 8): 0 done, 2 anything else: a usage error (unknown or
ambiguous id, no acting user), a vote or cancel the request refuses (not eligible,
own call, no longer pending), a missing or wrong credential, a store error. Exit 1 means "deny / check failed"
elsewhere in `veto` and is not used here.

A request is named by its full id, or by any unique prefix or suffix of it (6+
characters): ids are UUIDv7, so requests made close together share their first
characters, and the last ones (random) are the short form to use.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import click

from veto_core.approvals.model import (
    ApprovalError,
    ApprovalRefused,
    ApprovalRequest,
    ApprovalState,
    Approver,
)
from veto_core.approvals.service import ApprovalService, open_approvals
from veto_core.credentials import ENV_TOKEN, CredentialError, load_admin_key

if TYPE_CHECKING:
    from rich.console import Console

    from veto_core.remote import Remote
    from veto_core.server.store import ServerStore, User

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
    from rich.console import Console  # on use: `list` with nothing to show or --json needs no rich

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


def _open(db: str | None, *, reading: bool = False) -> ApprovalService:
    """The service on ``db``; ``reading``: its audit log opened only if a change must be
    recorded (listing expires overdue requests), so a plain listing starts fast."""
    try:
        return open_approvals(db, audit_on_demand=reading)
    except ApprovalError as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(2) from None


def _fail(exc: ApprovalError) -> SystemExit:
    click.echo(f"refused: {exc}" if isinstance(exc, ApprovalRefused) else f"error: {exc}", err=True)
    return SystemExit(2)


def _votes(req: ApprovalRequest) -> str:
    n = len(req.approved_by)  # a quorum per requirement: "n/q" only when there is one
    return f"{n}/{req.quorum}" if len(req.requirements) == 1 else str(n)


# --------------------------------------------------------------------------- credentials


@dataclass(frozen=True, kw_only=True, slots=True)
class Acting:
    """Who casts a vote, proven by a credential; ``operator`` when an admin key holder
    acts in the approver's name."""

    approver: Approver
    operator: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class _Cred:
    user: str | None
    roles: tuple[str, ...]
    email: str | None
    token: str | None
    password: bool
    admin: bool

    @property
    def given(self) -> bool:
        return bool(self.token or self.password or self.admin)


def _refuse(message: str) -> SystemExit:
    click.echo(f"refused: {message}", err=True)
    return SystemExit(2)


def _usage(message: str) -> SystemExit:
    click.echo(f"error: {message}", err=True)
    return SystemExit(2)


@contextmanager
def _server_store(db: str | None) -> Iterator[ServerStore]:
    try:
        from veto_core.server.store import ServerStoreError, open_server_store
    except ImportError as exc:
        raise _usage(
            f"checking a token or password needs the server extra: "
            f"pip install 'veto-core[server]' ({exc})"
        ) from None
    try:
        store = open_server_store(db)
    except ServerStoreError as exc:
        raise _usage(str(exc)) from None
    try:
        yield store
    except ServerStoreError as exc:  # the credential cannot be checked: refuse (fail closed)
        raise _usage(f"cannot check the credential: {exc}") from None
    finally:
        store.close()


def _account(user: User, req: ApprovalRequest, via: str) -> Acting:
    """The approver an authenticated account is in the request's tenant."""
    from veto_core.server.store import role_at_least

    if not role_at_least(user.role(req.tenant), "approver"):
        raise _refuse(f"{user.username} ({via}) has no approver role in tenant {req.tenant!r}")
    return Acting(
        approver=Approver(
            id=user.username,
            roles=user.approver_roles(req.tenant),
            email=user.email,
            tenant=req.tenant,
        )
    )


def _same(who: str, user: User) -> bool:
    ids = {user.username.strip().casefold()} | (
        {user.email.strip().casefold()} if user.email else set()
    )
    return who.strip().casefold() in ids


def authenticate(cred: _Cred, req: ApprovalRequest, db: str | None) -> Acting:
    """The acting approver of ``req``, proven by exactly one credential; exits 2 when
    there is none or it is wrong (DESIGN.md 2.8: no identity on trust)."""
    who = cred.user or os.environ.get(ENV_USER) or None
    if not cred.given:
        raise _refuse(
            f"acting as {who or 'an approver'} needs a credential: an API token "
            f"(--token or ${ENV_TOKEN}; `veto users token NAME`), the dashboard password "
            "(--password), or an operator's admin key (--admin)"
        )
    if cred.admin and cred.password:
        raise _usage("give one credential: --admin or --password")
    if cred.admin:
        if not who:
            raise _usage("--admin votes in someone's name: pass --as USER or set $VETO_USER")
        roles = cred.roles or tuple(
            r.strip() for r in os.environ.get(ENV_ROLES, "").split(",") if r.strip()
        )
        try:
            key = load_admin_key()
        except CredentialError as exc:
            raise _refuse(str(exc)) from None
        with _server_store(db) as store:
            if not store.admit_admin_key(key.fingerprint, key.operator):
                raise _refuse(
                    f"this database does not accept the admin key {key.path} (fingerprint "
                    f"{key.fingerprint}); an operator whose key it accepts can add it: "
                    f"veto users admin-key --add {key.fingerprint}"
                )
        try:
            approver = Approver(id=who, roles=roles, email=cred.email)
        except ApprovalError as exc:  # an id with hidden characters (DESIGN.md 2.8)
            raise _fail(exc) from None
        return Acting(approver=approver, operator=key.operator)
    if cred.roles or cred.email:
        raise _usage(
            "--role/--email are for operators (--admin); with a token or password the "
            "roles come from the account"
        )
    with _server_store(db) as store:
        if cred.password:
            if not who:
                raise _usage("--password needs --as USER (or $VETO_USER)")
            fkey = f"user:{who.casefold()}"
            if store.recent_failures(fkey, 15 * 60) >= 5:
                raise _refuse(f"too many wrong passwords for {who}; try again in 15 minutes")
            try:
                password = click.prompt(f"Dashboard password of {who}", hide_input=True, err=True)
            except click.Abort:
                raise _refuse("no password given") from None
            account = store.authenticate(who, str(password))
            if account is None:
                store.record_failure(fkey)
                raise _refuse(f"wrong user name or password for {who}")
            store.clear_failures(fkey)
            return _account(account, req, "password")
        assert cred.token is not None
        account = store.token_user(cred.token)
        if account is None:
            raise _refuse("the API token is unknown, revoked, or its user was removed")
        if who and not _same(who, account):
            raise _refuse(f"the API token belongs to {account.username}, not {who}")
        return _account(account, req, "token")


def _cred_options(f: F) -> F:
    f = click.option(
        "--admin",
        is_flag=True,
        help="Vote as an operator holding the local admin key (~/.veto/admin.key); the vote "
        "records you and --as.",
    )(f)
    f = click.option(
        "--password",
        "password",
        is_flag=True,
        help="Prove --as with that user's dashboard password (prompted).",
    )(f)
    f = click.option(
        "--token",
        default=None,
        metavar="TOKEN",
        help=f"An API token of the approver (default: ${ENV_TOKEN}).",
    )(f)
    return f


def _remote(token: str | None) -> Remote | None:
    from veto_core.remote import RemoteError, remote_from_env

    try:
        return remote_from_env(token)
    except RemoteError as exc:
        raise _usage(str(exc)) from None


def _remote_fail(exc: Exception) -> SystemExit:
    status = getattr(exc, "status", None)
    if status in (403, 404, 409):
        click.echo(f"refused: {exc}", err=True)
        return SystemExit(2)
    click.echo(f"error: {exc}", err=True)
    return SystemExit(2)


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
    remote = _remote(None)
    if remote is not None:
        from veto_core.remote import RemoteError

        with remote:
            try:
                found = remote.approvals(tenant=tenant, state=state)[:limit]
            except RemoteError as exc:
                raise _remote_fail(exc) from None
        rows = [_from_dict(d) for d in found]
    else:
        service = _open(db, reading=True)
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
    if not rows:  # plain text, as rich would print it: an empty list needs no rich
        click.echo(f"no {'' if state == 'all' else state + ' '}approval requests")
        return
    from rich.markup import escape
    from rich.table import Table

    console = _console()
    table = Table()
    # Ids are never folded across lines: they are copied into `approve`.
    table.add_column("id", no_wrap=True, min_width=36)
    for col in (
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
@click.option(
    "--as", "user", default=None, metavar="USER", help="Who is looking (with a credential)."
)
@click.option("--role", "roles", multiple=True, metavar="ROLE", help="With --admin: roles of --as.")
@click.option("--email", default=None, help="With --admin: the email of --as.")
@_cred_options
@_db_option
def show_cmd(
    request_id: str, as_json: bool, user: str | None, roles: tuple[str, ...], email: str | None,
    token: str | None, password: bool, admin: bool, db: str | None,
) -> None:  # fmt: skip
    """One request with its votes (ID may be a unique prefix or suffix).

    With a credential (--token / $VETO_TOKEN, --password, --admin) an eligible approver
    of a pending request also sees the arguments the audit trail keeps redacted.
    """
    cred = _Cred(user=user, roles=roles, email=email, token=token or os.environ.get(ENV_TOKEN),
                 password=password, admin=admin)  # fmt: skip
    revealed: object = None
    note: str | None = None
    remote = _remote(cred.token)
    if remote is not None:
        from veto_core.remote import RemoteError

        with remote:
            try:
                data = remote.approval(remote.resolve(request_id))
            except RemoteError as exc:
                raise _remote_fail(exc) from None
        req = _from_dict(data)
        revealed = data.get("approver_args")
    else:
        service = _open(db)
        try:
            req = service.get(service.resolve(request_id))
            if cred.given and not req.state.final:
                acting = authenticate(cred, req, db)
                try:
                    revealed = service.approver_args(req.id, acting.approver)
                except ApprovalRefused as exc:
                    note = f"the redacted arguments stay hidden: {exc}"
        except ApprovalError as exc:
            raise _fail(exc) from None
        finally:
            service.close()
    if as_json:
        out = req.to_dict()
        if revealed is not None:
            out["approver_args"] = revealed
        click.echo(json.dumps(out, sort_keys=True, ensure_ascii=False, indent=2))
        return
    from rich.markup import escape

    console = _console()
    console.print(f"[bold]{req.id}[/]  [{_STYLE[req.state]}]{req.state.value.upper()}[/]")
    lines = [
        ("tool", req.tool),
        ("args", json.dumps(req.args, ensure_ascii=False)),
    ]
    if revealed is not None and revealed != req.args:
        lines.append(("args (unredacted)", json.dumps(revealed, ensure_ascii=False)))
    lines += [
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
        by = f" (cast by operator {escape(vote.operator)})" if vote.operator else ""
        console.print(
            f"  vote            {escape(vote.approver)} {verb} via {escape(vote.via)}{by} at {vote.at.isoformat()}{extra}"
        )
    if note:
        console.print(f"  [yellow]{escape(note)}[/]")


def _from_dict(d: Mapping[str, Any]) -> ApprovalRequest:
    """A request as the server's API returns it."""
    import datetime as _dt

    from veto_core.approvals.model import Vote
    from veto_core.model import ApprovalRequirement, Principal

    def ts(v: Any) -> _dt.datetime | None:
        return None if v is None else _dt.datetime.fromisoformat(str(v))

    created, expires = ts(d["created_at"]), ts(d["expires_at"])
    assert created is not None and expires is not None
    return ApprovalRequest(
        id=str(d["id"]), tenant=str(d["tenant"]), run_id=d.get("run_id"),
        tool_call_id=d.get("tool_call_id"), tool=str(d["tool"]), args_digest=str(d["args_digest"]),
        state=ApprovalState(d["state"]), created_at=created, expires_at=expires, env=d.get("env"),
        principal=Principal(agent=d.get("agent"), user=d.get("requester")), args=d.get("args"),
        requirements=tuple(
            ApprovalRequirement(rule_id=str(q["rule_id"]), approvers=tuple(q["approvers"]),
                                quorum=int(q["quorum"]))
            for q in d.get("requirements") or ()
        ),
        channels=tuple(d.get("channels") or ()), rule_ids=tuple(d.get("rule_ids") or ()),
        reasons=tuple(d.get("reasons") or ()), policy_name=d.get("policy_name"),
        policy_revision=d.get("policy_revision"),
        votes=tuple(
            Vote(approver=v["approver"], approve=bool(v["approve"]), via=v["via"],
                 at=ts(v["at"]) or created, roles=tuple(v.get("roles") or ()),
                 reason=v.get("reason"), operator=v.get("operator"),
                 identities=tuple(v.get("identities") or ()))
            for v in d.get("votes") or ()
        ),
        decided_at=ts(d.get("decided_at")), consumed_at=ts(d.get("consumed_at")),
        final_reason=d.get("final_reason"),
    )  # fmt: skip


def _decide(
    request_id: str,
    *,
    approve: bool,
    cred: _Cred,
    reason: str | None,
    via: str,
    as_json: bool,
    db: str | None,
) -> None:
    remote = _remote(cred.token)
    if remote is not None:
        req = _as_token_user(
            remote,
            cred,
            lambda r: r.decide(r.resolve(request_id), approve=approve, reason=reason),
        )
    else:
        service = _open(db)
        try:
            current = service.get(service.resolve(request_id))
            acting = authenticate(cred, current, db)
            req = service.decide(
                current.id,
                approver=acting.approver,
                approve=approve,
                via=via,
                reason=reason,
                operator=acting.operator,
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


def _as_token_user(
    remote: Remote, cred: _Cred, act: Callable[[Remote], dict[str, Any]]
) -> ApprovalRequest:
    """``act(remote)`` on the server, which acts as the API token's user: a ``--as`` naming
    someone else, and the credentials only the database path takes, are refused."""
    from veto_core.remote import RemoteError

    if cred.admin or cred.password or cred.roles or cred.email:
        raise _usage(
            "with $VETO_URL the server decides who you are from the API token: "
            "--admin, --password, --role and --email do not apply"
        )
    with remote:
        try:
            me = str(remote.me()["username"])
            who = cred.user or os.environ.get(ENV_USER)
            if who and who.strip().casefold() != me.casefold():
                raise _refuse(f"the API token belongs to {me}, not {who}")
            return _from_dict(act(remote))
        except RemoteError as exc:
            raise _remote_fail(exc) from None


def _vote_options(f: F) -> F:
    f = click.option(
        "--as", "user", default=None, metavar="USER", help="Who decides (default: $VETO_USER)."
    )(f)
    f = click.option(
        "--role",
        "roles",
        multiple=True,
        metavar="ROLE",
        help="With --admin: a role --as holds (repeatable; default: $VETO_ROLES).",
    )(f)
    f = click.option(
        "--email", default=None, help="With --admin: the email of --as, if rules name emails."
    )(f)
    f = _cred_options(f)
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
    email: str | None, token: str | None, password: bool, admin: bool, via: str, as_json: bool,
    db: str | None,
) -> None:  # fmt: skip
    """Vote to approve request ID (a unique prefix or suffix is enough) with your credential."""
    cred = _Cred(user=user, roles=roles, email=email, token=token or os.environ.get(ENV_TOKEN),
                 password=password, admin=admin)  # fmt: skip
    _decide(request_id, approve=True, cred=cred, reason=reason, via=via, as_json=as_json, db=db)


@approvals_cli.command("deny")
@click.argument("request_id")
@click.option("--reason", default=None, help="Why (the agent sees it).")
@_vote_options
def deny_cmd(
    request_id: str, reason: str | None, user: str | None, roles: tuple[str, ...],
    email: str | None, token: str | None, password: bool, admin: bool, via: str, as_json: bool,
    db: str | None,
) -> None:  # fmt: skip
    """Deny request ID with your credential: one deny vetoes it."""
    cred = _Cred(user=user, roles=roles, email=email, token=token or os.environ.get(ENV_TOKEN),
                 password=password, admin=admin)  # fmt: skip
    _decide(request_id, approve=False, cred=cred, reason=reason, via=via, as_json=as_json, db=db)


@approvals_cli.command("cancel")
@click.argument("request_id")
@click.option(
    "--as", "user", default=None, metavar="USER", help="Who cancels (default: $VETO_USER)."
)
@click.option("--reason", default=None)
@_cred_options
@_db_option
def cancel_cmd(
    request_id: str, user: str | None, reason: str | None, token: str | None, password: bool,
    admin: bool, db: str | None,
) -> None:  # fmt: skip
    """Cancel a pending request (e.g. the run was abandoned), with a credential as for
    approve: an approver of the request's tenant, or an operator (--admin). With
    $VETO_URL the server does it, for the API token's user."""
    cred = _Cred(user=user, roles=(), email=None, token=token or os.environ.get(ENV_TOKEN),
                 password=password, admin=admin)  # fmt: skip
    remote = _remote(cred.token)
    if remote is not None:
        req = _as_token_user(remote, cred, lambda r: r.cancel(r.resolve(request_id), reason=reason))
        click.echo(f"{req.id} is {req.state.value.upper()}")
        return
    service = _open(db)
    try:
        current = service.get(service.resolve(request_id))
        acting = authenticate(cred, current, db)
        by = acting.approver.id + (f" (operator {acting.operator})" if acting.operator else "")
        req = service.cancel(current.id, by=by, reason=reason)
    except ApprovalError as exc:
        raise _fail(exc) from None
    finally:
        service.close()
    click.echo(f"{req.id} is {req.state.value.upper()}")
    if req.state is not ApprovalState.CANCELLED:
        raise SystemExit(2)  # refused: it was no longer pending
