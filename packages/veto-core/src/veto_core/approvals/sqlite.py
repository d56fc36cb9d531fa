"""SQLite approval store: tables next to the audit trail's, in the same database file.

Writes take SQLite's write lock (``BEGIN IMMEDIATE``) before reading the request
they change, which serializes them across threads and processes; waiters poll
(every 50 ms), which is cheap against a local WAL database.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from veto_core.approvals.model import (
    ApprovalNotFound,
    ApprovalRequest,
    ApprovalState,
    ApprovalUnavailable,
)
from veto_core.approvals.store import (
    REQUEST_COLUMNS,
    VOTE_COLUMNS,
    ApprovalStore,
    Change,
    Mutator,
    Waiter,
    apply_change,
    request_from_rows,
    request_row,
    schema_too_new,
    vote_row,
)
from veto_core.audit.record import ts_to_us
from veto_core.audit.sqlite import sqlite_path
from veto_core.storage import migrate_sqlite

__all__ = ["POLL_S", "SCHEMA_VERSION", "SqliteApprovalStore"]

COMPONENT = "approvals"
POLL_S = 0.05

_V1 = """
CREATE TABLE IF NOT EXISTS approval_requests (
    id TEXT PRIMARY KEY,
    binding TEXT NOT NULL UNIQUE,
    tenant TEXT NOT NULL,
    run_id TEXT,
    tool_call_id TEXT,
    tool TEXT NOT NULL,
    args_digest TEXT NOT NULL,
    state TEXT NOT NULL,
    created_us INTEGER NOT NULL,
    expires_us INTEGER NOT NULL,
    env TEXT,
    principal TEXT NOT NULL,
    requester TEXT,
    args TEXT,
    approvers TEXT NOT NULL,
    quorum INTEGER NOT NULL,
    channels TEXT NOT NULL,
    rule_ids TEXT NOT NULL,
    reasons TEXT NOT NULL,
    policy_name TEXT,
    policy_revision TEXT,
    decided_us INTEGER,
    consumed_us INTEGER,
    final_reason TEXT
);
CREATE INDEX IF NOT EXISTS approval_requests_tenant_state
    ON approval_requests (tenant, state, created_us);
