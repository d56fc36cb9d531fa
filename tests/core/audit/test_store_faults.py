"""Fault injection for the stores beside the audit sink: the PostgreSQL approval store
(and its LISTEN/NOTIFY waiter) and the PostgreSQL limit store, restarted under a
running ``Veto`` (a loopback proxy drops every connection, then lets them through).

The story is the audit sink's (test_audit_faults.py): while the store is down a call
that needs it is denied with a reason that says so (the tool would not run) and a
waiter fails closed; nothing is recorded, voted or counted twice; service resumes
when the store returns, without restarting the process; the chain verifies after.
Failures inside a transaction are never retried (a repeat could apply it twice); a
connection the server dropped while idle is replaced before the next call uses it.
"""

from __future__ import annotations

import os
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from audit_helpers import NumberedCalls
from tcp_proxy import TcpProxy

from veto_core import Effect, Veto
from veto_core.approvals import ApprovalState, ApprovalUnavailable
from veto_core.approvals.postgres import PostgresApprovalStore
from veto_core.approvals.store import Change
from veto_core.limits import LimitStoreUnavailable, PostgresLimitStore, RedisLimitStore
from veto_core.model import Authorization

POLICY = """
version: 1
name: store-faults
rules:
  - {id: reads, effect: allow, tools: [read]}
  - id: payouts
    effect: require_approval
    tools: [payout]
    approval: {approvers: [alice], timeout: 10m}
  - {id: refunds, effect: allow, tools: [refund]}
limits:
  - {id: budget, tools: [refund], per: [tenant], window: 24h, count: true, max: 1000}
"""


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("VETO_DISABLE_PLUGINS", "1")
    for name in ("VETO_CONFIG", "VETO_AUDIT_WITNESS", "VETO_DB", "VETO_LIMITS_URL"):
        monkeypatch.delenv(name, raising=False)


def _via(url: str, proxy: TcpProxy) -> str:
    return url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")


def _tagged(url: str) -> tuple[str, str]:
    """``url`` with an application name of its own, so a test can end exactly the
    server sessions it opened (other test runs share the server)."""
    name = f"veto-fault-{secrets.token_hex(4)}"
    return f"{url}&application_name={name}", name


def _terminate(pg_url: str, application_name: str) -> int:
    """What a server restart does to idle sessions: end them (ours only)."""
    admin_url = pg_url.split("?", 1)[0]
    with psycopg.connect(admin_url, autocommit=True) as admin:
        rows = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
            (application_name,),
        ).fetchall()
    time.sleep(0.2)  # the sessions are gone once the server has processed the signal
    return len(rows)


def make(tmp_path: Path, db: str, **kw: Any) -> Veto:
    policy = tmp_path / "p.yaml"
    policy.write_text(POLICY)
    return Veto.from_file(policy, env="prod", tenant="acme", db=db, **kw)


def _approve_and_release(veto: Veto, auth: Authorization) -> None:
    assert auth.decision.effect is Effect.REQUIRE_APPROVAL, auth.decision.reasons
    assert auth.approval is not None and auth.record_id is not None
    veto.approvals.decide(auth.approval.id, approver="alice", approve=True, via="console")
    released = veto.wait_for_approval(auth, timeout=5)
    assert released.released and released.run_tool, released.approval_error


def _no_double_records(veto: Veto) -> None:
    """One decision record per call, one event record per approval state change, and
    the chain verifies."""
    records = list(veto.audit.iter_records(tenant="acme"))
    seen = Counter((r.tool_call_id, r.outcome, r.reasons) for r in records)
    assert [k for k, n in seen.items() if n > 1] == [], "something was recorded twice"
    report = veto.audit.verify()
    assert report.ok, report.to_dict()


# --------------------------------------------------------------------------- approvals


