"""LangChain adapter overhead: one tool call through ``create_agent`` with a scripted model,
with and without ``VetoMiddleware`` (decision + durable SQLite audit record).

    uv run python benchmarks/bench_langchain.py [--runs 300] [--calls-per-turn 1]

Reports, per tool call:
- agent: median wall time of a whole ``agent.invoke`` (model turn, tool call, final turn)
  without and with the middleware, and the difference divided by the calls per turn;
- middleware alone: median of ``VetoMiddleware.wrap_tool_call`` around a no-op handler,
  split into the decision (``Veto.decide``) and the durable record (``authorize`` - ``decide``);
  and again with ``Veto.authorize`` answered by a pre-made result (``_premade.py``): the
  adapter's own work with no fsync in the loop.
The record is committed (fsync) before the tool may run, so one sequential caller pays
one fsync per call; concurrent callers share fsyncs (group commit, see bench_audit.py).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from _premade import premade_authorize
from langchain.agents import create_agent
from langchain_core.messages import AIMessage, ToolMessage
from langchain_core.tools import tool

from veto_core import Principal, ToolCall, Veto
from veto_langchain import VetoMiddleware
from veto_langchain.testing import ScriptedChatModel, tool_call

POLICY = """
version: 1
name: bench
rules:
  - {id: reads, effect: allow, tools: [read_file], if: {field: args.path, starts_with: /data}}
  - {id: no-delete, effect: deny, tools: [delete_file]}
"""


@tool
def read_file(path: str) -> str:
    """Read a file."""
    return "x"


def model(k: int) -> ScriptedChatModel:
    calls = [tool_call("read_file", {"path": f"/data/{i}"}, f"c{i}") for i in range(k)]
    # Alternating: a turn with tool calls, then a final answer; repeats for every run.
    turns = [AIMessage(content="", tool_calls=calls), AIMessage(content="done")]  # type: ignore[arg-type]
    return ScriptedChatModel(responses=turns * 100_000)


def time_agent(agent: Any, runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        agent.invoke({"messages": [("user", "go")]})
        out.append(time.perf_counter() - t0)
    return out


def median_us(xs: list[float]) -> float:
    return statistics.median(xs) * 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=300)
    ap.add_argument("--calls-per-turn", type=int, default=1)
    args = ap.parse_args()
    k = args.calls_per_turn
    with tempfile.TemporaryDirectory() as tmp:
        veto = Veto.from_yaml(
            POLICY, env="prod", tenant="acme", db=f"sqlite:///{Path(tmp) / 'v.db'}"
        )
        mw = VetoMiddleware(veto, principal=Principal(agent="bench", user="u"))
        plain = create_agent(model(k), [read_file])
        guarded = create_agent(model(k), [read_file], middleware=[mw])
        time_agent(plain, 20)
        time_agent(guarded, 20)  # warm up (opens the store, compiles graphs)
        base: list[float] = []
        with_mw: list[float] = []
        for _ in range(args.runs // 10):  # interleave to cancel drift
            base += time_agent(plain, 10)
            with_mw += time_agent(guarded, 10)
        b, w = median_us(base), median_us(with_mw)

        class Req:
            tool_call = {"name": "read_file", "args": {"path": "/data/a"}, "id": "c1"}
            tool = read_file  # the schema the arguments are validated with before deciding
            runtime = None

        msg = ToolMessage(content="x", tool_call_id="c1")
        n = max(1000, args.runs * 5)
        wrap, decide, authorize = [], [], []
        call = ToolCall(tool="read_file", args={"path": "/data/a"}, principal=mw._defaults.base.principal or Principal(), run_id="r", tool_call_id="c1", framework="langchain")  # fmt: skip
        for _ in range(n):
            t0 = time.perf_counter()
            mw.wrap_tool_call(Req(), lambda r: msg)
            t1 = time.perf_counter()
            veto.decide(call)
            t2 = time.perf_counter()
            veto.authorize(call)
            t3 = time.perf_counter()
            wrap.append(t1 - t0)
            decide.append(t2 - t1)
            authorize.append(t3 - t2)
        own = []  # the same call with no fsync in the loop (see _premade.py)
        with premade_authorize(veto):
            for i in range(n + 100):
                t0 = time.perf_counter()
                mw.wrap_tool_call(Req(), lambda r: msg)
                if i >= 100:
                    own.append(time.perf_counter() - t0)
        veto.close()
    print(f"create_agent, {k} tool call(s) per turn, {len(base)} runs each (median):")
    print(f"  without middleware   {b:9.1f} us per invoke")
    print(f"  with VetoMiddleware  {w:9.1f} us per invoke")
    print(f"  added per tool call  {(w - b) / k:9.1f} us")
    print(f"middleware alone, {n} calls (median):")
    print(f"  wrap_tool_call       {median_us(wrap):9.1f} us (decide + durable record + adapter)")
    print(f"  Veto.decide          {median_us(decide):9.1f} us")
    print(f"  Veto.authorize       {median_us(authorize):9.1f} us (decide + fsync'd record)")
    print(f"  adapter itself       {median_us(wrap) - median_us(authorize):9.1f} us")
    print(
        f"  adapter, no record   {median_us(own):9.1f} us (authorize answered by a pre-made result)"
    )


if __name__ == "__main__":
    main()
