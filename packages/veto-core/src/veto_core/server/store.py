"""Users, roles, sessions, API tokens and login throttling for ``veto serve``.

Stored in the same database as the audit trail and approvals (SQLite by default,
PostgreSQL with ``postgresql://...``), in tables prefixed ``server_`` with their own
schema version (component ``server`` in ``veto_schema``, as the audit sinks do).

Secrets are never stored in the clear: session ids and API tokens are stored as
SHA-256 digests (they are 256-bit random values, so a fast hash is enough);
passwords as argon2id hashes.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import os
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

try:  # the [server] extra; without it, API tokens and admin keys still work (CLI votes)
    from argon2 import PasswordHasher
    from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

    _VERIFY_FAILED: tuple[type[Exception], ...] = (
        VerifyMismatchError,
        VerificationError,
        InvalidHashError,
    )
except ImportError:  # pragma: no cover - only without the extra
    PasswordHasher = None  # type: ignore[assignment,misc]
    _VERIFY_FAILED = ()

from veto_core.audit.sink import SinkConfig
from veto_core.storage import (
    POSTGRES,
    SQLITE,
    connect_sqlite,
    create_postgres_schema,
    upgrade_schema,
)

__all__ = [
    "ROLES",
    "SCHEMA_VERSION",
    "ApiToken",
    "ServerStore",
    "ServerStoreError",
    "Session",
    "User",
    "open_server_store",
    "role_at_least",
    "scoped",
    "valid_username",
]

COMPONENT = "server"
ROLES = ("viewer", "approver", "admin")
_RANK = {r: i for i, r in enumerate(ROLES)}
TOKEN_PREFIX = "veto_"

_V1 = """
CREATE TABLE IF NOT EXISTS server_users (
    username TEXT PRIMARY KEY, password_hash TEXT NOT NULL, created_us BIGINT NOT NULL,
    email TEXT, disabled INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS server_roles (
    username TEXT NOT NULL, tenant TEXT NOT NULL, role TEXT NOT NULL,
    policy_roles TEXT NOT NULL DEFAULT '', PRIMARY KEY (username, tenant));
CREATE TABLE IF NOT EXISTS server_sessions (
    id_hash TEXT PRIMARY KEY, username TEXT NOT NULL, csrf TEXT NOT NULL,
    created_us BIGINT NOT NULL, expires_us BIGINT NOT NULL, last_seen_us BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS server_api_tokens (
    id TEXT PRIMARY KEY, token_hash TEXT NOT NULL UNIQUE, username TEXT NOT NULL,
    name TEXT NOT NULL, created_us BIGINT NOT NULL, last_used_us BIGINT);
CREATE TABLE IF NOT EXISTS server_login_failures (key TEXT NOT NULL, ts_us BIGINT NOT NULL);
CREATE INDEX IF NOT EXISTS server_login_failures_key ON server_login_failures (key, ts_us);
CREATE TABLE IF NOT EXISTS server_secret (id INTEGER PRIMARY KEY, secret TEXT NOT NULL)
"""

# API tokens belong to one tenant (NULL: a token made before tenants were recorded, which
# acts in every tenant of its user); admin keys are the local operator keys (DESIGN.md 2.8)
# this database accepts, by fingerprint.
_V2 = """
ALTER TABLE server_api_tokens ADD COLUMN tenant TEXT;
CREATE TABLE IF NOT EXISTS server_admin_keys (
    fingerprint TEXT PRIMARY KEY, label TEXT NOT NULL, created_us BIGINT NOT NULL)
"""

MIGRATIONS: tuple[str, ...] = (_V1, _V2)
SCHEMA_VERSION = len(MIGRATIONS)

# argon2id, RFC 9106 low-memory profile (None without the [server] extra)
_hasher: Any = PasswordHasher() if PasswordHasher is not None else None


def _passwords() -> Any:
    if _hasher is None:
        raise ServerStoreError(
            "passwords need the server extra (argon2): pip install 'veto-core[server]'"
        )
    return _hasher


_dummy: dict[int, str] = {}


def _dummy_hash() -> str:
    """A hash to verify against when the user does not exist (same work either way)."""
    key = id(_hasher)
    if key not in _dummy:
        _dummy[key] = _passwords().hash(secrets.token_hex(16))
    return _dummy[key]


class ServerStoreError(Exception):
    """The user/session store failed or refused (schema too new, bad input)."""


def role_at_least(role: str | None, minimum: str) -> bool:
    return role is not None and _RANK.get(role, -1) >= _RANK[minimum]


def valid_username(name: str) -> bool:
    return (
        0 < len(name) <= 64
        and name.isprintable()
        and not any(c.isspace() for c in name)
        and ":" not in name
    )


def _now_us() -> int:
    return time.time_ns() // 1000


def _join(roles: Sequence[str]) -> str:
    for r in roles:
        if not r or "," in r or r != r.strip():
            raise ServerStoreError(f"invalid policy role {r!r}")
    return ",".join(dict.fromkeys(roles))


def _split(value: Any) -> tuple[str, ...]:
    return tuple(p for p in str(value or "").split(",") if p)


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


@dataclass(frozen=True, kw_only=True, slots=True)
class User:
    """A dashboard user: a role per tenant (viewer / approver / admin) and, per tenant,
    the policy roles they hold as an approver (``approvers: ["role:finance"]``)."""

    username: str
    roles: dict[str, str]  # tenant -> role
    policy_roles: dict[str, tuple[str, ...]] = field(default_factory=dict)
    email: str | None = None
    disabled: bool = False

    def role(self, tenant: str) -> str | None:
        return self.roles.get(tenant)

    def approver_roles(self, tenant: str) -> tuple[str, ...]:
        return self.policy_roles.get(tenant, ())

    @property
    def tenants(self) -> list[str]:
        return sorted(self.roles)


@dataclass(frozen=True, kw_only=True, slots=True)
class Session:
    token: str  # the cookie value (only known right after creation)
    username: str
    csrf: str
    expires_us: int


@dataclass(frozen=True, kw_only=True, slots=True)
class ApiToken:
    id: str
    username: str
    name: str
    created_at: _dt.datetime
    last_used_at: _dt.datetime | None
    tenant: str | None = None  # None: a token made before tokens were bound to a tenant


def scoped(user: User, tenant: str | None) -> User:
    """``user`` as seen through a token bound to ``tenant``: that tenant's role only."""
    if tenant is None:
        return user
    return User(
        username=user.username,
        roles={t: r for t, r in user.roles.items() if t == tenant},
        policy_roles={t: r for t, r in user.policy_roles.items() if t == tenant},
        email=user.email,
        disabled=user.disabled,
    )


def _ts(us: int | None) -> _dt.datetime | None:
    return None if us is None else _dt.datetime.fromtimestamp(us / 1e6, _dt.UTC)


class _Db:
    """A thread-safe connection with ``?`` placeholders on both SQLite and PostgreSQL."""

    def __init__(self, url: str) -> None:
        config = SinkConfig.parse(url)
        self.url = url
        self.scheme = config.scheme
        self._lock = threading.RLock()
        if config.scheme == "sqlite":
            from veto_core.audit.sqlite import sqlite_path

            path = sqlite_path(url)
            path.parent.mkdir(parents=True, exist_ok=True)
            self._con: Any = connect_sqlite(path)
        elif config.scheme == "postgresql":
            try:
                import psycopg
                from psycopg import sql
            except ImportError as exc:  # pragma: no cover - only without the extra
                raise ServerStoreError(
                    "PostgreSQL needs psycopg: pip install 'veto-core[postgres]'"
                ) from exc
            from veto_core.audit.postgres import _split_url

            conninfo, schema = _split_url(url)
            con: Any = psycopg.connect(conninfo, autocommit=True, connect_timeout=10)
            create_postgres_schema(con, schema)
            con.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
            self._con = con
        else:
            raise ServerStoreError(
                f"veto serve needs a SQLite or PostgreSQL database, not {config.scheme!r} ({url})"
            )

    def _sql(self, q: str) -> str:
        return q if self.scheme == "sqlite" else q.replace("?", "%s")

    def tx(self, fn: Callable[[Callable[..., list[Any]]], Any]) -> Any:
        """Run ``fn(execute)`` in one write transaction; ``execute(sql, params)`` returns rows."""
        with self._lock:
            con = self._con

            def execute(q: str, params: Sequence[Any] = ()) -> list[Any]:
                cur = con.execute(self._sql(q), tuple(params))
                return list(cur.fetchall()) if cur.description is not None else []

            try:
                if self.scheme == "sqlite":
                    con.execute("BEGIN IMMEDIATE")
                    try:
                        out = fn(execute)
                        con.execute("COMMIT")
                    except BaseException:
                        con.execute("ROLLBACK")
                        raise
                    return out
                with con.transaction():
                    return fn(execute)
            except ServerStoreError:
                raise
            except Exception as exc:
                if type(exc).__module__.startswith(("sqlite3", "psycopg")):
                    raise ServerStoreError(f"server database: {exc}") from exc
                raise

    def read(self, q: str, params: Sequence[Any] = ()) -> list[Any]:
        return list(self.tx(lambda ex: ex(q, params)))

    def migrate(
        self,
        *,
        component: str,
        migrations: Sequence[str],
        too_new: Callable[[int, int], Exception],
    ) -> None:
        """Upgrade ``component``'s tables (:func:`veto_core.storage.upgrade_schema`)."""
        dialect = SQLITE if self.scheme == "sqlite" else POSTGRES
        self.tx(
            lambda ex: upgrade_schema(
                ex, dialect=dialect, component=component, migrations=migrations, too_new=too_new
            )
        )

    def close(self) -> None:
        with self._lock, contextlib.suppress(Exception):
            self._con.close()


class ServerStore:
    """Users with per-tenant roles, sessions, API tokens, login-failure counters."""

    def __init__(self, url: str) -> None:
        try:
            self._db = _Db(url)
        except ServerStoreError:
            raise
        except Exception as exc:
            raise ServerStoreError(f"cannot open server database {url!r}: {exc}") from exc
        self.url = url
        self._migrate()

    def close(self) -> None:
        self._db.close()

    def _migrate(self) -> None:
        def too_new(current: int, supported: int) -> ServerStoreError:
            return ServerStoreError(
                f"server database schema version {current} is newer than this veto-core "
                f"supports ({supported}); upgrade veto-core"
            )

        self._db.migrate(component=COMPONENT, migrations=MIGRATIONS, too_new=too_new)

    # -- secret key ------------------------------------------------------------------

    def secret_key(self) -> str:
        """The persisted secret (created on first use); ``VETO_SECRET_KEY`` overrides it."""

        def work(ex: Callable[..., list[Any]]) -> str:
            rows = ex("SELECT secret FROM server_secret WHERE id = 1")
            if rows:
                return str(rows[0][0])
            value = secrets.token_urlsafe(48)
            ex("INSERT INTO server_secret (id, secret) VALUES (1, ?)", (value,))
            return value

        return str(self._db.tx(work))

    # -- users -----------------------------------------------------------------------

    def add_user(
        self,
        username: str,
        password: str,
        *,
        tenant: str,
        role: str,
        policy_roles: Sequence[str] = (),
        email: str | None = None,
    ) -> None:
        """Create a user with a role in ``tenant``; raises if the user exists."""
        self._check_role(role)
        if not valid_username(username):
            raise ServerStoreError(f"invalid username {username!r}")
        if not tenant:
            raise ServerStoreError("tenant must not be empty")
        if len(password) < 8:
            raise ServerStoreError("password must have at least 8 characters")
        hashed = _passwords().hash(password)

        def work(ex: Callable[..., list[Any]]) -> None:
            if ex("SELECT 1 FROM server_users WHERE username = ?", (username,)):
                raise ServerStoreError(f"user {username!r} already exists")
            ex(
                "INSERT INTO server_users (username, password_hash, created_us, email) "
                "VALUES (?, ?, ?, ?)",
                (username, hashed, _now_us(), email),
            )
            ex(
                "INSERT INTO server_roles (username, tenant, role, policy_roles) VALUES (?, ?, ?, ?)",
                (username, tenant, role, _join(policy_roles)),
            )

        self._db.tx(work)

    def set_role(
        self, username: str, *, tenant: str, role: str | None, policy_roles: Sequence[str] = ()
    ) -> None:
        """Grant (or with ``role=None`` revoke) the user's role in ``tenant``."""
        if role is not None:
            self._check_role(role)

        def work(ex: Callable[..., list[Any]]) -> None:
            if not ex("SELECT 1 FROM server_users WHERE username = ?", (username,)):
                raise ServerStoreError(f"no user {username!r}")
            ex("DELETE FROM server_roles WHERE username = ? AND tenant = ?", (username, tenant))
            if role is not None:
                ex(
                    "INSERT INTO server_roles (username, tenant, role, policy_roles) "
                    "VALUES (?, ?, ?, ?)",
                    (username, tenant, role, _join(policy_roles)),
                )

        self._db.tx(work)

    def set_password(self, username: str, password: str) -> None:
        if len(password) < 8:
            raise ServerStoreError("password must have at least 8 characters")
        hashed = _passwords().hash(password)

        def work(ex: Callable[..., list[Any]]) -> None:
            if not ex("SELECT 1 FROM server_users WHERE username = ?", (username,)):
                raise ServerStoreError(f"no user {username!r}")
            ex("UPDATE server_users SET password_hash = ? WHERE username = ?", (hashed, username))
            ex("DELETE FROM server_sessions WHERE username = ?", (username,))

        self._db.tx(work)

    def remove_user(self, username: str) -> bool:
        def work(ex: Callable[..., list[Any]]) -> bool:
            found = bool(ex("SELECT 1 FROM server_users WHERE username = ?", (username,)))
            for table in ("server_roles", "server_sessions", "server_api_tokens", "server_users"):
                ex(f"DELETE FROM {table} WHERE username = ?", (username,))
            return found

        return bool(self._db.tx(work))

    def get_user(self, username: str) -> User | None:
        def work(ex: Callable[..., list[Any]]) -> User | None:
            rows = ex("SELECT email, disabled FROM server_users WHERE username = ?", (username,))
            if not rows:
                return None
            roles = ex(
                "SELECT tenant, role, policy_roles FROM server_roles WHERE username = ?",
                (username,),
            )
            return User(
                username=username,
                roles={str(t): str(r) for t, r, _ in roles},
                policy_roles={str(t): _split(p) for t, _, p in roles},
                email=rows[0][0],
                disabled=bool(rows[0][1]),
            )

        out = self._db.tx(work)
        return out if isinstance(out, User) else None

    def list_users(self, tenant: str | None = None) -> list[User]:
        rows = self._db.read("SELECT username, email, disabled FROM server_users ORDER BY username")
        roles = self._db.read("SELECT username, tenant, role, policy_roles FROM server_roles")
        by_user: dict[str, dict[str, str]] = {}
        prs: dict[str, dict[str, tuple[str, ...]]] = {}
        for u, t, r, p in roles:
            by_user.setdefault(str(u), {})[str(t)] = str(r)
            prs.setdefault(str(u), {})[str(t)] = _split(p)
        users = [
            User(
                username=str(u),
                roles=by_user.get(str(u), {}),
                policy_roles=prs.get(str(u), {}),
                email=e,
                disabled=bool(d),
            )
            for u, e, d in rows
        ]
        if tenant is not None:
            users = [u for u in users if tenant in u.roles]
        return users

    def authenticate(self, username: str, password: str) -> User | None:
        """The user if the password is right (constant work whether or not the user exists)."""
        rows = self._db.read(
            "SELECT password_hash, disabled FROM server_users WHERE username = ?", (username,)
        )
        stored = str(rows[0][0]) if rows else _dummy_hash()
        try:
            _passwords().verify(stored, password)
            ok = bool(rows) and not bool(rows[0][1])
        except _VERIFY_FAILED:
            ok = False
        if not ok:
            return None
        if _passwords().check_needs_rehash(stored):
            with contextlib.suppress(ServerStoreError):
                self._db.tx(
                    lambda ex: ex(
                        "UPDATE server_users SET password_hash = ? WHERE username = ?",
                        (_passwords().hash(password), username),
                    )
                )
        return self.get_user(username)

    @staticmethod
    def _check_role(role: str) -> None:
        if role not in ROLES:
            raise ServerStoreError(f"unknown role {role!r}; choose one of {', '.join(ROLES)}")

    # -- sessions --------------------------------------------------------------------

    def create_session(self, username: str, *, lifetime_s: int) -> Session:
        """A fresh session (new random id: a login never reuses a pre-login id)."""
        token = secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(32)
        now = _now_us()
        expires = now + lifetime_s * 1_000_000

        def work(ex: Callable[..., list[Any]]) -> None:
            ex("DELETE FROM server_sessions WHERE expires_us < ?", (now,))
            ex(
                "INSERT INTO server_sessions "
                "(id_hash, username, csrf, created_us, expires_us, last_seen_us) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (_digest(token), username, csrf, now, expires, now),
            )

        self._db.tx(work)
        return Session(token=token, username=username, csrf=csrf, expires_us=expires)

    def get_session(self, token: str, *, idle_timeout_s: int) -> Session | None:
        now = _now_us()

        def work(ex: Callable[..., list[Any]]) -> Session | None:
            rows = ex(
                "SELECT username, csrf, expires_us, last_seen_us FROM server_sessions "
                "WHERE id_hash = ?",
                (_digest(token),),
            )
            if not rows:
                return None
            username, csrf, expires_us, last_seen = rows[0]
            if expires_us <= now or now - int(last_seen) > idle_timeout_s * 1_000_000:
                ex("DELETE FROM server_sessions WHERE id_hash = ?", (_digest(token),))
                return None
            if now - int(last_seen) > 60_000_000:
                ex(
                    "UPDATE server_sessions SET last_seen_us = ? WHERE id_hash = ?",
                    (now, _digest(token)),
                )
            return Session(
                token=token, username=str(username), csrf=str(csrf), expires_us=int(expires_us)
            )

        out = self._db.tx(work)
        return out if isinstance(out, Session) else None

    def delete_session(self, token: str) -> None:
        self._db.tx(
            lambda ex: ex("DELETE FROM server_sessions WHERE id_hash = ?", (_digest(token),))
        )

    # -- API tokens ------------------------------------------------------------------

    def create_token(
        self, username: str, name: str, *, tenant: str | None = None
    ) -> tuple[ApiToken, str]:
        """A new API token of ``username`` in ``tenant``; the secret is returned once and
        stored only as a digest. ``tenant=None``: the user's only tenant (an error if
        they have several or none)."""
        secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
        tid = secrets.token_hex(8)
        now = _now_us()
        chosen: list[str] = []

        def work(ex: Callable[..., list[Any]]) -> None:
            if not ex("SELECT 1 FROM server_users WHERE username = ?", (username,)):
                raise ServerStoreError(f"no user {username!r}")
            tenants = [
                str(r[0])
                for r in ex("SELECT tenant FROM server_roles WHERE username = ?", (username,))
            ]
            if tenant is None:
                if len(tenants) != 1:
                    raise ServerStoreError(
                        f"user {username!r} has a role in {len(tenants)} tenants "
                        f"({', '.join(sorted(tenants)) or 'none'}); say which one the token is for"
                    )
                chosen.append(tenants[0])
            elif tenant not in tenants:
                raise ServerStoreError(f"user {username!r} has no role in tenant {tenant!r}")
            else:
                chosen.append(tenant)
            ex(
                "INSERT INTO server_api_tokens (id, token_hash, username, name, created_us, tenant) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (tid, _digest(secret), username, name, now, chosen[0]),
            )

        self._db.tx(work)
        created = _ts(now)
        assert created is not None
        return ApiToken(
            id=tid,
            username=username,
            name=name,
            created_at=created,
            last_used_at=None,
            tenant=chosen[0],
        ), secret

    def token_user(self, secret: str) -> User | None:
        """The user a token acts as, limited to the token's tenant; None if the token is
        unknown, revoked, or its user was removed or disabled."""
        if not secret.startswith(TOKEN_PREFIX):
            return None
        rows = self._db.read(
            "SELECT username, id, last_used_us, tenant FROM server_api_tokens WHERE token_hash = ?",
            (_digest(secret),),
        )
        if not rows:
            return None
        now = _now_us()
        if rows[0][2] is None or now - int(rows[0][2]) > 60_000_000:
            self._db.tx(
                lambda ex: ex(
                    "UPDATE server_api_tokens SET last_used_us = ? WHERE id = ?", (now, rows[0][1])
                )
            )
        user = self.get_user(str(rows[0][0]))
        if user is None or user.disabled:
            return None
        return scoped(user, None if rows[0][3] is None else str(rows[0][3]))

    def list_tokens(self, username: str) -> list[ApiToken]:
        rows = self._db.read(
            "SELECT id, name, created_us, last_used_us, tenant FROM server_api_tokens "
            "WHERE username = ? ORDER BY created_us",
            (username,),
        )
        out = []
        for tid, name, created, used, tenant in rows:
            created_at = _ts(int(created))
            assert created_at is not None
            out.append(
                ApiToken(
                    id=str(tid),
                    username=username,
                    name=str(name),
                    created_at=created_at,
                    last_used_at=_ts(None if used is None else int(used)),
                    tenant=None if tenant is None else str(tenant),
                )
            )
        return out

    def revoke_token(self, username: str, token_id: str) -> bool:
        def work(ex: Callable[..., list[Any]]) -> bool:
            found = bool(
                ex(
                    "SELECT 1 FROM server_api_tokens WHERE id = ? AND username = ?",
                    (token_id, username),
                )
            )
            ex("DELETE FROM server_api_tokens WHERE id = ? AND username = ?", (token_id, username))
            return found

        return bool(self._db.tx(work))

    # -- local admin keys (DESIGN.md 2.8) ---------------------------------------------

    def admit_admin_key(self, fingerprint: str, label: str) -> bool:
        """Whether this database accepts the admin key with ``fingerprint``. The first
        key ever presented is registered (trust on first use: whoever set the database
        up); after that only registered keys are accepted."""

        def work(ex: Callable[..., list[Any]]) -> bool:
            if ex("SELECT 1 FROM server_admin_keys WHERE fingerprint = ?", (fingerprint,)):
                return True
            if ex("SELECT 1 FROM server_admin_keys"):
                return False
            ex(
                "INSERT INTO server_admin_keys (fingerprint, label, created_us) VALUES (?, ?, ?)",
                (fingerprint, label, _now_us()),
            )
            return True

        return bool(self._db.tx(work))

    def add_admin_key(self, fingerprint: str, label: str) -> None:
        """Accept another operator's admin key (the caller has checked its own)."""
        self._db.tx(
            lambda ex: ex(
                "INSERT INTO server_admin_keys (fingerprint, label, created_us) VALUES (?, ?, ?) "
                "ON CONFLICT (fingerprint) DO NOTHING",
                (fingerprint, label, _now_us()),
            )
        )

    def admin_keys(self) -> list[tuple[str, str]]:
        rows = self._db.read("SELECT fingerprint, label FROM server_admin_keys ORDER BY created_us")
        return [(str(f), str(lbl)) for f, lbl in rows]

    # -- login throttling --------------------------------------------------------------

    def recent_failures(self, key: str, window_s: int) -> int:
        since = _now_us() - window_s * 1_000_000
        rows = self._db.read(
            "SELECT count(*) FROM server_login_failures WHERE key = ? AND ts_us >= ?",
            (key, since),
        )
        return int(rows[0][0])

    def record_failure(self, *keys: str, keep_s: int = 86400) -> None:
        now = _now_us()

        def work(ex: Callable[..., list[Any]]) -> None:
            ex("DELETE FROM server_login_failures WHERE ts_us < ?", (now - keep_s * 1_000_000,))
            for k in keys:
                ex("INSERT INTO server_login_failures (key, ts_us) VALUES (?, ?)", (k, now))

        self._db.tx(work)

    def clear_failures(self, key: str) -> None:
        self._db.tx(lambda ex: ex("DELETE FROM server_login_failures WHERE key = ?", (key,)))


def open_server_store(url: str | None = None) -> ServerStore:
    """The store at ``url`` (default ``$VETO_DB`` or ``~/.veto/veto.db``)."""
    from veto_core.audit.log import default_audit_url

    return ServerStore(url or default_audit_url())


def env_secret() -> str | None:
    value = os.environ.get("VETO_SECRET_KEY")
    return value or None