CREATE TABLE IF NOT EXISTS approval_votes (
    request_id TEXT NOT NULL REFERENCES approval_requests (id),
    n INTEGER NOT NULL,
    approver TEXT NOT NULL,
    approve INTEGER NOT NULL,
    via TEXT NOT NULL,
    at_us INTEGER NOT NULL,
    roles TEXT NOT NULL,
    reason TEXT,
    PRIMARY KEY (request_id, n)
) WITHOUT ROWID;
"""

MIGRATIONS: tuple[str, ...] = (_V1,)
SCHEMA_VERSION = len(MIGRATIONS)

_SELECT = f"SELECT {', '.join(REQUEST_COLUMNS)} FROM approval_requests"
_VOTES = f"SELECT {', '.join(VOTE_COLUMNS)} FROM approval_votes WHERE request_id = ? ORDER BY n"
_INSERT = (
    f"INSERT INTO approval_requests ({', '.join(REQUEST_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in REQUEST_COLUMNS)}) ON CONFLICT (binding) DO NOTHING"
)
_INSERT_VOTE = (
    f"INSERT INTO approval_votes ({', '.join(VOTE_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in VOTE_COLUMNS)})"
)


def migrate(con: sqlite3.Connection) -> None:
    migrate_sqlite(con, component=COMPONENT, migrations=MIGRATIONS, too_new=schema_too_new)


class SqliteApprovalStore(ApprovalStore):
    def __init__(self, url: str) -> None:
        self.url = url
        self.path = sqlite_path(url)
        self._lock = threading.RLock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._con = sqlite3.connect(
                str(self.path), timeout=30.0, isolation_level=None, check_same_thread=False
            )
            self._con.execute("PRAGMA busy_timeout=30000")
            self._con.execute("PRAGMA journal_mode=WAL")
            self._con.execute("PRAGMA synchronous=FULL")
            migrate(self._con)
        except ApprovalUnavailable:
            raise
        except (sqlite3.Error, OSError) as exc:
            raise ApprovalUnavailable(f"cannot open approval store {self.path}: {exc}") from exc

    # -- helpers -----------------------------------------------------------------

    def _run(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        with self._lock:
            try:
                return fn(self._con)
            except sqlite3.Error as exc:
                raise ApprovalUnavailable(f"approval store {self.path}: {exc}") from exc

    def _tx(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        def work(c: sqlite3.Connection) -> Any:
            c.execute("BEGIN IMMEDIATE")
            try:
                out = fn(c)
                c.execute("COMMIT")
                return out
            except BaseException:
                if c.in_transaction:
                    c.execute("ROLLBACK")
                raise

        return self._run(work)

    @staticmethod
    def _load(c: sqlite3.Connection, where: str, param: str) -> ApprovalRequest | None:
        row = c.execute(f"{_SELECT} WHERE {where} = ?", (param,)).fetchone()
        if row is None:
            return None
        return request_from_rows(row, c.execute(_VOTES, (row[0],)).fetchall())

    # -- ApprovalStore -------------------------------------------------------------

    def insert_or_get(self, request: ApprovalRequest) -> tuple[ApprovalRequest, bool]:
        def work(c: sqlite3.Connection) -> tuple[ApprovalRequest, bool]:
            created = c.execute(_INSERT, request_row(request)).rowcount == 1
            stored = self._load(c, "binding", request.binding)
            if stored is None:  # pragma: no cover - the row was just inserted or existed
                raise ApprovalUnavailable("approval request vanished after insert")
            return stored, created

        out: tuple[ApprovalRequest, bool] = self._tx(work)
        return out

    def get(self, request_id: str) -> ApprovalRequest | None:
        out: ApprovalRequest | None = self._run(lambda c: self._load(c, "id", request_id))
        return out

    def find(self, binding: str) -> ApprovalRequest | None:
        out: ApprovalRequest | None = self._run(lambda c: self._load(c, "binding", binding))
        return out

    def resolve(self, prefix: str) -> list[str]:
        escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        rows = self._run(
            lambda c: c.execute(
                "SELECT id FROM approval_requests WHERE id LIKE ? ESCAPE '\\' LIMIT 2",
                (escaped + "%",),
            ).fetchall()
        )
        return [str(r[0]) for r in rows]

    def list(
        self,
        *,
        tenant: str | None = None,
        states: Sequence[ApprovalState] | None = None,
        limit: int | None = 100,
    ) -> list[ApprovalRequest]:
        where: list[str] = []
        params: list[Any] = []
        if tenant is not None:
            where.append("tenant = ?")
            params.append(tenant)
        if states is not None:
            where.append(f"state IN ({', '.join('?' for _ in states)})")
            params.extend(s.value for s in states)
        sql = _SELECT + (" WHERE " + " AND ".join(where) if where else "")
        sql += " ORDER BY created_us DESC, id DESC LIMIT ?"
        params.append(-1 if limit is None else limit)

        def work(c: sqlite3.Connection) -> list[ApprovalRequest]:
            return [
                request_from_rows(r, c.execute(_VOTES, (r[0],)).fetchall())
                for r in c.execute(sql, params).fetchall()
            ]

        out: list[ApprovalRequest] = self._run(work)
        return out

    def mutate(self, request_id: str, fn: Mutator) -> tuple[ApprovalRequest, Change | None]:
        def work(c: sqlite3.Connection) -> tuple[ApprovalRequest, Change | None]:
            current = self._load(c, "id", request_id)
            if current is None:
                raise ApprovalNotFound(f"no approval request {request_id!r}")
            change = fn(current)
            if change is None:
                return current, None
            sets = apply_change(current, change)
            if sets:
                n = c.execute(
                    f"UPDATE approval_requests SET {', '.join(f'{k} = ?' for k in sets)} "
                    "WHERE id = ? AND state = ? AND consumed_us IS ?",
                    (
                        *sets.values(),
                        request_id,
                        current.state.value,
                        None if current.consumed_at is None else ts_to_us(current.consumed_at),
                    ),
                ).rowcount
                if n != 1:  # pragma: no cover - the write lock makes this impossible
                    raise ApprovalUnavailable(f"approval request {request_id} changed concurrently")
            if change.vote is not None:
                c.execute(_INSERT_VOTE, vote_row(request_id, len(current.votes) + 1, change.vote))
            after = self._load(c, "id", request_id)
            assert after is not None
            return after, change

        out: tuple[ApprovalRequest, Change | None] = self._tx(work)
        return out

    @contextlib.contextmanager
    def watch(self) -> Iterator[Waiter]:
        def wait(seconds: float) -> None:
            if seconds > 0:
                time.sleep(min(seconds, POLL_S))

        yield wait

    def close(self) -> None:
        with self._lock, contextlib.suppress(sqlite3.Error):
            self._con.close()
