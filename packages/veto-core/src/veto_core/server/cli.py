"""``veto serve`` and ``veto users``: mounted on the main command by ``veto_core.cli``.

This module imports nothing of the ``[server]`` extra at import time, so ``veto``
works without it; the commands say how to install it when it is missing.
"""

from __future__ import annotations

import sys
from typing import Any

import click

__all__ = ["serve_command", "users_cli"]

_EXTRA = "veto serve needs the server extra: pip install 'veto-core[server]'"


def _db_option(f: Any) -> Any:
    return click.option(
        "--db",
        default=None,
        metavar="URL",
        help="Database: path, sqlite:///x.db or postgresql://... "
        "(default: $VETO_DB or ~/.veto/veto.db).",
    )(f)


def _store(db: str | None) -> Any:
    try:
        from veto_core.server.store import ServerStoreError, open_server_store
    except ImportError as exc:
        raise click.ClickException(f"{_EXTRA} ({exc})") from exc
    try:
        return open_server_store(db)
    except ServerStoreError as exc:
        raise click.ClickException(str(exc)) from exc


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8700, show_default=True, type=int)
@_db_option
@click.option(
    "--secure-cookies/--no-secure-cookies",
    "secure",
    default=None,
    help="Force the Secure flag on cookies (default: when the request came over https; "
    "behind a TLS proxy, uvicorn's --proxy-headers handling applies).",
)
@click.option("--log-level", default="info", show_default=True)
def serve_command(
    host: str, port: int, db: str | None, secure: bool | None, log_level: str
) -> None:
    """Run the dashboard and JSON API (approvals, audit, policies, explain).

    Users: `veto users add alice --role approver --tenant acme`. Secrets:
    VETO_SECRET_KEY (else one is generated and kept in the database).
    """
    try:
        import uvicorn

        from veto_core.audit.log import default_audit_url
        from veto_core.server import ServerSettings, create_app
    except ImportError as exc:
        raise click.ClickException(f"{_EXTRA} ({exc})") from exc
    from veto_core.audit.errors import AuditError
    from veto_core.server.store import ServerStoreError

    url = db or default_audit_url()
    try:
        app = create_app(settings=ServerSettings(db=url, cookie_secure=secure))
    except (AuditError, ServerStoreError) as exc:
        raise click.ClickException(str(exc)) from exc
    if not app.state.ctx.store.list_users():
        click.echo(
            "no users yet: create one with `veto users add NAME --role admin --tenant TENANT`",
            err=True,
        )
    click.echo(f"veto serve: http://{host}:{port}/  (database {url})", err=True)
    uvicorn.run(app, host=host, port=port, log_level=log_level, timeout_graceful_shutdown=3)


@click.group("users")
def users_cli() -> None:
    """Dashboard users: roles viewer / approver / admin per tenant, API tokens."""


def _password(from_stdin: bool) -> str:
    if from_stdin:
        pw = sys.stdin.readline().rstrip("\r\n")
    else:
        pw = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    if len(pw) < 8:
        raise click.ClickException("password must have at least 8 characters")
    return str(pw)


@users_cli.command("add")
@click.argument("username")
@click.option("--tenant", required=True, help="Tenant the role applies to.")
@click.option("--role", type=click.Choice(["viewer", "approver", "admin"]), required=True)
@click.option(
    "--approver-role",
    "policy_roles",
    multiple=True,
    help='Policy role held as an approver (matches approvers: ["role:NAME"]); repeatable; '
    "added to the roles the user already holds.",
)
@click.option("--email", default=None, help="Matches approvers given as e-mail addresses.")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin.")
@_db_option
def users_add(
    username: str,
    tenant: str,
    role: str,
    policy_roles: tuple[str, ...],
    email: str | None,
    password_stdin: bool,
    db: str | None,
) -> None:
    """Create USERNAME with ROLE in TENANT (or grant the role if the user exists)."""
    from veto_core.server.store import ServerStoreError

    store = _store(db)
    try:
        if store.get_user(username) is None:
            store.add_user(
                username,
                _password(password_stdin),
                tenant=tenant,
                role=role,
                policy_roles=policy_roles,
                email=email,
            )
            click.echo(f"created {username}: {role} in {tenant}")
        else:
            # --approver-role adds to the roles the user already holds in the tenant.
            user = store.get_user(username)
            held = user.approver_roles(tenant) if user is not None else ()
            merged = tuple(dict.fromkeys([*held, *policy_roles]))
            store.set_role(username, tenant=tenant, role=role, policy_roles=merged)
            roles = f" (approver roles: {', '.join(merged)})" if merged else ""
            click.echo(f"{username}: {role} in {tenant}{roles}")
    except ServerStoreError as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        store.close()


@users_cli.command("list")
@click.option("--tenant", default=None)
@_db_option
def users_list(tenant: str | None, db: str | None) -> None:
    """List users and their roles."""
    store = _store(db)
    try:
        for u in store.list_users(tenant):
            roles = ", ".join(
                f"{t}:{r}" + (f" [{'/'.join(u.approver_roles(t))}]" if u.approver_roles(t) else "")
                for t, r in sorted(u.roles.items())
            )
            click.echo(f"{u.username}\t{roles}" + (f"\t{u.email}" if u.email else ""))
    finally:
        store.close()


