"""Stateful limits (DESIGN.md 2.5): atomic budgets in SQLite, PostgreSQL and Redis."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from veto_core import Effect, PolicyError, Principal, ToolCall, Veto

POLICY = """\
version: 1
name: budget
rules:
  - {id: refunds, effect: allow, tools: [issue_refund]}
  - {id: no-bad, effect: deny, tools: [issue_refund], if: {all: [{field: args.reason, exists: true}, {field: args.reason, equals: fraud}]}}
  - {id: lookups, effect: allow, tools: [lookup]}
limits:
  - id: refund-budget
    tools: [issue_refund]
    per: [tenant, principal.user]
    window: 24h
    sum: args.amount
    max: 1000
    effect: require_approval
    approval: {approvers: ["role:finance"], timeout: 10m}
    reason: Daily refund budget exhausted
  - id: lookup-rate
    tools: [lookup]
    per: [principal.agent]
    window: 1m
    count: true
    max: 3
"""


@pytest.fixture
def veto(tmp_path: Path) -> Iterator[Veto]:
    v = Veto.from_yaml(POLICY, tenant="acme", db=f"sqlite:///{tmp_path / 'v.db'}")
    yield v
    v.close()


def refund(amount: object, user: str = "u1", **extra: object) -> ToolCall:
    return ToolCall(
        tool="issue_refund",
        args={"amount": amount, **extra},
        principal=Principal(agent="bot", user=user),
        run_id="r",
        tool_call_id=uuid.uuid4().hex,
    )


def test_a_sum_budget_refuses_the_call_that_would_exceed_it(veto: Veto) -> None:
    assert veto.authorize(refund(600)).run_tool
    assert veto.authorize(refund(400)).run_tool  # exactly at the limit
    auth = veto.authorize(refund(1))
    assert not auth.run_tool
    assert auth.decision.effect is Effect.REQUIRE_APPROVAL
    assert auth.decision.deciding_rule_ids == ("refund-budget",)
    assert auth.decision.reasons == (
        "Daily refund budget exhausted [refund-budget]: 1000 used of 1000 per 24h, this call adds 1",
    )
    assert auth.approval is not None  # the limit's effect goes through the approval flow
    # Budgets are per key: another user is untouched.
    assert veto.authorize(refund(900, user="u2")).run_tool


def test_a_count_limit(veto: Veto) -> None:
    calls = [
        veto.authorize(ToolCall(tool="lookup", principal=Principal(agent="bot"))) for _ in range(5)
    ]
    assert [a.run_tool for a in calls] == [True, True, True, False, False]
    assert calls[3].decision.effect is Effect.DENY
    assert (
        "limit 'lookup-rate' reached [lookup-rate]: 3 used of 3 per 1m" in calls[3].decision.reason
    )


def test_denied_calls_do_not_spend(veto: Veto) -> None:
    for _ in range(5):
        assert veto.authorize(refund(500, reason="fraud")).decision.effect is Effect.DENY
    assert veto.limit_store.total('refund-budget|"acme"|"u1"', 86400) == 0
    assert veto.authorize(refund(1000)).run_tool


def test_the_window_slides(veto: Veto) -> None:
    start = datetime(2026, 11, 26, 9, tzinfo=UTC)

    def at(t: datetime, amount: int) -> bool:
        call = refund(amount)
        return veto.authorize(
            ToolCall(
                tool=call.tool,
                args=call.args,
                principal=call.principal,
                run_id="r",
                tool_call_id=uuid.uuid4().hex,
                now=t,
            )
        ).run_tool

    assert at(start, 1000)
    assert not at(start + timedelta(hours=23), 1)
    assert at(start + timedelta(hours=24, seconds=1), 1000)


def test_an_uncountable_call_fails_closed_with_the_limit_effect(veto: Veto) -> None:
    for args in ({}, {"amount": "lots"}, {"amount": True}, {"amount": -5}):
        auth = veto.authorize(
            ToolCall(
                tool="issue_refund",
                args=args,
                principal=Principal(user="u1"),
                run_id="r",
                tool_call_id=uuid.uuid4().hex,
            )
        )
        assert not auth.run_tool, args
        assert "cannot be counted" in auth.decision.reason
    # A missing key field fails closed too (no user).
    auth = veto.authorize(
        ToolCall(tool="issue_refund", args={"amount": 1}, run_id="r", tool_call_id="x")
    )
    assert not auth.run_tool and "principal.user is missing" in auth.decision.reason


def test_a_call_that_cannot_be_recorded_gives_its_budget_back(tmp_path: Path) -> None:
    limits = f"sqlite:///{tmp_path / 'limits.db'}"
    broken = Veto.from_yaml(POLICY, tenant="acme", db="nosuchscheme://x", limits_url=limits)
    auth = broken.authorize(refund(700))
    assert not auth.run_tool and "audit unavailable" in auth.decision.reason
    working = Veto.from_yaml(
        POLICY, tenant="acme", db=f"sqlite:///{tmp_path / 'v.db'}", limits_url=limits
    )
    assert working.authorize(refund(1000)).run_tool  # nothing was spent by the unrecorded call
    working.close()


def test_an_unreachable_limit_store_fails_closed(tmp_path: Path) -> None:
    veto = Veto.from_yaml(
        POLICY,
        tenant="acme",
        db=f"sqlite:///{tmp_path / 'v.db'}",
        limits_url="redis://127.0.0.1:1/0",
    )
    auth = veto.authorize(refund(1))
    assert not auth.run_tool and "limit store" in auth.decision.reason
    # Tools without limits are unaffected by the limit store.
    veto.close()


def test_limit_errors_are_load_errors() -> None:
    with pytest.raises(PolicyError) as err:
        Veto.from_yaml(
            "version: 1\nname: x\nlimits:\n"
            "  - {id: b, tools: [t], window: soon, count: true, max: 3}\n"
            "  - {id: c, tools: [t], window: 1h, sum: args.x, count: true, max: 3}\n"
        )
    assert str(err.value) == (
        "<policy>:4:33 limits[0].window: expected a duration like '30s', '15m', '2h' or '1d', got 'soon'\n"
        "<policy>:5:5 limits[1]: a limit needs exactly one of 'sum: FIELD' or 'count: true'"
    )
    with pytest.raises(PolicyError) as err:
        Veto.from_yaml(
            "version: 1\nname: x\nrules:\n  - {id: a, effect: allow, tools: [t]}\nlimits:\n"
            "  - {id: a, tools: [t], window: 1h, count: true, max: 3}\n"
            "  - {id: d, tools: [t], window: 1h, sum: principal.emial, max: 3}\n"
        )
    assert str(err.value) == (
        "<policy>:6:10 limits[0].id: duplicate id 'a' (rules and limits share one id space)\n"
        "<policy>:7:42 limits[1].sum: unknown principal field 'emial' (expected one of agent, roles, tenant, user, session)"
    )


# --- concurrency: 8 threads x 2 processes against a 1,000 budget in steps of 7 ------------

CONCURRENT_POLICY = """\
version: 1
name: budget
rules:
  - {id: refunds, effect: allow, tools: [issue_refund]}
