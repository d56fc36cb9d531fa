"""veto-openai overhead: added µs per tool call.

    uv run python benchmarks/bench_openai.py [--calls 2000]

For an allowed call it times, per call (median, p99):
- ``core``: what any adapter must pay: ``veto.decide`` (needs_approval's answer) plus
  ``veto.authorize`` (decision + durable SQLite record, committed before return);
- ``adapter``: the same work through veto-openai: the ``needs_approval`` callback, the
  tool input guardrail and the body gate (the guarded ``on_invoke_tool``), exactly as
  the SDK calls them (building the Veto call from the SDK's ToolContext, parsing and
  schema-checking the raw JSON arguments, the approval lookups); the SDK's own invoke
  of the tool (pydantic validation, the body) is timed on the unguarded tool and added
  to ``core``, so it cancels out;
- ``adapter own``: the adapter call minus the time spent inside ``veto.authorize`` and
  the SDK's invoke, per call: the adapter's own share, steady even when the durable
  record's latency swings by milliseconds under load;
- ``own, no record``: the adapter's own share again, with ``Veto.authorize`` answered
  by a pre-made ``Authorization`` (see ``_premade.py``): no fsync in the loop, so the
  adapter's code is not timed with caches another process emptied meanwhile;
- ``own, hop inline``: the same with the SDK's worker-thread hop for sync tools run
  inline in both invokes: the adapter's work without that hop's variance;
- ``own, async tool``: the same on an async tool (no hop in either invoke);
- ``adapter - core``: the adapter's own cost (target ≤ 50 µs including the durable
  record is out of reach while the record alone costs hundreds of µs here; see
  bench_audit.py; the adapter's own share is what this package controls);
- ``no-record``: the adapter with a policy in ``audit: {mode: best_effort}`` on an
  unreachable store is NOT measured: it would measure a failure path.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

os.environ.setdefault("OPENAI_API_KEY", "bench")

from _premade import premade_authorize
from agents import Agent, ToolGuardrailFunctionOutput, function_tool, set_tracing_disabled
from agents.run_context import RunContextWrapper
from agents.tool_context import ToolContext
from agents.tool_guardrails import ToolInputGuardrailData

from veto_core import Principal, ToolCall, Veto
from veto_openai import VetoToolGuardrail, guard_agent

set_tracing_disabled(True)

POLICY = """
version: 1
name: bench
rules:
  - id: reads-allowed
    effect: allow
    tools: [read_file]
    if: {field: args.path, path_within: /data}
