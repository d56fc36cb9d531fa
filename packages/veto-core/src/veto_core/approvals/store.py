"""The storage contract of approval requests, and the row mapping SQL stores share.

A store keeps requests and their votes in the same database as the audit trail.
It knows nothing of quorum or eligibility: the service decides what a change is
(:class:`Change`) inside :meth:`ApprovalStore.mutate`, which runs it under the
request's lock and applies it with a compare-and-set on the state the decision
was made from, so two processes can never both move the same request.
"""

from __future__ import annotations

import abc
import builtins
import contextlib
import functools
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from veto_core.approvals.model import (
    ApprovalNotFound,
    ApprovalRequest,
    ApprovalState,
    ApprovalUnavailable,
    Vote,
)
from veto_core.audit.record import (
    canonical_json,
    principal_from_dict,
    principal_to_dict,
    ts_from_us,
    ts_to_us,
)
from veto_core.model import ApprovalRequirement
from veto_core.storage import Dialect

__all__ = [
    "REQUEST_COLUMNS",
    "ApprovalStore",
    "Change",
    "SqlApprovalStore",
    "open_approval_store",
    "schema_too_new",
]


@dataclass(frozen=True, kw_only=True, slots=True)
class Change:
    """What one locked transaction does to a request (all parts optional)."""

    state: ApprovalState | None = None
    vote: Vote | None = None
    decided_at: datetime | None = None
    consumed_at: datetime | None = None
    final_reason: str | None = None


Mutator = Callable[[ApprovalRequest], Change | None]
Waiter = Callable[[float], None]


class ApprovalStore(abc.ABC):
    """Durable approval requests. Every method raises :class:`ApprovalUnavailable`
    on a storage failure."""

    url: str

    @abc.abstractmethod
    def insert_or_get(
        self, request: ApprovalRequest, *, sealed_args: str | None = None
    ) -> tuple[ApprovalRequest, bool]:
        """Insert ``request`` unless one with the same binding exists (unique
        constraint); return the stored request and whether it was created.
        ``sealed_args``: the encrypted unredacted arguments, kept while it is pending."""

    def sealed_args(self, request_id: str) -> str | None:
        """The encrypted unredacted arguments of a pending request (None once it ended)."""
        raise ApprovalUnavailable("this approval store keeps no arguments for approvers")

    @abc.abstractmethod
    def get(self, request_id: str) -> ApprovalRequest | None: ...

    @abc.abstractmethod
    def find(self, binding: str) -> ApprovalRequest | None: ...

    @abc.abstractmethod
    def resolve(self, fragment: str, limit: int = 10) -> list[str]:
        """Ids starting or ending with ``fragment`` (at most ``limit``), sorted."""

    @abc.abstractmethod
    def list(
        self,
        *,
        tenant: str | None = None,
        states: Sequence[ApprovalState] | None = None,
        limit: int | None = 100,
    ) -> list[ApprovalRequest]:
        """Requests, newest first."""

    @abc.abstractmethod
    def mutate(self, request_id: str, fn: Mutator) -> tuple[ApprovalRequest, Change | None]:
        """Lock the request, call ``fn`` on its current value, apply the change it
        returns (compare-and-set on the state and consumption it saw), commit and
        wake waiters. Returns the request after the change and the change.
        Exceptions raised by ``fn`` roll back and propagate."""

    @abc.abstractmethod
    def watch(self) -> contextlib.AbstractContextManager[Waiter]:
        """A context whose value, called with ``seconds``, blocks until some request
        may have changed (or the time is up). Spurious wake-ups are allowed."""

    @abc.abstractmethod
    def close(self) -> None: ...


def schema_too_new(current: int, supported: int) -> ApprovalUnavailable:
    """The refusal of a database whose ``approvals`` schema is newer than this code."""
    return ApprovalUnavailable(
        f"approval schema version {current} is newer than this veto-core supports "
        f"({supported}); upgrade veto-core to open it"
    )


def open_approval_store(url: str | None = None) -> ApprovalStore:
    """The approval store in the audit database at ``url`` (``None``: ``$VETO_DB``
    or ``~/.veto/veto.db``): SQLite or PostgreSQL."""
    from veto_core.audit.sink import SinkConfig, default_audit_url

    config = SinkConfig.parse(url if url else default_audit_url())
    try:
        if config.scheme == "sqlite":
            from veto_core.approvals.sqlite import SqliteApprovalStore

            return SqliteApprovalStore(config.url)
        if config.scheme == "postgresql":
            from veto_core.approvals.postgres import PostgresApprovalStore

            return PostgresApprovalStore(config.url)
    except ApprovalUnavailable:
        raise
    except Exception as exc:
        raise ApprovalUnavailable(f"cannot open approval store {config.url!r}: {exc}") from exc
    raise ApprovalUnavailable(
        f"approvals need a sqlite or postgresql store, not {config.scheme!r} ({config.url})"
    )


