"""Deployment settings and secrets: ``veto.toml`` plus the environment (env wins).

Secrets never live in the policy file. The file is the first of ``$VETO_CONFIG``,
``./veto.toml``, ``~/.veto/veto.toml`` that exists (``$VETO_CONFIG`` naming a
missing file is an error). Every key is optional::

    db = "sqlite:///var/lib/veto/veto.db"      # VETO_DB
    secret_key = "..."                          # VETO_SECRET_KEY (email tokens)
    dashboard_url = "https://veto.example.com"  # VETO_DASHBOARD_URL (links in messages)

    [slack]
    bot_token = "xoxb-..."                      # VETO_SLACK_BOT_TOKEN
    signing_secret = "..."                      # VETO_SLACK_SIGNING_SECRET
    channel = "C0123456"                        # VETO_SLACK_CHANNEL
    api_url = "https://slack.com/api/"          # VETO_SLACK_API_URL (tests: a local fake)
    users = { U0123ABC = "alice" }              # Slack user id -> Veto user (else by email)

    [audit]
    signing_key = "/etc/veto/audit-signing.key" # VETO_AUDIT_SIGNING_KEY (path, or base64 seed)
    signer = "mycompany.kms:veto_signer"        # VETO_AUDIT_SIGNER: a callable returning an
                                                # object with public_key_hex() and sign(bytes)
    public_key = "9f2c..."                      # VETO_AUDIT_PUBLIC_KEY: pinned for verify
                                                # (a list pins several keys, for rotation)
    witness = ["file:///mnt/other/witness.jsonl", "https://witness.example.com/veto"]
                                                # VETO_AUDIT_WITNESS (comma-separated)
    checkpoint_every = 1000                     # sign + publish heads every N records

    [email]
    smtp_url = "smtp://user:pass@host:587?starttls=1"   # VETO_SMTP_URL (smtps:// for TLS)
    from = "veto@example.com"                   # VETO_SMTP_FROM
    token_ttl = 86400                           # seconds a link lives at most (and never
                                                # past the request's own deadline)
"""

from __future__ import annotations

import os
import tomllib
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "AuditConfig",
    "ConfigError",
    "EmailConfig",
    "SlackConfig",
    "SmtpSettings",
    "VetoConfig",
    "config_path",
    "load_config",
]

ENV_CONFIG = "VETO_CONFIG"


class ConfigError(Exception):
    """``veto.toml`` cannot be read, or a setting is malformed."""


@dataclass(frozen=True, kw_only=True, slots=True)
class SlackConfig:
    bot_token: str | None = None
    signing_secret: str | None = None
    channel: str | None = None
    api_url: str | None = None
    users: Mapping[str, str] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        url = self.api_url or "https://slack.com/api/"
        return url if url.endswith("/") else url + "/"


@dataclass(frozen=True, kw_only=True, slots=True)
class SmtpSettings:
    host: str
    port: int
    username: str | None
    password: str | None
    starttls: bool
    ssl: bool
    timeout_s: float = 10.0
    ca_file: str | None = None  # trust this CA bundle instead of the system's

    @classmethod
    def parse(cls, url: str) -> SmtpSettings:
        """``smtp://user:pass@host:port?starttls=1`` or ``smtps://...`` (implicit TLS);
        optional ``timeout=SECONDS`` and ``cafile=PATH`` (a private CA). Certificates
        and host names are always verified."""
        u = urllib.parse.urlsplit(url)
        if u.scheme not in ("smtp", "smtps"):
            raise ConfigError(f"VETO_SMTP_URL must start with smtp:// or smtps://, not {url!r}")
        if not u.hostname:
            raise ConfigError("VETO_SMTP_URL has no host")
        q = urllib.parse.parse_qs(u.query)
        flag = (q.get("starttls") or ["0"])[-1].strip().lower()
        try:
            timeout = float((q.get("timeout") or ["10"])[-1])
        except ValueError:
            raise ConfigError("VETO_SMTP_URL: timeout must be a number of seconds") from None
        try:
            port = u.port
        except ValueError as exc:
            raise ConfigError(f"VETO_SMTP_URL: bad port: {exc}") from None
        ssl = u.scheme == "smtps"
        return cls(
            host=u.hostname,
            port=port or (465 if ssl else 25),
            username=urllib.parse.unquote(u.username) if u.username else None,
            password=urllib.parse.unquote(u.password) if u.password else None,
            starttls=flag in ("1", "true", "yes", "on"),
            ssl=ssl,
            timeout_s=timeout,
            ca_file=q["cafile"][-1] if q.get("cafile") else None,
        )


@dataclass(frozen=True, kw_only=True, slots=True)
class EmailConfig:
    smtp_url: str | None = None
    sender: str | None = None
    token_ttl_s: int = 24 * 3600

    def smtp(self) -> SmtpSettings:
        if not self.smtp_url:
            raise ConfigError("VETO_SMTP_URL is not set")
        return SmtpSettings.parse(self.smtp_url)


DURABILITY = ("fsync", "os")
"""``[audit] durability`` settings (``VETO_AUDIT_DURABILITY``): see :class:`AuditConfig`."""


@dataclass(frozen=True, kw_only=True, slots=True)
class AuditConfig:
    """Where checkpoints are signed and published, and what verify trusts (DESIGN.md 4)."""

    signing_key: str | None = None
    signer: str | None = None
    """``module:callable`` returning a signer object (KMS/HSM): the key never enters Veto."""
    public_keys: tuple[str, ...] = ()
    witnesses: tuple[str, ...] = ()
    checkpoint_every: int = 1000
    durability: str = "fsync"
    """When a record counts as written (DESIGN.md 4): ``fsync`` (default) on stable
    storage, surviving a power loss; ``os`` handed to the OS (SQLite WAL with
    ``synchronous=NORMAL``, PostgreSQL ``synchronous_commit=off``, JSONL without
    fsync), surviving a crash of the process but not of the machine."""


