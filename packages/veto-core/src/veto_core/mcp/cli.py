"""``veto mcp proxy``: mounted on the main command by ``veto_core.cli``.

Imports nothing of the ``[mcp]`` extra at import time (``veto --help`` stays fast
and works without it); the command says how to install it when it is missing.
"""

from __future__ import annotations

import functools
from pathlib import Path

import click

__all__ = ["mcp_cli"]

_EXTRA = "veto mcp needs the mcp extra: pip install 'veto-core[mcp]'"


def _listen(value: str | None) -> tuple[str, int] | None:
    if value is None:
        return None
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise click.BadParameter(f"expected HOST:PORT, got {value!r}", param_hint="--listen")
    return host.strip("[]"), int(port)


def _headers(values: tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition(":")
        if not sep or not key.strip():
            raise click.BadParameter(f"expected 'Name: value', got {item!r}", param_hint="--header")
        out[key.strip()] = value.strip()
    return out


@click.group("mcp")
def mcp_cli() -> None:
    """Govern MCP servers: one policy for every MCP client."""


@mcp_cli.command("proxy")
@click.argument("policy_arg", metavar="POLICY", required=False)
@click.option("--policy", "-p", "policy_opt", type=click.Path(exists=True), help="Same as POLICY.")
@click.option("--name", required=True, help="Server name in tool names: mcp__NAME__tool.")
@click.option("--upstream", metavar="URL", help="Streamable HTTP upstream instead of a command.")
@click.option("--header", "headers", multiple=True, metavar="'NAME: VALUE'",
              help="HTTP header for the upstream (repeatable).")  # fmt: skip
@click.option("--listen", metavar="HOST:PORT", help="Serve streamable HTTP here (default: stdio).")
@click.option("--auth", type=click.Choice(["token", "none"]), default="token", show_default=True,
              help="With --listen: require the bearer token of a `veto users token`.")  # fmt: skip
@click.option(
    "--hide-denied", is_flag=True, help="Leave tools the policy never allows out of tools/list."
)
@click.option(
    "--agent", default=None, help="principal.agent (else veto.toml, else mcp-client:NAME)."
)
@click.option("--role", "roles", multiple=True, help="principal.roles (repeatable).")
@click.option("--user", default=None, help="principal.user.")
@click.option("--env", default=None, help="Environment the calls run in.")
@click.option("--tenant", default=None, help="Tenant the calls are decided for.")
@click.option("--config", default=None, type=click.Path(dir_okay=False),
              help="veto.toml to read (default: $VETO_CONFIG, ./veto.toml, ~/.veto/veto.toml).")  # fmt: skip
@click.option("--db", default=None, metavar="URL",
              help="Audit/approval store (default: veto.toml db, $VETO_DB or ~/.veto/veto.db).")  # fmt: skip
@click.option("--max-arg-bytes", default=256 * 1024, show_default=True, type=click.IntRange(1),
              help="Refuse calls whose JSON arguments are larger.")  # fmt: skip
@click.option("--call-timeout", default=None, type=click.FloatRange(min=0, min_open=True),
              help="Seconds a forwarded call may take (the result is an error after).")  # fmt: skip
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def proxy_cmd(
    policy_arg: str | None,
    policy_opt: str | None,
    name: str,
    upstream: str | None,
    headers: tuple[str, ...],
    listen: str | None,
    auth: str,
    hide_denied: bool,
    agent: str | None,
    roles: tuple[str, ...],
    user: str | None,
    env: str | None,
    tenant: str | None,
    config: str | None,
    db: str | None,
    max_arg_bytes: int,
    call_timeout: float | None,
    command: tuple[str, ...],
) -> None:
    """Serve an MCP server through Veto: every tools/call is decided by POLICY as
    mcp__NAME__<tool> before it is forwarded.

    \b
      veto mcp proxy policy.yaml --name github -- npx -y @modelcontextprotocol/server-github
      veto mcp proxy policy.yaml --name docs --upstream http://127.0.0.1:9000/mcp
      veto mcp proxy policy.yaml --name github --listen 127.0.0.1:8765 -- github-mcp-server

    Denied calls answer isError with the reason; calls that need approval wait
    (progress notifications) until `veto approvals approve ID` or the dashboard
    decides, and expiry denies. Exit codes: 0 the client closed, 2 usage, policy
    or configuration error.
    """
    policy = policy_opt or policy_arg
    if policy is None:
        raise click.UsageError("give the policy as POLICY or --policy")
    if policy_opt and policy_arg:
        # `veto mcp proxy -p P --name n -- cmd`: the first word after -- is the command.
        command = (policy_arg, *command)
    if not Path(policy).exists():
        raise click.BadParameter(f"{policy!r} does not exist", param_hint="POLICY")
    if bool(command) == bool(upstream):
        raise click.UsageError("give the upstream server as `-- COMMAND...` or as --upstream URL")
    where = _listen(listen)
    if where is not None and auth == "none" and where[0] not in ("127.0.0.1", "localhost", "::1"):
        raise click.UsageError("--auth none is only allowed on a loopback --listen address")
    try:
        import anyio

        from ..config import ConfigError, load_config
        from ..engine import Veto
        from ..policy.errors import PolicyError
        from .gate import McpGate
        from .identity import TokenAuthority, load_identity
        from .proxy import McpProxy, ProxySettings
        from .sdk import MCP_MAJOR  # noqa: F401  (fails here when the extra is missing)
    except ImportError as exc:
        raise click.ClickException(f"{_EXTRA} ({exc})") from exc
    try:
        identity = load_identity(
            name, agent=agent, roles=roles, user=user, env=env, tenant=tenant, config=config
        )
        store = db or load_config(config).db
    except ConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(2) from None
    try:
        veto = Veto.from_file(policy, env=identity.env, tenant=identity.tenant, db=store)
    except PolicyError as exc:
        click.echo(str(exc), err=True)
        raise SystemExit(2) from None
    settings = ProxySettings(
        name=name, command=command, url=upstream, headers=_headers(headers), hide_denied=hide_denied,
        listen=where, auth=auth, call_timeout_s=call_timeout,
    )  # fmt: skip
    tokens = None
    try:
        gate = McpGate(veto, name, max_arg_bytes=max_arg_bytes, single_client=where is None)
        if where is not None and auth == "token":
            tokens = TokenAuthority(store, identity)
    except (ValueError, ConfigError) as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(2) from None
    proxy = McpProxy(veto, settings, identity, gate=gate, tokens=tokens)
    if where is not None:
        click.echo(f"veto mcp proxy {name}: http://{where[0]}:{where[1]}{settings.path}", err=True)
    try:
        anyio.run(functools.partial(proxy.run, handle_signals=True))
    except KeyboardInterrupt:
        pass
    except Exception as exc:
        click.echo(f"veto mcp proxy {name}: {type(exc).__name__}: {exc}", err=True)
        raise SystemExit(1) from None
    finally:
        if tokens is not None:
            tokens.close()
        veto.close()
