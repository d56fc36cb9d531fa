"""PostgreSQL audit sink (``veto-core[postgres]``, psycopg 3).

URL: ``postgresql://user@host:5432/db`` with an optional ``?schema=NAME`` (default
``public``; created if missing). Appends from any number of processes are
serialized per tenant by a row lock on the tenant's chain head
(``SELECT ... FOR UPDATE``), taken in tenant order so batches never deadlock.
Each batch is one transaction: the server's WAL flush at ``COMMIT`` is the
durability point, shared by every record of the batch.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import secrets
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from veto_core.audit.errors import AuditStoreMissing, AuditUnavailable, schema_too_new
from veto_core.audit.pending import PendingRecord
from veto_core.audit.record import (
    GENESIS_HASH,
    AuditRecord,
    SealedRecord,
    canonical_json,
    ts_to_us,
)
from veto_core.audit.sink import (
    COLUMNS,
    SELECT_RECORDS,
    AuditQuery,
    AuditSink,
    Checkpoint,
    PolicyRevision,
    SinkConfig,
    checkpoint_from_row,
    checkpoint_row,
    from_row,
    policy_revision_from_row,
    query_sql,
)
from veto_core.storage import POSTGRES, create_postgres_schema, migrate_postgres

try:
    import psycopg
    from psycopg import sql
except ImportError:  # pragma: no cover - exercised only without the extra
    psycopg = None  # type: ignore[assignment]

__all__ = ["SCHEMA_VERSION", "PostgresSink"]

COMPONENT = "audit"

_V1 = """
CREATE TABLE IF NOT EXISTS audit_records (
    tenant TEXT NOT NULL, seq BIGINT NOT NULL, id TEXT NOT NULL UNIQUE, ts_us BIGINT NOT NULL,
    env TEXT, principal TEXT NOT NULL, framework TEXT, run_id TEXT, tool TEXT NOT NULL,
    tool_call_id TEXT, args TEXT, args_digest TEXT NOT NULL, effect TEXT, outcome TEXT NOT NULL,
    rule_ids TEXT NOT NULL, reasons TEXT NOT NULL, errors TEXT NOT NULL, policy_name TEXT,
    policy_revision TEXT, approval TEXT, latency_us BIGINT NOT NULL, prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL, user_digest TEXT, args_mac TEXT NOT NULL, PRIMARY KEY (tenant, seq));
