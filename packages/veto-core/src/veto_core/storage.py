"""What Veto's SQLite and PostgreSQL stores share: the SQL dialect and schema versions.

Every store (audit trail, approvals, the server's users and channel tables) keeps
its schema version in one ``veto_schema`` table, one row per component, and runs
the same logic when it opens a database: upgrade an older schema step by step,
refuse a newer one (fail closed: never write to a layout this code does not know).
Only the transaction around it differs: SQLite takes the write lock with
``BEGIN IMMEDIATE``; PostgreSQL takes a transaction-scoped advisory lock, shared by
all components, so concurrent openers migrate one at a time.

The counter and run stores (``limits``, ``runs.backends``) also share their connection
handling: `SQLiteConnections` (one WAL connection per thread), `PostgresConnections`
(one per thread, replaced after a server restart, with the rule for when a failed
call may be repeated) and `RedisCalls` (the same rule for Redis).
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

__all__ = [
    "POSTGRES",
    "SCHEMA_LOCK_ID",
    "SQLITE",
    "Dialect",
    "Execute",
    "PostgresConnections",
    "RedisCalls",
    "SQLiteConnections",
    "connect_sqlite",
    "create_postgres_schema",
    "executor",
    "migrate_postgres",
    "migrate_sqlite",
    "open_by_scheme",
    "upgrade_schema",
]

SCHEMA_LOCK_ID = 0x7665746F  # "veto": the advisory lock guarding migrations (PostgreSQL)

_Store = TypeVar("_Store")

Execute = Callable[..., list[Any]]
"""``execute(sql, params=())`` in an open transaction; returns the rows (``[]`` if none)."""


@dataclass(frozen=True, slots=True)
class Dialect:
    """The SQL that differs between SQLite (``sqlite3``) and PostgreSQL (psycopg 3)."""

    name: str
    placeholder: str  # "?" or "%s"
    percent: str  # a literal % in SQL text: psycopg needs "%%" once there are parameters
    like_escape: str  # ESCAPE clause for LIKE (PostgreSQL's default escape is "\")
    null_safe_eq: str  # "a <op> b" is true when both are NULL

    @property
    def postgres(self) -> bool:
        return self.name == "postgresql"

    def params(self, n: int) -> str:
        """``?, ?, ?`` / ``%s, %s, %s``."""
        return ", ".join(self.placeholder for _ in range(n))

    def json_text(self, column: str, key: str) -> str:
        """The text value of top-level ``key`` in the JSON object stored in ``column``."""
        if self.postgres:
            return f"({column}::jsonb ->> '{key}')"
        return f"json_extract({column}, '$.{key}')"

    def json_array_has(self, column: str) -> str:
        """True if the JSON array of strings in ``column`` contains the parameter."""
        if self.postgres:
            return f"{column}::jsonb ? {self.placeholder}"
        return f"EXISTS (SELECT 1 FROM json_each({column}) WHERE value = {self.placeholder})"

    def json_array_any_contains(self, column: str) -> str:
        """True if any string of the JSON array in ``column`` contains the parameter
        (case-insensitive for ASCII)."""
        p = self.placeholder
        if self.postgres:
            return (
                f"EXISTS (SELECT 1 FROM jsonb_array_elements_text({column}::jsonb) r "
                f"WHERE strpos(lower(r), lower({p})) > 0)"
            )
        return (
            f"EXISTS (SELECT 1 FROM json_each({column}) WHERE instr(lower(value), lower({p})) > 0)"
        )

    def in_values(self, column: str, values: Sequence[Any]) -> tuple[str, list[Any]]:
        """``column`` is one of ``values``: the clause and its parameters."""
        if self.postgres:
            return f"{column} = ANY({self.placeholder})", [list(values)]
        return f"{column} IN ({self.params(len(values))})", list(values)

    def limit_offset(self, limit: int | None, offset: int = 0) -> tuple[str, list[Any]]:
        """`` LIMIT .. OFFSET ..`` (``limit=None``: all rows) and its parameters."""
        if self.postgres:
            sql, params = "", []
            if limit is not None:
                sql, params = f" LIMIT {self.placeholder}", [limit]
            if offset:
                sql += f" OFFSET {self.placeholder}"
                params.append(offset)
            return sql, params
        if limit is None and not offset:
            return "", []
        # SQLite has no OFFSET without LIMIT; LIMIT -1 means no limit.
        return " LIMIT ? OFFSET ?", [-1 if limit is None else limit, offset]


SQLITE = Dialect(
    name="sqlite", placeholder="?", percent="%", like_escape=" ESCAPE '\\'", null_safe_eq="IS"
)
POSTGRES = Dialect(
    name="postgresql",
    placeholder="%s",
    percent="%%",
    like_escape="",
    null_safe_eq="IS NOT DISTINCT FROM",
)


def upgrade_schema(
    execute: Execute,
    *,
    dialect: Dialect,
    component: str,
    migrations: Sequence[str],
    too_new: Callable[[int, int], Exception],
    target: int | None = None,
) -> int:
    """Bring ``component``'s schema to ``target`` (default: the newest) inside the
    caller's transaction; raise ``too_new(current, supported)`` if the database is
    newer than ``migrations`` (``supported`` versions). Returns the version found."""
    supported = len(migrations)
    target = supported if target is None else target
    p = dialect.placeholder
    if dialect.postgres:
        execute(f"SELECT pg_advisory_xact_lock({p})", (SCHEMA_LOCK_ID,))
    execute(
        "CREATE TABLE IF NOT EXISTS veto_schema "
        "(component TEXT PRIMARY KEY, version INTEGER NOT NULL)"
    )
    rows = execute(f"SELECT version FROM veto_schema WHERE component = {p}", (component,))
    current = int(rows[0][0]) if rows else 0
    if current > supported:
        raise too_new(current, supported)
    for version in range(current + 1, target + 1):
        for stmt in migrations[version - 1].split(";"):
            if stmt.strip():
                execute(stmt)
    if target > current:
        execute(
            f"INSERT INTO veto_schema (component, version) VALUES ({p}, {p}) "
            "ON CONFLICT (component) DO UPDATE SET version = excluded.version",
            (component, target),
        )
    return current


def executor(con: Any) -> Execute:
    """``execute(sql, params=())`` on a ``sqlite3`` or psycopg connection."""

    def execute(sql: str, params: Sequence[Any] | None = None) -> list[Any]:
        # No parameters: run the text as is (psycopg then reads no placeholders in it).
        cur = con.execute(sql) if params is None else con.execute(sql, params)
        return list(cur.fetchall()) if cur.description is not None else []

    return execute


def migrate_sqlite(
    con: sqlite3.Connection,
    *,
    component: str,
    migrations: Sequence[str],
    too_new: Callable[[int, int], Exception],
    target: int | None = None,
) -> int:
    """:func:`upgrade_schema` under SQLite's write lock (``con`` in autocommit mode)."""
    con.execute("BEGIN IMMEDIATE")
    try:
        current = upgrade_schema(
            executor(con),
            dialect=SQLITE,
            component=component,
            migrations=migrations,
            too_new=too_new,
            target=target,
        )
        con.execute("COMMIT")
        return current
    except BaseException:
        con.execute("ROLLBACK")
        raise