def test_postgres_approval_store_restarted_mid_run(pg_url: str, tmp_path: Path) -> None:
    with TcpProxy(5432) as proxy:
        veto = make(tmp_path, _via(pg_url, proxy))
        try:
            payouts = NumberedCalls(veto, "payout")
            for _ in range(2):
                _approve_and_release(veto, payouts.call())
            waiting = payouts.call()  # pending across the outage
            assert waiting.approval is not None

            proxy.down()
            for _ in range(3):
                auth = payouts.call()
                assert auth.decision.effect is Effect.DENY and not auth.run_tool
                assert any("approval unavailable" in r for r in auth.decision.reasons), (
                    auth.decision.reasons
                )
            # A waiter fails closed, at once (not at its timeout), and so does a vote.
            t0 = time.monotonic()
            with pytest.raises(ApprovalUnavailable):
                veto.approvals.wait(waiting.approval.id, timeout=20)
            assert time.monotonic() - t0 < 5
            blocked = veto.wait_for_approval(waiting, timeout=20)
            assert not blocked.run_tool and blocked.approval_error
            with pytest.raises(ApprovalUnavailable):
                veto.approvals.decide(
                    waiting.approval.id, approver="alice", approve=True, via="console"
                )

            proxy.up()
            for _ in range(2):
                _approve_and_release(veto, payouts.call())
            _approve_and_release(veto, waiting)  # the request survived the outage
            assert not veto.approvals.consume(waiting.approval.id)  # released once only

            requests = veto.approvals.list(tenant="acme", limit=None)
            assert Counter(r.tool_call_id for r in requests) == Counter(
                {f"payout-{n}": 1 for n in (0, 1, 2, 6, 7)}
            )
            for r in requests:
                assert r.state is ApprovalState.APPROVED and r.consumed_at is not None
                assert [v.approver for v in r.votes] == ["alice"], "a vote counted twice"
            _no_double_records(veto)
        finally:
            veto.close()


def test_postgres_approval_waiter_fails_closed_then_wakes_again(
    pg_url: str, tmp_path: Path
) -> None:
    """A waiter blocked on LISTEN when the server goes away fails closed promptly; once
    the server is back, a new waiter is woken by a vote cast from another process."""
    with TcpProxy(5432) as proxy:
        veto = make(tmp_path, _via(pg_url, proxy))
        other = make(tmp_path, pg_url)  # another process, straight to the server
        try:
            payouts = NumberedCalls(veto, "payout")
            first = payouts.call()
            assert first.approval is not None
            outcome: list[object] = []

            def waiter(request_id: str) -> None:
                try:
                    outcome.append(veto.approvals.wait(request_id, timeout=30))
                except Exception as exc:
                    outcome.append(exc)

            t = threading.Thread(target=waiter, args=(first.approval.id,))
            t.start()
            time.sleep(0.5)  # blocked in LISTEN
            t0 = time.monotonic()
            proxy.down()
            t.join(timeout=10)
            assert not t.is_alive()
            assert time.monotonic() - t0 < 5
            assert len(outcome) == 1 and isinstance(outcome[0], ApprovalUnavailable), outcome

            proxy.up()
            outcome.clear()
            t = threading.Thread(target=waiter, args=(first.approval.id,))
            t.start()
            time.sleep(0.5)
            other.approvals.decide(first.approval.id, approver="alice", approve=True, via="console")
            t.join(timeout=10)
            assert outcome == [ApprovalState.APPROVED]
            assert veto.approvals.consume(first.approval.id)
            _no_double_records(veto)
        finally:
            other.close()
            veto.close()


def test_postgres_approval_waiter_rides_out_a_restart_between_reads(
    pg_url: str, tmp_path: Path
) -> None:
    """Sessions ended while the server stays reachable (a fast restart): the waiter's
    LISTEN connection is replaced and it still sees the decision."""
    url, name = _tagged(pg_url)
    veto = make(tmp_path, url)
    other = make(tmp_path, pg_url)
    try:
        first = NumberedCalls(veto, "payout").call()
        assert first.approval is not None
        outcome: list[object] = []

        def waiter() -> None:
            assert first.approval is not None
            try:
                outcome.append(veto.approvals.wait(first.approval.id, timeout=30))
            except Exception as exc:
                outcome.append(exc)

        t = threading.Thread(target=waiter)
        t.start()
        time.sleep(0.5)
        assert _terminate(pg_url, name) >= 2  # the store's session and the waiter's
        other.approvals.decide(first.approval.id, approver="alice", approve=True, via="console")
        t.join(timeout=10)
        assert outcome == [ApprovalState.APPROVED]
    finally:
        other.close()
        veto.close()


