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
from collections.abc import Callable, Iterator
from typing import Any

from veto_core.approvals.model import ApprovalUnavailable
from veto_core.approvals.store import SqlApprovalStore, Waiter, schema_too_new
from veto_core.audit.sqlite import sqlite_path
from veto_core.storage import SQLITE, connect_sqlite, migrate_sqlite

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

# v2: one requirement per deciding approval rule (DESIGN.md 2.2) and the canonical
# identities a vote was cast under (DESIGN.md 2.8); args_sealed: the unredacted arguments
# of a pending request, AES-GCM under the tenant's key, shown only to its eligible
# approvers and nulled when it ends; operator: who voted with the local admin key in the
# approver's name (DESIGN.md 2.8).
_V2 = """
ALTER TABLE approval_requests ADD COLUMN requirements TEXT;
ALTER TABLE approval_votes ADD COLUMN identities TEXT;
ALTER TABLE approval_requests ADD COLUMN args_sealed TEXT;
ALTER TABLE approval_votes ADD COLUMN operator TEXT
"""

MIGRATIONS: tuple[str, ...] = (_V1, _V2)
SCHEMA_VERSION = len(MIGRATIONS)


def migrate(con: sqlite3.Connection) -> None:
    migrate_sqlite(con, component=COMPONENT, migrations=MIGRATIONS, too_new=schema_too_new)


class SqliteApprovalStore(SqlApprovalStore):
    dialect = SQLITE

    def __init__(self, url: str) -> None:
        self.url = url
        self.path = sqlite_path(url)
        self._lock = threading.RLock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Erasure overwrites a requester's arguments: zero the freed bytes, don't leave them.
            self._con = connect_sqlite(self.path, secure_delete=True)
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

    def _has_table(self, c: Any, name: str) -> bool:
        row = c.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)
        ).fetchone()
        return row is not None

    @contextlib.contextmanager
    def watch(self) -> Iterator[Waiter]:
        def wait(seconds: float) -> None:
            if seconds > 0:
                time.sleep(min(seconds, POLL_S))

        yield wait

    def close(self) -> None:
        with self._lock, contextlib.suppress(sqlite3.Error):
            self._con.close()