@users_cli.command("remove")
@click.argument("username")
@click.option("--tenant", default=None, help="Only revoke the role in this tenant.")
@_db_option
def users_remove(username: str, tenant: str | None, db: str | None) -> None:
    """Delete USERNAME (sessions and tokens too), or revoke one tenant's role."""
    from veto_core.server.store import ServerStoreError

    store = _store(db)
    try:
        if tenant is not None:
            store.set_role(username, tenant=tenant, role=None)
            click.echo(f"{username}: no role in {tenant}")
        elif store.remove_user(username):
            click.echo(f"removed {username}")
        else:
            raise click.ClickException(f"no user {username!r}")
    except ServerStoreError as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        store.close()


@users_cli.command("passwd")
@click.argument("username")
@click.option("--password-stdin", is_flag=True)
@_db_option
def users_passwd(username: str, password_stdin: bool, db: str | None) -> None:
    """Set USERNAME's password (logs out their sessions)."""
    from veto_core.server.store import ServerStoreError

    store = _store(db)
    try:
        store.set_password(username, _password(password_stdin))
        click.echo(f"password of {username} changed")
    except ServerStoreError as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        store.close()


@users_cli.command("token")
@click.argument("username")
@click.option(
    "--tenant",
    default=None,
    help="The tenant the token acts in (default: the user's only tenant).",
)
@click.option("--name", default="cli", show_default=True, help="What the token is for.")
@_db_option
def users_token(username: str, tenant: str | None, name: str, db: str | None) -> None:
    """Create an API token of USERNAME in one tenant and print it: shown once, stored
    hashed, revocable (`veto users revoke-token`). It carries the user's role and
    approver roles in that tenant: `VETO_TOKEN=... veto approvals approve ID`, or
    `Authorization: Bearer ...` against `veto serve`."""
    from veto_core.server.store import ServerStoreError

    store = _store(db)
    try:
        tok, secret = store.create_token(username, name, tenant=tenant)
    except ServerStoreError as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        store.close()
    click.echo(f"token {tok.id} of {username} in {tok.tenant} (shown once):", err=True)
    click.echo(secret)


@users_cli.command("tokens")
@click.argument("username")
@_db_option
def users_tokens(username: str, db: str | None) -> None:
    """List USERNAME's API tokens (never their secrets)."""
    store = _store(db)
    try:
        if store.get_user(username) is None:
            raise click.UsageError(f"no user {username!r}")
        for t in store.list_tokens(username):
            used = t.last_used_at.isoformat(timespec="seconds") if t.last_used_at else "never"
            click.echo(
                f"{t.id}\t{t.tenant or '(all tenants)'}\t{t.name}\t"
                f"created {t.created_at.isoformat(timespec='seconds')}\tlast used {used}"
            )
    finally:
        store.close()


@users_cli.command("revoke-token")
@click.argument("username")
@click.argument("token_id")
@_db_option
def users_revoke_token(username: str, token_id: str, db: str | None) -> None:
    """Revoke USERNAME's token TOKEN_ID (the id `veto users tokens` lists)."""
    store = _store(db)
    try:
        if not store.revoke_token(username, token_id):
            raise click.ClickException(f"{username} has no token {token_id!r}")
    finally:
        store.close()
    click.echo(f"revoked token {token_id} of {username}")


@users_cli.command("admin-key")
@click.option(
    "--add",
    "add",
    default=None,
    metavar="FINGERPRINT",
    help="Accept another operator's admin key (needs your own accepted key).",
)
@_db_option
def users_admin_key(add: str | None, db: str | None) -> None:
    """Your local admin key (~/.veto/admin.key, created on first use) and the operator
    keys this database accepts. The first key presented to a database is accepted;
    others only once an accepted operator adds them."""
    from veto_core.credentials import CredentialError, load_admin_key

    try:
        key = load_admin_key()
    except CredentialError as exc:
        raise click.ClickException(str(exc)) from exc
    store = _store(db)
    try:
        if not store.admit_admin_key(key.fingerprint, key.operator):
            if add:
                raise click.ClickException(
                    f"this database does not accept your admin key ({key.fingerprint}), "
                    "so you cannot add others"
                )
            click.echo(f"your admin key {key.fingerprint} ({key.path}): NOT accepted here")
        elif add:
            fp = add.strip().lower()
            if len(fp) != 64 or any(c not in "0123456789abcdef" for c in fp):
                raise click.ClickException("a fingerprint is 64 hex digits")
            store.add_admin_key(fp, f"added by {key.operator}")
            click.echo(f"accepted admin key {fp}")
        else:
            click.echo(f"your admin key {key.fingerprint} ({key.path}): accepted")
        for fp, label in store.admin_keys():
            click.echo(f"{fp}\t{label}")
    finally:
        store.close()