@pytest.fixture
def pg_store(pg_url: str) -> Iterator[tuple[PostgresApprovalStore, str, Veto]]:
    url, name = _tagged(pg_url)
    veto = Veto.from_yaml(POLICY, env="prod", tenant="acme", db=url)
    try:
        store = veto.approvals.store
        assert isinstance(store, PostgresApprovalStore)
        yield store, name, veto
    finally:
        veto.close()


def _pending(veto: Veto) -> str:
    auth = NumberedCalls(veto, "payout").call()
    assert auth.approval is not None
    return auth.approval.id


def test_a_session_ended_while_idle_costs_no_call(
    pg_store: tuple[PostgresApprovalStore, str, Veto], pg_url: str
) -> None:
    """The failure comes before the transaction's first statement, so nothing can have
    been applied: the store reconnects and runs it, instead of failing a call."""
    store, name, veto = pg_store
    request_id = _pending(veto)
    _terminate(pg_url, name)
    assert store.get(request_id) is not None  # a read
    _terminate(pg_url, name)
    veto.approvals.decide(request_id, approver="alice", approve=True, via="console")  # a write
    _terminate(pg_url, name)
    assert veto.approvals.consume(request_id)
    assert not veto.approvals.consume(request_id)


def test_a_failure_inside_the_transaction_is_not_retried(
    pg_store: tuple[PostgresApprovalStore, str, Veto], pg_url: str
) -> None:
    store, name, veto = pg_store
    request_id = _pending(veto)
    calls: list[str] = []

    def change(_current: Any) -> Change:
        calls.append("called")
        _terminate(pg_url, name)  # the server goes away mid-transaction
        return Change(state=ApprovalState.CANCELLED, final_reason="test")

    with pytest.raises(ApprovalUnavailable):
        store.mutate(request_id, change)
    assert calls == ["called"], "the transaction was run again after it had started"
    after = store.get(request_id)  # and the store is usable again, no restart
    assert after is not None and after.state is ApprovalState.PENDING


# --------------------------------------------------------------------------- limits


def _count_events(pg_url: str, key: str) -> int:
    admin_url, query = pg_url.split("?", 1)
    schema = dict(p.split("=", 1) for p in query.split("&"))["schema"]
    with psycopg.connect(admin_url, autocommit=True) as con:
        row = con.execute(
            psycopg.sql.SQL("SELECT count(*) FROM {} WHERE key = %s").format(
                psycopg.sql.Identifier(schema, "veto_limit_events")
            ),
            (key,),
        ).fetchone()
    assert row is not None
    return int(row[0])


def _fault(
    calls: NumberedCalls,
    *,
    break_it: Callable[[], None],
    fix_it: Callable[[], None],
    reason: str,
) -> None:
    for _ in range(3):
        assert calls.call().run_tool
    break_it()
    for _ in range(3):
        auth = calls.call()
        assert auth.decision.effect is Effect.DENY and not auth.run_tool
        assert any(reason in r for r in auth.decision.reasons), auth.decision.reasons
        assert auth.record_id is not None  # the deny itself is recorded (the audit is up)
    fix_it()
    for _ in range(3):
        auth = calls.call()
        assert auth.run_tool and auth.record_id, auth.decision.reasons


def test_postgres_limit_store_restarted_mid_run(pg_url: str, tmp_path: Path) -> None:
    with TcpProxy(5432) as proxy:
        veto = make(tmp_path, f"sqlite:///{tmp_path / 'veto.db'}", limits_url=_via(pg_url, proxy))
        try:
            refunds = NumberedCalls(veto, "refund")
            _fault(refunds, break_it=proxy.down, fix_it=proxy.up, reason="cannot be counted")
            allowed = sum(a.decision.effect is Effect.ALLOW for a in refunds.results)
            assert allowed == 6
            assert _count_events(pg_url, 'budget|"acme"') == allowed  # counted once each
            _no_double_records(veto)
        finally:
            veto.close()


