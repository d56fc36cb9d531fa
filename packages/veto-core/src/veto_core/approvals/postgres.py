"""PostgreSQL approval store (``veto-core[postgres]``): same database and schema as
the audit trail (``postgresql://...[?schema=NAME]``).

Changes lock the request row (``SELECT ... FOR UPDATE``) and end with
``pg_notify('veto_approvals', id)``, delivered at commit: waiters in any process
``LISTEN`` on that channel and re-read the request when woken.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any

from veto_core.approvals.model import ApprovalUnavailable
from veto_core.approvals.store import SqlApprovalStore, Waiter, schema_too_new
from veto_core.audit.postgres import _split_url
from veto_core.storage import POSTGRES, create_postgres_schema, migrate_postgres

try:
    import psycopg
    from psycopg import sql
except ImportError:  # pragma: no cover - exercised only without the extra
    psycopg = None  # type: ignore[assignment]

__all__ = ["CHANNEL", "SCHEMA_VERSION", "PostgresApprovalStore"]

COMPONENT = "approvals"
CHANNEL = "veto_approvals"
MAX_SLEEP_S = 1.0  # re-read at least this often even if a notification were lost

_V1 = """
CREATE TABLE IF NOT EXISTS approval_requests (
    id TEXT PRIMARY KEY, binding TEXT NOT NULL UNIQUE, tenant TEXT NOT NULL, run_id TEXT,
    tool_call_id TEXT, tool TEXT NOT NULL, args_digest TEXT NOT NULL, state TEXT NOT NULL,
    created_us BIGINT NOT NULL, expires_us BIGINT NOT NULL, env TEXT, principal TEXT NOT NULL,
    requester TEXT, args TEXT, approvers TEXT NOT NULL, quorum INTEGER NOT NULL,
    channels TEXT NOT NULL, rule_ids TEXT NOT NULL, reasons TEXT NOT NULL, policy_name TEXT,
    policy_revision TEXT, decided_us BIGINT, consumed_us BIGINT, final_reason TEXT);
CREATE INDEX IF NOT EXISTS approval_requests_tenant_state
    ON approval_requests (tenant, state, created_us);
CREATE TABLE IF NOT EXISTS approval_votes (
    request_id TEXT NOT NULL REFERENCES approval_requests (id), n INTEGER NOT NULL,
    approver TEXT NOT NULL, approve INTEGER NOT NULL, via TEXT NOT NULL, at_us BIGINT NOT NULL,
    roles TEXT NOT NULL, reason TEXT, PRIMARY KEY (request_id, n))