limits:
  - {id: budget, tools: [issue_refund], per: [tenant], window: 24h, sum: args.amount, max: 1000}
"""


def _redis_url() -> str:
    if os.environ.get("VETO_SKIP_REDIS") == "1":
        pytest.skip("VETO_SKIP_REDIS=1")
    import redis

    db = 0
    try:
        redis.Redis(host="127.0.0.1", port=6379, socket_connect_timeout=3).ping()
    except redis.RedisError as exc:
        pytest.fail(f"Redis unreachable at 127.0.0.1:6379 (set VETO_SKIP_REDIS=1 to skip): {exc}")
    return f"redis://127.0.0.1:6379/{db}"


@pytest.mark.parametrize("store", ["sqlite", "postgresql", "redis"])
def test_concurrent_spenders_never_exceed_the_budget(
    store: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    policy = tmp_path / "p.yaml"
    policy.write_text(CONCURRENT_POLICY)
    if store == "sqlite":
        limits_url = f"sqlite:///{tmp_path / 'limits.db'}"
    elif store == "postgresql":
        limits_url = request.getfixturevalue("pg_url")
    else:
        limits_url = _redis_url()
        import redis

        redis.Redis.from_url(limits_url).delete('veto:limit:budget|"acme"')
    db = f"sqlite:///{tmp_path / 'audit.db'}"
    worker = Path(__file__).with_name("worker.py")
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, str(worker), str(policy), db, limits_url, "8", f"p{i}", str(go), str(tmp_path / f"ready{i}")],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for i in range(2)
    ]  # fmt: skip
    deadline = time.monotonic() + 120
    while not all((tmp_path / f"ready{i}").exists() for i in range(2)):
        if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
            # A live worker waits for the start line forever: stop it before reading output.
            for p in procs:
                p.kill()
            outputs = [(p.communicate(timeout=30), p.returncode) for p in procs]
            pytest.fail(f"workers did not start ((stdout, stderr), returncode): {outputs}")
        time.sleep(0.05)
    go.touch()  # both processes start spending at once
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        results.append(json.loads(out))
    total = sum(r["allowed"] for r in results)
    assert total <= 1000
    assert total == 994  # 142 spends of 7: the budget is used up, never exceeded
    assert all(r["calls"] > 0 for r in results)  # both processes really competed
