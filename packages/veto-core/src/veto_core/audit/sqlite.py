"""SQLite audit sink: the embedded default (``~/.veto/veto.db`` or ``$VETO_DB``).

Durability: WAL journal with ``synchronous=FULL``, so a transaction is fsynced
before ``COMMIT`` returns; concurrent callers share that fsync through
:class:`~veto_core.audit.writer.AuditWriter`, whose batch goes in one multi-row
``INSERT``. ``[audit] durability = "os"`` selects ``synchronous=NORMAL``: a commit
is in the OS when it returns (it survives a crash of the process) but a power
loss may take the last commits, i.e. records of calls that were already allowed
to run. ``BEGIN IMMEDIATE`` takes SQLite's
write lock before chain heads are read, which serializes appends per database
across threads and processes. ``secure_delete`` is on, and erasure ends with a
``wal_checkpoint(TRUNCATE)``, so erased bytes do not linger in free pages or the WAL.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import secrets
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

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
from veto_core.storage import SQLITE, connect_sqlite, migrate_sqlite

__all__ = ["SCHEMA_VERSION", "SqliteSink", "sqlite_path"]

COMPONENT = "audit"

_V1 = """
CREATE TABLE IF NOT EXISTS audit_records (
    tenant TEXT NOT NULL,
    seq INTEGER NOT NULL,
    id TEXT NOT NULL UNIQUE,
    ts_us INTEGER NOT NULL,
    env TEXT,
    principal TEXT NOT NULL,
    framework TEXT,
    run_id TEXT,
    tool TEXT NOT NULL,
    tool_call_id TEXT,
    args TEXT,
    args_digest TEXT NOT NULL,
    effect TEXT,
    outcome TEXT NOT NULL,
    rule_ids TEXT NOT NULL,
    reasons TEXT NOT NULL,
    errors TEXT NOT NULL,
    policy_name TEXT,
    policy_revision TEXT,
    approval TEXT,
    latency_us INTEGER NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL,
    user_digest TEXT,
    args_mac TEXT NOT NULL,
    PRIMARY KEY (tenant, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS audit_chain_heads (
    tenant TEXT PRIMARY KEY, seq INTEGER NOT NULL, hash TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS audit_tenant_keys (
    tenant TEXT PRIMARY KEY, hmac_key BLOB NOT NULL, created_us INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS audit_checkpoints (
    tenant TEXT NOT NULL, kind TEXT NOT NULL, seq INTEGER NOT NULL, hash TEXT NOT NULL,
    created_us INTEGER NOT NULL, info TEXT NOT NULL, public_key TEXT NOT NULL,
    signature TEXT NOT NULL, PRIMARY KEY (tenant, kind, seq));
CREATE TABLE IF NOT EXISTS audit_signing_key (
    id INTEGER PRIMARY KEY CHECK (id = 1), seed BLOB NOT NULL);
"""

_V2 = """
CREATE INDEX IF NOT EXISTS audit_records_ts ON audit_records (ts_us);
CREATE INDEX IF NOT EXISTS audit_records_tenant_ts ON audit_records (tenant, ts_us);
CREATE INDEX IF NOT EXISTS audit_records_run ON audit_records (run_id);
CREATE TABLE IF NOT EXISTS audit_policy_revisions (
    revision TEXT PRIMARY KEY, name TEXT NOT NULL, content TEXT NOT NULL,
    source TEXT NOT NULL, first_seen_us INTEGER NOT NULL);
"""

MIGRATIONS: tuple[str, ...] = (_V1, _V2)
SCHEMA_VERSION = len(MIGRATIONS)

_ROW = f"({', '.join('?' for _ in COLUMNS)})"
_INSERT = f"INSERT INTO audit_records ({', '.join(COLUMNS)}) VALUES {_ROW}"
# Bound parameters per statement: 32766 since SQLite 3.32, 999 before.
_ROWS_PER_INSERT = (32766 if sqlite3.sqlite_version_info >= (3, 32) else 999) // len(COLUMNS)


def sqlite_path(url: str) -> Path:
    """``sqlite:///rel.db`` (relative), ``sqlite:////abs/x.db`` (absolute), or a plain path."""
    if url.startswith("sqlite://"):
        rest = url[len("sqlite://") :]
        if not rest.startswith("/"):
            raise ValueError(f"sqlite URL must be sqlite:///PATH, got {url!r}")
        rest = rest[1:].split("?", 1)[0]
        return Path(os.path.expanduser(rest))
    if url.startswith("file:"):
        url = url[5:]
    return Path(os.path.expanduser(url))


def migrate(con: sqlite3.Connection, *, target: int = SCHEMA_VERSION) -> int:
    """Bring the schema to ``target``; refuse a newer database. Returns the old version."""
    return migrate_sqlite(
        con, component=COMPONENT, migrations=MIGRATIONS, too_new=schema_too_new, target=target
    )


class SqliteSink(AuditSink):
    scheme = "sqlite"

    def __init__(self, config: SinkConfig) -> None:
        self.url = config.url
        self.path = sqlite_path(config.url)
        self._synchronous = "NORMAL" if config.durability == "os" else "FULL"
        self._inserts: dict[int, str] = {}
        self._keys: dict[str, bytes] = {}
        self._admin_lock = threading.RLock()
        if not config.create and not self.path.is_file():
            raise AuditStoreMissing(f"no audit database at {self.path}")
        try:
            if config.create:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            self._writer = self._connect()
            migrate(self._writer)
            self._admin = self._connect()
        except AuditUnavailable:
            raise
        except (sqlite3.Error, OSError) as exc:
            raise AuditUnavailable(f"cannot open audit database {self.path}: {exc}") from exc

    def _connect(self) -> sqlite3.Connection:
        return connect_sqlite(self.path, synchronous=self._synchronous, secure_delete=True)

    # -- helpers ---------------------------------------------------------------

    def _tx(
        self, fn: Callable[[sqlite3.Connection], Any], *, con: sqlite3.Connection | None = None
    ) -> Any:
        with self._admin_lock:
            c = self._admin if con is None else con
            try:
                c.execute("BEGIN IMMEDIATE")
                try:
                    out = fn(c)
                    c.execute("COMMIT")
                    return out
                except BaseException:
                    c.execute("ROLLBACK")
                    raise
            except AuditUnavailable:
                raise
            except (sqlite3.Error, OSError, ValueError) as exc:
                raise AuditUnavailable(f"audit database {self.path}: {exc}") from exc

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        with self._admin_lock:
            try:
                return self._admin.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise AuditUnavailable(f"audit database {self.path}: {exc}") from exc

    # -- AuditSink -------------------------------------------------------------

    def tenant_key(self, tenant: str) -> bytes:
        key = self._keys.get(tenant)
        if key is not None:
            return key

        def get_or_create(c: sqlite3.Connection) -> bytes:
            c.execute(
                "INSERT OR IGNORE INTO audit_tenant_keys (tenant, hmac_key, created_us) VALUES (?, ?, ?)",
                (tenant, secrets.token_bytes(32), ts_to_us(_dt.datetime.now(_dt.UTC))),
            )
            row = c.execute(
                "SELECT hmac_key FROM audit_tenant_keys WHERE tenant = ?", (tenant,)
            ).fetchone()
            return bytes(row[0])

        key = self._tx(get_or_create)
        assert isinstance(key, bytes)
        self._keys[tenant] = key
        return key

    def append(self, batch: Sequence[PendingRecord]) -> list[SealedRecord]:
        con = self._writer  # only the group-commit leader gets here: one at a time
        try:
            con.execute("BEGIN IMMEDIATE")
            try:
                heads: dict[str, tuple[int, str]] = {}
                for t in {p.tenant for p in batch}:
                    row = con.execute(
                        "SELECT seq, hash FROM audit_chain_heads WHERE tenant = ?", (t,)
                    ).fetchone()
                    heads[t] = (0, GENESIS_HASH) if row is None else (int(row[0]), str(row[1]))
                out: list[SealedRecord] = []
                for p in batch:
                    seq, prev = heads[p.tenant]
                    s = p.seal(seq + 1, prev)
                    heads[p.tenant] = (seq + 1, s.record.hash)
                    out.append(s)
                for i in range(0, len(batch), _ROWS_PER_INSERT):
                    chunk = batch[i : i + _ROWS_PER_INSERT]
                    con.execute(self._insert(len(chunk)), [v for p in chunk for v in p.row])
                con.executemany(
                    "INSERT INTO audit_chain_heads (tenant, seq, hash) VALUES (?, ?, ?) "
                    "ON CONFLICT (tenant) DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
                    [(t, s, h) for t, (s, h) in heads.items()],
                )
                con.execute("COMMIT")
                return out
            except BaseException:
                if con.in_transaction:
                    con.execute("ROLLBACK")
                raise
        except (sqlite3.Error, OSError, ValueError) as exc:
            raise AuditUnavailable(f"audit record not committed to {self.path}: {exc}") from exc

    def _insert(self, rows: int) -> str:
        """One ``INSERT`` of ``rows`` records (SQLite caches the prepared statement)."""
        text = self._inserts.get(rows)
        if text is None:
            text = _INSERT + f", {_ROW}" * (rows - 1)
            if len(self._inserts) < 64:
                self._inserts[rows] = text
        return text

    def iter_chain(self, tenant: str) -> Iterator[SealedRecord]:
        yield from self._stream(f"{SELECT_RECORDS} WHERE tenant = ? ORDER BY seq", (tenant,))

    def _stream(self, sql: str, params: Sequence[Any]) -> Iterator[SealedRecord]:
        try:
            con = self._connect()
        except sqlite3.Error as exc:
            raise AuditUnavailable(f"audit database {self.path}: {exc}") from exc
        try:
            cur = con.execute(sql, params)
            while True:
                rows = cur.fetchmany(500)
                if not rows:
                    break
                for row in rows:
                    yield from_row(row)
        except sqlite3.Error as exc:
            raise AuditUnavailable(f"audit database {self.path}: {exc}") from exc
        finally:
            con.close()

    def chain_head(self, tenant: str) -> tuple[int, str] | None:
        rows = self._read("SELECT seq, hash FROM audit_chain_heads WHERE tenant = ?", (tenant,))
        return None if not rows else (int(rows[0][0]), str(rows[0][1]))

    def tenants(self) -> list[str]:
        rows = self._read(
            "SELECT tenant FROM audit_chain_heads UNION SELECT DISTINCT tenant FROM audit_records "
            "UNION SELECT tenant FROM audit_checkpoints WHERE tenant <> '' ORDER BY 1"
        )
        return [str(r[0]) for r in rows]

    def query(self, q: AuditQuery) -> Iterator[AuditRecord]:
        for s in self._stream(*query_sql(q, SQLITE)):
            yield s.record

    def checkpoints(self, tenant: str) -> list[Checkpoint]:
        rows = self._read(
            "SELECT tenant, kind, seq, hash, created_us, info, public_key, signature "
            "FROM audit_checkpoints WHERE tenant = ? ORDER BY seq, kind",
            (tenant,),
        )
        return [checkpoint_from_row(r) for r in rows]

    def _insert_cp(self, c: sqlite3.Connection, cp: Checkpoint) -> None:
        c.execute(
            "INSERT OR REPLACE INTO audit_checkpoints "
            "(tenant, kind, seq, hash, created_us, info, public_key, signature) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            checkpoint_row(cp),
        )

    def add_checkpoint(self, cp: Checkpoint) -> None:
        self._tx(lambda c: self._insert_cp(c, cp))

    def purge_through(self, tenant: str, seq: int, tombstone: Checkpoint) -> int:
        def work(c: sqlite3.Connection) -> int:
            n = c.execute(
                "DELETE FROM audit_records WHERE tenant = ? AND seq <= ?", (tenant, seq)
            ).rowcount
            self._insert_cp(c, tombstone)
            return int(n)

        n = self._tx(work)
        self._checkpoint_wal()
        return int(n)

    def count_user(self, tenant: str, user: str) -> int:
        rows = self._read(
            "SELECT count(*) FROM audit_records WHERE tenant = ? "
            "AND json_extract(principal, '$.user') = ?",
            (tenant, user),
        )
        return int(rows[0][0])

    def erase_user(self, tenant: str, user: str, before_seq: int, erased_mac: str) -> int:
        def work(c: sqlite3.Connection) -> int:
            rows = c.execute(
                "SELECT seq, principal FROM audit_records WHERE tenant = ? AND seq < ? "
                "AND json_extract(principal, '$.user') = ?",
                (tenant, before_seq, user),
            ).fetchall()
            updates = []
            for seq, principal in rows:
                p = json.loads(principal)
                p["user"] = None
                updates.append((canonical_json(p).decode(), erased_mac, tenant, seq))
            c.executemany(
                "UPDATE audit_records SET principal = ?, args = NULL, args_mac = ? "
                "WHERE tenant = ? AND seq = ?",
                updates,
            )
            return len(updates)

        n = int(self._tx(work))
        self._checkpoint_wal()
        return n

    def _checkpoint_wal(self) -> None:
        """Fold the WAL into the database and truncate it (no stale page images left)."""
        with self._admin_lock:
            try:
                busy, _, _ = self._admin.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            except sqlite3.Error as exc:
                raise AuditUnavailable(f"audit database {self.path}: {exc}") from exc
        if busy:
            raise AuditUnavailable(
                f"erasure committed, but the WAL of {self.path} could not be truncated "
                "(a reader holds it); run the command again when the database is idle"
            )

    def legacy_signing_seed(self) -> bytes | None:
        rows = self._read("SELECT seed FROM audit_signing_key WHERE id = 1")
        return bytes(rows[0][0]) if rows else None

    def drop_legacy_signing_seed(self) -> None:
        self._tx(lambda c: c.execute("DELETE FROM audit_signing_key"))
        self._checkpoint_wal()  # secure_delete is on: no copy left in free pages or the WAL

    def store_policy_revision(self, rev: PolicyRevision) -> None:
        self._tx(
            lambda c: c.execute(
                "INSERT OR IGNORE INTO audit_policy_revisions "
                "(revision, name, content, source, first_seen_us) VALUES (?, ?, ?, ?, ?)",
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
                with contextlib.suppress(sqlite3.Error):
                    con.close()
