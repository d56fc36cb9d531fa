"""Fault injection at the core: the store fails under a running ``Veto``.

For each fault (SQLite disk full / read-only / locked, PostgreSQL restarted,
Redis down) the same story must hold: while the store is down every call is
denied with a reason that says so (the tool would not run); nothing is recorded
twice; when the store returns, calls are allowed again without a restart; and the
chain verifies afterwards.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from audit_helpers import NumberedCalls
from tcp_proxy import TcpProxy

from veto_core import Effect, Veto

POLICY = """
version: 1
name: faults
rules:
  - {id: reads, effect: allow, tools: [read]}
  - {id: refunds, effect: allow, tools: [refund]}
limits:
  - {id: budget, tools: [refund], per: [tenant], window: 24h, count: true, max: 1000}
"""


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for name in ("VETO_CONFIG", "VETO_AUDIT_WITNESS", "VETO_DB", "VETO_LIMITS_URL"):
        monkeypatch.delenv(name, raising=False)


class Run(NumberedCalls):
    """Numbered calls, checked against what the store kept."""

    def check(self) -> None:
        """Every call has at most one record (exactly the one authorize named), every
        allowed call has its record, and the chain verifies."""
        records = [r for r in self.veto.audit.iter_records(tenant="acme") if r.tool == self.tool]
        ids = [r.tool_call_id for r in records]
        assert len(ids) == len(set(ids)), "a call was recorded twice"
        assert {r.id for r in records} == {a.record_id for a in self.results if a.record_id}
        for a in self.results:
            if a.decision.effect is Effect.ALLOW:
                assert a.record_id is not None
        by_id = {r.id: r for r in records}
        for a in self.results:
            if a.record_id is not None:
                assert by_id[a.record_id].effect == a.decision.effect.value
        report = self.veto.audit.verify()
        assert report.ok, report.to_dict()


def denied_while_down(run: Run, reason: str, *, recorded: bool, calls: int = 3) -> None:
    for _ in range(calls):
        auth = run.call()
        assert auth.decision.effect is Effect.DENY and not auth.run_tool
        assert any(reason in r for r in auth.decision.reasons), auth.decision.reasons
        # An audit outage leaves no record (none could be written); a limit-store
        # outage is itself a recorded deny.
        assert (auth.record_id is not None) is recorded


def make(tmp_path: Path, db: str, **kw: Any) -> Veto:
    policy = tmp_path / "p.yaml"
    policy.write_text(POLICY)
    return Veto.from_file(policy, env="prod", tenant="acme", db=db, **kw)


def _sqlite_connections(veto: Veto) -> list[sqlite3.Connection]:
    sink: Any = veto.audit.sink
    return [sink._writer, sink._admin]


@pytest.fixture
def sqlite_veto(tmp_path: Path) -> Iterator[Veto]:
    veto = make(tmp_path, f"sqlite:///{tmp_path / 'veto.db'}")
    yield veto
    veto.close()


def _fault(
    run: Run,
    *,
    break_it: Callable[[], None],
    fix_it: Callable[[], None],
    reason: str,
    recorded: bool = False,
) -> None:
    for _ in range(3):
        assert run.call().run_tool
    break_it()
    denied_while_down(run, reason, recorded=recorded)
    fix_it()
    for _ in range(3):
        auth = run.call()
        assert auth.run_tool and auth.record_id, auth.decision.reasons
    run.check()


def test_sqlite_disk_full(sqlite_veto: Veto) -> None:
    run = Run(sqlite_veto)
    cons = _sqlite_connections(sqlite_veto)

    def fill() -> None:
        # SQLite's own "disk full": the database may not grow by one more page.
        for con in cons:
            pages = con.execute("PRAGMA page_count").fetchone()[0]
            con.execute(f"PRAGMA max_page_count={pages}")
        # Use up the free space left in the last pages (those calls still succeed).
        for _ in range(500):
            if not run.call().run_tool:
                run.results.pop()
                return
        raise AssertionError("the database never filled up")

    _fault(
        run,
        break_it=fill,
        fix_it=lambda: [c.execute("PRAGMA max_page_count=1073741823") for c in cons] and None,
        reason="database or disk is full",
    )


def test_sqlite_read_only(sqlite_veto: Veto) -> None:
    # Root ignores file modes, so the database is made read-only where SQLite enforces it.
    run = Run(sqlite_veto)
    cons = _sqlite_connections(sqlite_veto)
    _fault(
        run,
        break_it=lambda: [c.execute("PRAGMA query_only=ON") for c in cons] and None,
        fix_it=lambda: [c.execute("PRAGMA query_only=OFF") for c in cons] and None,
        reason="audit unavailable",
    )
    assert any("readonly" in " ".join(a.decision.reasons) for a in run.results)


def test_sqlite_locked_beyond_the_busy_timeout(sqlite_veto: Veto, tmp_path: Path) -> None:
    run = Run(sqlite_veto)
    for con in _sqlite_connections(sqlite_veto):
        con.execute("PRAGMA busy_timeout=200")  # the real 30 s would only slow the test
    other = sqlite3.connect(tmp_path / "veto.db", isolation_level=None)
    _fault(
        run,
        break_it=lambda: other.execute("BEGIN EXCLUSIVE") and None,
        fix_it=lambda: other.execute("COMMIT") and None,
        reason="database is locked",
    )
    other.close()


def test_postgres_restarted_mid_run(pg_url: str, tmp_path: Path) -> None:
    with TcpProxy(5432) as proxy:
        url = pg_url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
        veto = make(tmp_path, url)
        try:
            run = Run(veto)
            _fault(run, break_it=proxy.down, fix_it=proxy.up, reason="audit unavailable")
        finally:
            veto.close()


def test_redis_limit_store_down(tmp_path: Path) -> None:
    if os.environ.get("VETO_SKIP_REDIS") == "1":
        pytest.skip("VETO_SKIP_REDIS=1")
    import redis

    try:
        redis.Redis(host="127.0.0.1", port=6379, socket_connect_timeout=3).ping()
    except redis.RedisError as exc:
        pytest.fail(f"Redis unreachable at 127.0.0.1:6379 (set VETO_SKIP_REDIS=1 to skip): {exc}")
    with TcpProxy(6379) as proxy:
        veto = make(
            tmp_path,
            f"sqlite:///{tmp_path / 'veto.db'}",
            limits_url=f"redis://127.0.0.1:{proxy.port}/0",
        )
        key = 'veto:limit:budget|"acme"'
        redis.Redis(host="127.0.0.1", port=6379).delete(key)
        try:
            run = Run(veto, tool="refund")
            _fault(
                run,
                break_it=proxy.down,
                fix_it=proxy.up,
                reason="cannot be counted",
                recorded=True,
            )
            # The budget counted exactly the calls that were let through.
            allowed = sum(a.decision.effect is Effect.ALLOW for a in run.results)
            assert redis.Redis(host="127.0.0.1", port=6379).zcard(key) == allowed
        finally:
            redis.Redis(host="127.0.0.1", port=6379).delete(key)
            veto.close()