def migrate_postgres(
    con: Any,
    *,
    component: str,
    migrations: Sequence[str],
    too_new: Callable[[int, int], Exception],
    target: int | None = None,
) -> int:
    """:func:`upgrade_schema` in one transaction on a psycopg autocommit connection."""
    with con.transaction():
        return upgrade_schema(
            executor(con),
            dialect=POSTGRES,
            component=component,
            migrations=migrations,
            too_new=too_new,
            target=target,
        )


# --- opening a store: every SQLite and PostgreSQL store ----------------------------------------


def create_postgres_schema(con: Any, schema: str) -> None:
    """``CREATE SCHEMA IF NOT EXISTS`` under the shared migration lock (``con``: a psycopg
    connection in autocommit mode).

    The statement is not safe against itself: two sessions creating one name at once
    can both find it absent, and the loser fails on the catalog's unique index. Workers
    of one deployment start together, so every store creates its schema this way.
    """
    from psycopg import sql

    with con.transaction():
        con.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK_ID,))
        con.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))


SQLITE_BUSY_SECONDS = 30.0


def connect_sqlite(
    path: Path | str,
    *,
    synchronous: str = "FULL",
    check_same_thread: bool = False,
    secure_delete: bool = False,
) -> sqlite3.Connection:
    """An autocommit connection to ``path`` in WAL mode, waiting up to 30 s for other processes.

    Switching a new database to WAL needs its exclusive lock, and SQLite answers
    "database is locked" at once, without its busy handler, when two connections
    both read the file and then want that lock (it would deadlock). So several
    processes opening one fresh database together could fail the loser. The switch
    is retried here until the deadline instead; every store opens SQLite this way.
    """
    con = sqlite3.connect(
        str(path),
        timeout=SQLITE_BUSY_SECONDS,
        isolation_level=None,
        check_same_thread=check_same_thread,
    )
    try:
        con.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_SECONDS * 1000)}")
        deadline = time.monotonic() + SQLITE_BUSY_SECONDS
        pause = 0.001
        while True:
            try:
                row = con.execute("PRAGMA journal_mode=WAL").fetchone()
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() >= deadline:
                    raise
                time.sleep(pause)
                pause = min(pause * 2, 0.05)
        if row is None or str(row[0]).lower() != "wal":
            raise sqlite3.OperationalError(f"cannot enable WAL on {path} (got {row!r})")
        con.execute(f"PRAGMA synchronous={synchronous}")
        if secure_delete:
            con.execute("PRAGMA secure_delete=ON")
    except BaseException:
        con.close()
        raise
    return con


# --- connections shared by the limit and run stores ------------------------------------------