# --------------------------------------------------------------------------- row mapping

REQUEST_COLUMNS: tuple[str, ...] = (
    "id",
    "binding",
    "tenant",
    "run_id",
    "tool_call_id",
    "tool",
    "args_digest",
    "state",
    "created_us",
    "expires_us",
    "env",
    "principal",
    "requester",
    "args",
    "approvers",
    "quorum",
    "channels",
    "rule_ids",
    "reasons",
    "policy_name",
    "policy_revision",
    "decided_us",
    "consumed_us",
    "final_reason",
    "requirements",
)
VOTE_COLUMNS: tuple[str, ...] = (
    "request_id",
    "n",
    "approver",
    "approve",
    "via",
    "at_us",
    "roles",
    "reason",
    "operator",
    "identities",
)


def _dumps(value: Any) -> str:
    return canonical_json(value).decode("utf-8")


def _us(ts: datetime | None) -> int | None:
    return None if ts is None else ts_to_us(ts)


def _ts(us: Any) -> datetime | None:
    return None if us is None else ts_from_us(int(us))


def request_row(r: ApprovalRequest) -> tuple[Any, ...]:
    return (
        r.id,
        r.binding,
        r.tenant,
        r.run_id,
        r.tool_call_id,
        r.tool,
        r.args_digest,
        r.state.value,
        ts_to_us(r.created_at),
        ts_to_us(r.expires_at),
        r.env,
        _dumps(principal_to_dict(r.principal)),
        r.principal.user,
        None if r.args is None else _dumps(r.args),
        _dumps(list(r.approvers)),
        r.quorum,
        _dumps(list(r.channels)),
        _dumps(list(r.rule_ids)),
        _dumps(list(r.reasons)),
        r.policy_name,
        r.policy_revision,
        _us(r.decided_at),
        _us(r.consumed_at),
        r.final_reason,
        _dumps([q.to_dict() for q in r.requirements]),
    )


def vote_row(request_id: str, n: int, v: Vote) -> tuple[Any, ...]:
    return (
        request_id,
        n,
        v.approver,
        1 if v.approve else 0,
        v.via,
        ts_to_us(v.at),
        _dumps(list(v.roles)),
        v.reason,
        v.operator,
        _dumps(list(v.identities)),
    )


def _requirements(d: dict[str, Any]) -> tuple[ApprovalRequirement, ...]:
    """The stored requirements; a request written before they existed (schema v1)
    is one requirement: its approvers and quorum (an empty list admits nobody)."""
    if d["requirements"] is not None:
        return tuple(
            ApprovalRequirement(
                rule_id=str(q["rule_id"]),
                approvers=tuple(q["approvers"]),
                quorum=int(q["quorum"]),
            )
            for q in json.loads(d["requirements"])
        )
    rule_ids = json.loads(d["rule_ids"])
    return (
        ApprovalRequirement(
            rule_id=",".join(rule_ids) or "policy",
            approvers=tuple(json.loads(d["approvers"])),
            quorum=int(d["quorum"]),
        ),
    )


def request_from_rows(row: Sequence[Any], votes: Sequence[Sequence[Any]]) -> ApprovalRequest:
    d = dict(zip(REQUEST_COLUMNS, row, strict=True))
    created, expires = _ts(d["created_us"]), _ts(d["expires_us"])
    assert created is not None and expires is not None
    return ApprovalRequest(
        id=d["id"],
        tenant=d["tenant"],
        run_id=d["run_id"],
        tool_call_id=d["tool_call_id"],
        tool=d["tool"],
        args_digest=d["args_digest"],
        state=ApprovalState(d["state"]),
        created_at=created,
        expires_at=expires,
        env=d["env"],
        principal=principal_from_dict(json.loads(d["principal"])),
        args=None if d["args"] is None else json.loads(d["args"]),
        requirements=_requirements(d),
        channels=tuple(json.loads(d["channels"])),
        rule_ids=tuple(json.loads(d["rule_ids"])),
        reasons=tuple(json.loads(d["reasons"])),
        policy_name=d["policy_name"],
        policy_revision=d["policy_revision"],
        votes=tuple(
            Vote(
                approver=v[2],
                approve=bool(v[3]),
                via=v[4],
                at=ts_from_us(int(v[5])),
                roles=tuple(json.loads(v[6])),
                reason=v[7],
                operator=v[8],
                identities=tuple(json.loads(v[9])) if v[9] is not None else (),
            )
            for v in votes
        ),
        decided_at=_ts(d["decided_us"]),
        consumed_at=_ts(d["consumed_us"]),
        final_reason=d["final_reason"],
    )


