"""`veto mcp proxy` over stdio with a real upstream MCP server and a real client.

Every test counts what the upstream really ran (its run log): allowed runs once;
denied, pending, rejected, expired and refused calls run zero times.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import anyio
from mcp_helpers import (
    INIT,
    INITIALIZED,
    SERVER,
    RawClient,
    World,
    call,
    is_error,
    run,
    stdio_session,
    text_of,
)

from veto_core.approvals import ApprovalState


def test_allowed_call_runs_once_and_is_audited_as_mcp(world: World) -> None:
    async def body() -> Any:
        async with stdio_session(world) as s:
            listed = await s.list_tools()
            assert {t.name for t in listed.tools} == {
                "echo",
                "refund",
                "delete_repo",
                "crash",
                "garbage",
            }
            return await call(s, "echo", {"text": "hi"})

    result = run(body)
    assert not is_error(result) and "echo: hi" in text_of(result)
    assert world.runs() == [{"tool": "echo", "args": {"text": "hi"}}]
    [rec] = world.records("mcp__gh__echo")
    assert rec.framework == "mcp" and rec.outcome == "allowed" and rec.rule_ids == ("echo-ok",)
    assert rec.principal.user == "bob" and rec.principal.agent == "ide" and rec.tenant == "acme"
    assert rec.run_id and rec.run_id.startswith("mcp-")


def test_denied_call_runs_zero_times_and_the_client_reads_why(world: World) -> None:
    async def body() -> Any:
        async with stdio_session(world) as s:
            return await call(s, "delete_repo", {"name": "prod"})

    result = run(body)
    assert is_error(result)
    assert "never deleted by agents" in text_of(result) and "no-delete" in text_of(result)
    meta = result.model_dump(by_alias=True)["_meta"]
    assert meta["veto"]["outcome"] == "denied" and meta["veto"]["rule_ids"] == ["no-delete"]
    assert world.runs() == []
    [rec] = world.records("mcp__gh__delete_repo")
    assert rec.outcome == "denied" and rec.framework == "mcp"


def test_calls_the_proxy_refuses_before_the_policy_run_zero_times(world: World) -> None:
    """Unknown tool, arguments that do not match the announced schema (a string the
    server would coerce), oversized arguments: refused, recorded, never forwarded."""

    async def body() -> list[Any]:
        async with stdio_session(world, "--max-arg-bytes", "2000") as s:
            return [
                await call(s, "never_listed", {}),
                await call(s, "echo", {"text": 5}),
                await call(s, "refund", {"amount": "1e3", "to": "x"}),
                await call(s, "echo", {"text": "x" * 5000}),
            ]

    unknown, wrong_type, coerced, big = run(body)
    assert all(is_error(r) for r in (unknown, wrong_type, coerced, big))
    assert "never announced a tool named 'never_listed'" in text_of(unknown)
    assert "inputSchema" in text_of(wrong_type) and "inputSchema" in text_of(coerced)
    assert "more than the proxy's limit of 2000" in text_of(big)
    assert world.runs() == []
    outcomes = [(r.tool, r.outcome) for r in world.records()]
    assert outcomes.count(("mcp__gh__echo", "denied")) == 2
    assert ("mcp__gh__never_listed", "denied") in outcomes
    big_rec = next(r for r in world.records("mcp__gh__echo") if "limit" in r.reasons[0])
    assert big_rec.args == {}  # the oversized arguments are not stored


def test_approval_released_by_the_cli_runs_once_with_progress(world: World) -> None:
    progress: list[tuple[float, str | None]] = []

    async def body() -> Any:
        async with stdio_session(world) as s, anyio.create_task_group() as tg:
            out: dict[str, Any] = {}

            async def calling() -> None:
                out["r"] = await call(
                    s, "refund", {"amount": 500, "to": "acct-1"},
                    on_progress=lambda p, t, m: progress.append((p, m)),
                )  # fmt: skip

            tg.start_soon(calling)
            req = await world.pending()
            assert world.runs() == []  # pending: not forwarded
            # a waiting call does not hold up the others of the same session
            other = await call(s, "echo", {"text": "meanwhile"})
            assert not is_error(other) and world.runs("refund") == []
            with anyio.fail_after(20):
                while not progress:  # the client hears that the call waits
                    await anyio.sleep(0.05)
            done = await anyio.to_thread.run_sync(
                lambda: world.veto_cli("approvals", "approve", req.id, "--as", "alice")
            )
            assert done.returncode == 0, done.stderr
        return out["r"]

    result = run(body)
    assert not is_error(result) and "refunded 500" in text_of(result)
    assert world.runs("refund") == [{"tool": "refund", "args": {"amount": 500, "to": "acct-1"}}]
    assert world.runs("echo") == [{"tool": "echo", "args": {"text": "meanwhile"}}]
    assert any(m and "waiting for approval" in m for _, m in progress)
    [req] = world.requests()
    assert req.state is ApprovalState.APPROVED and req.consumed_at is not None


def test_rejected_call_runs_zero_times(world: World) -> None:
    async def body() -> Any:
        async with stdio_session(world) as s, anyio.create_task_group() as tg:
            out: dict[str, Any] = {}

            async def calling() -> None:
                out["r"] = await call(s, "refund", {"amount": 900, "to": "acct-2"})

            tg.start_soon(calling)
            req = await world.pending()
            done = await anyio.to_thread.run_sync(
                lambda: world.veto_cli(
                    "approvals", "deny", req.id, "--as", "alice", "--reason", "fraud"
                )
            )
            assert done.returncode == 0, done.stderr
        return out["r"]

    result = run(body)
    assert is_error(result) and "(rejected)" in text_of(result) and "fraud" in text_of(result)
    assert world.runs() == []


def test_expired_call_runs_zero_times(world: World) -> None:
    async def body() -> Any:
        async with stdio_session(world) as s:
            return await call(s, "refund", {"amount": 5, "to": "acct-3"})

    result = run(body)
    assert is_error(result) and "(expired)" in text_of(result)
    assert world.runs() == []
    [req] = world.requests()
    assert req.state is ApprovalState.EXPIRED


def test_client_that_disconnects_while_pending_cancels_the_request(world: World) -> None:
    """The request is cancelled and the call never forwarded, even if someone approves
    it afterwards."""

    async def body() -> str:
        async with stdio_session(world) as s, anyio.create_task_group() as tg:
            tg.start_soon(call, s, "refund", {"amount": 700, "to": "acct-4"})
            req = await world.pending()
            tg.cancel_scope.cancel()  # the client stops waiting...
        return req.id  # ...and closes the session: the proxy's stdin ends

    rid = run(body)
    final = None
    for _ in range(200):
        final = world.request(rid)
        if final.state is not ApprovalState.PENDING:
            break
        anyio.run(anyio.sleep, 0.05)
    assert final is not None and final.state is ApprovalState.CANCELLED, final
    late = world.veto_cli("approvals", "approve", rid, "--as", "alice")
    assert late.returncode == 2  # no longer pending
    assert world.runs() == []


def test_hide_denied_leaves_out_tools_the_policy_never_allows(world: World) -> None:
    async def body() -> tuple[set[str], Any]:
        async with stdio_session(world, "--hide-denied") as s:
            names = {t.name for t in (await s.list_tools()).tools}
            return names, await call(s, "delete_repo", {"name": "x"})

    names, hidden_call = run(body)
    # delete_repo: unconditional deny; refund: needs approval (may run); crash/garbage: allowed
    assert names == {"echo", "refund", "crash", "garbage"}
    assert is_error(hidden_call) and world.runs() == []


def test_upstream_crash_fails_closed(world: World) -> None:
    async def body() -> tuple[Any, Any]:
        async with stdio_session(world) as s:
            with anyio.fail_after(30):
                crashed = await call(s, "crash", {})
                after = await call(s, "echo", {"text": "after the crash"})
            return crashed, after

    crashed, after = run(body)
    assert is_error(crashed) and "upstream MCP server" in text_of(crashed)
    assert is_error(after) and "upstream MCP server" in text_of(after)
    assert world.runs() == [{"tool": "crash", "args": {}}]  # nothing ran after it


def test_malformed_json_rpc_from_the_upstream_fails_the_call_in_flight(world: World) -> None:
    async def body() -> tuple[Any, Any]:
        async with stdio_session(world) as s:
            with anyio.fail_after(30):
                bad = await call(s, "garbage", {})
                ok = await call(s, "echo", {"text": "next"})
            return bad, ok

    bad, ok = run(body)
    assert is_error(bad) and "malformed" in text_of(bad)
    assert not is_error(ok)


def test_malformed_json_rpc_from_the_client_runs_nothing(world: World) -> None:
    """Raw lines on the proxy's stdin: garbage, a tools/call with non-object
    arguments, a tools/call without a name. Each is answered with an error."""
    raw = RawClient(world)
    raw.send(
        INIT,
        INITIALIZED,
        "{this is not json",
        {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "echo", "arguments": ["x"]}},
        {"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"arguments": {"text": "x"}}},
        {"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {"name": "delete_repo", "arguments": {"name": "x"}}},
    )  # fmt: skip
    answers = raw.answer(1, 2, 3, 4)  # stdin stays open
    raw.close()
    assert "result" in answers[1]
    for rid in (2, 3):
        assert "error" in answers[rid] or answers[rid]["result"].get("isError") is True, answers[
            rid
        ]
    assert answers[4]["result"]["isError"] is True
    assert world.runs() == []


def test_only_tools_are_served(world: World) -> None:
    """The relay announces the upstream's tools alone: what else the upstream offers
    (resources, prompts) is not governed by the policy, so it is not reachable."""
    raw = RawClient(world)
    raw.send(INIT)
    init = raw.answer(1)[1]["result"]
    assert init["capabilities"] == {"tools": init["capabilities"]["tools"]}
    raw.send(
        INITIALIZED,
        {"jsonrpc": "2.0", "id": 2, "method": "resources/list", "params": {}},
        {"jsonrpc": "2.0", "id": 3, "method": "prompts/get", "params": {"name": "x"}},
        {"jsonrpc": "2.0", "id": 4, "method": "ping"},
        {"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {"name": "echo", "arguments": {"text": "ok"}}},
    )  # fmt: skip
    answers = raw.answer(2, 3, 4, 5)
    raw.close()
    assert answers[2]["error"]["code"] == -32601 and answers[3]["error"]["code"] == -32601
    assert answers[4]["result"] == {}
    assert answers[5]["result"]["content"][0]["text"] == "echo: ok"
    assert world.runs() == [{"tool": "echo", "args": {"text": "ok"}}]


def test_client_that_cancels_a_pending_call_cancels_the_request(world: World) -> None:
    """notifications/cancelled for a call waiting for approval: the request is
    cancelled, the call never forwarded, and the session goes on."""
    import time

    raw = RawClient(world)
    raw.send(
        INIT,
        INITIALIZED,
        {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "refund", "arguments": {"amount": 600, "to": "acct-7"}}},
    )  # fmt: skip
    req = anyio.run(world.pending)
    raw.send(
        {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 2, "reason": "changed my mind"}},
        {"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "echo", "arguments": {"text": "still here"}}},
    )  # fmt: skip
    assert raw.answer(3)[3]["result"]["content"][0]["text"] == "echo: still here"
    deadline = time.monotonic() + 10
    while world.request(req.id).state is ApprovalState.PENDING and time.monotonic() < deadline:
        time.sleep(0.05)
    assert world.request(req.id).state is ApprovalState.CANCELLED
    assert 2 not in raw.answers  # a cancelled request is not answered
    raw.close()
    assert world.runs() == [{"tool": "echo", "args": {"text": "still here"}}]


def test_proxy_stopped_with_sigterm_while_pending_cancels_the_request(world: World) -> None:
    """What MCP clients do to a server that does not exit on its own (SIGTERM): the
    waiting call's request is cancelled before the proxy exits."""
    import signal
    import time

    raw = RawClient(world)
    raw.send(INIT, INITIALIZED, {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
             "params": {"name": "refund", "arguments": {"amount": 800, "to": "acct-6"}}})  # fmt: skip
    proc = raw.proc
    req = anyio.run(world.pending)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    deadline = time.monotonic() + 10
    while world.request(req.id).state is ApprovalState.PENDING and time.monotonic() < deadline:
        time.sleep(0.05)
    assert world.request(req.id).state is ApprovalState.CANCELLED
    assert world.runs() == []


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    assert len(keys) == len(set(keys)), f"a duplicate key reached the upstream: {keys}"
    return dict(pairs)