"""


@function_tool
def read_file(path: str) -> str:
    """Read a file."""
    return path


@function_tool(name_override="read_file")
async def read_file_async(path: str) -> str:
    """Read a file (an async tool: the SDK awaits it on the loop, no worker thread)."""
    return path


@contextlib.contextmanager
def _sdk_sync_tools_inline() -> Iterator[None]:
    """Run the SDK's sync function tools on the loop (``agents.tool`` calls
    ``asyncio.to_thread`` for them): for measuring only, never in an agent."""
    import agents.tool as sdk_tool

    class _Inline:
        def __getattr__(self, name: str) -> Any:
            return getattr(asyncio, name)

        @staticmethod
        async def to_thread(fn: Any, /, *args: Any, **kwargs: Any) -> Any:
            return fn(*args, **kwargs)

    real = sdk_tool.asyncio
    sdk_tool.asyncio = _Inline()  # type: ignore[assignment]
    try:
        yield
    finally:
        sdk_tool.asyncio = real


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))]


async def run(calls: int, db_dir: Path) -> None:
    veto = Veto.from_yaml(POLICY, env="prod", tenant="acme", db=f"sqlite:///{db_dir / 'v.db'}")
    agent = guard_agent(Agent(name="bot", tools=[read_file]), veto, principal=Principal(user="u"))
    tool = agent.tools[0]
    plain_invoke = read_file.on_invoke_tool
    guardrail = tool.tool_input_guardrails[0]
    assert isinstance(guardrail, VetoToolGuardrail)
    needs = tool.needs_approval
    assert callable(needs)
    context = {"veto": {"run_id": "bench-run"}}
    wrapper = RunContextWrapper(context=context)
    args_json = '{"path": "/data/a"}'

    # Time spent inside veto.authorize (the durable record), per adapter call: under load
    # it varies by milliseconds, which would drown the adapter's own share.
    inside = [0]
    real_authorize = veto.authorize

    def timed_authorize(call: ToolCall) -> Any:
        t = time.perf_counter_ns()
        try:
            return real_authorize(call)
        finally:
            inside[0] += time.perf_counter_ns() - t

    veto.authorize = timed_authorize  # type: ignore[method-assign]
    own: list[float] = []

    async def adapter(i: int) -> float:
        cid = f"call_{i}"
        inside[0] = 0
        t0 = time.perf_counter_ns()
        assert not await needs(wrapper, {"path": "/data/a"}, cid)
        tc = ToolContext(
            context=context, tool_name="read_file", tool_call_id=cid, tool_arguments=args_json
        )
        out: ToolGuardrailFunctionOutput = await guardrail.run(
            ToolInputGuardrailData(context=tc, agent=agent)
        )
        result = await tool.on_invoke_tool(tc, args_json)
        t1 = time.perf_counter_ns()
        assert out.behavior["type"] == "allow", out
        assert result == "/data/a", result
        t2 = time.perf_counter_ns()
        await plain_invoke(tc, args_json)  # the SDK's own invoke, to subtract
        t3 = time.perf_counter_ns()
        own.append((t1 - t0 - inside[0] - (t3 - t2)) / 1000)
        return (t1 - t0) / 1000

    async def core(i: int) -> float:
        call = ToolCall(
            tool="read_file", args={"path": "/data/a"}, principal=Principal(agent="bot", user="u"),
            run_id="bench-run", tool_call_id=f"core_{i}", framework="openai-agents",
        )  # fmt: skip
        tc = ToolContext(
            context=context, tool_name="read_file", tool_call_id=f"core_{i}",
            tool_arguments=args_json,
        )  # fmt: skip
        t0 = time.perf_counter_ns()
        veto.decide(call)
        auth = veto.authorize(call)
        result = await plain_invoke(tc, args_json)
        t1 = time.perf_counter_ns()
        assert auth.run_tool and result == "/data/a"
        return (t1 - t0) / 1000

    for i in range(100):  # warm up both paths
        await core(-i - 1)
        await adapter(-i - 1)
    a: list[float] = []
    c: list[float] = []
    for i in range(calls):  # interleaved, so both see the same machine load
        c.append(await core(i))
        a.append(await adapter(i))
    diffs = [x - y for x, y in zip(a, c, strict=True)]
    print(f"calls: {calls} (allowed, SQLite WAL durable record per call)")
    print(f"{'path':<16}{'median µs':>12}{'p99 µs':>12}{'mean µs':>12}")
    for name, xs in (("core", c), ("adapter", a)):
        print(
            f"{name:<16}{statistics.median(xs):>12.1f}{pct(xs, 0.99):>12.1f}{statistics.mean(xs):>12.1f}"
        )
    print(f"{'adapter - core':<16}{statistics.median(a) - statistics.median(c):>12.1f}"
          f"{'':>12}{statistics.mean(diffs):>12.1f}")  # fmt: skip
    # Paired: each adapter call minus the core call right before it (same load).
    print(f"{'paired diff':<16}{statistics.median(diffs):>12.1f}")
    # The adapter's own work alone: its total minus the time inside veto.authorize and
    # the SDK's invoke (includes the extra decides, schema check, context parsing).
    print(f"{'adapter own':<16}{statistics.median(own):>12.1f}{pct(own, 0.99):>12.1f}"
          f"{statistics.mean(own):>12.1f}")  # fmt: skip

    async def own_line(label: str, first_call: int) -> None:
        """The adapter's own share again, warmed up, over ``calls`` more calls."""
        for i in range(100):
            await adapter(first_call + i)
        own.clear()
        for i in range(calls):
            await adapter(first_call + 100 + i)
        print(f"{label:<16}{statistics.median(own):>12.1f}{pct(own, 0.99):>12.1f}"
              f"{statistics.mean(own):>12.1f}")  # fmt: skip

    # The same, with no fsync in the loop (see _premade.py): the adapter's own work alone.
    with premade_authorize(veto):
        await own_line("own, no record", 2 * calls)
    # The sync tool again with the SDK's worker-thread hop run inline, in the guarded and
    # the subtracted invoke alike: each hop costs ~90-110 us here and varies by tens of
    # us, so "own, no record" above carries that variance, not adapter work.
    with premade_authorize(veto), _sdk_sync_tools_inline():
        await own_line("own, hop inline", 4 * calls)
    # The same adapter work on an async tool: the SDK awaits its body on the loop, so
    # neither invoke crosses to a worker thread.
    atool = guard_agent(Agent(name="bot", tools=[read_file_async]), veto,
                        principal=Principal(user="u")).tools[0]  # fmt: skip
    tool, guardrail, needs = atool, atool.tool_input_guardrails[0], atool.needs_approval
    plain_invoke = read_file_async.on_invoke_tool
    assert isinstance(guardrail, VetoToolGuardrail) and callable(needs)
    with premade_authorize(veto):
        await own_line("own, async tool", 6 * calls)
    veto.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=2000)
    ns = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(run(ns.calls, Path(tmp)))


if __name__ == "__main__":
    main()