def apply_change(r: ApprovalRequest, c: Change) -> dict[str, Any]:
    """The column updates a change makes."""
    out: dict[str, Any] = {}
    if c.state is not None:
        out["state"] = c.state.value
    if c.decided_at is not None:
        out["decided_us"] = ts_to_us(c.decided_at)
    if c.consumed_at is not None:
        out["consumed_us"] = ts_to_us(c.consumed_at)
    if c.final_reason is not None:
        out["final_reason"] = c.final_reason
    return out


# --------------------------------------------------------------------------- SQL stores


@dataclass(frozen=True, slots=True)
class _Statements:
    select: str
    votes: str
    insert: str
    insert_vote: str


@functools.cache
def _statements(d: Dialect) -> _Statements:
    return _Statements(
        select=f"SELECT {', '.join(REQUEST_COLUMNS)} FROM approval_requests",
        votes=(
            f"SELECT {', '.join(VOTE_COLUMNS)} FROM approval_votes "
            f"WHERE request_id = {d.placeholder} ORDER BY n"
        ),
        insert=(
            f"INSERT INTO approval_requests ({', '.join(REQUEST_COLUMNS)}) "
            f"VALUES ({d.params(len(REQUEST_COLUMNS))}) ON CONFLICT (binding) DO NOTHING"
        ),
        insert_vote=(
            f"INSERT INTO approval_votes ({', '.join(VOTE_COLUMNS)}) "
            f"VALUES ({d.params(len(VOTE_COLUMNS))})"
        ),
    )