def test_the_upstream_reads_the_call_that_was_decided_whatever_its_json_parser(
    world: World,
) -> None:
    """Duplicate keys are read as the last value by Veto, the first by some parsers
    (cJSON, for one): forwarded as they came, ``{"name": "delete_repo", "name": "echo"}``
    is decided as echo and run as delete_repo by such a server. What reaches the upstream
    (recorded by ``tee`` in front of it) is the message Veto decided on, nothing else."""
    received = world.tmp / "received.jsonl"
    upstream = ["--", "sh", "-c", 'tee "$0" | "$1" "$2" stdio', str(received), sys.executable, str(SERVER)]  # fmt: skip
    raw = RawClient(world, upstream=upstream)
    raw.send(
        INIT,
        INITIALIZED,
        '{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"delete_repo","name":"echo","arguments":{"text":"a"}}}',
        '{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"echo","arguments":{"text":"evil","text":"ok"}}}',
    )  # fmt: skip
    answers = raw.answer(1, 2, 3)
    raw.close()
    assert "echo: a" in json.dumps(answers[2]) and "echo: ok" in json.dumps(answers[3])
    lines = received.read_text().splitlines()
    messages = [json.loads(line, object_pairs_hook=_no_duplicate_keys) for line in lines]
    calls = [m["params"] for m in messages if m.get("method") == "tools/call"]
    assert calls == [
        {"name": "echo", "arguments": {"text": "a"}},
        {"name": "echo", "arguments": {"text": "ok"}},
    ]
    assert [r["tool"] for r in world.runs()] == ["echo", "echo"]
