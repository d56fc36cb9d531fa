"""Stateful limits (DESIGN.md 2.5): atomic sliding-window budgets per key.

`try_spend` checks and reserves in one atomic step, so concurrent callers (threads,
processes, hosts) can never overspend a budget; `refund` gives a reservation back
when the call it was for ends up not running (its audit record failed). Stores:

- SQLite (the embedded default, same file as the audit trail): `BEGIN IMMEDIATE`
  serializes writers across processes.
- PostgreSQL: a transaction-scoped advisory lock per key.
- Redis (`veto-core[redis]`, for many workers): one Lua script, atomic on the server.

Each spend is an event row (key, time, amount); the window sum is the sum of the
events younger than the window, and older events are pruned as keys are touched.
"""

from __future__ import annotations

import abc
import hashlib
import math
import os
import sqlite3
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .storage import (
    SCHEMA_LOCK_ID,
    PostgresConnections,
    RedisCalls,
    SQLiteConnections,
    open_by_scheme,
)

__all__ = [
    "ENV_LIMITS_URL",
    "LimitStore",
    "LimitStoreUnavailable",
    "Spend",
    "open_limit_store",
]

ENV_LIMITS_URL = "VETO_LIMITS_URL"


class LimitStoreUnavailable(RuntimeError):
    """The counter store cannot be reached or used: the call must not run."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Spend:
    """The outcome of `try_spend`: ``total`` is the window sum after the spend (when
    ``ok``) or the sum that refused it (when not)."""

    ok: bool
    total: float
    token: str | None  # pass to refund() to give the reservation back


class LimitStore(abc.ABC):
    @abc.abstractmethod
    def try_spend(
        self, key: str, amount: float, maximum: float, window_s: float, *, now: float | None = None
    ) -> Spend:
        """Atomically: if sum(window) + amount <= maximum, record the spend."""

    @abc.abstractmethod
    def refund(self, key: str, token: str) -> None:
        """Undo one spend (its call did not run after all)."""

    @abc.abstractmethod
    def total(self, key: str, window_s: float, *, now: float | None = None) -> float: ...

    def close(self) -> None:  # noqa: B027 - optional
        pass


def open_limit_store(url: str | None = None, *, default: str | None = None) -> LimitStore:
    """``url`` or ``$VETO_LIMITS_URL`` or ``default`` (the audit store's URL)."""
    from .audit.log import default_audit_url

    target = url or os.environ.get(ENV_LIMITS_URL) or default or default_audit_url()
    openers: dict[str, Callable[[str], LimitStore]] = {
        "sqlite": SQLiteLimitStore, "postgresql": PostgresLimitStore,
        "redis": RedisLimitStore, "rediss": RedisLimitStore,
    }  # fmt: skip
    return open_by_scheme(target, openers, LimitStoreUnavailable, "limit store")


def _now(now: float | None) -> float:
    return time.time() if now is None else now


def _check_spend(amount: float, maximum: float, window_s: float) -> None:
    """Only finite, non-negative figures are ever stored or compared: an Infinity or NaN
    would make every later sum meaningless (NaN compares false against the maximum)."""
    for name, value in (("amount", amount), ("maximum", maximum), ("window", window_s)):
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"limit {name} must be a finite, non-negative number, got {value!r}")


def _fits(current: float, amount: float, maximum: float) -> bool:
    total = current + amount
    return math.isfinite(total) and total <= maximum


# --- SQLite ----------------------------------------------------------------------------------

_SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS veto_limit_events (
    key TEXT NOT NULL, id TEXT NOT NULL, ts REAL NOT NULL, amount REAL NOT NULL,
    PRIMARY KEY (key, id)
);
CREATE INDEX IF NOT EXISTS veto_limit_events_key_ts ON veto_limit_events (key, ts);
"""


class SQLiteLimitStore(LimitStore):
    def __init__(self, url: str) -> None:
        from .audit.sqlite import sqlite_path

        self._cons = SQLiteConnections(sqlite_path(url))
        self._connection = self._cons.get
        with self._connection() as con:
            con.executescript(_SQLITE_SCHEMA)

    def try_spend(
        self, key: str, amount: float, maximum: float, window_s: float, *, now: float | None = None
    ) -> Spend:
        _check_spend(amount, maximum, window_s)
        t = _now(now)
        try:
            con = self._connection()
            con.execute("BEGIN IMMEDIATE")
            try:
                con.execute(
                    "DELETE FROM veto_limit_events WHERE key = ? AND ts <= ?", (key, t - window_s)
                )
                (current,) = con.execute(
                    "SELECT COALESCE(SUM(amount), 0) FROM veto_limit_events WHERE key = ?", (key,)
                ).fetchone()
                if not _fits(float(current), amount, maximum):
                    con.execute("COMMIT")
                    return Spend(ok=False, total=float(current), token=None)
                token = uuid.uuid4().hex
                con.execute(
                    "INSERT INTO veto_limit_events (key, id, ts, amount) VALUES (?, ?, ?, ?)",
                    (key, token, t, amount),
                )
                con.execute("COMMIT")
                return Spend(ok=True, total=float(current + amount), token=token)
            except BaseException:
                con.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise LimitStoreUnavailable(f"limit store (SQLite) failed: {exc}") from exc

    def refund(self, key: str, token: str) -> None:
        try:
            self._connection().execute(
                "DELETE FROM veto_limit_events WHERE key = ? AND id = ?", (key, token)
            )
        except sqlite3.Error as exc:
            raise LimitStoreUnavailable(f"limit store (SQLite) failed: {exc}") from exc

    def total(self, key: str, window_s: float, *, now: float | None = None) -> float:
        try:
            row = (
                self._connection()
                .execute(
                    "SELECT COALESCE(SUM(amount), 0) FROM veto_limit_events WHERE key = ? AND ts > ?",
                    (key, _now(now) - window_s),
                )
                .fetchone()
            )
        except sqlite3.Error as exc:
            raise LimitStoreUnavailable(f"limit store (SQLite) failed: {exc}") from exc
        return float(row[0])

    def close(self) -> None:
        self._cons.close()


# --- PostgreSQL ------------------------------------------------------------------------------


class PostgresLimitStore(LimitStore):
    def __init__(self, url: str) -> None:
        try:
            from psycopg import sql
        except ImportError as exc:  # pragma: no cover - the [postgres] extra
            raise LimitStoreUnavailable(
                "PostgreSQL limits need veto-core[postgres] (psycopg 3)"
            ) from exc
        from .audit.postgres import _split_url

        conninfo, schema = _split_url(url)
        self._schema = schema
        self._cons = PostgresConnections(conninfo, error=LimitStoreUnavailable, what="limit store")
        self._run = self._cons.run
        self._table = sql.Identifier(schema, "veto_limit_events")
        con, _ = self._cons.connection()
        with con.transaction():
            # Concurrent CREATE ... IF NOT EXISTS can still collide in PostgreSQL's catalog
            # (two workers starting at once): serialize the DDL like the other stores do.
            con.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK_ID,))
            con.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
            con.execute(
                sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {} (key TEXT NOT NULL, id TEXT NOT NULL, ts DOUBLE PRECISION NOT NULL, "
                    "amount DOUBLE PRECISION NOT NULL, PRIMARY KEY (key, id))"
                ).format(self._table)
            )

    def try_spend(
        self, key: str, amount: float, maximum: float, window_s: float, *, now: float | None = None
    ) -> Spend:
        from psycopg import sql

        _check_spend(amount, maximum, window_s)
        t = _now(now)
        lock = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big", signed=True)

        def spend(con: Any) -> Spend:
            con.execute("SELECT pg_advisory_xact_lock(%s)", (lock,))
            con.execute(
                sql.SQL("DELETE FROM {} WHERE key = %s AND ts <= %s").format(self._table),
                (key, t - window_s),
            )
            (current,) = con.execute(
                sql.SQL("SELECT COALESCE(SUM(amount), 0) FROM {} WHERE key = %s").format(
                    self._table
                ),
                (key,),
            ).fetchone()
            if not _fits(float(current), amount, maximum):
                return Spend(ok=False, total=float(current), token=None)
            token = uuid.uuid4().hex
            con.execute(
                sql.SQL("INSERT INTO {} (key, id, ts, amount) VALUES (%s, %s, %s, %s)").format(
                    self._table
                ),
                (key, token, t, amount),
            )
            return Spend(ok=True, total=float(current + amount), token=token)

        out: Spend = self._run(spend, tx=True)
        return out

    def refund(self, key: str, token: str) -> None:
        from psycopg import sql

        self._run(
            lambda con: con.execute(
                sql.SQL("DELETE FROM {} WHERE key = %s AND id = %s").format(self._table),
                (key, token),
            ),
            repeatable=True,  # deleting one event by id twice deletes it once
        )

    def total(self, key: str, window_s: float, *, now: float | None = None) -> float:
        from psycopg import sql

        row = self._run(
            lambda con: con.execute(
                sql.SQL(
                    "SELECT COALESCE(SUM(amount), 0) FROM {} WHERE key = %s AND ts > %s"
                ).format(self._table),
                (key, _now(now) - window_s),
            ).fetchone(),
            repeatable=True,
        )
        return float(row[0])

    def close(self) -> None:
        self._cons.close()


# --- Redis -----------------------------------------------------------------------------------

# KEYS[1] = the counter's sorted set; ARGV = now, window, amount, max, member.
# Members are "<id>:<amount>" scored by time; the script prunes, sums and adds atomically,
# and running it again with the same member changes nothing (so a repeat is safe).
_SPEND_LUA = """
local key = KEYS[1]
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local amount = tonumber(ARGV[3])
local maximum = tonumber(ARGV[4])
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
local total = 0
for _, member in ipairs(redis.call('ZRANGE', key, 0, -1)) do
  total = total + tonumber(string.match(member, ':(.*)$'))