"""

# v2: one requirement per deciding approval rule (DESIGN.md 2.2) and the canonical
# identities a vote was cast under (DESIGN.md 2.8); args_sealed: the unredacted arguments
# of a pending request, AES-GCM under the tenant's key, shown only to its eligible
# approvers and nulled when it ends; operator: who voted with the local admin key in the
# approver's name (DESIGN.md 2.8).
_V2 = """
ALTER TABLE approval_requests ADD COLUMN IF NOT EXISTS requirements TEXT;
ALTER TABLE approval_votes ADD COLUMN IF NOT EXISTS identities TEXT;
ALTER TABLE approval_requests ADD COLUMN IF NOT EXISTS args_sealed TEXT;
ALTER TABLE approval_votes ADD COLUMN IF NOT EXISTS operator TEXT
"""

MIGRATIONS: tuple[str, ...] = (_V1, _V2)
SCHEMA_VERSION = len(MIGRATIONS)


def migrate(con: Any) -> None:
    migrate_postgres(con, component=COMPONENT, migrations=MIGRATIONS, too_new=schema_too_new)


class PostgresApprovalStore(SqlApprovalStore):
    dialect = POSTGRES
    _row_lock = " FOR UPDATE"  # lock the request row: changes to it are serialized

    def __init__(self, url: str) -> None:
        if psycopg is None:
            raise ApprovalUnavailable(
                "PostgreSQL approval store needs psycopg: pip install 'veto-core[postgres]'"
            )
        self.url = url
        self.conninfo, self.schema = _split_url(url)
        self._lock = threading.RLock()
        try:
            boot = psycopg.connect(self.conninfo, autocommit=True, connect_timeout=10)
            try:
                create_postgres_schema(boot, self.schema)
            finally:
                boot.close()
            self._con = self._connect()
            migrate(self._con)
        except ApprovalUnavailable:
            raise
        except psycopg.Error as exc:
            raise ApprovalUnavailable(f"cannot open PostgreSQL approval store: {exc}") from exc

    def _connect(self) -> Any:
        con = psycopg.connect(self.conninfo, autocommit=True, connect_timeout=10)
        con.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(self.schema)))
        con.execute("SET synchronous_commit TO on")
        return con

    def _live(self) -> tuple[Any, bool]:
        """The store's connection and whether it is new: one the server dropped (a
        restart) is replaced, so the process never needs a restart to recover."""
        con = self._con
        if not (con.closed or con.broken):
            return con, False
        with contextlib.suppress(Exception):
            con.close()
        self._con = self._connect()
        return self._con, True

    def _run(self, fn: Callable[[Any], Any], *, tx: bool = False) -> Any:
        """``fn`` on the connection (``tx``: in one transaction). Run a second time on
        a fresh connection only when that is provably safe: the old connection turned
        out to be dead before ``fn``'s first statement of a transaction (its ``BEGIN``
        failed), or ``fn`` only reads (``tx=False``). A failure once a transaction has
        started is never repeated: its change may have been applied (a lost reply)."""
        with self._lock:
            for attempt in (1, 2):
                fresh, began = True, False
                try:
                    con, fresh = self._live()
                    if not tx:
                        return fn(con)
                    with con.transaction():
                        began = True
                        return fn(con)
                except psycopg.Error as exc:
                    dropped = self._con.closed or self._con.broken
                    if attempt == 1 and dropped and not fresh and not began:
                        continue
                    raise ApprovalUnavailable(f"PostgreSQL approval store: {exc}") from exc
            raise AssertionError("unreachable")

    def _tx(self, fn: Callable[[Any], Any]) -> Any:
        return self._run(fn, tx=True)

    def _has_table(self, c: Any, name: str) -> bool:
        return c.execute("SELECT to_regclass(%s)", (name,)).fetchone()[0] is not None

    def _changed(self, c: Any, request_id: str) -> None:
        c.execute("SELECT pg_notify(%s, %s)", (CHANNEL, request_id))  # delivered at commit

    def _listen(self) -> Any:
        try:
            con = psycopg.connect(self.conninfo, autocommit=True, connect_timeout=10)
            con.execute(sql.SQL("LISTEN {}").format(sql.Identifier(CHANNEL)))
        except psycopg.Error as exc:
            raise ApprovalUnavailable(f"PostgreSQL approval store (LISTEN): {exc}") from exc
        return con

    @contextlib.contextmanager
    def watch(self) -> Iterator[Waiter]:
        listener = [self._listen()]

        def wait(seconds: float) -> None:
            """Block until notified or ``seconds`` pass. A LISTEN session the server
            dropped is replaced at once (a notification missed meanwhile costs nothing:
            the caller re-reads the request after every wake-up); when the server cannot
            be reached this raises, so a waiter fails closed instead of sleeping on."""
            if seconds <= 0:
                return
            con = listener[0]
            try:
                for _ in con.notifies(timeout=min(seconds, MAX_SLEEP_S), stop_after=1):
                    pass
                return
            except psycopg.Error as exc:
                if not (con.closed or con.broken):
                    raise ApprovalUnavailable(f"PostgreSQL approval store (notify): {exc}") from exc
            with contextlib.suppress(Exception):
                con.close()
            listener[0] = self._listen()  # a spurious wake-up: the caller re-reads

        try:
            yield wait
        finally:
            with contextlib.suppress(Exception):
                listener[0].close()

    def close(self) -> None:
        with self._lock, contextlib.suppress(Exception):
            self._con.close()
