"""Who calls through the MCP proxy: flags, ``veto.toml``, or (HTTP) an API token.

``veto.toml`` may hold the proxy's principal, per server or for all::

    [mcp]                      # every proxied server
    agent = "ide-assistant"
    roles = ["developer"]
    user = "alice"
    env = "prod"
    tenant = "acme"

    [mcp.servers.github]       # only `veto mcp proxy --name github` (overrides [mcp])
    roles = ["developer", "github-reader"]

Flags win over the file. Over streamable HTTP with ``--auth token`` every request
carries ``Authorization: Bearer <token>`` of a ``veto users token``: the token's
user becomes ``principal.user`` and its tenant the call's tenant.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..config import ConfigError, config_path
from ..model import Principal

__all__ = ["Identity", "TokenAuthority", "TokenRefused", "load_identity"]

_KEYS = frozenset({"agent", "roles", "user", "env", "tenant", "servers"})


@dataclass(frozen=True, kw_only=True, slots=True)
class Identity:
    """The principal, env and tenant calls through the proxy are decided for."""

    principal: Principal
    env: str | None = None
    tenant: str | None = None


class TokenRefused(Exception):
    """A bearer token that names no usable identity (unknown, disabled, wrong tenant)."""


def _section(data: Mapping[str, Any], where: str) -> dict[str, Any]:
    unknown = set(data) - _KEYS
    if unknown:
        raise ConfigError(f"veto.toml: [{where}] has unknown keys {sorted(unknown)} "
                          f"(expected agent, roles, user, env, tenant)")  # fmt: skip
    out: dict[str, Any] = {}
    for key in ("agent", "user", "env", "tenant"):
        value = data.get(key)
        if value is not None and not isinstance(value, str):
            raise ConfigError(f"veto.toml: {where}.{key} must be a string")
        if value is not None:
            out[key] = value
    roles = data.get("roles")
    if roles is not None:
        if not isinstance(roles, list) or not all(isinstance(r, str) and r for r in roles):
            raise ConfigError(f"veto.toml: {where}.roles must be a list of role names")
        out["roles"] = tuple(roles)
    return out


def load_identity(
    server: str,
    *,
    agent: str | None = None,
    roles: tuple[str, ...] = (),
    user: str | None = None,
    env: str | None = None,
    tenant: str | None = None,
    config: str | Path | None = None,
) -> Identity:
    """The identity for ``server`` from ``veto.toml`` (``config`` or the usual search)
    with the given flags on top. Raises ``ConfigError`` for a malformed file."""
    source = Path(config) if config is not None else config_path()
    merged: dict[str, Any] = {}
    if source is not None:
        try:
            with open(source, "rb") as fh:
                data = tomllib.load(fh)
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read {source}: {exc}") from exc
        mcp = data.get("mcp", {})
        if not isinstance(mcp, Mapping):
            raise ConfigError(f"{source}: [mcp] must be a table")
        merged.update(_section(mcp, "mcp"))
        servers = mcp.get("servers", {})
        if not isinstance(servers, Mapping):
            raise ConfigError(f"{source}: [mcp.servers] must be a table")
        own = servers.get(server)
        if own is not None:
            if not isinstance(own, Mapping) or "servers" in own:
                raise ConfigError(
                    f"{source}: [mcp.servers.{server}] must be a table of principal keys"
                )
            merged.update(_section(own, f"mcp.servers.{server}"))
    flags = {"agent": agent, "user": user, "env": env, "tenant": tenant}
    merged.update({k: v for k, v in flags.items() if v is not None})
    if roles:
        merged["roles"] = tuple(roles)
    tenant_value = merged.get("tenant")
    principal = Principal(
        agent=merged.get("agent") or f"mcp-client:{server}",
        roles=merged.get("roles", ()),
        user=merged.get("user"),
        tenant=tenant_value,
    )
    return Identity(principal=principal, env=merged.get("env"), tenant=tenant_value)


class TokenAuthority:
    """Maps API tokens (``veto users token``) to identities, on top of ``base``: the
    token's user is ``principal.user``; the tenant is ``base``'s (the user must hold a
    role there) or else the user's only tenant.

    The one place the proxy reads the token store (``veto_core.server.store``), so a
    change of how tokens are kept touches only this class. Thread-safe.
    """

    def __init__(self, db: str | None, base: Identity) -> None:
        try:
            from ..server.store import open_server_store
        except ImportError as exc:  # the [server] extra holds the user store's dependencies
            raise ConfigError(f"--auth token needs veto-core[server]: {exc}") from exc
        self.base = base
        self._store = open_server_store(db)

    def close(self) -> None:
        self._store.close()

    def identity(self, token: str) -> Identity:
        """The identity ``token`` stands for; raises :class:`TokenRefused`."""
        try:
            user = self._store.token_user(token)
        except Exception as exc:
            raise TokenRefused(f"the token store cannot be read: {exc}") from exc
        if user is None:
            raise TokenRefused("unknown, revoked or disabled API token")
        base = self.base
        tenant = base.tenant
        if tenant is None:
            if len(user.tenants) != 1:
                raise TokenRefused(
                    f"user {user.username!r} has roles in {len(user.tenants)} tenants; "
                    "start the proxy with --tenant"
                )
            tenant = user.tenants[0]
        elif user.role(tenant) is None:
            raise TokenRefused(f"user {user.username!r} has no role in tenant {tenant!r}")
        return replace(
            base,
            principal=replace(base.principal, user=user.username, tenant=tenant),
            tenant=tenant,
        )