end
if redis.call('ZSCORE', key, ARGV[5]) then
  return {1, tostring(total)}  -- this spend is already counted (a repeat): count it once
end
if total + amount > maximum then
  return {0, tostring(total)}
end
redis.call('ZADD', key, now, ARGV[5])
redis.call('PEXPIRE', key, math.ceil(window * 1000) + 1000)
return {1, tostring(total + amount)}
"""


class RedisLimitStore(LimitStore):
    def __init__(self, url: str) -> None:
        try:
            import redis
        except ImportError as exc:  # pragma: no cover - the [redis] extra
            raise LimitStoreUnavailable("Redis limits need veto-core[redis]") from exc
        self._calls = RedisCalls(error=LimitStoreUnavailable, what="limit store")
        self._client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        try:
            self._spend = self._client.register_script(_SPEND_LUA)
            self._client.ping()
        except redis.RedisError as exc:
            raise LimitStoreUnavailable(f"limit store (Redis) unreachable: {exc}") from exc

    @staticmethod
    def _key(key: str) -> str:
        return f"veto:limit:{key}"

    def try_spend(
        self, key: str, amount: float, maximum: float, window_s: float, *, now: float | None = None
    ) -> Spend:
        _check_spend(amount, maximum, window_s)
        token = uuid.uuid4().hex
        args: list[str | float] = [_now(now), window_s, amount, maximum, f"{token}:{amount!r}"]
        # A pooled connection the server dropped (a restart): the client opens a new one.
        # Repeating is safe because the script is idempotent per member.
        ok, total = self._calls.run(lambda: self._spend(keys=[self._key(key)], args=args))
        return Spend(
            ok=bool(int(ok)), total=float(total), token=f"{token}:{amount!r}" if int(ok) else None
        )

    def _repeatable(self, fn: Callable[[], Any]) -> Any:
        """``fn`` (a read, or a removal by member), once more on a dropped connection."""
        return self._calls.run(fn)

    def refund(self, key: str, token: str) -> None:
        self._repeatable(lambda: self._client.zrem(self._key(key), token))

    def total(self, key: str, window_s: float, *, now: float | None = None) -> float:
        t = _now(now)
        members: list[Any] = list(
            self._repeatable(
                lambda: self._client.zrangebyscore(self._key(key), t - window_s, "+inf")
            )
        )
        return sum((float(bytes(m).decode().rsplit(":", 1)[1]) for m in members), 0.0)

    def close(self) -> None:
        self._client.close()