class SQLiteConnections:
    """One autocommit WAL connection per thread to the database at ``path`` (created
    with its directory); writers serialize across processes with ``BEGIN IMMEDIATE``."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._local = threading.local()

    def get(self) -> sqlite3.Connection:
        con: sqlite3.Connection | None = getattr(self._local, "con", None)
        if con is None:
            con = connect_sqlite(self.path, check_same_thread=True)
            self._local.con = con
        return con

    def close(self) -> None:
        """Close this thread's connection."""
        con = getattr(self._local, "con", None)
        if con is not None:
            con.close()
            self._local.con = None


class PostgresConnections:
    """One autocommit psycopg connection per thread; a connection the server dropped
    (a restart) is replaced, so service resumes without restarting the process. Every
    failure is raised as ``error(f"{what} (PostgreSQL) ...: {exc}")``."""

    def __init__(
        self,
        conninfo: str,
        *,
        error: type[Exception],
        what: str,
        on_connect: Callable[[Any], None] | None = None,
    ) -> None:
        import psycopg

        self._psycopg = psycopg
        self._conninfo = conninfo
        self._error = error
        self._what = what
        self._on_connect = on_connect
        self._local = threading.local()
        # Every live thread's connection, for close(); weak, so a finished thread's
        # connection is still collected (and closed) with its thread-local.
        self._all: weakref.WeakSet[Any] = weakref.WeakSet()
        self._all_lock = threading.Lock()

    def connection(self) -> tuple[Any, bool]:
        """This thread's connection and whether it is new."""
        con = getattr(self._local, "con", None)
        if con is not None and not (con.closed or con.broken):
            return con, False
        if con is not None:
            with contextlib.suppress(Exception):
                con.close()
        try:
            con = self._psycopg.connect(self._conninfo, autocommit=True, connect_timeout=10)
            if self._on_connect is not None:
                self._on_connect(con)
        except self._psycopg.Error as exc:
            raise self._error(f"{self._what} (PostgreSQL) unreachable: {exc}") from exc
        self._local.con = con
        with self._all_lock:
            self._all.add(con)
        return con, True

    def run(self, fn: Callable[[Any], Any], *, tx: bool = False, repeatable: bool = False) -> Any:
        """``fn`` on this thread's connection (``tx``: in one transaction). Run a second
        time on a fresh connection only when that is provably safe: the old connection
        turned out to be dead before the transaction's first statement (its ``BEGIN``
        failed), or ``fn`` may be repeated (``repeatable``: a read, or a delete by id). A
        write that failed once its transaction started is never repeated: it may have
        committed (a lost reply), and a repeat would apply it twice."""
        for attempt in (1, 2):
            fresh, began = True, False
            try:
                con, fresh = self.connection()
                if not tx:
                    began = not repeatable
                    return fn(con)
                with con.transaction():
                    began = True
                    return fn(con)
            except self._psycopg.Error as exc:
                dropped = con.closed or con.broken
                if attempt == 1 and dropped and not fresh and not began:
                    continue
                raise self._error(f"{self._what} (PostgreSQL) failed: {exc}") from exc
        raise AssertionError("unreachable")

    def close(self) -> None:
        with self._all_lock:
            cons = list(self._all)
            self._all.clear()
        for con in cons:
            with contextlib.suppress(Exception):
                con.close()
        self._local = threading.local()


class RedisCalls:
    """Redis commands with the stores' failure rule: a dropped pooled connection (a
    server restart) is retried once on a new one when the command may be repeated;
    anything else is raised as ``error(f"{what} (Redis) failed: {exc}")``."""

    def __init__(self, *, error: type[Exception], what: str) -> None:
        import redis

        self._error = error
        self._what = what
        self._redis_error = redis.RedisError
        self._connection_error = (redis.ConnectionError, redis.TimeoutError)

    def run(self, fn: Callable[[], Any], *, repeatable: bool = True) -> Any:
        for attempt in (1, 2):
            try:
                return fn()
            except self._connection_error as exc:
                if attempt == 2 or not repeatable:
                    raise self._error(f"{self._what} (Redis) failed: {exc}") from exc
            except self._redis_error as exc:
                raise self._error(f"{self._what} (Redis) failed: {exc}") from exc
        raise AssertionError("unreachable")


def open_by_scheme(
    target: str,
    openers: Mapping[str, Callable[[str], _Store]],
    unavailable: type[Exception],
    what: str,
) -> _Store:
    """Open the store at ``target`` with the opener of its URL scheme (the limit and
    run stores: SQLite, PostgreSQL, Redis). Any failure, an unknown scheme included, is
    ``unavailable`` naming ``what`` ("limit store", "run store"): the caller fails closed."""
    from .audit.sink import SinkConfig

    try:
        scheme = SinkConfig.parse(target).scheme
        opener = openers.get(scheme)
        if opener is not None:
            return opener(target)
    except unavailable:
        raise
    except Exception as exc:
        raise unavailable(f"cannot open {what} {target!r}: {exc}") from exc
    raise unavailable(
        f"no {what} for URL scheme {scheme!r} in {target!r} ({', '.join(dict.fromkeys(openers))})"
    )
