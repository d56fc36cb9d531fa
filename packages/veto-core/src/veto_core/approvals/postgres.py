"""PostgreSQL approval store (``veto-core[postgres]``): same database and schema as
the audit trail (``postgresql://...[?schema=NAME]``).

Changes lock the request row (``SELECT ... FOR UPDATE``) and end with
``pg_notify('veto_approvals', id)``, delivered at commit: waiters in any process
``LISTEN`` on that channel and re-read the request when woken.
"""

from __future__ import annotations

import contextlib
import threading
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
from veto_core.audit.postgres import _split_url
from veto_core.audit.record import ts_to_us
from veto_core.storage import migrate_postgres

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

MIGRATIONS: tuple[str, ...] = (_V1,)
SCHEMA_VERSION = len(MIGRATIONS)

_SELECT = f"SELECT {', '.join(REQUEST_COLUMNS)} FROM approval_requests"
_VOTES = f"SELECT {', '.join(VOTE_COLUMNS)} FROM approval_votes WHERE request_id = %s ORDER BY n"
_INSERT = (
    f"INSERT INTO approval_requests ({', '.join(REQUEST_COLUMNS)}) "
    f"VALUES ({', '.join('%s' for _ in REQUEST_COLUMNS)}) ON CONFLICT (binding) DO NOTHING"
)
_INSERT_VOTE = (
    f"INSERT INTO approval_votes ({', '.join(VOTE_COLUMNS)}) "
    f"VALUES ({', '.join('%s' for _ in VOTE_COLUMNS)})"
)


def migrate(con: Any) -> None:
    migrate_postgres(con, component=COMPONENT, migrations=MIGRATIONS, too_new=schema_too_new)


class PostgresApprovalStore(ApprovalStore):
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
                boot.execute(
                    sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(self.schema))
                )
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

    def _run(self, fn: Callable[[Any], Any], *, tx: bool = False) -> Any:
        with self._lock:
            try:
                if not tx:
                    return fn(self._con)
                with self._con.transaction():
                    return fn(self._con)
            except psycopg.Error as exc:
                raise ApprovalUnavailable(f"PostgreSQL approval store: {exc}") from exc

    @staticmethod
    def _load(c: Any, where: str, param: str, *, lock: bool = False) -> ApprovalRequest | None:
        row = c.execute(
            f"{_SELECT} WHERE {where} = %s{' FOR UPDATE' if lock else ''}", (param,)
        ).fetchone()
        if row is None:
            return None
        return request_from_rows(row, c.execute(_VOTES, (row[0],)).fetchall())

    def insert_or_get(self, request: ApprovalRequest) -> tuple[ApprovalRequest, bool]:
        def work(c: Any) -> tuple[ApprovalRequest, bool]:
            created = c.execute(_INSERT, request_row(request)).rowcount == 1
            stored = self._load(c, "binding", request.binding)
            if stored is None:  # pragma: no cover
                raise ApprovalUnavailable("approval request vanished after insert")
            return stored, created

        out: tuple[ApprovalRequest, bool] = self._run(work, tx=True)
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
                "SELECT id FROM approval_requests WHERE id LIKE %s LIMIT 2", (escaped + "%",)
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
            where.append("tenant = %s")
            params.append(tenant)
        if states is not None:
            where.append("state = ANY(%s)")
            params.append([s.value for s in states])
        query = _SELECT + (" WHERE " + " AND ".join(where) if where else "")
        query += " ORDER BY created_us DESC, id DESC"
        if limit is not None:
            query += " LIMIT %s"
            params.append(limit)

        def work(c: Any) -> list[ApprovalRequest]:
            return [
                request_from_rows(r, c.execute(_VOTES, (r[0],)).fetchall())
                for r in c.execute(query, params).fetchall()
            ]

        out: list[ApprovalRequest] = self._run(work)
        return out

    def mutate(self, request_id: str, fn: Mutator) -> tuple[ApprovalRequest, Change | None]:
        def work(c: Any) -> tuple[ApprovalRequest, Change | None]:
            current = self._load(c, "id", request_id, lock=True)
            if current is None:
                raise ApprovalNotFound(f"no approval request {request_id!r}")
            change = fn(current)
            if change is None:
                return current, None
            sets = apply_change(current, change)
            if sets:
                n = c.execute(
                    f"UPDATE approval_requests SET {', '.join(f'{k} = %s' for k in sets)} "
                    "WHERE id = %s AND state = %s AND consumed_us IS NOT DISTINCT FROM %s",
                    (
                        *sets.values(),
                        request_id,
                        current.state.value,
                        None if current.consumed_at is None else ts_to_us(current.consumed_at),
                    ),
                ).rowcount
                if n != 1:  # pragma: no cover - the row lock makes this impossible
                    raise ApprovalUnavailable(f"approval request {request_id} changed concurrently")
            if change.vote is not None:
                c.execute(_INSERT_VOTE, vote_row(request_id, len(current.votes) + 1, change.vote))
            c.execute("SELECT pg_notify(%s, %s)", (CHANNEL, request_id))
            after = self._load(c, "id", request_id)
            assert after is not None
            return after, change

        out: tuple[ApprovalRequest, Change | None] = self._run(work, tx=True)
        return out

    @contextlib.contextmanager
    def watch(self) -> Iterator[Waiter]:
        try:
            con = psycopg.connect(self.conninfo, autocommit=True, connect_timeout=10)
            con.execute(sql.SQL("LISTEN {}").format(sql.Identifier(CHANNEL)))
        except psycopg.Error as exc:
            raise ApprovalUnavailable(f"PostgreSQL approval store (LISTEN): {exc}") from exc

        def wait(seconds: float) -> None:
            if seconds <= 0:
                return
            try:
                for _ in con.notifies(timeout=min(seconds, MAX_SLEEP_S), stop_after=1):
                    pass
            except psycopg.Error as exc:
                raise ApprovalUnavailable(f"PostgreSQL approval store (notify): {exc}") from exc

        try:
            yield wait
        finally:
            with contextlib.suppress(Exception):
                con.close()

    def close(self) -> None:
        with self._lock, contextlib.suppress(Exception):
            self._con.close()