CREATE TABLE IF NOT EXISTS audit_chain_heads (
    tenant TEXT PRIMARY KEY, seq BIGINT NOT NULL, hash TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS audit_tenant_keys (
    tenant TEXT PRIMARY KEY, hmac_key BYTEA NOT NULL, created_us BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS audit_checkpoints (
    tenant TEXT NOT NULL, kind TEXT NOT NULL, seq BIGINT NOT NULL, hash TEXT NOT NULL,
    created_us BIGINT NOT NULL, info TEXT NOT NULL, public_key TEXT NOT NULL,
    signature TEXT NOT NULL, PRIMARY KEY (tenant, kind, seq));
CREATE TABLE IF NOT EXISTS audit_signing_key (
    id INTEGER PRIMARY KEY CHECK (id = 1), seed BYTEA NOT NULL)
"""

_V2 = """
CREATE INDEX IF NOT EXISTS audit_records_ts ON audit_records (ts_us);
CREATE INDEX IF NOT EXISTS audit_records_tenant_ts ON audit_records (tenant, ts_us);
CREATE INDEX IF NOT EXISTS audit_records_run ON audit_records (run_id);
CREATE TABLE IF NOT EXISTS audit_policy_revisions (
    revision TEXT PRIMARY KEY, name TEXT NOT NULL, content TEXT NOT NULL,
    source TEXT NOT NULL, first_seen_us BIGINT NOT NULL)
"""

MIGRATIONS: tuple[str, ...] = (_V1, _V2)
SCHEMA_VERSION = len(MIGRATIONS)

_ROW = f"({', '.join('%s' for _ in COLUMNS)})"
_INSERT = f"INSERT INTO audit_records ({', '.join(COLUMNS)}) VALUES {_ROW}"
_ROWS_PER_INSERT = 65535 // len(COLUMNS)  # bound parameters per statement (protocol limit)


def _split_url(url: str) -> tuple[str, str]:
    """(conninfo for psycopg, schema) from ``postgresql://...?schema=x``."""
    parts = urlsplit(url)
    params = parse_qsl(parts.query)
    schema = "public"
    rest = []
    for k, v in params:
        if k == "schema":
            schema = v
        else:
            rest.append((k, v))
    scheme = "postgresql"
    return urlunsplit((scheme, parts.netloc, parts.path, urlencode(rest), parts.fragment)), schema


def migrate(con: Any, *, target: int = SCHEMA_VERSION) -> int:
    """Bring the schema to ``target``; refuse a newer database. Returns the old version."""
    return migrate_postgres(
        con, component=COMPONENT, migrations=MIGRATIONS, too_new=schema_too_new, target=target
    )


class PostgresSink(AuditSink):
    scheme = "postgresql"

    def __init__(self, config: SinkConfig) -> None:
        if psycopg is None:
            raise AuditUnavailable(
                "PostgreSQL audit sink needs psycopg: pip install 'veto-core[postgres]'"
            )
        self.url = config.url
        self.conninfo, self.schema = _split_url(config.url)
        # "os": the server acknowledges before its WAL is flushed (survives a crash of
        # this process, not of the database server or the machine).
        self._sync_commit = "off" if config.durability == "os" else "on"
        self._keys: dict[str, bytes] = {}
        self._admin_lock = threading.RLock()
        try:
            boot = psycopg.connect(self.conninfo, autocommit=True, connect_timeout=10)
            try:
                if not config.create:
                    found = boot.execute(
                        "SELECT 1 FROM information_schema.tables "
                        "WHERE table_schema = %s AND table_name = 'audit_records'",
                        (self.schema,),
                    ).fetchone()
                    if found is None:
                        raise AuditStoreMissing(
                            f"no audit store in PostgreSQL schema {self.schema!r}"
                        )
                else:
                    create_postgres_schema(boot, self.schema)
            finally:
                boot.close()
            self._writer = self._connect()
            migrate(self._writer)
            self._admin = self._connect()
        except AuditUnavailable:
            raise
        except psycopg.Error as exc:
            raise AuditUnavailable(f"cannot open PostgreSQL audit store: {exc}") from exc

    def _connect(self) -> Any:
        con = psycopg.connect(self.conninfo, autocommit=True, connect_timeout=10)
        con.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(self.schema)))
        con.execute(f"SET synchronous_commit TO {self._sync_commit}")
        return con

    def _live(self, name: str) -> Any:
        """The connection ``name``, reconnected if the server dropped it (a restart):
        the calls made while it is down fail (deny), the first one after it succeeds."""
        con = getattr(self, name)
        if con.closed or con.broken:
            with contextlib.suppress(Exception):
                con.close()
            con = self._connect()
            setattr(self, name, con)
        return con

    def _tx(self, fn: Callable[[Any], Any]) -> Any:
        """``fn`` in a transaction; every use is idempotent (insert-if-absent, upsert,
        delete-through), so a connection dropped while idle is retried once."""
        with self._admin_lock:
            for attempt in (1, 2):
                try:
                    admin = self._live("_admin")
                    with admin.transaction():
                        return fn(admin)
                except AuditUnavailable:
                    raise
                except psycopg.Error as exc:
                    if attempt == 1 and self._admin.broken:
                        continue
                    raise AuditUnavailable(f"PostgreSQL audit store: {exc}") from exc
            raise AssertionError("unreachable")

    def _read(self, query: str, params: Sequence[Any] = ()) -> list[Any]:
        with self._admin_lock:
            for attempt in (1, 2):
                try:
                    return list(self._live("_admin").execute(query, params).fetchall())
                except psycopg.Error as exc:
                    if attempt == 1 and self._admin.broken:
                        continue  # dropped while idle: reads are safe to repeat
                    raise AuditUnavailable(f"PostgreSQL audit store: {exc}") from exc
            raise AssertionError("unreachable")

    def tenant_key(self, tenant: str) -> bytes:
        key = self._keys.get(tenant)
        if key is not None:
            return key

        def get_or_create(c: Any) -> bytes:
            c.execute(
                "INSERT INTO audit_tenant_keys (tenant, hmac_key, created_us) VALUES (%s, %s, %s) "
                "ON CONFLICT (tenant) DO NOTHING",
                (tenant, secrets.token_bytes(32), ts_to_us(_dt.datetime.now(_dt.UTC))),
            )
            row = c.execute(
                "SELECT hmac_key FROM audit_tenant_keys WHERE tenant = %s", (tenant,)
            ).fetchone()
            return bytes(row[0])

        key = self._tx(get_or_create)
        assert isinstance(key, bytes)
        self._keys[tenant] = key
        return key

    def append(self, batch: Sequence[PendingRecord]) -> list[SealedRecord]:
        for attempt in (1, 2):
            started: list[bool] = []
            try:
                return self._append(batch, started)
            except psycopg.OperationalError as exc:
                # A connection the server dropped while it sat idle (a restart) fails on
                # its first statement, before anything could commit: retry once on a
                # fresh one. Failures after that are never retried (no double record).
                if attempt == 2 or started:
                    raise AuditUnavailable(
                        f"audit record not committed to PostgreSQL: {exc}"
                    ) from exc
            except AuditUnavailable:
                raise
        raise AssertionError("unreachable")

    def _append(self, batch: Sequence[PendingRecord], started: list[bool]) -> list[SealedRecord]:
        try:
            con = self._live("_writer")  # group-commit leader only
            with con.transaction():
                heads: dict[str, tuple[int, str]] = {}
                for t in sorted({p.tenant for p in batch}):
                    # One round trip: create the head if absent, lock it, read it.
                    row = con.execute(
                        "INSERT INTO audit_chain_heads (tenant, seq, hash) VALUES (%s, 0, %s) "
                        "ON CONFLICT (tenant) DO UPDATE SET tenant = EXCLUDED.tenant "
                        "RETURNING seq, hash",
                        (t, GENESIS_HASH),
                    ).fetchone()
                    started.append(True)
                    heads[t] = (int(row[0]), str(row[1]))
                out: list[SealedRecord] = []
                for p in batch:
                    seq, prev = heads[p.tenant]
                    s = p.seal(seq + 1, prev)
                    heads[p.tenant] = (seq + 1, s.record.hash)
                    out.append(s)
                with con.cursor() as cur:
                    for i in range(0, len(batch), _ROWS_PER_INSERT):
                        chunk = batch[i : i + _ROWS_PER_INSERT]
                        sql_text = _INSERT + f", {_ROW}" * (len(chunk) - 1)
                        cur.execute(sql_text, [v for p in chunk for v in p.row])
                    cur.executemany(
                        "UPDATE audit_chain_heads SET seq = %s, hash = %s WHERE tenant = %s",
                        [(s, h, t) for t, (s, h) in heads.items()],
                    )
            return out
        except psycopg.OperationalError as exc:
            if not started and (self._writer.closed or self._writer.broken):
                raise  # append() retries on a fresh connection
            raise AuditUnavailable(f"audit record not committed to PostgreSQL: {exc}") from exc
        except psycopg.Error as exc:
            raise AuditUnavailable(f"audit record not committed to PostgreSQL: {exc}") from exc

    def _stream(self, query: str, params: Sequence[Any]) -> Iterator[SealedRecord]:
        try:
            con = self._connect()
        except psycopg.Error as exc:
            raise AuditUnavailable(f"PostgreSQL audit store: {exc}") from exc
        try:
            with con.transaction(), con.cursor(name=f"veto_audit_{secrets.token_hex(6)}") as cur:
                cur.itersize = 500
                cur.execute(query, params)
                for row in cur:
                    yield from_row(row)
        except psycopg.Error as exc:
            raise AuditUnavailable(f"PostgreSQL audit store: {exc}") from exc
        finally:
            con.close()

    def iter_chain(self, tenant: str) -> Iterator[SealedRecord]:
        yield from self._stream(f"{SELECT_RECORDS} WHERE tenant = %s ORDER BY seq", (tenant,))

    def chain_head(self, tenant: str) -> tuple[int, str] | None:
        rows = self._read("SELECT seq, hash FROM audit_chain_heads WHERE tenant = %s", (tenant,))
        return None if not rows else (int(rows[0][0]), str(rows[0][1]))

    def tenants(self) -> list[str]:
        rows = self._read(
            "SELECT tenant FROM audit_chain_heads UNION SELECT DISTINCT tenant FROM audit_records "
            "UNION SELECT tenant FROM audit_checkpoints WHERE tenant <> '' ORDER BY 1"
        )
        return [str(r[0]) for r in rows]

    def query(self, q: AuditQuery) -> Iterator[AuditRecord]:
        for s in self._stream(*query_sql(q, POSTGRES)):
            yield s.record

    def checkpoints(self, tenant: str) -> list[Checkpoint]:
        rows = self._read(
            "SELECT tenant, kind, seq, hash, created_us, info, public_key, signature "
            "FROM audit_checkpoints WHERE tenant = %s ORDER BY seq, kind",
            (tenant,),
        )
        return [checkpoint_from_row(r) for r in rows]

    @staticmethod
    def _insert_cp(c: Any, cp: Checkpoint) -> None:
        c.execute(
            "INSERT INTO audit_checkpoints "
            "(tenant, kind, seq, hash, created_us, info, public_key, signature) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (tenant, kind, seq) DO UPDATE "
            "SET hash = excluded.hash, created_us = excluded.created_us, info = excluded.info, "
            "public_key = excluded.public_key, signature = excluded.signature",
            checkpoint_row(cp),
        )

    def add_checkpoint(self, cp: Checkpoint) -> None:
        self._tx(lambda c: self._insert_cp(c, cp))

    def purge_through(self, tenant: str, seq: int, tombstone: Checkpoint) -> int:
        def work(c: Any) -> int:
            n = c.execute(
                "DELETE FROM audit_records WHERE tenant = %s AND seq <= %s", (tenant, seq)
            ).rowcount
            self._insert_cp(c, tombstone)
            return int(n)

        return int(self._tx(work))

    def count_user(self, tenant: str, user: str) -> int:
        rows = self._read(
            "SELECT count(*) FROM audit_records WHERE tenant = %s "
            "AND (principal::jsonb ->> 'user') = %s",
            (tenant, user),
        )
        return int(rows[0][0])

    def erase_user(self, tenant: str, user: str, before_seq: int, erased_mac: str) -> int:
        def work(c: Any) -> int:
            rows = c.execute(
                "SELECT seq, principal FROM audit_records WHERE tenant = %s AND seq < %s "
                "AND (principal::jsonb ->> 'user') = %s FOR UPDATE",
                (tenant, before_seq, user),
            ).fetchall()
            updates = []
            for seq, principal in rows:
                p = json.loads(principal)
                p["user"] = None
                updates.append((canonical_json(p).decode(), erased_mac, tenant, seq))
            with c.cursor() as cur:
                cur.executemany(
                    "UPDATE audit_records SET principal = %s, args = NULL, args_mac = %s "
                    "WHERE tenant = %s AND seq = %s",
                    updates,
                )
            return len(updates)

        n = int(self._tx(work))
        # Reclaim the dead row versions that still hold the erased values.
        with self._admin_lock, contextlib.suppress(psycopg.Error):
            self._admin.execute("VACUUM audit_records")
        return n

    def legacy_signing_seed(self) -> bytes | None:
        rows = self._read("SELECT seed FROM audit_signing_key WHERE id = 1")
        return bytes(rows[0][0]) if rows else None

    def drop_legacy_signing_seed(self) -> None:
        self._tx(lambda c: c.execute("DELETE FROM audit_signing_key"))

    def store_policy_revision(self, rev: PolicyRevision) -> None:
        self._tx(
            lambda c: c.execute(
                "INSERT INTO audit_policy_revisions "
                "(revision, name, content, source, first_seen_us) VALUES (%s, %s, %s, %s, %s) "
                "ON CONFLICT (revision) DO NOTHING",
                (rev.revision, rev.name, rev.content, rev.source, ts_to_us(rev.first_seen)),
            )
        )

    def policy_revisions(self) -> list[PolicyRevision]:
        rows = self._read(
            "SELECT revision, name, content, source, first_seen_us FROM audit_policy_revisions "
            "ORDER BY first_seen_us, revision"
        )
        return [policy_revision_from_row(r) for r in rows]

    def close(self) -> None:
        with self._admin_lock:
            for con in (self._writer, self._admin):
                with contextlib.suppress(Exception):
                    con.close()