@dataclass(frozen=True, kw_only=True, slots=True)
class VetoConfig:
    db: str | None = None
    secret_key: str | None = None
    dashboard_url: str | None = None
    slack: SlackConfig = field(default_factory=SlackConfig)
    email: EmailConfig = field(default_factory=EmailConfig)
    audit: AuditConfig = field(default_factory=AuditConfig)
    source: Path | None = None  # the veto.toml it was read from, if any


def config_path(env: Mapping[str, str] | None = None) -> Path | None:
    env = os.environ if env is None else env
    named = env.get(ENV_CONFIG)
    if named:
        path = Path(named).expanduser()
        if not path.is_file():
            raise ConfigError(f"{ENV_CONFIG}={named}: no such file")
        return path
    for candidate in (Path("veto.toml"), Path.home() / ".veto" / "veto.toml"):
        if candidate.is_file():
            return candidate
    return None


def _table(data: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, Mapping):
        raise ConfigError(f"veto.toml: [{key}] must be a table")
    return value


def _str(data: Mapping[str, Any], key: str, where: str) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ConfigError(f"veto.toml: {where}{key} must be a string")
    return value


def load_config(
    path: str | Path | None = None, *, env: Mapping[str, str] | None = None
) -> VetoConfig:
    """Settings from ``path`` (default: see module doc), each overridden by its
    environment variable when that is set and non-empty."""
    env = os.environ if env is None else env
    source = Path(path) if path is not None else config_path(env)
    data: Mapping[str, Any] = {}
    if source is not None:
        try:
            with open(source, "rb") as fh:
                data = tomllib.load(fh)
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read {source}: {exc}") from exc
    slack = _table(data, "slack")
    email = _table(data, "email")
    audit = _audit_config(_table(data, "audit"), env)

    def pick(name: str, value: str | None) -> str | None:
        return env.get(name) or value

    users = slack.get("users", {})
    if not isinstance(users, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in users.items()
    ):
        raise ConfigError("veto.toml: slack.users must map Slack user ids to Veto user names")
    ttl = email.get("token_ttl", 24 * 3600)
    if isinstance(ttl, bool) or not isinstance(ttl, int) or ttl <= 0:
        raise ConfigError("veto.toml: email.token_ttl must be a positive number of seconds")
    return VetoConfig(
        db=pick("VETO_DB", _str(data, "db", "")),
        secret_key=pick("VETO_SECRET_KEY", _str(data, "secret_key", "")),
        dashboard_url=pick("VETO_DASHBOARD_URL", _str(data, "dashboard_url", "")),
        slack=SlackConfig(
            bot_token=pick("VETO_SLACK_BOT_TOKEN", _str(slack, "bot_token", "slack.")),
            signing_secret=pick(
                "VETO_SLACK_SIGNING_SECRET", _str(slack, "signing_secret", "slack.")
            ),
            channel=pick("VETO_SLACK_CHANNEL", _str(slack, "channel", "slack.")),
            api_url=pick("VETO_SLACK_API_URL", _str(slack, "api_url", "slack.")),
            users=dict(users),
        ),
        email=EmailConfig(
            smtp_url=pick("VETO_SMTP_URL", _str(email, "smtp_url", "email.")),
            sender=pick("VETO_SMTP_FROM", _str(email, "from", "email.")),
            token_ttl_s=ttl,
        ),
        audit=audit,
        source=source,
    )


def _str_list(data: Mapping[str, Any], key: str, env_value: str | None) -> tuple[str, ...]:
    """A string or list of strings (``audit.KEY``); the environment's comma list wins."""
    if env_value:
        return tuple(v.strip() for v in env_value.split(",") if v.strip())
    value = data.get(key)
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise ConfigError(f"veto.toml: audit.{key} must be a string or a list of strings")


def _audit_config(data: Mapping[str, Any], env: Mapping[str, str]) -> AuditConfig:
    keys = _str_list(data, "public_key", env.get("VETO_AUDIT_PUBLIC_KEY"))
    for k in keys:
        try:
            raw = bytes.fromhex(k)
        except ValueError:
            raw = b""
        if len(raw) != 32:
            raise ConfigError(
                f"veto.toml: audit.public_key {k!r} must be 64 hex characters "
                "(an Ed25519 public key, as `veto audit checkpoint` prints it)"
            )
    durability = env.get("VETO_AUDIT_DURABILITY") or data.get("durability", "fsync")
    if durability not in DURABILITY:
        raise ConfigError(
            f"veto.toml: audit.durability must be one of {', '.join(DURABILITY)}, "
            f"got {durability!r}"
        )
    every = data.get("checkpoint_every", 1000)
    if isinstance(every, bool) or not isinstance(every, int) or every <= 0:
        raise ConfigError("veto.toml: audit.checkpoint_every must be a positive number of records")
    return AuditConfig(
        signing_key=env.get("VETO_AUDIT_SIGNING_KEY") or _str(data, "signing_key", "audit."),
        signer=env.get("VETO_AUDIT_SIGNER") or _str(data, "signer", "audit."),
        public_keys=tuple(k.lower() for k in keys),
        witnesses=_str_list(data, "witness", env.get("VETO_AUDIT_WITNESS")),
        checkpoint_every=every,
        durability=durability,
    )