def test_postgres_limit_store_session_ended_while_idle(pg_url: str) -> None:
    url, name = _tagged(pg_url)
    store = PostgresLimitStore(url)
    try:
        assert store.try_spend("k", 1, 10, 60).ok
        _terminate(pg_url, name)
        assert store.try_spend("k", 1, 10, 60).ok  # reconnected, nothing lost
        _terminate(pg_url, name)
        assert store.total("k", 60) == 2
        _terminate(pg_url, name)
        spend = store.try_spend("k", 1, 10, 60)
        assert spend.ok and spend.token is not None
        _terminate(pg_url, name)
        store.refund("k", spend.token)
        assert store.total("k", 60) == 2
        assert _count_events(pg_url, "k") == 2
    finally:
        store.close()


def test_postgres_limit_store_down_fails_closed(pg_url: str) -> None:
    with TcpProxy(5432) as proxy:
        store = PostgresLimitStore(_via(pg_url, proxy))
        try:
            assert store.try_spend("k", 1, 10, 60).ok
            proxy.down()
            with pytest.raises(LimitStoreUnavailable):
                store.try_spend("k", 1, 10, 60)
            with pytest.raises(LimitStoreUnavailable):
                store.total("k", 60)
            proxy.up()
            assert store.try_spend("k", 1, 10, 60).ok
            assert store.total("k", 60) == 2
        finally:
            store.close()


# --------------------------------------------------------------------------- Redis


@pytest.fixture
def redis_up() -> Iterator[Any]:
    if os.environ.get("VETO_SKIP_REDIS") == "1":
        pytest.skip("VETO_SKIP_REDIS=1")
    import redis

    client = redis.Redis(host="127.0.0.1", port=6379, socket_connect_timeout=3)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.fail(f"Redis unreachable at 127.0.0.1:6379 (set VETO_SKIP_REDIS=1 to skip): {exc}")
    yield client
    client.close()


def test_redis_restarted_between_calls_costs_no_call(redis_up: Any) -> None:
    key = f"fault-{secrets.token_hex(4)}"
    with TcpProxy(6379) as proxy:
        store = RedisLimitStore(f"redis://127.0.0.1:{proxy.port}/0")
        try:
            assert store.try_spend(key, 1, 10, 60).ok
            proxy.down()  # every connection dropped while the store sat idle
            proxy.up()
            assert store.try_spend(key, 1, 10, 60).ok
            proxy.down()
            proxy.up()
            assert store.total(key, 60) == 2
            assert redis_up.zcard(f"veto:limit:{key}") == 2
        finally:
            redis_up.delete(f"veto:limit:{key}")
            store.close()


def test_redis_lost_reply_counts_the_spend_once(redis_up: Any) -> None:
    """The spend ran on the server but its answer was lost: the store asks again with
    the same spend, which the script recognises, so the call is counted once and is
    let through (not refused as if it were a second call)."""
    key = f"fault-{secrets.token_hex(4)}"
    with TcpProxy(6379) as proxy:
        store = RedisLimitStore(f"redis://127.0.0.1:{proxy.port}/0")
        try:
            assert store.try_spend(key, 1, 2, 60).ok
            proxy.lose_next_reply()
            spend = store.try_spend(key, 1, 2, 60)
            assert spend.ok and spend.total == 2 and spend.token is not None
            assert redis_up.zcard(f"veto:limit:{key}") == 2
            assert not store.try_spend(key, 1, 2, 60).ok  # the budget is really spent
            store.refund(key, spend.token)
            assert redis_up.zcard(f"veto:limit:{key}") == 1
        finally:
            redis_up.delete(f"veto:limit:{key}")
            store.close()
