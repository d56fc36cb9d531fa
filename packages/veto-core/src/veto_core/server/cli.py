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
@click.option("--name", default="cli", show_default=True, help="What the token is for.")
@_db_option
def users_token(username: str, name: str, db: str | None) -> None:
    """Create an API token for USERNAME and print it (shown once; stored hashed)."""
    from veto_core.server.store import ServerStoreError

    store = _store(db)
    try:
        _tok, secret = store.create_token(username, name)
        click.echo(secret)
    except ServerStoreError as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        store.close()