class SqlApprovalStore(ApprovalStore):
    """The queries of the SQLite and PostgreSQL stores, written once per dialect.

    A subclass supplies the connection handling, and with it the locking:
    :meth:`_tx` runs a write transaction that serializes changes to a request
    (SQLite: the database write lock; PostgreSQL: the row lock ``_row_lock`` that
    :meth:`mutate` takes on the request), and :meth:`_changed` wakes waiters.
    """

    dialect: Dialect
    _row_lock = ""  # appended to the SELECT that reads the request mutate() changes

    @abc.abstractmethod
    def _run(self, fn: Callable[[Any], Any]) -> Any:
        """``fn(connection)`` outside a transaction; storage errors → ApprovalUnavailable."""

    @abc.abstractmethod
    def _tx(self, fn: Callable[[Any], Any]) -> Any:
        """``fn(connection)`` in one write transaction; storage errors → ApprovalUnavailable."""

    def _changed(self, c: Any, request_id: str) -> None:
        """Called inside mutate()'s transaction after a change was written."""

    def _load(
        self, c: Any, where: str, param: str, *, lock: bool = False
    ) -> ApprovalRequest | None:
        st = _statements(self.dialect)
        row = c.execute(
            f"{st.select} WHERE {where} = {self.dialect.placeholder}"
            f"{self._row_lock if lock else ''}",
            (param,),
        ).fetchone()
        if row is None:
            return None
        return request_from_rows(row, c.execute(st.votes, (row[0],)).fetchall())

    def insert_or_get(
        self, request: ApprovalRequest, *, sealed_args: str | None = None
    ) -> tuple[ApprovalRequest, bool]:
        p = self.dialect.placeholder

        def work(c: Any) -> tuple[ApprovalRequest, bool]:
            created = (
                c.execute(_statements(self.dialect).insert, request_row(request)).rowcount == 1
            )
            if created and sealed_args is not None:
                c.execute(
                    f"UPDATE approval_requests SET args_sealed = {p} WHERE id = {p}",
                    (sealed_args, request.id),
                )
            stored = self._load(c, "binding", request.binding)
            if stored is None:  # pragma: no cover - the row was just inserted or existed
                raise ApprovalUnavailable("approval request vanished after insert")
            return stored, created

        out: tuple[ApprovalRequest, bool] = self._tx(work)
        return out

    def sealed_args(self, request_id: str) -> str | None:
        p = self.dialect.placeholder
        row = self._run(
            lambda c: c.execute(
                f"SELECT args_sealed, state FROM approval_requests WHERE id = {p}", (request_id,)
            ).fetchone()
        )
        if row is None or row[0] is None or row[1] != ApprovalState.PENDING.value:
            return None
        return str(row[0])

    def get(self, request_id: str) -> ApprovalRequest | None:
        out: ApprovalRequest | None = self._run(lambda c: self._load(c, "id", request_id))
        return out

    def find(self, binding: str) -> ApprovalRequest | None:
        out: ApprovalRequest | None = self._run(lambda c: self._load(c, "binding", binding))
        return out

    def resolve(self, fragment: str, limit: int = 10) -> list[str]:
        escaped = fragment.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        d = self.dialect
        like = f"id LIKE {d.placeholder}{d.like_escape}"
        rows = self._run(
            lambda c: c.execute(
                f"SELECT id FROM approval_requests WHERE {like} OR {like} ORDER BY id LIMIT {int(limit)}",
                (escaped + "%", "%" + escaped),
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
        d, st = self.dialect, _statements(self.dialect)
        where: list[str] = []
        params: list[Any] = []
        if tenant is not None:
            where.append(f"tenant = {d.placeholder}")
            params.append(tenant)
        if states is not None:
            clause, values = d.in_values("state", [s.value for s in states])
            where.append(clause)
            params.extend(values)
        query = st.select + (" WHERE " + " AND ".join(where) if where else "")
        page, page_params = d.limit_offset(limit)
        query += " ORDER BY created_us DESC, id DESC" + page
        params.extend(page_params)

        def work(c: Any) -> list[ApprovalRequest]:
            return [
                request_from_rows(r, c.execute(st.votes, (r[0],)).fetchall())
                for r in c.execute(query, params).fetchall()
            ]

        out: list[ApprovalRequest] = self._run(work)
        return out

    def _has_table(self, c: Any, name: str) -> bool:
        """Whether table ``name`` exists (the server's tables are optional)."""
        raise NotImplementedError

    def user_aliases(self) -> builtins.list[tuple[str, str | None]]:
        """``(user id, e-mail)`` of every ``veto users`` user in this database (none when
        the server was never set up): the aliases one person is known by (DESIGN.md 2.8)."""

        def work(c: Any) -> builtins.list[tuple[str, str | None]]:
            if not self._has_table(c, "server_users"):
                return []
            rows = c.execute("SELECT username, email FROM server_users").fetchall()
            return [(str(u), None if e is None else str(e)) for u, e in rows]

        out: builtins.list[tuple[str, str | None]] = self._run(work)
        return out

    def erase_user(
        self, user: str, *, tenant: str | None = None, aliases: Iterable[str] = ()
    ) -> int:
        """GDPR erasure of a requester: null the arguments shown to approvers and drop the
        user id from the stored principal of every request ``user`` made, under any
        spelling of their identity or of ``aliases`` (DESIGN.md 2.8; the match is
        :func:`~veto_core.audit.log.subject_matcher`). The binding keeps only the keyed
        ``args_digest``, so no call can be released by this."""
        from veto_core.audit.log import subject_matcher

        matches = subject_matcher(user, aliases)
        p = self.dialect.placeholder
        where = "requester IS NOT NULL" + (f" AND tenant = {p}" if tenant is not None else "")
        params: tuple[Any, ...] = () if tenant is None else (tenant,)

        def work(c: Any) -> int:
            rows = [
                (request_id, principal)
                for request_id, requester, principal in c.execute(
                    f"SELECT id, requester, principal FROM approval_requests WHERE {where}",
                    params,
                ).fetchall()
                if matches(str(requester))
            ]
            for request_id, principal in rows:
                kept = {k: v for k, v in json.loads(principal).items() if k != "user"}
                c.execute(
                    "UPDATE approval_requests SET args = NULL, args_sealed = NULL, "
                    f"requester = NULL, principal = {p} WHERE id = {p}",
                    (_dumps(kept), request_id),
                )
            return len(rows)

        out: int = self._tx(work)
        return out

    def mutate(self, request_id: str, fn: Mutator) -> tuple[ApprovalRequest, Change | None]:
        d = self.dialect
        p = d.placeholder

        def work(c: Any) -> tuple[ApprovalRequest, Change | None]:
            current = self._load(c, "id", request_id, lock=True)
            if current is None:
                raise ApprovalNotFound(f"no approval request {request_id!r}")
            change = fn(current)
            if change is None:
                return current, None
            sets = apply_change(current, change)
            if (change.state is not None and change.state.final) or change.consumed_at is not None:
                # The request ended: the arguments kept for its approvers go (item 3, #16).
                sets["args_sealed"] = None
            if sets:
                n = c.execute(
                    f"UPDATE approval_requests SET {', '.join(f'{k} = {p}' for k in sets)} "
                    f"WHERE id = {p} AND state = {p} AND consumed_us {d.null_safe_eq} {p}",
                    (
                        *sets.values(),
                        request_id,
                        current.state.value,
                        None if current.consumed_at is None else ts_to_us(current.consumed_at),
                    ),
                ).rowcount
                if n != 1:  # pragma: no cover - the transaction's lock makes this impossible
                    raise ApprovalUnavailable(f"approval request {request_id} changed concurrently")
            if change.vote is not None:
                c.execute(
                    _statements(d).insert_vote,
                    vote_row(request_id, len(current.votes) + 1, change.vote),
                )
            self._changed(c, request_id)
            after = self._load(c, "id", request_id)
            assert after is not None
            return after, change

        out: tuple[ApprovalRequest, Change | None] = self._tx(work)
        return out
